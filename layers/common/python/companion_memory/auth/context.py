"""What the Lambda authorizer hands a REST request, read without loading the JWT stack (the resolver of every
REST function imports this, including functions that never see a credential).

An HttpApi simple response can only deny with 403, and a bad credential must get 401. So the authorizer
admits a request whose credential is bad with ``UNAUTHENTICATED_CONTEXT``, and the REST resolver answers it
401 before any route code runs (http/resolver.py; the trade-off is in docs/security.md).
"""

from typing import Any, Final

MISSING_CREDENTIAL: Final = "missing credential"
INVALID_CREDENTIAL: Final = "invalid credential"
UNAUTHENTICATED_CONTEXT: Final[dict[str, str]] = {"authenticated": "false"}


def authorizer_context(event: dict[str, Any]) -> Any:
    """The authorizer's ``context`` on a payload 2.0 event (None on a route without the authorizer)."""
    return ((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda")


def rejected_by_authorizer(event: dict[str, Any]) -> bool:
    """True when the authorizer saw a credential and found it bad."""
    context = authorizer_context(event)
    return (
        isinstance(context, dict) and context.get("authenticated") == UNAUTHENTICATED_CONTEXT["authenticated"]
    )
