"""Analytics on the real PostgreSQL (migrations/0010): the activity counters under concurrency and row-level
security, the series, engagement, leaderboard and health inputs the store reads, and the auto-pause schedule
(exactly one pause and one audit entry, also when two runs overlap)."""

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_activity import PostgresActivityRecorder
from companion_memory.adapters.postgres_analytics import PostgresAnalyticsStore
from companion_memory.adapters.postgres_companions import PostgresCompanionStore
from companion_memory.adapters.postgres_directory import PostgresCompanionDirectory
from companion_memory.adapters.postgres_identity import PostgresIdentityStore
from companion_memory.auth.principal import Principal
from companion_memory.domain.analytics import AUTO_PAUSED, AnalyticsService
from companion_memory.domain.companions import CompanionService
from companion_memory.models.companion_config import Limits
from companion_memory.models.tenancy import TenantScope
from tests.support.clock import FakeClock
from tests.support.database import app_database

NOW = datetime.now(UTC).replace(minute=20, second=0, microsecond=0)
HOUR = NOW.replace(minute=0)


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[Database]:
    with app_database(pool_size=8) as db:
        yield db


@pytest.fixture(scope="module")
def recorder(database: Database) -> PostgresActivityRecorder:
    return PostgresActivityRecorder(database)


@pytest.fixture(scope="module")
def store(database: Database) -> PostgresAnalyticsStore:
    return PostgresAnalyticsStore(database)


def new_owner(database: Database) -> UUID:
    owner = uuid4()
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        conn.execute("INSERT INTO owners (id, name) VALUES (%s, 'org')", (owner,))
    return owner


def new_companion(
    database: Database, owner: UUID, config: dict[str, Any] | None = None, age: timedelta = timedelta(days=30)
) -> UUID:
    companion = uuid4()
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        conn.execute(
            "INSERT INTO companions (id, owner_id, name, config, created_at) VALUES (%s, %s, 'c', %s, %s)",
            (companion, owner, json.dumps(config or {}), NOW - age),
        )
    return companion


def user_scope(owner: UUID, companion: UUID, user: str) -> TenantScope:
    return TenantScope(owner_id=owner, companion_id=companion, user_id=user)


def companion_scope(owner: UUID, companion: UUID) -> TenantScope:
    return TenantScope(owner_id=owner, companion_id=companion, user_id="*")


def add_memory(
    database: Database, scope: TenantScope, created: datetime, forgotten: datetime | None = None
) -> None:
    with database.transaction(scope) as conn:
        conn.execute(
            "INSERT INTO memories (id, companion_id, user_id, type, content, importance, occurred_at, "
            "created_at, updated_at, forgotten_at, purge_after) "
            "VALUES (%s, %s, %s, 'fact', 'likes tea', 5, %s, %s, %s, %s, %s)",
            (
                uuid4(),
                scope.companion_id,
                scope.user_id,
                created,
                created,
                created,
                forgotten,
                None if forgotten is None else forgotten + timedelta(days=30),
            ),
        )


def add_session(database: Database, scope: TenantScope, started: datetime) -> None:
    with database.transaction(scope) as conn:
        conn.execute(
            "INSERT INTO session_log (session_id, companion_id, user_id, started_at, ended_at, "
            "request_count) VALUES (%s, %s, %s, %s, %s, 3)",
            (uuid4(), scope.companion_id, scope.user_id, started, started + timedelta(minutes=40)),
        )


def activity_rows(database: Database, scope: TenantScope) -> list[tuple[Any, ...]]:
    with database.transaction(scope) as conn:
        return conn.execute(
            "SELECT user_id, hour, reads, writes, deletes FROM activity_hourly ORDER BY user_id, hour"
        ).fetchall()


# --- the counters -------------------------------------------------------------------------------------------


def test_each_request_counts_once_in_its_users_hour_by_operation(
    database: Database, recorder: PostgresActivityRecorder
) -> None:
    owner = new_owner(database)
    companion = new_companion(database, owner)
    alice = user_scope(owner, companion, "alice")
    # When alice reads twice and writes once this hour, and deletes once an hour ago
    for operation in ("read", "read", "write"):
        recorder.record(alice, operation, NOW)
    recorder.record(alice, "delete", NOW - timedelta(hours=1))
    # Then her hours hold exactly that, at UTC hour starts
    assert activity_rows(database, alice) == [
        ("alice", HOUR - timedelta(hours=1), 0, 0, 1),
        ("alice", HOUR, 2, 1, 0),
    ]


