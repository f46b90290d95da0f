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
are never reused, and the audit log keeps naming a companion that exists. Step 3 runs within a time budget
(the request's: the HTTP API gives up after 30 s): when it runs out, the receipt says ``purge: pending``
with what went so far, and the cleanup schedule's sweep (or another delete) finishes the purge; every store
purges in short batches and resumes where the last call stopped.

Both calls are idempotent. A store that cannot be reached does not stop the others; the call then fails with
a retryable error naming it, what was removed stays removed, and the retry removes the rest. An erasure
cut short that way is audited too ("user.erasure_incomplete", what went and which stores to retry).
"""

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from uuid import UUID

from companion_memory.auth.principal import Principal
from companion_memory.domain.identity import owned_companion
from companion_memory.errors import DependencyUnavailable
from companion_memory.models.erasure import (
    Budget,
    CompanionDeletionReceipt,
    Removed,
    StorePurge,
    UserErasureReceipt,
)
from companion_memory.models.identity import AuditEvent, Companion
from companion_memory.ports import Clock, ErasureLedger, IdentityStore, KeyShredder, TenantDataStore


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
        removed, down = self._each_store(
            lambda store: StorePurge(store.erase_user(companion.owner_id, companion.id, user_id))
        )
        erased_at = self._clock.now()
        # Again at the end: a token issued while the stores were purged may have written too late for them.
        self._identity.record_erasure(companion.owner_id, companion.id, user_id, erased_at)
        target = user_pseudonym(companion.id, user_id)
        if down:
            self._record_incomplete(
                AuditEvent(
                    owner_id=companion.owner_id,
                    companion_id=companion.id,
                    actor=principal.actor,
                    action="user.erasure_incomplete",
                    target=target,
                    details={"removed": removed, "unavailable": down},
                    at=erased_at,
                )
            )
            raise _unavailable(down)
        self._ledger.record(
            AuditEvent(
                owner_id=companion.owner_id,
                companion_id=companion.id,
                actor=principal.actor,
                action="user.erased",
                target=target,
                details={"removed": removed},
                at=erased_at,
            )
        )
        return UserErasureReceipt(
            companion_id=companion.id, user_id=user_id, erased_at=erased_at, removed=removed
        )

    def delete_companion(
        self, principal: Principal, companion_id: UUID, budget: Budget | None = None
    ) -> CompanionDeletionReceipt:
        """Tombstone and crypto-shred the caller's companion, then purge every store within ``budget`` (see
        the module doc): ``purge`` is ``pending`` when the budget ran out before every store was done."""
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
        unfinished: list[str] = []

        def purge(store: TenantDataStore) -> StorePurge:
            result = store.erase_companion(companion.owner_id, companion.id, budget)
            if not result.finished:
                unfinished.append(store.name)
            return result

        removed, down = self._each_store(purge)
        if down:
            raise _unavailable(down)
        return CompanionDeletionReceipt(
            companion_id=companion.id,
            status="deleted",
            deleted_at=now,
            shredded=shredded,
            purge="pending" if unfinished else "complete",
            removed=removed,
        )

    def _each_store(self, erase: Callable[[TenantDataStore], StorePurge]) -> tuple[Removed, list[str]]:
        """Every store, even after one failed (a store that is down keeps no other store from being
        purged): what each removed, and the stores that could not be reached."""
        removed: Removed = {}
        down: list[str] = []
        for store in self._stores:
            try:
                removed[store.name] = erase(store).removed
            except DependencyUnavailable:
                down.append(store.name)
        return removed, down

    def _record_incomplete(self, audit: AuditEvent) -> None:
        # When the ledger's own store is among those down, the retryable error that follows says so.
        with contextlib.suppress(DependencyUnavailable):
            self._ledger.record(audit)

    def _owned(self, principal: Principal, companion_id: UUID) -> Companion:
        # Owner keys only; another owner's companion reads exactly like a missing one. Any status: erasing
        # and deleting again finish what an earlier call left.
        return owned_companion(self._identity, principal, companion_id)


def _unavailable(down: Sequence[str]) -> DependencyUnavailable:
    return DependencyUnavailable(
        "Some stores could not be reached; what the others held is gone. Send the request again",
        details={"unavailable": list(down)},
    )
