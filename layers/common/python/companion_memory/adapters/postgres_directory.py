"""CompanionDirectory on PostgreSQL: the one way the schedules (cleanup upkeep, analytics) walk companions.

The walk across tenants goes through ``scheduled_companions`` / ``deleted_companions_with_data``
(migrations/0012, owned by the narrow ``companion_scheduler`` role): ids and statuses only. A companion's
owner and config are read inside that companion's own context (0002 ``companion_self_read``), one
companion per transaction, so no call here ever holds another tenant's config.
"""

from uuid import UUID

from companion_memory.adapters.postgres import Database
from companion_memory.models.schedule import ScheduledCompanion
from companion_memory.models.tenancy import TenantScope


class PostgresCompanionDirectory:
    def __init__(self, database: Database) -> None:
        self._database = database

    def page(self, after: UUID | None, limit: int) -> list[UUID]:
        with self._database.transaction() as conn:
            rows = conn.execute("SELECT id FROM scheduled_companions(%s, %s)", (after, limit)).fetchall()
        return [row[0] for row in rows]

    def load(self, companion_id: UUID) -> ScheduledCompanion | None:
        with self._database.transaction(TenantScope(companion_id=companion_id), dict_rows=True) as conn:
            row = conn.execute(
                "SELECT id, owner_id, status, config FROM companions WHERE id = %s", (companion_id,)
            ).fetchone()
        if row is None:
            return None
        return ScheduledCompanion(
            id=row["id"], owner_id=row["owner_id"], status=row["status"], config=dict(row["config"] or {})
        )

    def deleted_with_data(self, after: UUID | None, limit: int) -> list[UUID]:
        with self._database.transaction() as conn:
            rows = conn.execute(
                "SELECT id FROM deleted_companions_with_data(%s, %s)", (after, limit)
            ).fetchall()
        return [row[0] for row in rows]