def test_concurrent_requests_of_one_user_lose_no_count(
    database: Database, recorder: PostgresActivityRecorder
) -> None:
    owner = new_owner(database)
    companion = new_companion(database, owner)
    alice = user_scope(owner, companion, "alice")

    def requests() -> None:
        for _ in range(25):
            recorder.record(alice, "read", NOW)

    threads = [threading.Thread(target=requests) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert activity_rows(database, alice) == [("alice", HOUR, 200, 0, 0)]


def test_a_user_scope_sees_only_its_own_activity_and_another_companion_sees_none(
    database: Database, recorder: PostgresActivityRecorder
) -> None:
    owner = new_owner(database)
    companion, other = new_companion(database, owner), new_companion(database, owner)
    recorder.record(user_scope(owner, companion, "alice"), "read", NOW)
    recorder.record(user_scope(owner, companion, "bob"), "read", NOW)
    assert [r[0] for r in activity_rows(database, user_scope(owner, companion, "bob"))] == ["bob"]
    assert activity_rows(database, companion_scope(owner, other)) == []
    assert activity_rows(database, TenantScope()) == []


def test_an_owner_context_reads_its_companions_activity_but_writes_none(
    database: Database, recorder: PostgresActivityRecorder
) -> None:
    owner, stranger = new_owner(database), new_owner(database)
    companion = new_companion(database, owner)
    recorder.record(user_scope(owner, companion, "alice"), "read", NOW)
    assert len(activity_rows(database, TenantScope(owner_id=owner))) == 1
    assert activity_rows(database, TenantScope(owner_id=stranger)) == []
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        database.transaction(TenantScope(owner_id=owner)) as c,
    ):
        c.execute(
            "INSERT INTO activity_hourly (companion_id, user_id, hour, reads) VALUES (%s, 'mallory', %s, 1)",
            (companion, HOUR),
        )


def test_a_user_scope_cannot_count_activity_for_another_user(database: Database) -> None:
    owner = new_owner(database)
    companion = new_companion(database, owner)
    alice = user_scope(owner, companion, "alice")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), database.transaction(alice) as conn:
        conn.execute(
            "INSERT INTO activity_hourly (companion_id, user_id, hour, reads) VALUES (%s, 'bob', %s, 1)",
            (companion, HOUR),
        )


# --- what the store reads -----------------------------------------------------------------------------------


def test_the_series_buckets_activity_conversations_and_memories_by_hour(
    database: Database, recorder: PostgresActivityRecorder, store: PostgresAnalyticsStore
) -> None:
    owner = new_owner(database)
    companion = new_companion(database, owner)
    alice, bob = user_scope(owner, companion, "alice"), user_scope(owner, companion, "bob")
    start = HOUR - timedelta(hours=3)
    recorder.record(alice, "read", start + timedelta(minutes=5))
    recorder.record(bob, "write", start + timedelta(minutes=50))
    recorder.record(bob, "delete", start + timedelta(hours=2))
    add_session(database, alice, start + timedelta(minutes=10))
    add_memory(database, alice, start - timedelta(days=2))  # before the period
    add_memory(database, alice, start - timedelta(days=1), forgotten=start + timedelta(hours=2, minutes=1))
    add_memory(database, bob, start + timedelta(hours=1, minutes=30))

    rows = store.series(companion_scope(owner, companion), start, HOUR + timedelta(hours=1), "hour")

    [first, third] = sorted(rows.activity, key=lambda r: r.bucket)
    assert (first.bucket, first.reads, first.writes, first.active_users) == (start, 1, 1, 2)
    assert (third.bucket, third.deletes) == (start + timedelta(hours=2), 1)
    assert rows.conversations == {start: 1}
    assert rows.memories_created == {start + timedelta(hours=1): 1}
    assert rows.memories_forgotten == {start + timedelta(hours=2): 1}
    assert rows.memories_before == 2


