"""Ports of identity: the store of owners, companions, users, keys and audit events, and the signing keys.

Kept beside ``ports.py`` (same rules: Protocols only, implemented by adapters and by the unit tests' fakes).
"""

from datetime import datetime
from typing import Protocol
from uuid import UUID

from companion_memory.auth.keyset import SigningKeySet
from companion_memory.models.identity import (
    ApiKey,
    AuditEvent,
    Companion,
    CompanionUser,
    Owner,
    StoredApiKey,
    UserPermissions,
)


class IdentityStore(Protocol):
    """Owners, companions, companion users, API keys and the audit log.

    Each method is one transaction; an ``audit`` event passed along is written in it, so an action and its
    record of who did it commit together or not at all.
    """

    def create_owner(self, owner: Owner, key: StoredApiKey, audit: AuditEvent) -> None: ...

    def create_companion(self, companion: Companion, audit: AuditEvent) -> None: ...

    def get_companion(self, owner_id: UUID, companion_id: UUID) -> Companion | None:
        """The companion if it belongs to ``owner_id`` (another owner's reads as missing)."""
        ...

    def companion_of_key(self, key: ApiKey) -> Companion | None:
        """The companion a companion key acts for, read in that key's own tenant context."""
        ...

    def insert_api_key(self, key: StoredApiKey, audit: AuditEvent) -> None:
        """Raises ``Conflict`` when the prefix is taken (the caller draws a new key)."""
        ...

    def api_key_by_prefix(self, prefix: str) -> StoredApiKey | None: ...

    def list_api_keys(self, owner_id: UUID, companion_id: UUID) -> list[ApiKey]: ...

    def revoke_api_key(
        self, owner_id: UUID, companion_id: UUID, key_id: UUID, at: datetime, audit: AuditEvent
    ) -> ApiKey | None: ...

    def rotate_api_key(
        self,
        owner_id: UUID,
        companion_id: UUID,
        key_id: UUID,
        successor: StoredApiKey,
        grace_until: datetime,
        audit: AuditEvent,
    ) -> ApiKey | None:
        """Insert ``successor`` and give the old key ``grace_until``; None when the old key is not there
        (or no longer valid), in which case nothing is written."""
        ...

    def touch_api_key(self, owner_id: UUID, key_id: UUID, at: datetime, not_since: datetime) -> None:
        """Set last_used_at = at unless it is already after ``not_since`` (one write per interval)."""
        ...

    def companion_user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> CompanionUser | None: ...

    def ensure_companion_user(
        self, owner_id: UUID, companion_id: UUID, user_id: str, at: datetime, audit: AuditEvent | None
    ) -> CompanionUser:
        """The user's row, created with default permissions on first use; ``audit`` is written with it."""
        ...

    def update_companion_user(
        self,
        owner_id: UUID,
        companion_id: UUID,
        user_id: str,
        changes: UserPermissions,
        at: datetime,
        audit: AuditEvent,
    ) -> CompanionUser: ...

    def audit_events(self, owner_id: UUID, companion_id: UUID | None = None) -> list[AuditEvent]: ...


class SigningKeyStore(Protocol):
    """The JWT signing key set (current, previous, next), kept where private keys may live."""

    def load(self) -> SigningKeySet: ...

    def rotate(self) -> SigningKeySet: ...
