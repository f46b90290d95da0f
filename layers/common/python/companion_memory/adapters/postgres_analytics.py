"""AnalyticsStore on PostgreSQL, as the application role under row-level security.

Every read runs in the tenant scope the service hands over: a companion with user ``*`` (its users'
activity, sessions, memories and counters), or, for the leaderboard, an owner with no companion (the
owner-read policy of activity_hourly, migrations/0010_analytics.sql). The schedule walks tenants through
the shared companion directory (adapters/postgres_directory.py) and then acts in each companion's own
scope: nothing here sees across tenants.
"""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from companion_memory.adapters.postgres import Database
from companion_memory.errors import DependencyUnavailable
from companion_memory.models.analytics import (
    ActivityRow,
    Bucket,
    CompanionActivity,
    HealthInputs,
    ScheduledCompanion,
    SeriesRows,
    UserEngagement,
)
from companion_memory.models.companion_config import Limits
from companion_memory.models.identity import AuditEvent, Companion
from companion_memory.models.tenancy import TenantScope

_COMPANION = (
    "SELECT id, owner_id, name, config, isolation_level, status, version, created_at, updated_at "
    "FROM companions WHERE id = %s AND owner_id = %s"
)
_ACTIVITY = """
    SELECT date_trunc(%(bucket)s, hour, 'UTC') AS bucket, sum(reads)::bigint AS reads,
           sum(writes)::bigint AS writes, sum(deletes)::bigint AS deletes,
           count(DISTINCT user_id) AS active_users
    FROM activity_hourly
    WHERE companion_id = %(companion)s AND hour >= %(start)s AND hour < %(end)s
    GROUP BY 1
"""
# A session that started in the period ended after its start: the ended_at bound lets the index serve.
_CONVERSATIONS = """
    SELECT date_trunc(%(bucket)s, started_at, 'UTC') AS bucket, count(*) AS n
    FROM session_log
    WHERE companion_id = %(companion)s AND ended_at >= %(start)s
      AND started_at >= %(start)s AND started_at < %(end)s
    GROUP BY 1
"""
_CREATED = """
    SELECT date_trunc(%(bucket)s, created_at, 'UTC') AS bucket, count(*) AS n
    FROM memories
    WHERE companion_id = %(companion)s AND created_at >= %(start)s AND created_at < %(end)s
    GROUP BY 1
"""
_FORGOTTEN = """
    SELECT date_trunc(%(bucket)s, forgotten_at, 'UTC') AS bucket, count(*) AS n
    FROM memories
    WHERE companion_id = %(companion)s AND forgotten_at >= %(start)s AND forgotten_at < %(end)s
    GROUP BY 1
"""
_BEFORE = """
    SELECT count(*) AS n FROM memories
    WHERE companion_id = %(companion)s AND created_at < %(start)s
      AND (forgotten_at IS NULL OR forgotten_at >= %(start)s)
"""
_ENGAGEMENT = """
    WITH period AS (
        SELECT user_id, sum(reads)::bigint AS reads, sum(writes)::bigint AS writes,
               sum(deletes)::bigint AS deletes,
               count(DISTINCT date_trunc('day', hour, 'UTC')) AS active_days
        FROM activity_hourly
        WHERE companion_id = %(companion)s AND hour >= %(start)s AND hour < %(end)s
        GROUP BY user_id
        ORDER BY sum(reads + writes + deletes) DESC, user_id
        LIMIT %(limit)s
    )
    SELECT p.user_id, p.reads, p.writes, p.deletes, p.active_days,
           (SELECT min(a.hour) FROM activity_hourly a
            WHERE a.companion_id = %(companion)s AND a.user_id = p.user_id) AS first_active_at,
           (SELECT max(a.hour) FROM activity_hourly a
            WHERE a.companion_id = %(companion)s AND a.user_id = p.user_id) AS last_active_at,
           coalesce(cu.memory_count, 0) AS memories
    FROM period p
    LEFT JOIN companion_users cu ON cu.companion_id = %(companion)s AND cu.user_id = p.user_id
    ORDER BY p.reads + p.writes + p.deletes DESC, p.user_id
"""
_LEADERBOARD = """
    SELECT c.id AS companion_id, c.name, c.status,
           coalesce(sum(a.reads + a.writes + a.deletes), 0)::bigint AS interactions,
           count(DISTINCT a.user_id) AS active_users
    FROM companions c
    LEFT JOIN activity_hourly a ON a.companion_id = c.id AND a.hour >= %(start)s AND a.hour < %(end)s
    WHERE c.owner_id = %(owner)s AND c.status <> 'deleted'
    GROUP BY c.id
    ORDER BY 4 DESC, c.created_at, c.id
    LIMIT %(limit)s
"""
_HEALTH_ACTIVITY = """
    SELECT coalesce(sum(reads + writes + deletes) FILTER (WHERE hour >= %(recent)s), 0) AS recent,
           coalesce(sum(reads + writes + deletes) FILTER (WHERE hour < %(recent)s), 0) AS baseline,
           count(DISTINCT date_trunc('day', hour, 'UTC')) FILTER (WHERE hour < %(recent)s) AS baseline_days,
           coalesce(sum(writes) FILTER (WHERE hour >= %(week)s), 0) AS writes_7d,
           coalesce(sum(deletes) FILTER (WHERE hour >= %(week)s), 0) AS deletes_7d
    FROM activity_hourly
    WHERE companion_id = %(companion)s AND hour >= %(baseline)s AND hour < %(end)s
"""
_HEALTH_USERS = """
    SELECT count(*) AS users,
           count(*) FILTER (WHERE is_blocked) AS blocked,
           count(*) FILTER (WHERE memory_count > 0) AS with_memories,
           count(*) FILTER (WHERE memory_count > 0 AND (memory_count >= %(memories)s
                                                       OR content_bytes >= %(bytes)s)) AS near_limit
    FROM companion_users
    WHERE companion_id = %(companion)s
"""


class PostgresAnalyticsStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def companion(self, owner_id: UUID, companion_id: UUID) -> Companion | None:
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            row = conn.execute(_COMPANION, (companion_id, owner_id)).fetchone()
        return None if row is None else Companion.model_validate(row)

    def series(self, scope: TenantScope, start: datetime, end: datetime, bucket: Bucket) -> SeriesRows:
        args = {"companion": scope.companion_id, "start": start, "end": end, "bucket": bucket}
        with self._database.transaction(scope, dict_rows=True) as conn:
            activity = [ActivityRow(**row) for row in conn.execute(_ACTIVITY, args).fetchall()]
            conversations = _counts(conn, _CONVERSATIONS, args)
            created = _counts(conn, _CREATED, args)
            forgotten = _counts(conn, _FORGOTTEN, args)
            before = conn.execute(_BEFORE, args).fetchone()
        return SeriesRows(
            activity=activity,
            conversations=conversations,
            memories_created=created,
            memories_forgotten=forgotten,
            memories_before=int(before["n"]) if before else 0,
        )

    def engagement(
        self, scope: TenantScope, start: datetime, end: datetime, limit: int
    ) -> list[UserEngagement]:
        args = {"companion": scope.companion_id, "start": start, "end": end, "limit": limit}
        with self._database.transaction(scope, dict_rows=True) as conn:
            rows = conn.execute(_ENGAGEMENT, args).fetchall()
        return [
            UserEngagement(interactions=row["reads"] + row["writes"] + row["deletes"], **row) for row in rows
        ]

    def leaderboard(
        self, owner_id: UUID, start: datetime, end: datetime, limit: int
    ) -> list[CompanionActivity]:
        args = {"owner": owner_id, "start": start, "end": end, "limit": limit}
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            rows = conn.execute(_LEADERBOARD, args).fetchall()
        return [CompanionActivity.model_validate(row) for row in rows]

    def health_inputs(self, scope: TenantScope, now: datetime, limits: Limits) -> HealthInputs:
        end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)  # complete hours only
        recent = end - timedelta(hours=24)
        windows = {
            "companion": scope.companion_id,
            "end": end,
            "recent": recent,
            "baseline": recent - timedelta(days=7),
            "week": end - timedelta(days=7),
        }
        near = {
            "companion": scope.companion_id,
            "memories": 0.9 * limits.max_memories_per_user,
            "bytes": 0.9 * limits.max_content_bytes_per_user,
        }
        with self._database.transaction(scope, dict_rows=True) as conn:
            created = conn.execute(
                "SELECT created_at FROM companions WHERE id = %s", (scope.companion_id,)
            ).fetchone()
            activity = conn.execute(_HEALTH_ACTIVITY, windows).fetchone()
            users = conn.execute(_HEALTH_USERS, near).fetchone()
        if created is None or activity is None or users is None:
            raise DependencyUnavailable("The companion's analytics could not be read")
        return HealthInputs(
            companion_created_at=created["created_at"],
            recent_interactions=int(activity["recent"]),
            baseline_interactions=int(activity["baseline"]),
            baseline_active_days=int(activity["baseline_days"]),
            writes_7d=int(activity["writes_7d"]),
            deletes_7d=int(activity["deletes_7d"]),
            users=int(users["users"]),
            blocked_users=int(users["blocked"]),
            users_with_memories=int(users["with_memories"]),
            users_near_storage_limit=int(users["near_limit"]),
        )

    def pause(self, companion: ScheduledCompanion, audit: AuditEvent) -> bool:
        with self._database.transaction(TenantScope(owner_id=companion.owner_id), dict_rows=True) as conn:
            paused = conn.execute(
                "UPDATE companions SET status = 'paused', updated_at = %s "
                "WHERE id = %s AND owner_id = %s AND status = 'active' RETURNING id",
                (audit.at, companion.id, companion.owner_id),
            ).fetchone()
            if paused is None:
                return False
            conn.execute(
                "INSERT INTO audit_log (owner_id, companion_id, actor, action, target, details, at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    audit.owner_id,
                    audit.companion_id,
                    audit.actor,
                    audit.action,
                    audit.target,
                    Jsonb(audit.details),
                    audit.at,
                ),
            )
        return True

    def last_resumed(self, owner_id: UUID, companion_id: UUID) -> datetime | None:
        # The owner's audit trail (audit_read_by_owner), by the audit_log_companion index.
        with self._database.transaction(TenantScope(owner_id=owner_id), dict_rows=True) as conn:
            row = conn.execute(
                "SELECT max(at) AS at FROM audit_log "
                "WHERE owner_id = %s AND companion_id = %s AND action = 'companion.resumed'",
                (owner_id, companion_id),
            ).fetchone()
        return None if row is None else row["at"]

    # The schedule's place in its walk (schedule_cursors, 0009: no tenant data, no tenant context).
    def cursor(self, job: str) -> UUID | None:
        with self._database.transaction(None, dict_rows=True) as conn:
            row = conn.execute("SELECT after_id FROM schedule_cursors WHERE job = %s", (job,)).fetchone()
        return None if row is None else row["after_id"]

    def save_cursor(self, job: str, after: UUID | None) -> None:
        with self._database.transaction(None) as conn:
            conn.execute(
                "INSERT INTO schedule_cursors (job, after_id, updated_at) VALUES (%s, %s, now()) "
                "ON CONFLICT (job) DO UPDATE SET after_id = EXCLUDED.after_id, updated_at = now()",
                (job, after),
            )


def _counts(conn: psycopg.Connection[Any], sql: str, args: dict[str, Any]) -> dict[datetime, int]:
    return {row["bucket"]: int(row["n"]) for row in conn.execute(sql, args).fetchall()}
