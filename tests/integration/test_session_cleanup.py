"""The cleanup schedule's session work on the local stack (moto DynamoDB + PostgreSQL): expired sessions are
folded into companion_users exactly once and deleted, live and revived ones are left alone, two overlapping
runs never process anything twice (a run holding a companion's lease makes another skip it, while holding no
transaction), a dead run's lease expires, a session restart folds the incarnation it replaces before writing,
session limits per user and per companion, and pending purges of deleted companions are finished."""

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from companion_memory.adapters import aws
from companion_memory.adapters.dynamodb_erasure import DynamoDbErasure
from companion_memory.adapters.dynamodb_sessions import DynamoDbSessionStore
from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_directory import PostgresCompanionDirectory
from companion_memory.adapters.postgres_erasure import PostgresErasure
from companion_memory.adapters.postgres_upkeep import PostgresSessionLedger
from companion_memory.config import AwsSettings, PostgresSettings
from companion_memory.domain.sessions import SessionService
from companion_memory.domain.upkeep import UpkeepPolicy, UpkeepService
from companion_memory.errors import DependencyUnavailable, TooManySessions
from companion_memory.models.session import SessionRecord
from companion_memory.models.tenancy import TenantScope
from companion_memory.models.upkeep import UpkeepSummary
from tests.integration.test_upkeep_memories import Retention, Seed, rows, seed, walker
from tests.support.clock import FakeClock
from tests.support.database import app_database
from tests.support.upkeep import companion_users, new_companion, session_log

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
LATER = START + timedelta(hours=2)


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[Database]:
    with app_database(pool_size=6) as db:
        yield db


@pytest.fixture(scope="module")
def store(stack: object) -> DynamoDbSessionStore:
    settings = AwsSettings()
    return DynamoDbSessionStore(aws.client("dynamodb", settings), settings.sessions_table)


def conversations(
    database: Database, store: DynamoDbSessionStore, companion: UUID, plan: dict[tuple[str, str], int]
) -> None:
    """Touch each (user, conversation) its number of times at START, through the real session service."""
    service = SessionService(store, PostgresSessionLedger(database), FakeClock(START))
    for (user, conversation), requests in plan.items():
        for _ in range(requests):
            service.touch(companion, user, None, conversation, None, None)


def cleanup(
    database: Database, store: Any, companions: Sequence[UUID], at: datetime = LATER
) -> UpkeepService:
    return UpkeepService(
        *walker(database, companions),
        store,
        PostgresSessionLedger(database),
        FakeClock(at),
        UpkeepPolicy(reserve_s=0),
    )


def plenty() -> float:
    return 1e9


def test_expired_sessions_are_folded_into_the_users_statistics_once_and_deleted(
    database: Database, store: DynamoDbSessionStore
) -> None:
    # Given three conversations that ended two hours ago (3, 2 and 1 requests)
    companion = new_companion(database)
    conversations(database, store, companion, {("ann", "a"): 3, ("ann", "b"): 2, ("bob", "a"): 1})

    # When the cleanup runs
    summary = cleanup(database, store, [companion]).run(plenty)

    # Then each is logged, its requests counted for its user, and its record gone
    assert summary.sessions_finalised == 3
    logged = session_log(database, companion)
    assert sorted((r["user_id"], r["request_count"]) for r in logged) == [("ann", 2), ("ann", 3), ("bob", 1)]
    users = companion_users(database, companion)
    assert (users["ann"]["interaction_count"], users["bob"]["interaction_count"]) == (5, 1)
    assert users["ann"]["first_interaction_at"] == START
    assert store.expired(companion, LATER, 100) == []

    # and a second run finds nothing more to fold
    assert cleanup(database, store, [companion]).run(plenty).sessions_finalised == 0
    assert companion_users(database, companion)["ann"]["interaction_count"] == 5


