# ruff: noqa: S608  (f-strings splice only table names from the constant tuples below; values are parameters)
"""Erasure on PostgreSQL, as the application role under row-level security.

Every statement runs in a transaction whose tenant context names the owner, the companion and the one
user being erased (or ``*`` for a companion being deleted), so no statement here can reach another tenant's
rows whatever its WHERE clause says.

Which tables hold what is listed here, explicitly, and a test reads the catalog and fails when a table
with a ``user_id`` or ``companion_id`` column is in none of the lists: a table added later must say how
erasure treats it (add it to ``USER_TABLES`` when the app role may delete its rows of one user).
"""

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_identity import write_audit
from companion_memory.models.erasure import Budget, StorePurge
from companion_memory.models.identity import AuditEvent
from companion_memory.models.tenancy import ALL_USERS, TenantScope

# Tables with rows of one companion user, deleted in this order: the relationship record first, so the
# memories' usage trigger finds no counter row to move for each memory deleted after it (one row updated per
# memory, all of them the same row, was most of an erasure's time); memories last, in short batches.
USER_TABLES: tuple[str, ...] = (
    "companion_users",
    "memory_imports",
    "session_log",
    "activity_hourly",
    "memories",
)
# Rows of one user that go with their memories by ON DELETE CASCADE (the app role may not delete
# memory_history itself: it is append-only). Counted before the cascade, for the receipt.
CASCADED_TABLES: tuple[str, ...] = ("memory_embeddings", "memory_relations", "memory_history")
# Companion-level rows without a user, deleted when the companion is (its config history: the tombstone keeps
# no config content; migration 0011 lets the app role delete the history of deleted companions only).
COMPANION_TABLES: tuple[str, ...] = ("companion_versions",)
# Kept on purpose, and why:
RETAINED_TABLES: dict[str, str] = {
    "companions": "the tombstone: status deleted, no data key, empty config; ids are never reused",
    "api_keys": "revoked, never deleted: hashes only, and the audit log names them",
    "audit_log": "who did what; erased users' ids are replaced by their pseudonym",
    "companion_imports": "which companion an import went to (ids only, no user data)",
    # A pseudonym and an instant, no id in clear; erasing the user again moves the instant forward.
    "erased_users": "refuses the user's tokens issued before their erasure (auth/authenticator.py)",
    "upkeep_leases": "the upkeep run's hold on the companion: a run id and an expiry, no user data",
}

# Memories (and rows of the other tables) deleted per transaction: each batch is short, well within the
# statement timeout, and an erasure or a purge cut short (timeout, crash, budget) resumes where it stopped.
COMPANION_BATCH = 500


