"""Companions and their users' statistics on the test PostgreSQL, for the sessions and upkeep tests."""

from typing import Any
from uuid import UUID, uuid4

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from companion_memory.adapters.postgres import Database
from companion_memory.models.tenancy import ALL_USERS, TenantScope


def new_companion(database: Database, config: dict[str, Any] | None = None, status: str = "active") -> UUID:
    """A new owner with one companion (``config`` as stored), made by the app role as that owner."""
    owner, companion = uuid4(), uuid4()
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        conn.execute("INSERT INTO owners (id, name) VALUES (%s, 'org')", (owner,))
        conn.execute(
            "INSERT INTO companions (id, owner_id, name, config, status) VALUES (%s, %s, 'c', %s, %s)",
            (companion, owner, Jsonb(config or {}), status),
        )
    return companion


def companion_users(database: Database, companion: UUID) -> dict[str, dict[str, Any]]:
    """Each user's relationship row of ``companion``, by user id."""
    with database.transaction(TenantScope(companion_id=companion, user_id=ALL_USERS)) as conn:
        rows = conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM companion_users WHERE companion_id = %s", (companion,)
        )
        return {row["user_id"]: row for row in rows.fetchall()}


def session_log(database: Database, companion: UUID) -> list[dict[str, Any]]:
    with database.transaction(TenantScope(companion_id=companion, user_id=ALL_USERS)) as conn:
        rows = conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM session_log WHERE companion_id = %s ORDER BY started_at, session_id", (companion,)
        )
        return rows.fetchall()
