# ruff: noqa: S608  (f-strings splice only the constant column lists below and UserPermissions' fixed field
# names; every value is a bound parameter)
"""IdentityStore on PostgreSQL, always as the application role under row-level security.

Every statement runs in a transaction whose tenant context names exactly the tenant it acts for. The one
read made before a tenant is known (authentication) sets only ``app.api_key_prefix``: the policy
``api_key_by_prefix`` then shows that one row and nothing else (see migrations/0004_identity.sql).
"""

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from companion_memory.adapters.postgres import Database
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
from companion_memory.models.tenancy import TenantScope

_KEY_COLUMNS = (
    "id, kind, owner_id, companion_id, prefix, hash, name, scopes, created_at, expires_at, revoked_at, "
    "last_used_at, replaced_by, grace_until"
)
COMPANION_COLUMNS = "id, owner_id, name, config, isolation_level, status, version, created_at, updated_at"
_USER_COLUMNS = "companion_id, user_id, can_read, can_write, can_delete, is_blocked"


class PostgresIdentityStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    # --- owners and companions ------------------------------------------------------------------------------

    def create_owner(self, owner: Owner, key: StoredApiKey, audit: AuditEvent) -> None:
        with self._database.transaction(TenantScope(owner_id=owner.id), dict_rows=True) as conn:
            conn.execute(
                "INSERT INTO owners (id, name, created_at) VALUES (%s, %s, %s)",
                (owner.id, owner.name, owner.created_at),
            )
            _insert_key(conn, key)
            write_audit(conn, audit)

    def create_companion(self, companion: Companion, audit: AuditEvent) -> None:
        with self._database.transaction(TenantScope(owner_id=companion.owner_id), dict_rows=True) as conn:
            insert_companion(conn, companion)
            write_audit(conn, audit)

    def get_companion(self, owner_id: UUID, companion_id: UUID) -> Companion | None:
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            row = conn.execute(
                f"SELECT {COMPANION_COLUMNS} FROM companions WHERE id = %s AND owner_id = %s",
                (companion_id, owner_id),
            ).fetchone()
        return None if row is None else Companion.model_validate(row)

    def companion_of_key(self, key: ApiKey) -> Companion | None:
        if key.companion_id is None:
            return None
        return self.get_companion(key.owner_id, key.companion_id)

    # --- API keys -------------------------------------------------------------------------------------------

    def insert_api_key(self, key: StoredApiKey, audit: AuditEvent) -> None:
        with self._database.transaction(TenantScope(owner_id=key.record.owner_id), dict_rows=True) as conn:
            _insert_key(conn, key)
            write_audit(conn, audit)

    def api_key_by_prefix(self, prefix: str) -> StoredApiKey | None:
        with self._database.transaction(dict_rows=True) as conn:
            conn.execute("SELECT set_config('app.api_key_prefix', %s, true)", (prefix,))
            row = conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE prefix = %s", (prefix,)).fetchone()
        return None if row is None else _stored_key(row)

    # companion_id None names the organisation's owner keys (their companion_id column is NULL).

    def list_api_keys(self, owner_id: UUID, companion_id: UUID | None) -> list[ApiKey]:
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            rows = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE owner_id = %s "
                "AND companion_id IS NOT DISTINCT FROM %s ORDER BY created_at, id",
                (owner_id, companion_id),
            ).fetchall()
        return [_stored_key(row).record for row in rows]

    def revoke_api_key(
        self, owner_id: UUID, companion_id: UUID | None, key_id: UUID, at: datetime, audit: AuditEvent
    ) -> ApiKey | None:
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            if companion_id is None:
                # Every owner key of the organisation, locked: of two revocations at once, the second
                # waits and then sees the first's, so they cannot each leave the other as the last key.
                rows = conn.execute(
                    f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE owner_id = %s AND companion_id IS NULL "
                    "ORDER BY id FOR UPDATE",
                    (owner_id,),
                ).fetchall()
                refuse_owner_lockout((_stored_key(row).record for row in rows), key_id, at)
            row = conn.execute(
                f"UPDATE api_keys SET revoked_at = coalesce(revoked_at, %s) "
                f"WHERE id = %s AND owner_id = %s AND companion_id IS NOT DISTINCT FROM %s "
                f"RETURNING {_KEY_COLUMNS}",
                (at, key_id, owner_id, companion_id),
            ).fetchone()
            if row is None:
                return None
            write_audit(conn, audit)
        return _stored_key(row).record

    def rotate_api_key(
        self,
        owner_id: UUID,
        companion_id: UUID | None,
        key_id: UUID,
        successor: StoredApiKey,
        grace_until: datetime,
        audit: AuditEvent,
    ) -> ApiKey | None:
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            # FOR UPDATE: two rotations of one key at once must not both succeed (a key has one successor).
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = %s AND owner_id = %s "
                "AND companion_id IS NOT DISTINCT FROM %s FOR UPDATE",
                (key_id, owner_id, companion_id),
            ).fetchone()
            if row is None:
                return None
            old = _stored_key(row).record
            if old.replaced_by is not None or not old.valid_at(successor.record.created_at):
                return None
            _insert_key(conn, successor)
            updated = conn.execute(
                f"UPDATE api_keys SET replaced_by = %s, grace_until = %s WHERE id = %s "
                f"RETURNING {_KEY_COLUMNS}",
                (successor.record.id, grace_until, key_id),
            ).fetchone()
            write_audit(conn, audit)
        return None if updated is None else _stored_key(updated).record

    def touch_api_key(self, owner_id: UUID, key_id: UUID, at: datetime, not_since: datetime) -> None:
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            conn.execute(
                "UPDATE api_keys SET last_used_at = %s "
                "WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)",
                (at, key_id, not_since),
            )

    # --- companion users ------------------------------------------------------------------------------------

    def companion_user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> CompanionUser | None:
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=user_id)
        with self._database.transaction(scope, dict_rows=True) as conn:
            row = conn.execute(
                f"SELECT {_USER_COLUMNS} FROM companion_users WHERE companion_id = %s AND user_id = %s",
                (companion_id, user_id),
            ).fetchone()
        return None if row is None else CompanionUser.model_validate(row)

    def ensure_companion_user(
        self, owner_id: UUID, companion_id: UUID, user_id: str, at: datetime, audit: AuditEvent | None
    ) -> CompanionUser:
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=user_id)
        with self._database.transaction(scope, dict_rows=True) as conn:
            conn.execute(
                "INSERT INTO companion_users (companion_id, user_id, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (companion_id, user_id, at, at),
            )
            row = conn.execute(
                f"SELECT {_USER_COLUMNS} FROM companion_users WHERE companion_id = %s AND user_id = %s",
                (companion_id, user_id),
            ).fetchone()
            if audit is not None:
                write_audit(conn, audit)
        if row is None:  # the insert and read ran under one policy; a miss means the scope is wrong
            raise Conflict("The user could not be created")
        return CompanionUser.model_validate(row)

    def update_companion_user(
        self,
        owner_id: UUID,
        companion_id: UUID,
        user_id: str,
        changes: UserPermissions,
        at: datetime,
        audit: AuditEvent,
    ) -> CompanionUser:
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=user_id)
        values = changes.model_dump(exclude_none=True)
        with self._database.transaction(scope, dict_rows=True) as conn:
            conn.execute(
                "INSERT INTO companion_users (companion_id, user_id, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (companion_id, user_id, at, at),
            )
            assignments = "".join(f", {column} = %({column})s" for column in sorted(values))
            row = conn.execute(
                f"UPDATE companion_users SET updated_at = %(at)s{assignments} "
                f"WHERE companion_id = %(cid)s AND user_id = %(uid)s RETURNING {_USER_COLUMNS}",
                {**values, "at": at, "cid": companion_id, "uid": user_id},
            ).fetchone()
            write_audit(conn, audit)
        if row is None:
            raise Conflict("The user could not be updated")
        return CompanionUser.model_validate(row)

    # --- erased users ---------------------------------------------------------------------------------------
    # By pseudonym only (the audit log's, computed by the database: audit_user_pseudonym), in the user's own
    # tenant context, whose policy shows that user's row and no other (migrations/0013).

    def record_erasure(self, owner_id: UUID, companion_id: UUID, user_id: str, at: datetime) -> None:
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=user_id)
        with self._database.transaction(scope) as conn:
            conn.execute(
                "INSERT INTO erased_users AS e (companion_id, user_pseudonym, erased_at) "
                "VALUES (%(companion)s, audit_user_pseudonym(%(companion)s, %(user)s), %(at)s) "
                "ON CONFLICT (companion_id, user_pseudonym) "
                "DO UPDATE SET erased_at = greatest(e.erased_at, EXCLUDED.erased_at)",
                {"companion": companion_id, "user": user_id, "at": at},
            )

    def erased_at(self, owner_id: UUID, companion_id: UUID, user_id: str) -> datetime | None:
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=user_id)
        with self._database.transaction(scope) as conn:
            row = conn.execute(
                "SELECT erased_at FROM erased_users "
                "WHERE companion_id = %s AND user_pseudonym = audit_user_pseudonym(%s, %s)",
                (companion_id, companion_id, user_id),
            ).fetchone()
        return None if row is None else row[0]

    # --- audit ----------------------------------------------------------------------------------------------

    def audit_events(self, owner_id: UUID, companion_id: UUID | None = None) -> list[AuditEvent]:
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            rows = conn.execute(
                "SELECT owner_id, companion_id, actor, action, target, details, at FROM audit_log "
                "WHERE owner_id = %s AND (%s::uuid IS NULL OR companion_id = %s) ORDER BY at, id",
                (owner_id, companion_id, companion_id),
            ).fetchall()
        return [AuditEvent.model_validate(row) for row in rows]


