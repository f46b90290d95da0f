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


class IllegalTransition(Conflict):
    """A lifecycle action the companion's status does not allow (resume an archived companion, update a
    deleted one); ``details`` name the status and the action."""

    code = "illegal_transition"


class CompanionInactive(Forbidden):
    """The credential is good but its companion is not active: it serves nothing until its owner resumes it.
    Each status has its own code: ``companion_paused``, ``companion_archived``, ``companion_deleted``."""

    code = "companion_inactive"


class CompanionPaused(CompanionInactive):
    code = "companion_paused"


class CompanionArchived(CompanionInactive):
    code = "companion_archived"


class CompanionDeleted(CompanionInactive):
    code = "companion_deleted"


_INACTIVE: dict[str, tuple[type[CompanionInactive], str]] = {
    "paused": (CompanionPaused, "The companion is paused; its owner can resume it"),
    "archived": (CompanionArchived, "The companion is archived and serves no requests"),
    "deleted": (CompanionDeleted, "The companion is deleted"),
}
INACTIVE_CODES: frozenset[str] = frozenset(cls.code for cls, _ in _INACTIVE.values())


def companion_inactive(status: str) -> CompanionInactive:
    """The error a credential of a companion in ``status`` (not active) gets."""
    cls, message = _INACTIVE.get(status, (CompanionInactive, "The companion is not active"))
    return cls(message, details={"status": status})


def companion_inactive_by_code(code: str) -> CompanionInactive:
    """The error named by its code (the authorizer hands REST functions the code, not the exception)."""
    status = next((s for s, (cls, _) in _INACTIVE.items() if cls.code == code), "inactive")
    return companion_inactive(status)


class RateLimited(CompanionMemoryError):
    code = "rate_limited"
    status = 429
    retryable = True

    def __init__(self, message: str, *, retry_after_s: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class QuotaExceeded(CompanionMemoryError):
    """A quota (daily interactions, memories or content bytes per user) is used up.

    429 like a rate limit, but a different code: waiting a few seconds does not help. A daily quota
    says when it resets (``retry_after_s``); a storage quota has no reset, the caller must forget
    memories or have the companion's limits raised.
    """

    code = "quota_exceeded"
    status = 429

    def __init__(
        self, message: str, *, retry_after_s: int | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


class TooManySessions(CompanionMemoryError):
    """A new conversation would pass the companion's ``limits.max_concurrent_sessions``.

    429 with its own code: the request is refused because of how many conversations are open, not how
    fast this caller goes. Continuing an open conversation still works; a new one works once another has
    been idle for its 30-minute expiry, so a quick retry does not help (not ``retryable``).
    """

    code = "too_many_sessions"
    status = 429


class ContentShredded(CompanionMemoryError):
    """The companion's data key was destroyed: its sealed content can never be opened again."""

    code = "content_shredded"
    status = 410


class ContentIntegrityError(CompanionMemoryError):
    """Sealed content failed authentication: tampered with, or moved to another memory, user or
    companion. Never shown with any detail of why."""

    code = "content_integrity_failed"
    status = 500


class DependencyUnavailable(CompanionMemoryError):
    code = "dependency_unavailable"
    status = 503
    retryable = True


INTERNAL_ERROR_BODY: dict[str, Any] = {
    "error": {"code": CompanionMemoryError.code, "message": "Internal error", "retryable": False}
}
