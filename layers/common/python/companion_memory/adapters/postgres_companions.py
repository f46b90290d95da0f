# ruff: noqa: S608  (f-strings splice only the constant column lists below; every value is a bound parameter)
"""CompanionStore on PostgreSQL, as the application role under row-level security.

Companions and their versions are read in the owner's context (and every query names the owner too); a
companion's users in the context of that companion with every user in scope (``'*'``), which the service
opens only after it found the companion among the owner's. The version history is written by the
``companions_versions`` trigger (migrations/0008), in the same statement as the change.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_identity import COMPANION_COLUMNS, write_audit
from companion_memory.models.companion import CompanionUserDetail, CompanionVersion
from companion_memory.models.identity import AuditEvent, Companion
from companion_memory.models.tenancy import ALL_USERS, TenantScope

_VERSION_COLUMNS = "companion_id, version, name, config, created_at"
_USER_COLUMNS = (
    "companion_id, user_id, can_read, can_write, can_delete, is_blocked, preferences, interaction_count, "
    "first_interaction_at, last_interaction_at, memory_count, content_bytes, created_at, updated_at"
)


class PostgresCompanionStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    # --- companions -----------------------------------------------------------------------------------------

    def list_companions(
        self, owner_id: UUID, statuses: Sequence[str], after: tuple[datetime, UUID] | None, limit: int
    ) -> list[Companion]:
        after_at, after_id = after if after is not None else (None, None)
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            rows = conn.execute(
                f"SELECT {COMPANION_COLUMNS} FROM companions WHERE owner_id = %s AND status = ANY(%s) "
                "AND (%s::timestamptz IS NULL OR (created_at, id) < (%s::timestamptz, %s::uuid)) "
                "ORDER BY created_at DESC, id DESC LIMIT %s",
                (owner_id, list(statuses), after_at, after_at, after_id, limit),
            ).fetchall()
        return [Companion.model_validate(row) for row in rows]

    def save_version(self, companion: Companion, expected_version: str, audit_event: AuditEvent) -> bool:
        with self._database.transaction(TenantScope(owner_id=companion.owner_id), dict_rows=True) as conn:
            row = conn.execute(
                "UPDATE companions SET name = %s, config = %s, version = %s, updated_at = %s "
                "WHERE id = %s AND owner_id = %s AND version = %s AND status = %s RETURNING id",
                (
                    companion.name,
                    Jsonb(companion.config),
                    companion.version,
                    companion.updated_at,
                    companion.id,
                    companion.owner_id,
                    expected_version,
                    companion.status,
                ),
            ).fetchone()
            if row is None:
                return False
            write_audit(conn, audit_event)
        return True

    def set_status(
        self,
        owner_id: UUID,
        companion_id: UUID,
        expected: str,
        status: str,
        at: datetime,
        audit_event: AuditEvent,
    ) -> Companion | None:
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            row = conn.execute(
                f"UPDATE companions SET status = %s, updated_at = %s "
                f"WHERE id = %s AND owner_id = %s AND status = %s RETURNING {COMPANION_COLUMNS}",
                (status, at, companion_id, owner_id, expected),
            ).fetchone()
            if row is None:
                return None
            write_audit(conn, audit_event)
        return Companion.model_validate(row)

    def versions(
        self, owner_id: UUID, companion_id: UUID, before: str | None, limit: int
    ) -> list[CompanionVersion]:
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            rows = conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM companion_versions "
                "WHERE companion_id = %s AND owner_id = %s "
                "AND (%s::text IS NULL OR version_key < string_to_array(%s::text, '.')::integer[]) "
                "ORDER BY version_key DESC LIMIT %s",
                (companion_id, owner_id, before, before, limit),
            ).fetchall()
        return [CompanionVersion.model_validate(row) for row in rows]

    def version(self, owner_id: UUID, companion_id: UUID, version: str) -> CompanionVersion | None:
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            row = conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM companion_versions "
                "WHERE companion_id = %s AND owner_id = %s AND version = %s",
                (companion_id, owner_id, version),
            ).fetchone()
        return None if row is None else CompanionVersion.model_validate(row)

    # --- users ----------------------------------------------------------------------------------------------

    def users(
        self, owner_id: UUID, companion_id: UUID, after: str | None, limit: int
    ) -> list[CompanionUserDetail]:
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=ALL_USERS)
        with self._database.transaction(scope, dict_rows=True) as conn:
            rows = conn.execute(
                f"SELECT {_USER_COLUMNS} FROM companion_users WHERE companion_id = %s "
                "AND (%s::text IS NULL OR user_id > %s) ORDER BY user_id LIMIT %s",
                (companion_id, after, after, limit),
            ).fetchall()
        return [CompanionUserDetail.model_validate(row) for row in rows]

    def user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> CompanionUserDetail | None:
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=user_id)
        with self._database.transaction(scope, dict_rows=True) as conn:
            row = conn.execute(
                f"SELECT {_USER_COLUMNS} FROM companion_users WHERE companion_id = %s AND user_id = %s",
                (companion_id, user_id),
            ).fetchone()
        return None if row is None else CompanionUserDetail.model_validate(row)

    def set_preferences(
        self,
        owner_id: UUID,
        companion_id: UUID,
        user_id: str,
        preferences: dict[str, Any],
        at: datetime,
        audit_event: AuditEvent,
    ) -> CompanionUserDetail:
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=user_id)
        with self._database.transaction(scope, dict_rows=True) as conn:
            row = conn.execute(
                "INSERT INTO companion_users AS cu "
                "(companion_id, user_id, preferences, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (companion_id, user_id) "
                f"DO UPDATE SET preferences = EXCLUDED.preferences, updated_at = EXCLUDED.updated_at "
                f"RETURNING {', '.join('cu.' + c for c in _USER_COLUMNS.split(', '))}",
                (companion_id, user_id, Jsonb(preferences), at, at),
            ).fetchone()
            write_audit(conn, audit_event)
        assert row is not None  # an upsert under the user's own scope always answers its row
        return CompanionUserDetail.model_validate(row)