def test_a_live_session_is_left_alone(database: Database, store: DynamoDbSessionStore) -> None:
    companion = new_companion(database)
    conversations(database, store, companion, {("ann", "a"): 2})

    # When the cleanup runs ten minutes later, while the session is live
    summary = cleanup(database, store, [companion], at=START + timedelta(minutes=10)).run(plenty)

    # Then nothing is folded or deleted
    assert summary.sessions_finalised == 0
    assert session_log(database, companion) == []
    assert [s.user_id for s in store.live_sessions(companion, START + timedelta(minutes=10))] == ["ann"]


class RevivedBeforeDelete:
    """The real store, with a request restarting each expired session between the cleanup's read and its
    conditional delete (the race the delete's condition exists for)."""

    def __init__(self, store: DynamoDbSessionStore, service: SessionService) -> None:
        self._store = store
        self._service = service

    def expired(self, companion_id: UUID, now: datetime, limit: int) -> list[SessionRecord]:
        found = self._store.expired(companion_id, now, limit)
        for record in found:
            self._service.touch(companion_id, record.user_id, None, record.key.value, None, None)
        return found

    def remove_expired(self, record: SessionRecord) -> bool:
        return self._store.remove_expired(record)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_session_restarted_between_the_read_and_the_delete_survives_and_counts_once(
    database: Database, store: DynamoDbSessionStore
) -> None:
    # Given an expired session of 4 requests, and a request that restarts its key during the cleanup
    companion = new_companion(database)
    conversations(database, store, companion, {("ann", "a"): 4})
    requests = SessionService(store, PostgresSessionLedger(database), FakeClock(LATER))

    # When the cleanup runs
    summary = cleanup(database, RevivedBeforeDelete(store, requests), [companion]).run(plenty)

    # Then the new incarnation is not deleted, and the old one's 4 requests are counted once, although
    # both the cleanup and the restarting request folded it
    assert (summary.sessions_finalised, summary.sessions_left) == (0, 1)
    live = store.live_sessions(companion, LATER)
    assert [(s.user_id, str(s.key)) for s in live] == [("ann", "conversation:a")]
    assert [r["request_count"] for r in session_log(database, companion)] == [4]
    assert companion_users(database, companion)["ann"]["interaction_count"] == 4


def test_two_overlapping_cleanup_runs_never_process_anything_twice(
    database: Database, store: DynamoDbSessionStore
) -> None:
    # Given four companions, each with expired sessions and memories that expire, decay and duplicate
    companions = [new_companion(database, Retention(None, 30.0, 0.5).config()) for _ in range(4)]
    memory_ids: list[UUID] = []
    for companion in companions:
        conversations(database, store, companion, {("ann", "a"): 2, ("bob", "b"): 3})
        memory_ids += seed(
            database,
            companion,
            [
                Seed("ann", "fact", 4.0, 3.0, None, 0.0, "past", "live", None, 0, 0),
                Seed("ann", "fact", 0.6, 60.0, None, 0.0, "none", "live", None, 0, 0),
                Seed("ann", "fact", 4.0, 0.0, None, 0.0, "none", "live", 1, 0, 0),
                Seed("ann", "fact", 2.0, 0.0, None, 0.0, "none", "live", 1, 1, 0),
            ],
        )

    # When two runs start at the same moment and overlap
    gate = threading.Barrier(2)
    summaries: list[UpkeepSummary] = []

    def run() -> None:
        service = cleanup(database, store, companions)
        gate.wait()
        summaries.append(service.run(plenty))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then together they did each thing exactly once
    total = summaries[0].add(summaries[1])
    assert total.sessions_finalised == 8
    assert (total.memories_expired, total.memories_archived, total.memories_consolidated) == (4, 4, 4)
    assert total.companions_visited + total.companions_skipped == 8
    for companion in companions:
        assert sorted(r["request_count"] for r in session_log(database, companion)) == [2, 3]
        users = companion_users(database, companion)
        assert (users["ann"]["interaction_count"], users["bob"]["interaction_count"]) == (2, 3)
        for memory in rows(database, companion).values():
            assert len(memory["history"]) <= 1


