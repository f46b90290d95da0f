"""In-memory stand-ins for the identity ports (IdentityStore, SigningKeyStore) and a controllable clock.

They keep the adapters' semantics that the domain relies on: one owner's rows are invisible to another, a
taken prefix raises Conflict, rotation refuses a key that is gone, revoked, expired or already rotated, an
organisation's last usable owner key is not revoked, and every change is recorded with its audit event.
Each stored key is kept as the adapter keeps it (record + hash), so a test can check that no plaintext ever
reached the store.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from companion_memory.auth.keyset import SigningKeySet
from companion_memory.domain.identity import refuse_owner_lockout
from companion_memory.errors import Conflict
from companion_memory.models.identity import (
    ApiKey,
    AuditEvent,
    Companion,
    CompanionUser,
    Owner,
    StoredApiKey,
    UserPermissions,
)


class ManualClock:
    """Wall clock and monotonic clock that move only when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        self._monotonic = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds


def active_companion(companion_id: UUID, owner_id: UUID, config: dict[str, Any] | None = None) -> Companion:
    """A standard, active companion of ``owner_id`` (what a freshly created companion looks like)."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Companion(
        id=companion_id,
        owner_id=owner_id,
        name="Ava",
        config=config or {},
        isolation_level="standard",
        status="active",
        version="1.0.0",
        created_at=at,
        updated_at=at,
    )


@dataclass
class InMemoryIdentityStore:
    owners: dict[UUID, Owner] = field(default_factory=dict)
    companions: dict[UUID, Companion] = field(default_factory=dict)
    keys: dict[UUID, StoredApiKey] = field(default_factory=dict)
    users: dict[tuple[UUID, str], CompanionUser] = field(default_factory=dict)
    erasures: dict[tuple[UUID, str], datetime] = field(default_factory=dict)
    audit: list[AuditEvent] = field(default_factory=list)
    # The next N inserts find their prefix taken (as if another key had drawn it).
    collisions: int = 0
    reads: dict[str, int] = field(default_factory=dict)
    touches: list[tuple[UUID, datetime]] = field(default_factory=list)

    def _count(self, what: str) -> None:
        self.reads[what] = self.reads.get(what, 0) + 1

    def create_owner(self, owner: Owner, key: StoredApiKey, audit: AuditEvent) -> None:
        self._insert(key)
        self.owners[owner.id] = owner
        self.audit.append(audit)

    def create_companion(self, companion: Companion, audit: AuditEvent) -> None:
        self.companions[companion.id] = companion
        self.audit.append(audit)

    def get_companion(self, owner_id: UUID, companion_id: UUID) -> Companion | None:
        self._count("companion")
        companion = self.companions.get(companion_id)
        return companion if companion is not None and companion.owner_id == owner_id else None

    def companion_of_key(self, key: ApiKey) -> Companion | None:
        return None if key.companion_id is None else self.get_companion(key.owner_id, key.companion_id)

    def insert_api_key(self, key: StoredApiKey, audit: AuditEvent) -> None:
        self._insert(key)
        self.audit.append(audit)

    def _insert(self, key: StoredApiKey) -> None:
        if self.collisions > 0 or any(k.record.prefix == key.record.prefix for k in self.keys.values()):
            self.collisions = max(0, self.collisions - 1)
            raise Conflict("API key prefix already in use", details={"reason": "prefix_collision"})
        self.keys[key.record.id] = key

    def api_key_by_prefix(self, prefix: str) -> StoredApiKey | None:
        self._count("key")
        return next((k for k in self.keys.values() if k.record.prefix == prefix), None)

    def list_api_keys(self, owner_id: UUID, companion_id: UUID | None) -> list[ApiKey]:
        return [
            k.record
            for k in self.keys.values()
            if k.record.owner_id == owner_id and k.record.companion_id == companion_id
        ]

    def revoke_api_key(
        self, owner_id: UUID, companion_id: UUID | None, key_id: UUID, at: datetime, audit: AuditEvent
    ) -> ApiKey | None:
        if companion_id is None:
            refuse_owner_lockout(self.list_api_keys(owner_id, None), key_id, at)
        stored = self._own_key(owner_id, companion_id, key_id)
        if stored is None:
            return None
        record = stored.record.model_copy(update={"revoked_at": stored.record.revoked_at or at})
        self.keys[key_id] = StoredApiKey(record=record, hash=stored.hash)
        self.audit.append(audit)
        return record

    def rotate_api_key(
        self,
        owner_id: UUID,
        companion_id: UUID | None,
        key_id: UUID,
        successor: StoredApiKey,
        grace_until: datetime,
        audit: AuditEvent,
    ) -> ApiKey | None:
        stored = self._own_key(owner_id, companion_id, key_id)
        if stored is None:
            return None
        old = stored.record
        if old.replaced_by is not None or not old.valid_at(successor.record.created_at):
            return None
        self._insert(successor)
        record = old.model_copy(update={"replaced_by": successor.record.id, "grace_until": grace_until})
        self.keys[key_id] = StoredApiKey(record=record, hash=stored.hash)
        self.audit.append(audit)
        return record

    def _own_key(self, owner_id: UUID, companion_id: UUID | None, key_id: UUID) -> StoredApiKey | None:
        stored = self.keys.get(key_id)
        if stored is None or (stored.record.owner_id, stored.record.companion_id) != (owner_id, companion_id):
            return None
        return stored

    def touch_api_key(self, owner_id: UUID, key_id: UUID, at: datetime, not_since: datetime) -> None:
        self.touches.append((key_id, at))

    def companion_user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> CompanionUser | None:
        self._count("user")
        if self.get_companion(owner_id, companion_id) is None:
            return None
        return self.users.get((companion_id, user_id))

    def ensure_companion_user(
        self, owner_id: UUID, companion_id: UUID, user_id: str, at: datetime, audit: AuditEvent | None
    ) -> CompanionUser:
        user = self.users.setdefault(
            (companion_id, user_id), CompanionUser(companion_id=companion_id, user_id=user_id)
        )
        if audit is not None:
            self.audit.append(audit)
        return user

    def update_companion_user(
        self,
        owner_id: UUID,
        companion_id: UUID,
        user_id: str,
        changes: UserPermissions,
        at: datetime,
        audit: AuditEvent,
    ) -> CompanionUser:
        user = self.ensure_companion_user(owner_id, companion_id, user_id, at, None)
        updated = user.model_copy(update=changes.model_dump(exclude_none=True))
        self.users[(companion_id, user_id)] = updated
        self.audit.append(audit)
        return updated

    def record_erasure(self, owner_id: UUID, companion_id: UUID, user_id: str, at: datetime) -> None:
        previous = self.erasures.get((companion_id, user_id))
        self.erasures[(companion_id, user_id)] = at if previous is None else max(previous, at)

    def erased_at(self, owner_id: UUID, companion_id: UUID, user_id: str) -> datetime | None:
        self._count("erasure")
        if self.get_companion(owner_id, companion_id) is None:
            return None
        return self.erasures.get((companion_id, user_id))

    def audit_events(self, owner_id: UUID, companion_id: UUID | None = None) -> list[AuditEvent]:
        return [
            e
            for e in self.audit
            if e.owner_id == owner_id and (companion_id is None or e.companion_id == companion_id)
        ]

    # --- test helpers (what other requests would change behind an authenticator's back) -----------------

    def set_status(self, companion_id: UUID, status: str) -> None:
        self.companions[companion_id] = self.companions[companion_id].model_copy(update={"status": status})


@dataclass
class InMemorySigningKeys:
    key_set: SigningKeySet = field(default_factory=SigningKeySet.initial)
    loads: int = 0

    def load(self) -> SigningKeySet:
        self.loads += 1
        return self.key_set

    def rotate(self) -> SigningKeySet:
        self.key_set = self.key_set.rotated()
        return self.key_set
