"""Who may do what to one user's memories of one companion: the one check every memory request passes first,
REST route and MCP tool call alike.

- A companion key acts for any user of its companion, a user token only for its own user; both need the
  operation's scope (memories:read / write / delete) and the user's permission (can_read / can_write /
  can_delete; a blocked user gets nothing).
- An owner key (scope admin) reads and exports the memories of its companions' users; it does not write
  them (that is the companion's job), and erasing a user is its own operation.
- A companion of another tenant, or another user's memories under a user token, are "not found": the
  same answer as a companion or user that does not exist.
- Every admitted request (a REST request, an MCP tool call, resource read or prompt) counts once against
  the companion user's rate limit and daily quota, after every other check: a refused request costs no quota.
- Every admitted request is also counted once, by its operation, in the companion's hourly activity
  (analytics). Counting is best effort: when it fails the request goes on (logged, metric
  ``ActivityRecordFailed``): a usage chart is not worth a user-visible error.

The companion (its config: the limits) and the user's permissions are cached per sandbox for ``cache_s``,
the same bound as the authenticator's status cache (see docs/security.md): a permission change reaches every
sandbox within seconds, without a database read per request. MCP tools run in worker threads, so the cache
is locked.
"""

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from uuid import UUID

from companion_memory.auth.grants import (
    SCOPE_ADMIN,
    SCOPE_MEMORIES_DELETE,
    SCOPE_MEMORIES_READ,
    SCOPE_MEMORIES_WRITE,
)
from companion_memory.caching import TtlCache
from companion_memory.errors import CompanionMemoryError, Forbidden, NotFound
from companion_memory.models.analytics import Operation as Operation  # re-exported: routes and tools name it
from companion_memory.models.identity import Companion, CompanionUser
from companion_memory.models.tenancy import TenantScope
from companion_memory.observability import logger, metrics
from companion_memory.ports import ActivityRecorder, IdentityStore

MEMORY_SCOPES: Final = (SCOPE_MEMORIES_READ, SCOPE_MEMORIES_WRITE, SCOPE_MEMORIES_DELETE)
NO_SUCH_COMPANION: Final = "No such companion"
NO_SUCH_USER: Final = "No such user"
_SCOPES: Final[dict[Operation, str]] = {
    "read": SCOPE_MEMORIES_READ,
    "write": SCOPE_MEMORIES_WRITE,
    "delete": SCOPE_MEMORIES_DELETE,
}


class Actor(Protocol):
    """Who is calling: ``auth.principal.Principal`` (REST) and ``mcp.access.Caller`` (MCP) both are one."""

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


class Admission(Protocol):
    """``domain.limits.RequestGuard``: raises RateLimited / QuotaExceeded over the companion's limits."""

    def admit(self, companion_id: UUID, user_id: str, config: Mapping[str, Any]) -> None: ...


def require_scope(actor: Actor, scope: str) -> None:
    if scope not in actor.scopes:
        raise Forbidden(
            f"the credential does not grant {scope}; ask for one with that scope",
            details={"required_scope": scope},
        )


class MemoryAccess:
    def __init__(
        self,
        store: IdentityStore,
        admission: Admission,
        *,
        cache_s: float,
        monotonic: Callable[[], float],
        max_entries: int = 10_000,
        activity: ActivityRecorder | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._admission = admission
        self._activity = activity
        self._now = now
        self._cache: TtlCache[tuple[object, ...], Any] = TtlCache(cache_s, monotonic, max_entries)

    def authorize(self, actor: Actor, companion_id: UUID, user_id: str, operation: Operation) -> TenantScope:
        """The tenant scope of ``user_id``'s memories of ``companion_id`` for ``operation``, or an error:
        NotFound (not this actor's companion or user), Forbidden (scope, permission, blocked),
        RateLimited / QuotaExceeded (limits)."""
        if actor.kind == "owner":
            companion = self._companion(actor.owner_id, companion_id)
            require_scope(actor, SCOPE_ADMIN)
            if operation != "read":
                raise Forbidden(
                    "An owner key reads and exports memories; storing and changing them is the companion's",
                    details={"operation": operation},
                )
        else:
            if actor.companion_id != companion_id:
                raise NotFound(NO_SUCH_COMPANION)
            if actor.kind == "user" and actor.user_id != user_id:
                raise NotFound(NO_SUCH_USER)
            require_scope(actor, _SCOPES[operation])
            companion = self._companion(actor.owner_id, companion_id)
            self._check_user(actor.owner_id, companion_id, user_id, operation)
        self._admission.admit(companion_id, user_id, companion.config)
        scope = TenantScope(owner_id=actor.owner_id, companion_id=companion_id, user_id=user_id)
        self._record(scope, operation)
        return scope

    def _record(self, scope: TenantScope, operation: Operation) -> None:
        if self._activity is None:
            return
        try:
            self._activity.record(scope, operation, self._now())
        except CompanionMemoryError as error:
            logger.warning("activity not recorded", extra={"error_code": error.code})
            metrics.add_metric(name="ActivityRecordFailed", unit="Count", value=1)

    def _check_user(self, owner_id: UUID, companion_id: UUID, user_id: str, operation: Operation) -> None:
        user: CompanionUser | None = self._cache.get_or_load(
            ("user", companion_id, user_id),
            lambda: self._store.companion_user(owner_id, companion_id, user_id),
        )
        if user is None:
            return  # a user the companion never saw has the default permissions
        if user.is_blocked:
            raise Forbidden("this companion has blocked the user")
        permission = f"can_{operation}"
        if not getattr(user, permission):
            raise Forbidden(
                f"this companion does not allow this user to {operation} memories",
                details={"permission": permission},
            )

    def _companion(self, owner_id: UUID, companion_id: UUID) -> Companion:
        companion: Companion | None = self._cache.get_or_load(
            ("companion", owner_id, companion_id),
            lambda: self._store.get_companion(owner_id, companion_id),
        )
        if companion is None:
            raise NotFound(NO_SUCH_COMPANION)
        return companion