def test_engagement_ranks_users_with_their_active_days_and_memories(
    database: Database, recorder: PostgresActivityRecorder, store: PostgresAnalyticsStore
) -> None:
    owner = new_owner(database)
    companion = new_companion(database, owner)
    alice, bob = user_scope(owner, companion, "alice"), user_scope(owner, companion, "bob")
    for days_ago in (0, 1, 1, 3):
        recorder.record(alice, "read", NOW - timedelta(days=days_ago))
    recorder.record(bob, "write", NOW)
    add_memory(database, bob, NOW - timedelta(hours=1))

    users = store.engagement(companion_scope(owner, companion), NOW - timedelta(days=2), NOW, 10)

    assert [(u.user_id, u.interactions, u.active_days, u.memories) for u in users] == [
        ("alice", 3, 2, 0),
        ("bob", 1, 1, 1),
    ]
    assert users[0].first_active_at == HOUR - timedelta(days=3)  # ever, not only in the period


def test_the_leaderboard_ranks_the_owners_companions_only(
    database: Database, recorder: PostgresActivityRecorder, store: PostgresAnalyticsStore
) -> None:
    owner, stranger = new_owner(database), new_owner(database)
    quiet, busy = new_companion(database, owner), new_companion(database, owner)
    foreign = new_companion(database, stranger)
    for _ in range(3):
        recorder.record(user_scope(owner, busy, "alice"), "read", NOW)
    recorder.record(user_scope(stranger, foreign, "eve"), "read", NOW)

    ranked = store.leaderboard(owner, NOW - timedelta(days=1), NOW + timedelta(hours=1), 10)

    assert [(c.companion_id, c.interactions) for c in ranked] == [(busy, 3), (quiet, 0)]


def test_health_inputs_split_the_last_complete_day_from_the_week_before(
    database: Database, recorder: PostgresActivityRecorder, store: PostgresAnalyticsStore
) -> None:
    owner = new_owner(database)
    companion = new_companion(database, owner)
    alice = user_scope(owner, companion, "alice")
    recorder.record(alice, "read", NOW)  # the current hour: not complete, not counted yet
    recorder.record(alice, "write", NOW - timedelta(hours=1))
    recorder.record(alice, "read", NOW - timedelta(days=2))
    recorder.record(alice, "delete", NOW - timedelta(days=3))
    recorder.record(alice, "read", NOW - timedelta(days=9))  # outside both windows
    add_memory(database, alice, NOW - timedelta(days=3))
    add_memory(database, alice, NOW - timedelta(days=2))
    with database.transaction(companion_scope(owner, companion)) as conn:
        conn.execute(
            "INSERT INTO companion_users (companion_id, user_id, is_blocked) VALUES (%s, 'eve', true)",
            (companion,),
        )

    inputs = store.health_inputs(companion_scope(owner, companion), NOW, Limits(max_memories_per_user=2))

    assert (inputs.recent_interactions, inputs.baseline_interactions, inputs.baseline_active_days) == (
        1,
        2,
        2,
    )
    assert (inputs.writes_7d, inputs.deletes_7d) == (1, 1)
    assert (inputs.users, inputs.blocked_users) == (2, 1)
    assert (inputs.users_with_memories, inputs.users_near_storage_limit) == (1, 1)


# --- the schedule -------------------------------------------------------------------------------------------


def unhealthy_companion(database: Database, recorder: PostgresActivityRecorder, owner: UUID) -> UUID:
    """Auto-pause below 50; 12 requests a day on 6 days of the baseline week, none in the last day, its
    one user blocked, no memories (storage unmeasured): (0.4 * 0 + 0.2 * 100 + 0.2 * 0) / 0.8 = 25 on enough
    data."""
    companion = new_companion(database, owner, {"auto_pause": {"enabled": True, "below_health": 50}})
    alice = user_scope(owner, companion, "alice")
    for day in range(2, 8):
        for _ in range(12):
            recorder.record(alice, "write", NOW - timedelta(days=day))
    with database.transaction(companion_scope(owner, companion)) as conn:
        conn.execute(
            "INSERT INTO companion_users (companion_id, user_id, is_blocked) VALUES (%s, 'alice', true) "
            "ON CONFLICT (companion_id, user_id) DO UPDATE SET is_blocked = true",
            (companion,),
        )
    return companion


def status_and_audit(database: Database, owner: UUID, companion: UUID) -> tuple[str, list[dict[str, Any]]]:
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        status = conn.execute("SELECT status FROM companions WHERE id = %s", (companion,)).fetchone()
        audit = conn.execute(
            "SELECT actor, details FROM audit_log WHERE companion_id = %s AND action = %s",
            (companion, AUTO_PAUSED),
        ).fetchall()
    assert status is not None
    return status[0], [{"actor": a, **d} for a, d in audit]