class PostgresErasure:
    """``ports.TenantDataStore`` for PostgreSQL, and the companion's tombstone and audit records
    (``ports.ErasureLedger``)."""

    name = "postgres"

    def __init__(self, database: Database, *, batch: int = COMPANION_BATCH) -> None:
        self._database = database
        self._batch = batch

    # --- TenantDataStore ------------------------------------------------------------------------------------

    def erase_user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> dict[str, int]:
        """Every row of the user, the memories in batches; the audit log's mentions of them pseudonymised.
        The last transaction finds no memory left and removes what a concurrent write added meanwhile."""
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=user_id)
        user_rows = "companion_id = %s AND user_id = %s"
        others = [table for table in USER_TABLES if table != "memories"]
        removed = dict.fromkeys((*CASCADED_TABLES, *USER_TABLES), 0)
        with self._database.transaction(scope) as conn:
            for table in others:
                removed[table] += conn.execute(
                    f"DELETE FROM {table} WHERE {user_rows}", (companion_id, user_id)
                ).rowcount
        while True:
            with self._database.transaction(scope) as conn:
                batch = self._ids(
                    conn, f"SELECT id FROM memories WHERE {user_rows} LIMIT %s", (companion_id, user_id)
                )
                if batch:
                    _delete_memories(conn, batch, removed)
                    continue
                for table in others:
                    removed[table] += conn.execute(
                        f"DELETE FROM {table} WHERE {user_rows}", (companion_id, user_id)
                    ).rowcount
                removed["audit_log_pseudonymised"] = _count(
                    conn, "SELECT pseudonymise_audit_user(%s, %s)", (companion_id, user_id)
                )
                return removed

    def erase_companion(self, owner_id: UUID, companion_id: UUID, budget: Budget | None = None) -> StorePurge:
        """Every user's rows and the companion's own, in short batches: the relationship records first (see
        ``USER_TABLES``), then the memories, then the rest. With a ``budget``, stops before a batch once it is
        spent (``finished`` False); the next call resumes, since each batch takes whatever rows are left."""
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=ALL_USERS)
        removed = dict.fromkeys((*CASCADED_TABLES, *USER_TABLES, *COMPANION_TABLES), 0)
        if not self._delete_in_batches(scope, "companion_users", companion_id, removed, budget):
            return StorePurge(removed, finished=False)
        while True:
            if budget is not None and budget.spent():
                return StorePurge(removed, finished=False)
            with self._database.transaction(scope) as conn:
                batch = self._ids(
                    conn, "SELECT id FROM memories WHERE companion_id = %s LIMIT %s", (companion_id,)
                )
                if not batch:
                    break
                _delete_memories(conn, batch, removed)
        for table in (*USER_TABLES, *COMPANION_TABLES):
            if table != "memories" and not self._delete_in_batches(
                scope, table, companion_id, removed, budget
            ):
                return StorePurge(removed, finished=False)
        with self._database.transaction(scope) as conn:
            removed["audit_log_pseudonymised"] = _count(
                conn, "SELECT pseudonymise_audit_companion(%s)", (companion_id,)
            )
        return StorePurge(removed, finished=True)

    def _ids(self, conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> list[UUID]:
        """The ids a ``... LIMIT %s`` query finds, a batch at most."""
        return [row[0] for row in conn.execute(query, (*params, self._batch)).fetchall()]

    def _delete_in_batches(
        self,
        scope: TenantScope,
        table: str,
        companion_id: UUID,
        removed: dict[str, int],
        budget: Budget | None,
    ) -> bool:
        """Delete the companion's rows of ``table``; False when the budget ran out first."""
        while True:
            if budget is not None and budget.spent():
                return False
            with self._database.transaction(scope) as conn:
                deleted = conn.execute(
                    f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
                    f"SELECT ctid FROM {table} WHERE companion_id = %s LIMIT %s))",
                    (companion_id, self._batch),
                ).rowcount
            removed[table] += deleted
            if deleted < self._batch:
                return True

    # --- ErasureLedger --------------------------------------------------------------------------------------

    def retire_companion(self, owner_id: UUID, companion_id: UUID, at: datetime, audit: AuditEvent) -> bool:
        """Tombstone the companion (status deleted, wrapped data key destroyed, config emptied) and revoke its
        keys, with ``audit``, in one transaction; False (nothing written) when it was already deleted."""
        with self._database.transaction(TenantScope(owner_id=owner_id, companion_id=companion_id)) as conn:
            # Emptying the config is a change of config, which needs a new version (migration 0008's trigger):
            # the next major one.
            # Computed from the row itself (versions only increase, so its own is the highest it had): a
            # concurrent bump that commits first is re-read here, instead of a max() from this statement's
            # snapshot that the bump may equal.
            retired = conn.execute(
                "UPDATE companions SET status = 'deleted', wrapped_data_key = NULL, config = '{}'::jsonb,"
                " version = (split_part(version, '.', 1)::int + 1)::text || '.0.0',"
                " updated_at = %s WHERE id = %s AND owner_id = %s AND status <> 'deleted' RETURNING id",
                (at, companion_id, owner_id),
            ).fetchone()
            if retired is None:
                return False
            conn.execute(
                "UPDATE api_keys SET revoked_at = %s"
                " WHERE companion_id = %s AND owner_id = %s AND (revoked_at IS NULL OR revoked_at > %s)",
                (at, companion_id, owner_id, at),
            )
            write_audit(conn, audit)
        return True

    def record(self, audit: AuditEvent) -> None:
        with self._database.transaction(
            TenantScope(owner_id=audit.owner_id, companion_id=audit.companion_id)
        ) as conn:
            write_audit(conn, audit)


def _delete_memories(conn: psycopg.Connection[Any], batch: list[UUID], removed: dict[str, int]) -> None:
    """Delete a batch of memories with what cascades from them, counted first for the receipt."""
    removed["memory_embeddings"] += _count(
        conn, "SELECT count(*) FROM memory_embeddings WHERE memory_id = ANY(%s)", (batch,)
    )
    removed["memory_relations"] += _count(
        conn,
        "SELECT count(*) FROM memory_relations WHERE source_id = ANY(%s) OR target_id = ANY(%s)",
        (batch, batch),
    )
    removed["memory_history"] += _count(
        conn, "SELECT count(*) FROM memory_history WHERE memory_id = ANY(%s)", (batch,)
    )
    removed["memory_imports"] += conn.execute(
        "DELETE FROM memory_imports WHERE memory_id = ANY(%s)", (batch,)
    ).rowcount
    removed["memories"] += conn.execute("DELETE FROM memories WHERE id = ANY(%s)", (batch,)).rowcount


def _count(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row is not None else 0
