"""Who may do what to one user's memories of one companion: the check every memory request passes first.

- A companion key acts for any user of its companion, a user token only for its own user; both need the
  operation's scope (memories:read / write / delete) and the user's permission (can_read / can_write /
  can_delete; a blocked user gets nothing).
- An owner key (scope admin) reads and exports the memories of its companions' users; it does not write
  them (that is the companion's job), and erasing a user is its own operation.
- A companion of another tenant, or another user's memories under a user token, are "not found": the
  same answer as a companion or user that does not exist.
- Every admitted request counts once against the companion user's rate limit and daily quota.

The companion (its config: the limits) and the user's permissions are cached per sandbox for ``cache_s``,
the same bound as the authenticator's status cache (see docs/security.md).
"""

from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol
from uuid import UUID

from companion_memory.auth.principal import Principal, require
from companion_memory.auth.tokens import (
    SCOPE_ADMIN,
    SCOPE_MEMORIES_DELETE,
    SCOPE_MEMORIES_READ,
    SCOPE_MEMORIES_WRITE,
)
from companion_memory.errors import Forbidden, NotFound
from companion_memory.models.identity import Companion, CompanionUser
from companion_memory.models.tenancy import TenantScope
from companion_memory.ports import IdentityStore

Operation = Literal["read", "write", "delete"]
NO_SUCH_COMPANION = "No such companion"
NO_SUCH_USER = "No such user"
_SCOPES: dict[Operation, str] = {
    "read": SCOPE_MEMORIES_READ,
    "write": SCOPE_MEMORIES_WRITE,
    "delete": SCOPE_MEMORIES_DELETE,
}


class Admission(Protocol):
    """``domain.limits.RequestGuard``: raises RateLimited / QuotaExceeded over the companion's limits."""

    def admit(self, companion_id: UUID, user_id: str, config: Mapping[str, Any]) -> None: ...


class MemoryAccess:
    def __init__(
        self,
        store: IdentityStore,
        admission: Admission,
        *,
        cache_s: float,
        monotonic: Callable[[], float],
        max_entries: int = 10_000,
    ) -> None:
        self._store = store
        self._admission = admission
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._max_entries = max_entries
        self._companions: dict[tuple[UUID, UUID], tuple[float, Companion | None]] = {}
        self._users: dict[tuple[UUID, str], tuple[float, CompanionUser | None]] = {}

    def authorize(
        self, principal: Principal, companion_id: UUID, user_id: str, operation: Operation
    ) -> TenantScope:
        """The tenant scope of ``user_id``'s memories of ``companion_id`` for ``operation``, or an error:
        NotFound (not this principal's companion or user), Forbidden (scope, permission, blocked),
        RateLimited / QuotaExceeded (limits)."""
        if principal.kind == "owner":
            companion = self._companion(principal.owner_id, companion_id)
            require(principal, SCOPE_ADMIN)
            if operation != "read":
                raise Forbidden(
                    "An owner key reads and exports memories; storing and changing them is the companion's",
                    details={"operation": operation},
                )
        else:
            if principal.companion_id != companion_id:
                raise NotFound(NO_SUCH_COMPANION)
            if principal.kind == "user" and principal.user_id != user_id:
                raise NotFound(NO_SUCH_USER)
            require(principal, _SCOPES[operation])
            companion = self._companion(principal.owner_id, companion_id)
            self._check_user(principal.owner_id, companion_id, user_id, operation)
        self._admission.admit(companion_id, user_id, companion.config)
        return TenantScope(owner_id=principal.owner_id, companion_id=companion_id, user_id=user_id)

    def _check_user(self, owner_id: UUID, companion_id: UUID, user_id: str, operation: Operation) -> None:
        user = self._cached(
            self._users,
            (companion_id, user_id),
            lambda: self._store.companion_user(owner_id, companion_id, user_id),
        )
        if user is None:
            return  # a user the companion never saw has the default permissions
        if user.is_blocked:
            raise Forbidden("The user is blocked")
        allowed = {"read": user.can_read, "write": user.can_write, "delete": user.can_delete}[operation]
        if not allowed:
            raise Forbidden(
                f"The user's permissions do not allow {operation}", details={"operation": operation}
            )

    def _companion(self, owner_id: UUID, companion_id: UUID) -> Companion:
        companion = self._cached(
            self._companions,
            (owner_id, companion_id),
            lambda: self._store.get_companion(owner_id, companion_id),
        )
        if companion is None:
            raise NotFound(NO_SUCH_COMPANION)
        return companion

    def _cached[K, V](self, table: dict[K, tuple[float, V]], key: K, load: Callable[[], V]) -> V:
        now = self._monotonic()
        entry = table.get(key)
        if entry is not None and now - entry[0] < self._cache_s:
            return entry[1]
        value = load()
        if len(table) >= self._max_entries:
            table.clear()  # bounded memory beats an LRU's bookkeeping for a seconds-long cache
        table[key] = (now, value)
        return value