def test_the_schedule_pauses_an_unhealthy_companion_once_with_its_audit_entry(
    database: Database, recorder: PostgresActivityRecorder, store: PostgresAnalyticsStore
) -> None:
    owner = new_owner(database)
    unhealthy = unhealthy_companion(database, recorder, owner)
    brand_new = new_companion(
        database, owner, {"auto_pause": {"enabled": True, "below_health": 100}}, timedelta(0)
    )
    service = AnalyticsService(store, FakeClock(NOW), PostgresCompanionDirectory(database))

    first = service.run_schedule(lambda: 600.0)
    second = service.run_schedule(lambda: 600.0)

    assert unhealthy in first.paused
    assert unhealthy not in second.paused
    status, audit = status_and_audit(database, owner, unhealthy)
    assert status == "paused"
    assert [(a["actor"], a["score"], a["parts"]["activity"]) for a in audit] == [
        ("system:analytics", 25.0, 0.0)
    ]
    assert status_and_audit(database, owner, brand_new) == ("active", [])


def test_two_overlapping_runs_pause_and_audit_once(
    database: Database, recorder: PostgresActivityRecorder, store: PostgresAnalyticsStore
) -> None:
    owner = new_owner(database)
    unhealthy = unhealthy_companion(database, recorder, owner)
    service = AnalyticsService(store, FakeClock(NOW), PostgresCompanionDirectory(database))
    runs: list[list[UUID]] = []
    threads = [
        threading.Thread(target=lambda: runs.append(service.run_schedule(lambda: 600.0).paused))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(unhealthy in paused for paused in runs) == 1
    assert len(status_and_audit(database, owner, unhealthy)[1]) == 1


def resume(database: Database, owner: UUID, companion: UUID, at: datetime) -> None:
    """The owner pauses and then resumes the companion at ``at``, through the companion lifecycle service."""
    lifecycle = CompanionService(
        PostgresCompanionStore(database), PostgresIdentityStore(database), FakeClock(at)
    )
    key = Principal(kind="owner", owner_id=owner, scopes=frozenset({"admin"}), key_id=uuid4())
    lifecycle.transition(key, companion, "pause")
    lifecycle.transition(key, companion, "resume")


def test_last_resumed_is_the_latest_resume_of_that_companion_only(
    database: Database, store: PostgresAnalyticsStore
) -> None:
    owner = new_owner(database)
    companion, sibling = new_companion(database, owner), new_companion(database, owner)
    resume(database, owner, companion, NOW - timedelta(days=3))
    resume(database, owner, companion, NOW - timedelta(hours=5))
    resume(database, owner, sibling, NOW - timedelta(hours=1))

    assert store.last_resumed(owner, companion) == NOW - timedelta(hours=5)
    assert store.last_resumed(owner, new_companion(database, owner)) is None
    # Another owner's context sees none of it (the audit log's owner policy)
    assert store.last_resumed(new_owner(database), companion) is None


def test_the_schedule_cursor_is_kept_per_job(store: PostgresAnalyticsStore) -> None:
    job, mark = f"test-{uuid4()}", uuid4()
    assert store.cursor(job) is None
    store.save_cursor(job, mark)
    store.save_cursor(f"{job}-other", uuid4())
    assert store.cursor(job) == mark
    store.save_cursor(job, None)
    assert store.cursor(job) is None


def test_an_unhealthy_companion_resumed_47_hours_ago_is_paused_only_after_48(
    database: Database, recorder: PostgresActivityRecorder, store: PostgresAnalyticsStore
) -> None:
    # Given an unhealthy auto-pausing companion its owner resumed 47 hours ago
    owner = new_owner(database)
    unhealthy = unhealthy_companion(database, recorder, owner)
    resume(database, owner, unhealthy, NOW - timedelta(hours=47))
    # When the schedule runs now and again 2 hours later (on the same week of data)
    first = AnalyticsService(store, FakeClock(NOW), PostgresCompanionDirectory(database)).run_schedule(
        lambda: 600.0
    )
    later = AnalyticsService(
        store, FakeClock(NOW + timedelta(hours=2)), PostgresCompanionDirectory(database)
    ).run_schedule(lambda: 600.0)
    # Then the first run leaves it active; once 48 hours have passed, the second pauses it
    assert unhealthy not in first.paused
    assert first.resumed_recently >= 1
    assert unhealthy in later.paused
