"""What the Lambda authorizer hands a REST request, read without loading the JWT stack (the resolver of every
REST function imports this, including functions that never see a credential).

An HttpApi simple response can only deny with 403, and a bad credential must get 401. So the authorizer
admits a request whose credential is bad with ``UNAUTHENTICATED_CONTEXT``, and the REST resolver answers it
401 before any route code runs (http/resolver.py; the trade-off is in docs/security.md).
"""

from typing import Any, Final

from companion_memory.errors import (
    INACTIVE_CODES,
    CompanionMemoryError,
    Unauthorized,
    companion_inactive_by_code,
)

MISSING_CREDENTIAL: Final = "missing credential"
INVALID_CREDENTIAL: Final = "invalid credential"
UNAUTHENTICATED_CONTEXT: Final[dict[str, str]] = {"authenticated": "false"}


def inactive_companion_context(code: str) -> dict[str, str]:
    """The context of a good credential whose companion is not active: refused like a bad one, but with
    the reason's stable code (``companion_paused``...), so the caller learns why."""
    return {**UNAUTHENTICATED_CONTEXT, "reason": code}


def authorizer_context(event: dict[str, Any]) -> Any:
    """The authorizer's ``context`` on a payload 2.0 event (None on a route without the authorizer)."""
    return ((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda")


def rejected_by_authorizer(event: dict[str, Any]) -> bool:
    """True when the authorizer saw a credential and found it bad."""
    context = authorizer_context(event)
    return (
        isinstance(context, dict) and context.get("authenticated") == UNAUTHENTICATED_CONTEXT["authenticated"]
    )


def rejection(event: dict[str, Any]) -> CompanionMemoryError:
    """The error of a request ``rejected_by_authorizer``: 401, or the companion's inactive status (403)."""
    context = authorizer_context(event)
    reason = context.get("reason") if isinstance(context, dict) else None
    if reason in INACTIVE_CODES:
        return companion_inactive_by_code(str(reason))
    return Unauthorized(INVALID_CREDENTIAL)
