from companion_memory.errors import (
    CompanionMemoryError,
    Conflict,
    DependencyUnavailable,
    NotFound,
    RateLimited,
    ValidationFailed,
)


def test_every_error_has_a_stable_code_and_status() -> None:
    # Given the public error classes
    classes = [ValidationFailed, NotFound, Conflict, RateLimited, DependencyUnavailable]
    # Then codes are distinct and statuses are client or dependency errors
    assert len({c.code for c in classes}) == len(classes)
    assert all(400 <= c.status < 600 for c in classes)


def test_body_carries_code_message_and_retryability_but_nothing_else() -> None:
    body = NotFound("No such memory", details={"memory_id": "m1"}).to_body()
    assert body == {
        "error": {
            "code": "not_found",
            "message": "No such memory",
            "retryable": False,
            "details": {"memory_id": "m1"},
        }
    }


def test_rate_limited_is_retryable_and_says_when() -> None:
    error = RateLimited("Too many requests", retry_after_s=12)
    assert error.retryable
    assert error.headers() == {"Retry-After": "12"}


def test_dependency_outage_is_retryable() -> None:
    assert DependencyUnavailable("Redis is unreachable").to_body()["error"]["retryable"] is True


def test_base_error_adds_no_headers() -> None:
    assert CompanionMemoryError("x").headers() == {}
