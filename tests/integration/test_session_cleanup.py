"""The cleanup schedule's session work on the local stack (moto DynamoDB + PostgreSQL): expired sessions are
folded into companion_users exactly once and deleted, live and revived ones are left alone, two overlapping
runs never process anything twice, and the function runs on the sample EventBridge event."""

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from companion_memory.adapters import aws
from companion_memory.adapters.dynamodb_sessions import DynamoDbSessionStore
from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_upkeep import PostgresSessionLedger, PostgresUpkeepStore
from companion_memory.config import AwsSettings
from companion_memory.domain.sessions import SessionService
from companion_memory.domain.upkeep import UpkeepPolicy, UpkeepService
from companion_memory.errors import TooManySessions
from companion_memory.models.session import SessionRecord
from companion_memory.models.upkeep import UpkeepSummary
from tests.integration.test_upkeep_memories import OnlyCompanions, Retention, Seed, rows, seed
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
        OnlyCompanions(PostgresUpkeepStore(database), companions),
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