def test_a_new_conversation_past_the_companions_limit_is_refused(
    database: Database, store: DynamoDbSessionStore
) -> None:
    # Given a companion allowing two conversations at once, both open
    companion = new_companion(database, {"limits": {"max_concurrent_sessions": 2}})
    conversations(database, store, companion, {("ann", "a"): 1, ("bob", "b"): 1})
    service = SessionService(store, PostgresSessionLedger(database), FakeClock(START + timedelta(minutes=5)))

    # When a third starts, it is refused and nothing is written; an open one continues
    with pytest.raises(TooManySessions):
        service.touch(companion, "cid", None, "c", None, None)
    assert service.touch(companion, "ann", None, "a", None, None).record.request_count == 2
    assert sorted(s.user_id for s in store.live_sessions(companion, START + timedelta(minutes=5))) == [
        "ann",
        "bob",
    ]
    # and once the others have expired, a new one starts
    later = SessionService(store, PostgresSessionLedger(database), FakeClock(LATER))
    assert later.touch(companion, "cid", None, "c", None, None).started


def test_the_local_stacks_dynamodb_applies_concurrent_touches_of_one_session_one_at_a_time(
    database: Database, store: DynamoDbSessionStore
) -> None:
    # Given a companion and 16 requests of one conversation arriving at once (localdev/motoserver.py
    # serialises item writes as DynamoDB does)
    companion = new_companion(database)
    service = SessionService(store, PostgresSessionLedger(database), FakeClock(START))
    gate = threading.Barrier(16)

    def request() -> None:
        gate.wait()
        service.touch(companion, "ann", None, "a", None, None)

    threads = [threading.Thread(target=request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then one session started and counted every request
    [record] = store.expired(companion, LATER, 10)
    assert record.request_count == 16


# --- leases: overlapping runs, short transactions, dead runs ----------------------------------------------


class HeldInside:
    """The real session store; the first run to finalise sessions of ``companion`` stops there (holding the
    companion's lease) until the test lets it go."""

    def __init__(self, store: DynamoDbSessionStore, companion: UUID) -> None:
        self._store = store
        self._companion = companion
        self.inside = threading.Event()
        self.go = threading.Event()

    def expired(self, companion_id: UUID, now: datetime, limit: int) -> list[SessionRecord]:
        if companion_id == self._companion and not self.inside.is_set():
            self.inside.set()
            assert self.go.wait(timeout=60)
        return self._store.expired(companion_id, now, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_run_that_overlaps_one_working_on_a_companion_skips_it_and_the_holder_does_it_once(
    database: Database, store: DynamoDbSessionStore
) -> None:
    # Given a companion with expired sessions and an expired memory, and run A stopped inside it
    companion = new_companion(database, Retention(None, 30.0, 0.5).config())
    conversations(database, store, companion, {("ann", "a"): 2})
    [expiring] = seed(
        database, companion, [Seed("ann", "fact", 4.0, 3.0, None, 0.0, "past", "live", None, 0, 0)]
    )
    held = HeldInside(store, companion)
    summaries: list[UpkeepSummary] = []
    run_a = threading.Thread(
        target=lambda: summaries.append(cleanup(database, held, [companion]).run(plenty))
    )
    run_a.start()
    try:
        assert held.inside.wait(timeout=60)

        # When run B runs to its end meanwhile
        run_b = cleanup(database, store, [companion]).run(plenty)

        # Then B left the companion to A: nothing finalised or expired by B
        assert (run_b.companions_skipped, run_b.companions_visited) == (1, 0)
        assert (run_b.sessions_finalised, run_b.memories_expired) == (0, 0)
        # and A holds no transaction meanwhile: a user's write of the companion's rows does not wait
        with database.transaction(TenantScope(companion_id=companion, user_id="ann")) as conn:
            conn.execute("SET LOCAL lock_timeout = '1s'")
            conn.execute("UPDATE memories SET importance = 5 WHERE id = %s", (expiring,))
    finally:
        held.go.set()
        run_a.join()

    # and A, let go, did the companion's work exactly once
    [run_a_summary] = summaries
    assert (run_a_summary.companions_visited, run_a_summary.sessions_finalised) == (1, 1)
    assert run_a_summary.memories_expired == 1
    assert [r["request_count"] for r in session_log(database, companion)] == [2]


def lease(database: Database, companion: UUID, until: str) -> None:
    """A lease row as a run (perhaps one that died) left it."""
    with database.transaction(TenantScope(companion_id=companion)) as conn:
        conn.execute(
            "INSERT INTO upkeep_leases (companion_id, holder, until) "
            "VALUES (%s, gen_random_uuid(), now() + %s::interval)",
            (companion, until),
        )


def leases(database: Database, companion: UUID) -> int:
    with database.transaction(TenantScope(companion_id=companion)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM upkeep_leases WHERE companion_id = %s", (companion,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_lease_of_a_run_that_died_expires_and_a_live_one_is_respected(
    database: Database, store: DynamoDbSessionStore
) -> None:
    # Given one companion whose lease a dead run left expired, and one whose lease a live run holds
    abandoned, held = new_companion(database), new_companion(database)
    lease(database, abandoned, "-1 second")
    lease(database, held, "5 minutes")

    # When the cleanup runs
    summary = cleanup(database, store, [abandoned, held]).run(plenty)

    # Then it took over the expired lease (and released it at the end), and left the held companion alone
    assert (summary.companions_visited, summary.companions_skipped) == (1, 1)
    assert (leases(database, abandoned), leases(database, held)) == (0, 1)


# --- session starts ---------------------------------------------------------------------------------------


class FoldFails(PostgresSessionLedger):
    def fold(self, companion_id: UUID, sessions: Sequence[SessionRecord]) -> int:
        raise DependencyUnavailable("The session ledger could not be written")


def test_a_restart_folds_the_expired_incarnation_before_overwriting_it(
    database: Database, store: DynamoDbSessionStore
) -> None:
    # Given an expired session of three requests, and a ledger that cannot fold just now
    companion = new_companion(database)
    conversations(database, store, companion, {("ann", "a"): 3})
    failing = SessionService(store, FoldFails(database), FakeClock(LATER))

    # When its key is used again, the start fails cleanly and the old incarnation is still there, whole
    with pytest.raises(DependencyUnavailable):
        failing.touch(companion, "ann", None, "a", None, None)
    [kept] = store.expired(companion, LATER, 10)
    assert kept.request_count == 3

    # and when the ledger is back, the restart counts those three requests before replacing them
    restarted = SessionService(store, PostgresSessionLedger(database), FakeClock(LATER))
    assert restarted.touch(companion, "ann", None, "a", None, None).started
    assert companion_users(database, companion)["ann"]["interaction_count"] == 3
    assert store.expired(companion, LATER, 10) == []


def test_an_unreachable_database_at_a_session_start_is_a_retryable_error(store: DynamoDbSessionStore) -> None:
    # Given a ledger whose PostgreSQL does not answer (nothing listens on the port)
    dead = Database("postgresql://companion_app@127.0.0.1:9/none", PostgresSettings(db_connect_timeout_s=1))
    try:
        service = SessionService(store, PostgresSessionLedger(dead), FakeClock(START))

        # When a session starts, the error is DependencyUnavailable (503, retryable), not an unhandled one
        with pytest.raises(DependencyUnavailable):
            service.touch(uuid4(), "ann", None, "a", None, None)
    finally:
        dead.close()


def test_a_stored_config_that_does_not_parse_starts_sessions_under_the_default_limits(
    database: Database, store: DynamoDbSessionStore
) -> None:
    # Given a companion whose stored limits are malformed (a server-side fault, not the caller's)
    companion = new_companion(database, {"limits": {"max_concurrent_sessions": "many"}})
    service = SessionService(store, PostgresSessionLedger(database), FakeClock(START))

    # When a user starts a session, it starts (no 400 for the caller)
    assert service.touch(companion, "ann", None, "a", None, None).started


def test_one_user_cannot_fill_the_companion_with_fresh_conversations(
    database: Database, store: DynamoDbSessionStore
) -> None:
    # Given a companion allowing 2 sessions per user and 100 in all
    companion = new_companion(
        database, {"limits": {"max_sessions_per_user": 2, "max_concurrent_sessions": 100}}
    )
    service = SessionService(store, PostgresSessionLedger(database), FakeClock(START))
    conversations(database, store, companion, {("mallory", "c1"): 1, ("mallory", "c2"): 1})

    # When the same user opens a third conversation, it is refused; another user still gets in
    with pytest.raises(TooManySessions) as refused:
        service.touch(companion, "mallory", None, "c3", None, None)
    assert refused.value.details == {"max_sessions_per_user": 2}
    assert service.touch(companion, "ann", None, "a", None, None).started


def test_concurrent_starts_at_the_limit_pass_it_by_at_most_their_number(
    database: Database, store: DynamoDbSessionStore
) -> None:
    # Given a companion allowing 3 sessions, 2 of them open, and 6 users starting one at the same moment
    companion = new_companion(database, {"limits": {"max_concurrent_sessions": 3}})
    conversations(database, store, companion, {("u0", "a"): 1, ("u1", "a"): 1})
    service = SessionService(store, PostgresSessionLedger(database), FakeClock(START + timedelta(minutes=1)))
    gate = threading.Barrier(6)
    outcomes: list[bool] = []

    def start(user: str) -> None:
        gate.wait()
        try:
            outcomes.append(service.touch(companion, user, None, "a", None, None).started)
        except TooManySessions:
            outcomes.append(False)

    threads = [threading.Thread(target=start, args=(f"n{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then at least one got the free slot, and the limit is soft: the count read before each write lets
    # racing starts through, never more than limit - 1 + their number (documented in domain.sessions)
    live = len(store.live_sessions(companion, START + timedelta(minutes=1)))
    assert sum(outcomes) >= 1
    assert live == 2 + sum(outcomes) <= 3 - 1 + 6


# --- pending purges of deleted companions -----------------------------------------------------------------


def test_the_cleanup_finishes_the_purge_of_a_deleted_companion_that_still_holds_data(
    database: Database, store: DynamoDbSessionStore
) -> None:
    # Given a companion deleted while its purge was cut short: memories, a relationship row and a session
    # are left, next to a live companion that must keep everything
    settings = AwsSettings()
    gone, kept = new_companion(database), new_companion(database)
    for companion in (gone, kept):
        conversations(database, store, companion, {("ann", "a"): 1})
        seed(database, companion, [Seed("ann", "fact", 4.0, 0.0, None, 0.0, "none", "live", 1, 0, 0)])
    with database.transaction(TenantScope(companion_id=gone)) as conn:
        [owner] = conn.execute("SELECT owner_id FROM companions WHERE id = %s", (gone,)).fetchone() or [None]
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        conn.execute("UPDATE companions SET status = 'deleted' WHERE id = %s", (gone,))
    directory = PostgresCompanionDirectory(database)
    assert gone in directory.deleted_with_data(None, 1000)

    # When the cleanup runs with the stores a delete purges
    purges = [
        DynamoDbErasure(aws.client("dynamodb", settings), settings.sessions_table),
        PostgresErasure(database),
    ]
    summary = UpkeepService(
        *walker(database, [gone, kept]),
        store,
        PostgresSessionLedger(database),
        FakeClock(START + timedelta(minutes=1)),
        UpkeepPolicy(reserve_s=0),
        purges=purges,
    ).run(plenty)

    # Then the deleted companion's data is gone from each store and it is no longer pending; the live
    # companion kept its memory and its session
    assert (summary.deleted_companions_purged, summary.deleted_companions_pending) == (1, 0)
    assert gone not in directory.deleted_with_data(None, 1000)
    assert rows(database, gone) == {}
    assert companion_users(database, gone) == {}
    assert store.live_sessions(gone, START + timedelta(minutes=1)) == []
    assert len(rows(database, kept)) == 1
    assert [s.user_id for s in store.live_sessions(kept, START + timedelta(minutes=1))] == ["ann"]
