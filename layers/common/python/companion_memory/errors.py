"""One exception hierarchy. Edges (HTTP, MCP, authorizer) map it to answers; nothing else does.

Each error has a stable ``code`` clients may branch on, an HTTP ``status``, and ``retryable`` for
failures a client should retry with backoff (dependency outages, rate limits).
"""

from typing import Any, ClassVar


class CompanionMemoryError(Exception):
    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "retryable": self.retryable}
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def headers(self) -> dict[str, str]:
        return {}


class ValidationFailed(CompanionMemoryError):
    code = "validation_failed"
    status = 400


class Unauthorized(CompanionMemoryError):
    code = "unauthorized"
    status = 401


class Forbidden(CompanionMemoryError):
    code = "forbidden"
    status = 403


class NotFound(CompanionMemoryError):
    code = "not_found"
    status = 404


class Conflict(CompanionMemoryError):
    code = "conflict"
    status = 409


class RateLimited(CompanionMemoryError):
    code = "rate_limited"
    status = 429
    retryable = True

    def __init__(self, message: str, *, retry_after_s: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class DependencyUnavailable(CompanionMemoryError):
    code = "dependency_unavailable"
    status = 503
    retryable = True


INTERNAL_ERROR_BODY: dict[str, Any] = {
    "error": {"code": CompanionMemoryError.code, "message": "Internal error", "retryable": False}
}
