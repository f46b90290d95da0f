"""Neighbouring turns on the real PostgreSQL (application role, row-level security on): the store's one
statement finds the adjacent memories of the same user only, under the query's filters, and recall lends
them a share of their hit's score."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_memory import PostgresMemoryStore
from companion_memory.domain.memory import MemoryPolicy, MemoryService
from companion_memory.models.memory import MemoryCriteria, NewMemory, RecallQuery
from companion_memory.models.tenancy import TenantScope
from tests.support.clock import FakeClock
from tests.support.database import app_database
from tests.support.embedders import HashEmbedder

AT = datetime(2025, 3, 4, 19, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=10)


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[Database]:
    with app_database(pool_size=2) as db:
        yield db


def new_companion(database: Database) -> UUID:
    owner, companion = uuid4(), uuid4()
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        conn.execute("INSERT INTO owners (id, name) VALUES (%s, 'org')", (owner,))
        conn.execute(
            "INSERT INTO companions (id, owner_id, name, isolation_level) VALUES (%s, %s, 'c', 'standard')",
            (companion, owner),
        )
    return companion


def service(database: Database, share: float = 0.0) -> MemoryService:
    policy = MemoryPolicy(neighbour_share=share, neighbour_hits=1)
    return MemoryService(
        PostgresMemoryStore(database), HashEmbedder(256), FakeClock(AT + WINDOW), policy=policy
    )


def say(svc: MemoryService, companion: UUID, user: str, text: str, minutes: float, **fields: object) -> UUID:
    new = NewMemory(content=text, occurred_at=AT + timedelta(minutes=minutes), **fields)  # type: ignore[arg-type]
    return svc.store(TenantScope(companion_id=companion, user_id=user), new).memory.id


def neighbours_of(
    database: Database, companion: UUID, user: str, anchor: UUID, minutes: float, **criteria: object
) -> set[UUID]:
    store = PostgresMemoryStore(database)
    with store.unit(TenantScope(companion_id=companion, user_id=user)) as unit:
        found = unit.neighbours(
            user,
            [(anchor, AT + timedelta(minutes=minutes))],
            MemoryCriteria(now=AT + WINDOW, **criteria),  # type: ignore[arg-type]
            WINDOW,
        )
    assert all(a == anchor for a, _ in found)
    return {memory.id for _, memory in found}


def test_the_nearest_turn_on_each_side_within_the_window_and_no_further(database: Database) -> None:
    # Given alice's turns at -20, -2, 0 (the hit), +1, +3 minutes
    companion, svc = new_companion(database), service(database)
    say(svc, companion, "alice", "too early", -20)
    before = say(svc, companion, "alice", "Juno: what is your sister called?", -2)
    hit = say(svc, companion, "alice", "my sister", 0)
    after = say(svc, companion, "alice", "Anya", 1)
    say(svc, companion, "alice", "second after", 3)
    # When the hit's neighbours are asked for, Then one each side, the nearest
    assert neighbours_of(database, companion, "alice", hit, 0) == {before, after}


def test_turns_beyond_the_window_are_no_neighbours(database: Database) -> None:
    companion, svc = new_companion(database), service(database)
    say(svc, companion, "alice", "an hour before", -60)
    hit = say(svc, companion, "alice", "my sister", 0)
    say(svc, companion, "alice", "eleven minutes later", 11)
    assert neighbours_of(database, companion, "alice", hit, 0) == set()


def test_another_users_or_companions_adjacent_turn_is_never_a_neighbour(database: Database) -> None:
    # Given bob (same companion) and alice of another companion spoke a minute after alice's hit
    companion, other, svc = new_companion(database), new_companion(database), service(database)
    hit = say(svc, companion, "alice", "my sister", 0)
    say(svc, companion, "bob", "bob's turn", 1)
    say(svc, other, "alice", "the other companion's alice", -1)
    # When alice's neighbours are asked for, even naming bob as the user inside alice's scope
    assert neighbours_of(database, companion, "alice", hit, 0) == set()
    store = PostgresMemoryStore(database)
    with store.unit(TenantScope(companion_id=companion, user_id="alice")) as unit:
        forged = unit.neighbours("bob", [(hit, AT)], MemoryCriteria(now=AT + WINDOW), WINDOW)
    # Then row-level security keeps bob's turn out of alice's scope
    assert forged == []


def test_neighbours_keep_to_the_filters_and_skip_forgotten_turns(database: Database) -> None:
    companion, svc = new_companion(database), service(database)
    hit = say(svc, companion, "alice", "my sister", 0, type="fact")
    gone = say(svc, companion, "alice", "forgotten turn", -1, type="fact")
    svc.forget(TenantScope(companion_id=companion, user_id="alice"), gone, 1)
    experience = say(svc, companion, "alice", "Anya", 1, type="experience")
    assert neighbours_of(database, companion, "alice", hit, 0) == {experience}
    assert neighbours_of(database, companion, "alice", hit, 0, types=("fact",)) == set()
    assert neighbours_of(database, companion, "alice", hit, 0, until=AT + timedelta(seconds=30)) == set()


def test_recall_lends_the_answer_next_to_the_matching_turn_its_share(database: Database) -> None:
    # Given the answer shares no word with the question, and unrelated talk on other days
    companion, plain, lending = new_companion(database), service(database), service(database, share=0.9)
    question = say(plain, companion, "alice", "Juno: what is your sister called?", 0)
    answer = say(plain, companion, "alice", "Priya: Anya, she lives in Tallinn now", 1)
    for day, text in enumerate(["long day at work", "the bus was late again", "sleep well"]):
        say(plain, companion, "alice", text, (day + 1) * 24 * 60)
    ask = RecallQuery(query="what is her sister called", limit=2)
    scope = TenantScope(companion_id=companion, user_id="alice")
    # When recalled without and with neighbours
    without = plain.recall(scope, ask).memories
    with_them = lending.recall(scope, ask).memories
    # Then the answer joins just below the hit, at 0.9 of its score
    assert answer not in [m.id for m in without]
    assert [m.id for m in with_them] == [question, answer]
    assert with_them[1].score == pytest.approx(0.9 * with_them[0].score)
