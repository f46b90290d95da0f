"""Erasing a companion's user and deleting a companion, in every store that holds their data.

Erasing a user (GDPR art. 17 and the like): every ``TenantDataStore`` removes the user's items (memories with
their vectors, relations and history, import keys, session records and logs, rate counters, the
relationship record), the audit log's earlier mentions of the user are pseudonymised, and a "user.erased"
event is recorded under the same pseudonym. The receipt says how many items of each kind went, per store.

Deleting a companion, in this order, so a crash at any point leaves a state that a retry finishes:
1. the tombstone, in one transaction: status deleted, wrapped data key destroyed (crypto-shredding: its
   sealed content is unreadable from here on, wherever a copy lies, once the key caches expire), config
   emptied, every API key of the companion revoked, "companion.deleted" recorded;
2. this process's cached data key zeroised;
3. every store purged of the companion's users' data.
A second delete finds the tombstone, skips steps 1-2 (``shredded`` false) and runs step 3 again, which
removes whatever a cut-short run left behind (zeros when nothing was). The tombstone stays for good: ids
are never reused, and the audit log keeps naming a companion that exists.

Both calls are idempotent. A store that cannot be reached does not stop the others; the call then fails with
a retryable error naming it, what was removed stays removed, and the retry removes the rest.
"""

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from companion_memory.auth import tokens
from companion_memory.auth.principal import Principal, require
from companion_memory.errors import DependencyUnavailable, NotFound
from companion_memory.models.erasure import CompanionDeletionReceipt, Removed, UserErasureReceipt
from companion_memory.models.identity import AuditEvent, Companion
from companion_memory.ports import Clock, IdentityStore, TenantDataStore

NO_SUCH_COMPANION = "No such companion"


class ErasureLedger(Protocol):
    """The records around an erasure: the companion's tombstone and the audit events."""

    def retire_companion(self, owner_id: UUID, companion_id: UUID, at: datetime, audit: AuditEvent) -> bool:
        """Mark the companion deleted, destroy its wrapped data key, empty its config and revoke its API keys,
        with ``audit``, in one transaction; False (nothing written) when it was already deleted."""
        ...

    def record(self, audit: AuditEvent) -> None: ...


class KeyShredder(Protocol):
    """Forgets a companion's data key (``EnvelopeCipher.shred``: the stored one and this process's cache)."""

    def shred(self, companion_id: UUID) -> None: ...


def user_pseudonym(companion_id: UUID, user_id: str) -> str:
    """How the audit log names an erased user: the SHA-256 of ``<companion id>:<user id>`` (the database's
    ``audit_user_pseudonym``, migration 0011, computes the same)."""
    digest = hashlib.sha256(f"{companion_id}:{user_id}".encode()).hexdigest()
    return f"user_sha256:{digest}"


class ErasureService:
    def __init__(
        self,
        identity: IdentityStore,
        ledger: ErasureLedger,
        stores: Sequence[TenantDataStore],
        clock: Clock,
        shredder: KeyShredder | None = None,
    ) -> None:
        names = [store.name for store in stores]
        if len(set(names)) != len(names):
            raise ValueError(f"two tenant data stores share a name: {names}")
        self._identity = identity
        self._ledger = ledger
        self._stores = list(stores)
        self._clock = clock
        self._shredder = shredder

    def erase_user(self, principal: Principal, companion_id: UUID, user_id: str) -> UserErasureReceipt:
        """Remove everything of one user of the caller's companion (owner key); a user the companion never
        had, or one erased before, answers a receipt of zeros."""
        companion = self._owned(principal, companion_id)
        # First, so the user's tokens issued until now are refused even if the purge is cut short (their
        # companion_users row, and a block with it, goes in the purge).
        self._identity.record_erasure(companion.owner_id, companion.id, user_id, self._clock.now())
        removed = self._each_store(lambda store: store.erase_user(companion.owner_id, companion.id, user_id))
        erased_at = self._clock.now()
        # Again at the end: a token issued while the stores were purged may have written too late for them.
        self._identity.record_erasure(companion.owner_id, companion.id, user_id, erased_at)
        self._ledger.record(
            AuditEvent(
                owner_id=companion.owner_id,
                companion_id=companion.id,
                actor=principal.actor,
                action="user.erased",
                target=user_pseudonym(companion.id, user_id),
                details={"removed": removed},
                at=erased_at,
            )
        )
        return UserErasureReceipt(
            companion_id=companion.id, user_id=user_id, erased_at=erased_at, removed=removed
        )

    def delete_companion(self, principal: Principal, companion_id: UUID) -> CompanionDeletionReceipt:
        """Tombstone and crypto-shred the caller's companion, then purge every store (see the module doc)."""
        companion = self._owned(principal, companion_id)
        now = self._clock.now()
        audit = AuditEvent(
            owner_id=companion.owner_id,
            companion_id=companion.id,
            actor=principal.actor,
            action="companion.deleted",
            target=f"companion:{companion.id}",
            details={"isolation_level": companion.isolation_level},
            at=now,
        )
        shredded = self._ledger.retire_companion(companion.owner_id, companion.id, now, audit)
        if self._shredder is not None:
            self._shredder.shred(companion.id)
        removed = self._each_store(lambda store: store.erase_companion(companion.owner_id, companion.id))
        return CompanionDeletionReceipt(
            companion_id=companion.id, status="deleted", deleted_at=now, shredded=shredded, removed=removed
        )

    def _each_store(self, erase: Callable[[TenantDataStore], dict[str, int]]) -> Removed:
        """Every store, even after one failed (a store that is down keeps no other store from being
        purged); then the failure, retryable, naming the stores to try again."""
        removed: Removed = {}
        down: list[str] = []
        for store in self._stores:
            try:
                removed[store.name] = erase(store)
            except DependencyUnavailable:
                down.append(store.name)
        if down:
            raise DependencyUnavailable(
                "Some stores could not be reached; what the others held is gone. Send the request again",
                details={"unavailable": down},
            )
        return removed

    def _owned(self, principal: Principal, companion_id: UUID) -> Companion:
        # Owner keys only (admin scope); another owner's companion reads exactly like a missing one.
        require(principal, tokens.SCOPE_ADMIN)
        companion = self._identity.get_companion(principal.owner_id, companion_id)
        if companion is None:
            raise NotFound(NO_SUCH_COMPANION)
        return companion
