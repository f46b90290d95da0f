"""Hourly activity counters (migrations/0010_analytics.sql) on PostgreSQL: one upsert per admitted request.

The statement runs in its own short transaction in the request's own tenant scope (the user's), so the
row lock it takes on (companion, user, hour) is held for one statement only: requests of one user in one
hour queue for well under a millisecond, other users' never.
"""

from datetime import datetime
from typing import Final

import psycopg

from companion_memory.adapters.postgres import Database
from companion_memory.errors import CompanionInactive, DependencyUnavailable
from companion_memory.models.analytics import Operation
from companion_memory.models.tenancy import TenantScope

# One statement per kind: the column is part of the SQL text, never a parameter. Nothing is counted for a
# companion that is not active (a credential still cached after a pause or a delete): the SELECT yields no
# row then (and the database refuses a deleted companion's row anyway: migrations/0013).
_COLUMNS: Final[dict[Operation, str]] = {"read": "reads", "write": "writes", "delete": "deletes"}
_UPSERT: Final[dict[Operation, str]] = {
    kind: (
        f"INSERT INTO activity_hourly AS a (companion_id, user_id, hour, {column}) "  # noqa: S608
        "SELECT c.id, %s, date_trunc('hour', %s::timestamptz, 'UTC'), 1 FROM companions c "
        "WHERE c.id = %s AND c.status = 'active' "
        f"ON CONFLICT (companion_id, user_id, hour) DO UPDATE SET {column} = a.{column} + 1"
    )
    for kind, column in _COLUMNS.items()
}


class PostgresActivityRecorder:
    def __init__(self, database: Database) -> None:
        self._database = database

    def record(self, scope: TenantScope, operation: Operation, at: datetime) -> None:
        if scope.companion_id is None or scope.user_id is None:
            raise ValueError("activity is recorded for one companion user")
        try:
            with self._database.transaction(scope) as conn:
                conn.execute(_UPSERT[operation], (scope.user_id, at, scope.companion_id))
        except CompanionInactive:
            return  # deleted while this request ran (the database's guard): nothing to count, as above
        except psycopg.Error as error:
            # Past the outages Database already translates: e.g. the companion deleted a moment ago (its
            # foreign key). Counting is best effort (domain.memory_access), so any failure is this one.
            raise DependencyUnavailable("Activity could not be recorded") from error
