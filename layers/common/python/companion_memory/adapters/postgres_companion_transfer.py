# ruff: noqa: S608  (f-strings splice only the constant column list and history snapshot; values are parameters)
"""``ports.TransferStore`` on PostgreSQL, as the app role under row-level security.

Reads run in the companion-wide scope of the owner (``user_id = '*'``) or in one user's scope; the import
mapping (``companion_imports``, migration 0011) is visible only in its owner's scope.
"""

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_identity import COMPANION_COLUMNS, insert_companion, write_audit
from companion_memory.adapters.postgres_upkeep import MEMORY_SNAPSHOT
from companion_memory.errors import Conflict
from companion_memory.models.identity import AuditEvent, Companion
from companion_memory.models.memory import Relation
from companion_memory.models.tenancy import ALL_USERS, TenantScope


class PostgresTransferStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def users_page(self, owner_id: UUID, companion_id: UUID, after: str | None, limit: int) -> list[str]:
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=ALL_USERS)
        with self._database.transaction(scope) as conn:
            rows = conn.execute(
                "SELECT DISTINCT user_id FROM memories WHERE companion_id = %s AND forgotten_at IS NULL"
                " AND (%s::text IS NULL OR user_id > %s) ORDER BY user_id LIMIT %s",
                (companion_id, after, after, limit),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def relations_page(
        self, owner_id: UUID, companion_id: UUID, user_id: str, after: UUID | None, limit: int
    ) -> list[Relation]:
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=user_id)
        with self._database.transaction(scope) as conn:
            rows = conn.execute(
                "SELECT r.id, r.source_id, r.target_id, r.type, r.metadata, r.created_at"
                " FROM memory_relations r"
                " JOIN memories s ON s.id = r.source_id AND s.forgotten_at IS NULL"
                " JOIN memories t ON t.id = r.target_id AND t.forgotten_at IS NULL"
                " WHERE r.companion_id = %s AND r.user_id = %s AND (%s::uuid IS NULL OR r.id > %s)"
                " ORDER BY r.id LIMIT %s",
                (companion_id, user_id, after, after, limit),
            ).fetchall()
        return [
            Relation(id=i, source_id=s, target_id=t, type=kind, metadata=metadata, created_at=at)
            for i, s, t, kind, metadata, at in rows
        ]

    def imported(self, scope: TenantScope, keys: Sequence[str]) -> dict[str, UUID]:
        with self._database.transaction(scope) as conn:
            rows = conn.execute(
                "SELECT import_key, memory_id FROM memory_imports WHERE companion_id = %s AND user_id = %s"
                " AND import_key = ANY(%s) AND memory_id IS NOT NULL",
                (scope.companion_id, scope.user_id, list(keys)),
            ).fetchall()
        return {str(key): memory_id for key, memory_id in rows}

    def archive(self, scope: TenantScope, memory_ids: Sequence[UUID], at: datetime) -> int:
        if not memory_ids:
            return 0
        with self._database.transaction(scope) as conn:
            row = conn.execute(
                "WITH changed AS ("
                "  UPDATE memories m SET archived_at = %(at)s, updated_at = %(at)s, version = m.version + 1"
                "  WHERE m.companion_id = %(companion)s AND m.user_id = %(user)s AND m.id = ANY(%(ids)s)"
                "    AND m.archived_at IS NULL AND m.forgotten_at IS NULL"
                "  RETURNING m.*"
                "), logged AS ("
                "  INSERT INTO memory_history"
                "    (id, memory_id, companion_id, user_id, version, change, snapshot, actor, at)"
                f"  SELECT gen_random_uuid(), c.id, c.companion_id, c.user_id, c.version, 'archived',"
                f"         {MEMORY_SNAPSHOT}, c.user_id, %(at)s FROM changed c RETURNING 1"
                ") SELECT count(*) FROM logged",
                {"at": at, "companion": scope.companion_id, "user": scope.user_id, "ids": list(memory_ids)},
            ).fetchone()
        return 0 if row is None else int(row[0])

    def import_target(self, owner_id: UUID, source_companion_id: UUID) -> Companion | None:
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            row = conn.execute(
                f"SELECT {', '.join(f'c.{name}' for name in COMPANION_COLUMNS.split(', '))}"
                " FROM companion_imports i JOIN companions c ON c.id = i.companion_id"
                " WHERE i.owner_id = %s AND i.source_companion_id = %s AND c.status <> 'deleted'",
                (owner_id, source_companion_id),
            ).fetchone()
        return None if row is None else Companion.model_validate(row)

    def claim_target(
        self, owner_id: UUID, source_companion_id: UUID, now: datetime, stale_before: datetime
    ) -> bool:
        with self._database.transaction(TenantScope(owner_id=owner_id)) as conn:
            # New, or taken over: a claim whose import died before creating anything (never completed,
            # older than the lease), or a target that was deleted since.
            claimed = conn.execute(
                "INSERT INTO companion_imports AS i (owner_id, source_companion_id, claimed_at)"
                " VALUES (%s, %s, %s) ON CONFLICT (owner_id, source_companion_id) DO UPDATE"
                " SET companion_id = NULL, claimed_at = EXCLUDED.claimed_at"
                " WHERE (i.companion_id IS NULL AND i.claimed_at < %s)"
                "    OR EXISTS (SELECT FROM companions c"
                "               WHERE c.id = i.companion_id AND c.status = 'deleted')"
                " RETURNING 1",
                (owner_id, source_companion_id, now, stale_before),
            ).fetchone()
        return claimed is not None

    def create_target(
        self, companion: Companion, audit: AuditEvent, source_companion_id: UUID, claimed_at: datetime
    ) -> None:
        with self._database.transaction(TenantScope(owner_id=companion.owner_id)) as conn:
            # The claim first: it is this import's only while nobody took it over (claimed_at is the claim's
            # own); the row lock it takes keeps it so until the companion is in.
            mine = conn.execute(
                "UPDATE companion_imports SET companion_id = NULL"
                " WHERE owner_id = %s AND source_companion_id = %s AND companion_id IS NULL"
                " AND claimed_at = %s RETURNING 1",
                (companion.owner_id, source_companion_id, claimed_at),
            ).fetchone()
            if mine is None:
                raise Conflict(
                    "Another import of this export took over its companion; send this one again",
                    details={"reason": "import_in_progress"},
                )
            insert_companion(conn, companion)
            conn.execute(
                "UPDATE companion_imports SET companion_id = %s"
                " WHERE owner_id = %s AND source_companion_id = %s",
                (companion.id, companion.owner_id, source_companion_id),
            )
            write_audit(conn, audit)

    def release_target(self, owner_id: UUID, source_companion_id: UUID, claimed_at: datetime) -> None:
        with self._database.transaction(TenantScope(owner_id=owner_id)) as conn:
            # The app role may not delete the row: an uncompleted claim made stale is free for the next one.
            conn.execute(
                "UPDATE companion_imports SET claimed_at = '-infinity'"
                " WHERE owner_id = %s AND source_companion_id = %s AND companion_id IS NULL"
                " AND claimed_at = %s",
                (owner_id, source_companion_id, claimed_at),
            )
