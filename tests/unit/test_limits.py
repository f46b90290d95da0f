"""Rate-limit and quota policy: limits from the companion config, windows, storage checks, failure mode."""

import uuid
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest

from companion_memory.domain.limits import (
    Limits,
    RequestGuard,
    StorageUsage,
    check_storage,
    day_window,
    minute_window,
)
from companion_memory.errors import DependencyUnavailable, QuotaExceeded, RateLimited, ValidationFailed
from companion_memory.ports import RateLimiter


class FakeLimiter:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[UUID, str, int, int]] = []

    def admit(self, companion_id: UUID, user_id: str, *, per_minute: int, per_day: int) -> None:
        self.calls.append((companion_id, user_id, per_minute, per_day))
        if self.error is not None:
            raise self.error


def _is_a_rate_limiter(limiter: RateLimiter) -> None:
    """Never called: mypy checks that the fake implements the port."""


_is_a_rate_limiter(FakeLimiter())


def test_limits_come_from_the_companion_config_with_defaults_for_the_rest() -> None:
    limits = Limits.of({"limits": {"requests_per_minute": 20}, "personality": "kind"})
    assert limits.requests_per_minute == 20
    assert limits.interactions_per_day == Limits().interactions_per_day
    assert Limits.of({}) == Limits()


@pytest.mark.parametrize(
    "limits", [{"requests_per_minute": 0}, {"requests_per_minute": "many"}, {"reqs_per_minute": 5}, []]
)
def test_a_malformed_limits_object_is_a_clear_validation_error(limits: object) -> None:
    with pytest.raises(ValidationFailed, match=r"config\.limits"):
        Limits.of({"limits": limits})


def test_the_minute_window_ends_at_the_next_whole_minute_and_says_how_long_to_wait() -> None:
    window = minute_window(datetime(2026, 3, 1, 12, 30, 15, 400_000, tzinfo=UTC))
    assert window.ends_at == datetime(2026, 3, 1, 12, 31, tzinfo=UTC)
    assert window.retry_after_s == 45  # 44.6 s, rounded up
    assert minute_window(datetime(2026, 3, 1, 12, 30, 59, 999_999, tzinfo=UTC)).retry_after_s == 1
    assert minute_window(datetime(2026, 3, 1, 12, 31, tzinfo=UTC)).index == window.index + 1


def test_the_day_window_resets_at_utc_midnight_whatever_the_callers_time_zone() -> None:
    # Given 23:00 in UTC-5, which is 04:00 UTC the next day
    now = datetime(2026, 3, 1, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    window = day_window(now)
    assert window.ends_at == datetime(2026, 3, 3, tzinfo=UTC)
    assert window.retry_after_s == 20 * 3600
    assert day_window(datetime(2026, 3, 3, tzinfo=UTC)).index == window.index + 1


def test_storage_within_the_quotas_is_allowed_and_shrinking_always_is() -> None:
    limits = Limits(max_memories_per_user=10, max_content_bytes_per_user=1_000)
    check_storage(limits, StorageUsage(memories=9, content_bytes=900), adding_memories=1, adding_bytes=100)
    check_storage(limits, StorageUsage(memories=12, content_bytes=2_000), adding_memories=0, adding_bytes=-50)


def test_one_memory_too_many_is_refused_with_a_stable_code_and_no_retry_after() -> None:
    limits = Limits(max_memories_per_user=10)
    with pytest.raises(QuotaExceeded) as raised:
        check_storage(limits, StorageUsage(memories=10, content_bytes=0), adding_memories=1, adding_bytes=1)
    assert raised.value.code == "quota_exceeded"
    assert raised.value.details == {"quota": "max_memories_per_user", "limit": 10}
    assert raised.value.headers() == {}


def test_content_past_the_byte_quota_is_refused() -> None:
    limits = Limits(max_content_bytes_per_user=1_000)
    with pytest.raises(QuotaExceeded, match="1000 bytes"):
        check_storage(limits, StorageUsage(memories=1, content_bytes=990), adding_memories=0, adding_bytes=11)


def test_the_guard_passes_the_companions_limits_to_the_limiter() -> None:
    limiter = FakeLimiter()
    companion = uuid.uuid4()
    RequestGuard(limiter, "closed").admit(companion, "alice", {"limits": {"requests_per_minute": 7}})
    assert limiter.calls == [(companion, "alice", 7, Limits().interactions_per_day)]


def test_over_the_limit_is_refused_whatever_the_failure_mode() -> None:
    limiter = FakeLimiter(RateLimited("slow down", retry_after_s=12))
    with pytest.raises(RateLimited) as raised:
        RequestGuard(limiter, "open").admit(uuid.uuid4(), "alice", {})
    assert raised.value.headers() == {"Retry-After": "12"}


def test_failing_open_admits_the_request_when_the_limiter_is_unreachable() -> None:
    limiter = FakeLimiter(DependencyUnavailable("redis down"))
    RequestGuard(limiter, "open").admit(uuid.uuid4(), "alice", {})
    assert len(limiter.calls) == 1


def test_failing_closed_refuses_the_request_with_a_retryable_error() -> None:
    limiter = FakeLimiter(DependencyUnavailable("redis down"))
    with pytest.raises(DependencyUnavailable) as raised:
        RequestGuard(limiter, "closed").admit(uuid.uuid4(), "alice", {})
    assert raised.value.retryable