def _insert_key(conn: psycopg.Connection[Any], key: StoredApiKey) -> None:
    record = key.record
    try:
        with conn.transaction():  # a savepoint: a prefix collision leaves the outer transaction usable
            conn.execute(
                "INSERT INTO api_keys (id, kind, owner_id, companion_id, prefix, hash, name, scopes, "
                "created_at, "
                "expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    record.id,
                    record.kind,
                    record.owner_id,
                    record.companion_id,
                    record.prefix,
                    key.hash,
                    record.name,
                    list(record.scopes),
                    record.created_at,
                    record.expires_at,
                ),
            )
    except psycopg.errors.UniqueViolation as error:
        raise Conflict("API key prefix already in use", details={"reason": "prefix_collision"}) from error


def insert_companion(conn: psycopg.Connection[Any], companion: Companion) -> None:
    """Insert a new companion row in the caller's transaction (its owner's context)."""
    conn.execute(
        f"INSERT INTO companions ({COMPANION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            companion.id,
            companion.owner_id,
            companion.name,
            Jsonb(companion.config),
            companion.isolation_level,
            companion.status,
            companion.version,
            companion.created_at,
            companion.updated_at,
        ),
    )


def write_audit(conn: psycopg.Connection[Any], event: AuditEvent) -> None:
    """Append ``event`` to the audit log in the caller's transaction (the adapters' one audit writer)."""
    conn.execute(
        "INSERT INTO audit_log (owner_id, companion_id, actor, action, target, details, at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            event.owner_id,
            event.companion_id,
            event.actor,
            event.action,
            event.target,
            Jsonb(event.details),
            event.at,
        ),
    )


def _stored_key(row: dict[str, Any]) -> StoredApiKey:
    values = dict(row)
    digest = bytes(values.pop("hash"))
    return StoredApiKey(record=ApiKey.model_validate(values), hash=digest)
