"""Who calls /mcp and what they may do: the Bearer user token, checked before the MCP SDK sees the request.

Why here and not the SDK's ``token_verifier``: the SDK verifies on the one event loop that serves every
request of the sandbox and turns any verifier failure other than "no" into a 500, so a database outage
would look like a crash instead of a retryable 503; and the companion session must be recorded with the
Lambda event after authentication and before the request runs, which the SDK offers no hook for. So the
handler authenticates in its own thread, answers 401 (``WWW-Authenticate`` with the RFC 9728 metadata
URL) itself, and hands the ``Caller`` to the tools in the ASGI scope of that one request.

This module does not import the MCP SDK: wiring builds ``McpServices`` from it.
"""

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol
from uuid import UUID

from companion_memory.auth.context import INVALID_CREDENTIAL
from companion_memory.domain.memory import MemoryService
from companion_memory.domain.memory_access import MEMORY_SCOPES, Actor, MemoryAccess
from companion_memory.domain.sessions import SessionService
from companion_memory.errors import Unauthorized

CALLER_SCOPE_KEY: Final = "companion_memory.caller"
# What the 401 challenge names as the scopes the tools need.
MCP_SCOPES: Final = MEMORY_SCOPES


class BearerAuthenticator(Protocol):
    """``companion_memory.auth.authenticator.Authenticator``: refuses bad, revoked, blocked or paused."""

    def authenticate_bearer(self, header: str | None) -> Actor: ...


@dataclass(frozen=True, slots=True)
class McpServices:
    """What the MCP function uses, built once per process by ``wiring.mcp_services()``."""

    authenticator: BearerAuthenticator
    access: MemoryAccess
    memory: MemoryService
    sessions: SessionService


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated end user of one companion; what it may do is ``MemoryAccess``'s to say, per call."""

    owner_id: UUID
    companion_id: UUID
    user_id: str
    scopes: frozenset[str]

    @property
    def kind(self) -> Literal["user"]:
        return "user"


def authenticate(headers: Mapping[str, str], services: McpServices) -> Caller:
    """The caller of an MCP request, from its ``Authorization`` header only (never the query string).

    Raises Unauthorized for a missing or bad credential, one that is not a user token, a blocked user or a
    companion that is not active (the authenticator's checks); DependencyUnavailable when the identity
    store cannot answer. Scopes, the user's permissions and the rate limit are checked per call
    (``MemoryAccess.authorize``), as for REST.
    """
    header = next((value for name, value in headers.items() if name.lower() == "authorization"), None)
    principal = services.authenticator.authenticate_bearer(header)
    if principal.kind != "user" or principal.companion_id is None or principal.user_id is None:
        # Companion and owner keys serve the REST API; an MCP client acts for one end user.
        raise Unauthorized(INVALID_CREDENTIAL, details={"hint": "use a user token from POST /auth/token"})
    return Caller(
        owner_id=principal.owner_id,
        companion_id=principal.companion_id,
        user_id=principal.user_id,
        scopes=frozenset(principal.scopes),
    )


def challenge(resource_metadata_url: str, error: Unauthorized, credential_sent: bool) -> str:
    """The ``WWW-Authenticate`` value of a 401 (RFC 6750 §3, RFC 9728 §5.1, MCP authorization).

    Without a credential no error code is given (RFC 6750 §3.1); ``scope`` names what the tools need.
    """
    parts = [f'resource_metadata="{resource_metadata_url}"', f'scope="{" ".join(MCP_SCOPES)}"']
    if credential_sent:
        parts.insert(0, 'error="invalid_token"')
        parts.insert(1, f'error_description="{error.message}"')
    return "Bearer " + ", ".join(parts)


def resource_metadata_url(resource: str) -> str:
    """RFC 9728 §3.1: the well-known segment goes between the host and the resource's path."""
    scheme, _, rest = resource.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host}/.well-known/oauth-protected-resource{slash}{path}".rstrip("/")


# The caller of the request being served: set from the ASGI scope for the duration of one request (a
# context variable, so each request, thread and task sees its own; never a module-level value).
current_caller: ContextVar["Caller | None"] = ContextVar("companion_memory_caller", default=None)


class CallerContext:
    """ASGI middleware: ``current_caller`` is the scope's caller while the request runs."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        token = current_caller.set(scope.get(CALLER_SCOPE_KEY))
        try:
            await self._app(scope, receive, send)
        finally:
            current_caller.reset(token)
