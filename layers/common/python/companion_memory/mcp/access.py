"""Who calls /mcp and what they may do: the Bearer user token, checked before the MCP SDK sees the request.

Why here and not the SDK's ``token_verifier``: the SDK verifies on the one event loop that serves every
request of the sandbox and turns any verifier failure other than "no" into a 500, so a database outage
would look like a crash instead of a retryable 503; and the companion session must be recorded with the
Lambda event after authentication and before the request runs, which the SDK offers no hook for. So the
handler authenticates in its own thread, answers 401 (``WWW-Authenticate`` with the RFC 9728 metadata
URL) itself, and hands the ``Caller`` to the tools in the ASGI scope of that one request.

This module imports neither the MCP SDK nor the JWT stack: wiring builds ``McpServices`` from it.
"""

import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol
from uuid import UUID

from companion_memory.auth.context import INVALID_CREDENTIAL
from companion_memory.domain.memory import MemoryService
from companion_memory.domain.sessions import SessionService
from companion_memory.errors import Forbidden, Unauthorized
from companion_memory.models.identity import Companion, CompanionUser
from companion_memory.models.tenancy import TenantScope
from companion_memory.ports import IdentityStore

CALLER_SCOPE_KEY: Final = "companion_memory.caller"
SCOPE_READ: Final = "memories:read"
SCOPE_WRITE: Final = "memories:write"
SCOPE_DELETE: Final = "memories:delete"
MCP_SCOPES: Final = (SCOPE_READ, SCOPE_WRITE, SCOPE_DELETE)
Permission = Literal["can_read", "can_write", "can_delete"]
_PERMISSION_OF_SCOPE: Final[dict[str, Permission]] = {
    SCOPE_READ: "can_read",
    SCOPE_WRITE: "can_write",
    SCOPE_DELETE: "can_delete",
}


class PrincipalLike(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def owner_id(self) -> UUID: ...
    @property
    def companion_id(self) -> UUID | None: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def scopes(self) -> frozenset[str]: ...


class BearerAuthenticator(Protocol):
    """``companion_memory.auth.principal.Authenticator``: refuses bad, revoked, blocked or paused."""

    def authenticate_bearer(self, header: str | None) -> PrincipalLike: ...


class TenantDirectory(Protocol):
    def companion(self, owner_id: UUID, companion_id: UUID) -> Companion | None: ...
    def user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> CompanionUser | None: ...


class AdmissionGuard(Protocol):
    """``domain.limits.RequestGuard``: raises RateLimited or QuotaExceeded."""

    def admit(self, companion_id: UUID, user_id: str, config: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class McpServices:
    """What the MCP function uses, built once per process by ``wiring.mcp_services()``."""

    authenticator: BearerAuthenticator
    directory: TenantDirectory
    memory: MemoryService
    guard: AdmissionGuard
    sessions: SessionService


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated end user of one companion, with what the token and the companion allow."""

    owner_id: UUID
    companion_id: UUID
    user_id: str
    scopes: frozenset[str]
    companion_config: Mapping[str, Any]
    permissions: CompanionUser

    @property
    def tenant(self) -> TenantScope:
        return TenantScope(owner_id=self.owner_id, companion_id=self.companion_id, user_id=self.user_id)

    def require(self, scope: str) -> None:
        """The token must grant ``scope`` and the companion must let this user do it."""
        if scope not in self.scopes:
            raise Forbidden(
                f"the token does not grant {scope}; ask for a token with that scope",
                details={"required_scope": scope},
            )
        permission = _PERMISSION_OF_SCOPE[scope]
        if not getattr(self.permissions, permission):
            raise Forbidden(
                f"this companion does not allow this user to {permission.removeprefix('can_')} memories",
                details={"permission": permission},
            )


def authenticate(headers: Mapping[str, str], services: McpServices) -> Caller:
    """The caller of an MCP request, from its ``Authorization`` header only (never the query string).

    Raises Unauthorized for a missing or bad credential, one that is not a user token, a blocked user
    or a companion that is not active; DependencyUnavailable when the identity store cannot answer.
    """
    header = next((value for name, value in headers.items() if name.lower() == "authorization"), None)
    principal = services.authenticator.authenticate_bearer(header)
    if principal.kind != "user" or principal.companion_id is None or principal.user_id is None:
        # Companion and owner keys serve the REST API; an MCP client acts for one end user.
        raise Unauthorized(INVALID_CREDENTIAL, details={"hint": "use a user token from POST /auth/token"})
    companion = services.directory.companion(principal.owner_id, principal.companion_id)
    if companion is None or companion.status != "active":
        raise Unauthorized(INVALID_CREDENTIAL)
    user = services.directory.user(principal.owner_id, principal.companion_id, principal.user_id)
    permissions = user or CompanionUser(companion_id=principal.companion_id, user_id=principal.user_id)
    if permissions.is_blocked:
        raise Unauthorized(INVALID_CREDENTIAL)
    return Caller(
        owner_id=principal.owner_id,
        companion_id=principal.companion_id,
        user_id=principal.user_id,
        scopes=frozenset(principal.scopes),
        companion_config=companion.config,
        permissions=permissions,
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


class CachedTenantDirectory:
    """Companion config/status and user permissions, cached per sandbox for ``ttl_s``.

    The same bound as the authenticator's status cache: a permission change or a pause reaches every
    sandbox within seconds, without a database read per request.
    """

    def __init__(self, store: IdentityStore, *, ttl_s: float, monotonic: Callable[[], float]) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._entries: dict[tuple[object, ...], tuple[float, Any]] = {}

    def companion(self, owner_id: UUID, companion_id: UUID) -> Companion | None:
        found: Companion | None = self._cached(
            ("companion", owner_id, companion_id), lambda: self._store.get_companion(owner_id, companion_id)
        )
        return found

    def user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> CompanionUser | None:
        found: CompanionUser | None = self._cached(
            ("user", companion_id, user_id),
            lambda: self._store.companion_user(owner_id, companion_id, user_id),
        )
        return found

    def _cached(self, key: tuple[object, ...], load: Callable[[], Any]) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._monotonic() - entry[0] < self._ttl_s:
                return entry[1]
        value = load()
        with self._lock:
            if len(self._entries) >= 10_000:
                self._entries.clear()  # bounded memory beats an LRU's bookkeeping for a seconds-long cache
            self._entries[key] = (self._monotonic(), value)
        return value
