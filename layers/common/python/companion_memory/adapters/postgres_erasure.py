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
from psycopg.types.json import Jsonb

from companion_memory.adapters.postgres import Database
from companion_memory.models.identity import AuditEvent
from companion_memory.models.tenancy import ALL_USERS, TenantScope

# Tables with rows of one companion user, deleted in this order (referencing tables before referenced
# ones; memories before companion_users, whose usage counters the memories' delete trigger still moves).
USER_TABLES: tuple[str, ...] = (
    "memory_imports",
    "session_log",
    "activity_hourly",
    "memories",
    "companion_users",
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
    "erased_users": "refuses the user's tokens issued before their erasure (auth/principal.py)",
}

# Memories deleted per transaction when a whole companion goes: each batch is short, and a purge cut
# short (timeout, crash) resumes where it stopped.
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
        """Every row of the user, in one transaction; the audit log's mentions of them pseudonymised."""
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=user_id)
        user_rows = "companion_id = %s AND user_id = %s"
        with self._database.transaction(scope) as conn:
            removed = {
                table: _count(
                    conn, f"SELECT count(*) FROM {table} WHERE {user_rows}", (companion_id, user_id)
                )
                for table in CASCADED_TABLES
            }
            for table in USER_TABLES:
                removed[table] = conn.execute(
                    f"DELETE FROM {table} WHERE {user_rows}", (companion_id, user_id)
                ).rowcount
            removed["audit_log_pseudonymised"] = _count(
                conn, "SELECT pseudonymise_audit_user(%s, %s)", (companion_id, user_id)
            )
        return removed

    def erase_companion(self, owner_id: UUID, companion_id: UUID) -> dict[str, int]:
        """Every user's rows and the companion's own, in short batches (resumable)."""
        scope = TenantScope(owner_id=owner_id, companion_id=companion_id, user_id=ALL_USERS)
        removed = dict.fromkeys((*CASCADED_TABLES, *USER_TABLES, *COMPANION_TABLES), 0)
        while True:
            with self._database.transaction(scope) as conn:
                batch = [
                    row[0]
                    for row in conn.execute(
                        "SELECT id FROM memories WHERE companion_id = %s LIMIT %s",
                        (companion_id, self._batch),
                    ).fetchall()
                ]
                if not batch:
                    break
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
                removed["memories"] += conn.execute(
                    "DELETE FROM memories WHERE id = ANY(%s)", (batch,)
                ).rowcount
        for table in (*USER_TABLES, *COMPANION_TABLES):
            if table != "memories":
                removed[table] += self._delete_in_batches(scope, table, companion_id)
        with self._database.transaction(scope) as conn:
            removed["audit_log_pseudonymised"] = _count(
                conn, "SELECT pseudonymise_audit_companion(%s)", (companion_id,)
            )
        return removed

    def _delete_in_batches(self, scope: TenantScope, table: str, companion_id: UUID) -> int:
        total = 0
        while True:
            with self._database.transaction(scope) as conn:
                deleted = conn.execute(
                    f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
                    f"SELECT ctid FROM {table} WHERE companion_id = %s LIMIT %s))",
                    (companion_id, self._batch),
                ).rowcount
            total += deleted
            if deleted < self._batch:
                return total

    # --- ErasureLedger --------------------------------------------------------------------------------------

    def retire_companion(self, owner_id: UUID, companion_id: UUID, at: datetime, audit: AuditEvent) -> bool:
        """Tombstone the companion (status deleted, wrapped data key destroyed, config emptied) and revoke its
        keys, with ``audit``, in one transaction; False (nothing written) when it was already deleted."""
        with self._database.transaction(TenantScope(owner_id=owner_id, companion_id=companion_id)) as conn:
            # Emptying the config is a change of config, which needs a new version (migration 0008's trigger):
            # the next major one after every version the companion ever had.
            retired = conn.execute(
                "UPDATE companions SET status = 'deleted', wrapped_data_key = NULL, config = '{}'::jsonb,"
                " version = (SELECT coalesce(max(v.version_key[1]), 0) + 1 FROM companion_versions v"
                "            WHERE v.companion_id = companions.id)::text || '.0.0',"
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
            _audit(conn, audit)
        return True

    def record(self, audit: AuditEvent) -> None:
        with self._database.transaction(
            TenantScope(owner_id=audit.owner_id, companion_id=audit.companion_id)
        ) as conn:
            _audit(conn, audit)


def _count(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row is not None else 0


def _audit(conn: psycopg.Connection[Any], event: AuditEvent) -> None:
    conn.execute(
        "INSERT INTO audit_log (owner_id, companion_id, actor, action, target, details, at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
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
