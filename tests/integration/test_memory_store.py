"""The memory service on the real local PostgreSQL + pgvector, through the Postgres memory store, as the
application role (row-level security on), with the deterministic hash embedder."""

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString
from uuid import UUID, uuid4

import psycopg
import pytest

from companion_memory.adapters.clock import SystemClock
from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_memory import PostgresMemoryStore, create_embedding_index
from companion_memory.domain.memory import MemoryService
from companion_memory.errors import Conflict, NotFound, ValidationFailed
from companion_memory.models.memory import ListFilter, MemoryChanges, MemoryCriteria, NewMemory, RecallQuery
from companion_memory.models.tenancy import ALL_USERS, TenantScope
from tests.support.cipher import FakeCipher
from tests.support.clock import FakeClock
from tests.support.database import app_database
from tests.support.embedders import HashEmbedder, cosine

EMBEDDER = HashEmbedder(256)


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[Database]:
    with app_database(pool_size=4) as db:
        yield db


@pytest.fixture(scope="module")
def store(database: Database) -> PostgresMemoryStore:
    return PostgresMemoryStore(database)


@pytest.fixture(scope="module")
def service(store: PostgresMemoryStore) -> MemoryService:
    return MemoryService(store, EMBEDDER, SystemClock(), cipher=FakeCipher())


def new_companion(database: Database, isolation: str = "standard") -> UUID:
    owner, companion = uuid4(), uuid4()
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        conn.execute("INSERT INTO owners (id, name) VALUES (%s, 'org')", (owner,))
        conn.execute(
            "INSERT INTO companions (id, owner_id, name, isolation_level) VALUES (%s, %s, 'c', %s)",
            (companion, owner, isolation),
        )
    return companion


def scope(companion: UUID, user: str = "alice") -> TenantScope:
    return TenantScope(companion_id=companion, user_id=user)


def one(conn: psycopg.Connection[Any], query: LiteralString, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_a_memory_round_trips_with_its_metadata_verbatim(database: Database, service: MemoryService) -> None:
    # Given nested metadata with unicode and numbers of every kind, and a past occurrence
    companion = new_companion(database)
    metadata = {
        "n": {"deep": [1, 2.5, -3e-7, True, None]},
        "u": "日本語 — ça va? 🍵",
        "big": 12345678901234567,
    }
    occurred = datetime(2019, 5, 1, 8, 30, 0, 123456, tzinfo=UTC)
    # When stored and read back
    stored = service.store(
        scope(companion),
        NewMemory(content="likes matcha", metadata=metadata, occurred_at=occurred, summary="tea"),
    ).memory
    fetched = service.get(scope(companion), stored.id)
    # Then every field is as stored
    assert fetched == stored
    assert fetched.metadata == metadata
    assert fetched.occurred_at == occurred
    assert fetched.embedding_model == EMBEDDER.model_id


def test_a_repeated_memory_is_reinforced_in_the_database(database: Database, service: MemoryService) -> None:
    companion = new_companion(database)
    first = service.store(scope(companion), NewMemory(content="owns a grey cat called Miso")).memory
    again = service.store(scope(companion), NewMemory(content="Owns a grey cat called Miso."))
    assert (again.outcome, again.duplicate_of, again.memory.version) == ("reinforced", first.id, 2)
    with database.transaction(scope(companion)) as conn:
        assert one(conn, "SELECT count(*) FROM memories") == 1
        assert one(conn, "SELECT reinforcement_count FROM memories") == 1
        changes = conn.execute("SELECT change FROM memory_history ORDER BY version").fetchall()
        assert changes == [("created",), ("reinforced",)]


def test_recall_ranks_a_small_seeded_set(database: Database, service: MemoryService) -> None:
    companion = new_companion(database)
    texts = [
        "works as a nurse at the city hospital",
        "drinks green tea every morning before work",
        "has a sister called Maria who lives in Porto",
        "is learning to play the cello",
        "went to a jazz concert last friday",
    ]
    ids = [r.memory.id for r in service.store_many(scope(companion), [NewMemory(content=t) for t in texts])]
    result = service.recall(scope(companion), RecallQuery(query="What does she drink in the morning?"))
    assert result.memories[0].id == ids[1]
    # "drink" matches "drinks" only after stemming: the keyword ranker carries this one
    assert result.memories[0].score_parts.keyword == 1.0
    sister = service.recall(scope(companion), RecallQuery(query="where does her sister live?", limit=1))
    assert [m.id for m in sister.memories] == [ids[2]]


def test_keyword_recall_matches_any_word_of_a_natural_question(
    database: Database, store: PostgresMemoryStore
) -> None:
    # Given a memory sharing one stemmed word with the question ("concerts" ~ "concert")
    companion = new_companion(database)
    service = MemoryService(store, EMBEDDER, SystemClock())
    target = service.store(scope(companion), NewMemory(content="went to a jazz concert last friday")).memory
    with store.unit(scope(companion)) as unit:
        from companion_memory.ports import CandidateQuery

        found = unit.candidates(
            "alice",
            CandidateQuery(
                model="no-such-model",  # no vectors: keyword candidates only
                vector=[1.0] * 4,
                terms=["which", "concerts", "did", "she", "enjoy"],
                criteria=MemoryCriteria(now=datetime.now(UTC)),
                k=10,
            ),
        )
    # Then OR semantics find it although most words do not occur
    assert [c.memory.id for c in found] == [target.id]
    assert found[0].keyword_rank > 0
    assert found[0].vector_similarity is None


def test_per_user_recall_is_exact(
    database: Database, store: PostgresMemoryStore, service: MemoryService
) -> None:
    # Given 200 memories of one user and 200 of another
    companion = new_companion(database)
    words = [
        "tea",
        "coffee",
        "cat",
        "dog",
        "piano",
        "violin",
        "paris",
        "rome",
        "rain",
        "snow",
        "bike",
        "car",
        "book",
        "film",
        "sea",
        "hill",
    ]
    texts = [f"{words[i % 16]} {words[(i * 7) % 16]} {words[(i * 3 + 1) % 16]} note {i}" for i in range(200)]
    for user in ("alice", "bob"):
        service.store_many(scope(companion, user), [NewMemory(content=t, type="experience") for t in texts])
    query = EMBEDDER.vector("cat piano rain")
    # When the store is asked for alice's nearest ten
    with store.unit(scope(companion)) as unit:
        nearest = unit.nearest("alice", MemoryCriteria(now=datetime.now(UTC)), EMBEDDER.model_id, query, 10)
        mine = unit.page("alice", MemoryCriteria(now=datetime.now(UTC)), None, 1000)
    # Then they are exactly the ten best by brute force over alice's memories, in order
    assert len(mine) == 200
    assert {m.user_id for m in mine} == {"alice"}
    expected = sorted(mine, key=lambda m: -cosine(EMBEDDER.vector(m.content or ""), query))[:10]
    expected_scores = [round(cosine(EMBEDDER.vector(m.content or ""), query), 5) for m in expected]
    assert [round(s, 5) for _, s in nearest] == expected_scores
    assert {m.user_id for m, _ in nearest} == {"alice"}


def test_companion_wide_search_uses_the_models_hnsw_index(
    database: Database, store: PostgresMemoryStore
) -> None:
    # Given the HNSW index of the test model, built concurrently as the owner (as the CLI does)
    ddl = create_embedding_index(os.environ["DATABASE_OWNER_URL"], EMBEDDER.model_id, EMBEDDER.dimensions)
    assert "CONCURRENTLY" in ddl
    assert "hnsw" in ddl
    index_name = ddl.split("IF NOT EXISTS ")[1].split(" ")[0]
    companion = new_companion(database)
    service = MemoryService(store, EMBEDDER, SystemClock())
    for user, texts in {
        "alice": ["plays chess in the park", "bakes sourdough bread"],
        "bob": ["plays chess online at night", "collects vinyl records"],
        "carol": ["grows tomatoes on the balcony"],
    }.items():
        service.store_many(scope(companion, user), [NewMemory(content=t) for t in texts])
    everyone = TenantScope(companion_id=companion, user_id=ALL_USERS)
    # When searching the whole companion
    result = service.search_companion(everyone, RecallQuery(query="plays chess", limit=2))
    # Then both users' chess memories come back
    assert sorted(m.content for m in result.memories) == [
        "plays chess in the park",
        "plays chess online at night",
    ]
    # And the plan is the index scan with the iterative scan on
    with database.transaction(everyone) as conn:
        conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        # The table is tiny, so a B-tree scan and a sort cost less; ask whether the index can serve the
        # query at all (at scale the planner prefers it on cost: no sort of a whole companion's vectors).
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_sort = off")
        dims = EMBEDDER.dimensions
        vector = "[" + ",".join(str(x) for x in EMBEDDER.vector("plays chess")) + "]"
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                f"EXPLAIN SELECT memory_id FROM memory_embeddings e WHERE e.model = '{EMBEDDER.model_id}' "  # noqa: S608
                f"AND e.companion_id = %s "
                f"ORDER BY (e.embedding::vector({dims})) <=> %s::vector({dims}) LIMIT 5",
                (companion, vector),
            ).fetchall()
        )
    assert index_name in plan


def test_conflicting_updates_with_the_same_version_let_exactly_one_win(
    database: Database, service: MemoryService
) -> None:
    companion = new_companion(database)
    memory = service.store(scope(companion), NewMemory(content="likes jazz")).memory
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    conflicts: list[Conflict] = []

    def attempt(importance: float) -> None:
        barrier.wait()
        try:
            service.update(
                scope(companion), memory.id, MemoryChanges(expected_version=1, importance=importance)
            )
            outcomes.append("won")
        except Conflict as conflict:
            conflicts.append(conflict)
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in (2.0, 9.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "won"]
    assert conflicts[0].details == {"current_version": 2}
    assert service.get(scope(companion), memory.id).version == 2


def test_recall_updates_access_statistics_without_waiting_for_row_locks(
    database: Database, service: MemoryService
) -> None:
    companion = new_companion(database)
    free = service.store(scope(companion), NewMemory(content="tea at dawn")).memory
    locked = service.store(scope(companion), NewMemory(content="tea with milk")).memory
    recalled: list[set[UUID]] = []
    with database.transaction(scope(companion)) as holder:
        # Given another transaction holding one of the rows
        holder.execute("SELECT 1 FROM memories WHERE id = %s FOR UPDATE", (locked.id,))
        # When recalling both, Then the recall finishes while the lock is still held
        worker = threading.Thread(
            target=lambda: recalled.append(
                {m.id for m in service.recall(scope(companion), RecallQuery(query="tea")).memories}
            )
        )
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "recall waited for a row lock"
    assert recalled == [{free.id, locked.id}]
    # And only the free row counted the access
    assert service.get(scope(companion), free.id).access_count == 1
    assert service.get(scope(companion), locked.id).access_count == 0
    service.recall(scope(companion), RecallQuery(query="tea"))
    after = service.get(scope(companion), free.id)
    assert after.access_count == 2
    assert after.accessed_at is not None


def test_update_of_content_replaces_the_vectors_of_every_model(
    database: Database, service: MemoryService
) -> None:
    companion = new_companion(database)
    memory = service.store(scope(companion), NewMemory(content="likes jazz")).memory
    with database.transaction(scope(companion)) as conn:
        conn.execute(
            "INSERT INTO memory_embeddings (memory_id, companion_id, user_id, model, embedding) "
            "VALUES (%s, %s, 'alice', 'older-model', '[1,0,0]')",
            (memory.id, companion),
        )
    service.update(scope(companion), memory.id, MemoryChanges(expected_version=1, content="likes bebop"))
    with database.transaction(scope(companion)) as conn:
        models = conn.execute(
            "SELECT model FROM memory_embeddings WHERE memory_id = %s", (memory.id,)
        ).fetchall()
        stored = one(conn, "SELECT embedding::text FROM memory_embeddings WHERE memory_id = %s", (memory.id,))
    assert models == [(EMBEDDER.model_id,)]
    expected = EMBEDDER.vector("likes bebop")
    assert [round(float(x), 5) for x in stored.strip("[]").split(",")] == [round(x, 5) for x in expected]


def test_forgotten_memories_are_purged_after_the_grace_period_with_their_history(
    database: Database, store: PostgresMemoryStore
) -> None:
    # Given one memory forgotten 31 days ago and one forgotten now
    companion = new_companion(database)
    clock = FakeClock(datetime.now(UTC) - timedelta(days=31))
    service = MemoryService(store, EMBEDDER, clock)
    old = service.store(scope(companion), NewMemory(content="old address in Leeds")).memory
    service.forget(scope(companion), old.id, 1)
    clock.advance(timedelta(days=31))
    recent = service.store(scope(companion), NewMemory(content="phone number ends in 42")).memory
    service.forget(scope(companion), recent.id, 1)
    # When the upkeep purges, even with a cutoff far in the future (clamped to now)
    service.purge_forgotten(datetime.now(UTC) + timedelta(days=365))
    # Then only the memory whose grace ended is gone, with its vectors and history
    with database.transaction(scope(companion)) as conn:
        assert conn.execute("SELECT id FROM memories").fetchall() == [(recent.id,)]
        assert one(conn, "SELECT count(*) FROM memory_history WHERE memory_id = %s", (old.id,)) == 0
        assert one(conn, "SELECT count(*) FROM memory_embeddings WHERE memory_id = %s", (old.id,)) == 0
    assert service.restore(scope(companion), recent.id, 2).content == "phone number ends in 42"


def test_a_strict_companion_stores_no_plaintext(database: Database, service: MemoryService) -> None:
    companion = new_companion(database, isolation="strict")
    memory = service.store(
        scope(companion), NewMemory(content="allergic to peanuts", summary="allergy")
    ).memory
    with database.transaction(scope(companion)) as conn:
        row = conn.execute(
            "SELECT content, summary, content_sealed, search::text FROM memories WHERE id = %s", (memory.id,)
        ).fetchone()
        history = one(conn, "SELECT snapshot::text FROM memory_history WHERE memory_id = %s", (memory.id,))
    assert row is not None
    content, summary, sealed, search = row
    assert content is None
    assert summary is None
    assert b"peanut" not in sealed
    assert search == ""
    assert "peanut" not in history
    assert "allerg" not in history
    recalled = service.recall(scope(companion), RecallQuery(query="peanuts"))
    assert [m.content for m in recalled.memories] == ["allergic to peanuts"]
    assert recalled.memories[0].score_parts.keyword == 0.0


def test_pages_in_the_database_cover_every_memory_once(database: Database, service: MemoryService) -> None:
    companion = new_companion(database)
    stored = service.store_many(
        scope(companion), [NewMemory(content=f"distinct note {i} subject{i}") for i in range(7)]
    )
    seen: list[UUID] = []
    cursor = None
    while True:
        page = service.list(scope(companion), ListFilter(limit=3, cursor=cursor))
        seen.extend(m.id for m in page.items)
        if (cursor := page.next_cursor) is None:
            break
    assert sorted(seen) == sorted(r.memory.id for r in stored)
    assert len(seen) == 7
    with pytest.raises(ValidationFailed):
        service.list(scope(companion), ListFilter(cursor="not-a-cursor"))


def test_link_sees_only_the_scopes_memories(database: Database, service: MemoryService) -> None:
    companion = new_companion(database)
    a = service.store(scope(companion), NewMemory(content="met Sam at work")).memory
    b = service.store(scope(companion), NewMemory(content="Sam moved to Oslo")).memory
    bobs = service.store(scope(companion, "bob"), NewMemory(content="bob has a boat")).memory
    relation = service.link(scope(companion), a.id, b.id, "follows", {"why": "same person"})
    assert service.link(scope(companion), a.id, b.id, "follows", {"why": "again"}).id == relation.id
    with pytest.raises(NotFound, match="memory not found"):
        service.link(scope(companion), a.id, bobs.id, "references")
    with database.transaction(scope(companion)) as conn:
        assert conn.execute("SELECT type, metadata FROM memory_relations").fetchall() == [
            ("follows", {"why": "again"})
        ]


def test_the_cli_builds_a_new_models_index_and_refuses_impossible_dimensions(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    from companion_memory import cli

    model = f"test:cli-{uuid4().hex[:8]}:8"
    assert cli.main(["embedding-index", "--model", model, "--dims", "8"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"] == model
    assert printed["dimensions"] == 8
    with database.transaction() as conn:
        definitions = [
            r[0]
            for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'memory_embeddings'")
        ]
    assert any(model in d and "hnsw" in d and "vector(8)" in d for d in definitions)
    # Run again: nothing to do, no error
    assert cli.main(["embedding-index", "--model", model, "--dims", "8"]) == 0
    capsys.readouterr()
    assert cli.main(["embedding-index", "--model", model, "--dims", "4096"]) == 1
    assert "2000 dimensions" in json.loads(capsys.readouterr().err)["error"]


def test_wiring_builds_one_memory_service_on_the_stacks_database(database: Database) -> None:
    from companion_memory import wiring

    # Given the stack's environment, When the composition root builds the service twice
    built = wiring.memory_service()
    assert built is wiring.memory_service()
    # Then it reads through the stack's database (listing embeds nothing, so no model is loaded)
    companion = new_companion(database)
    assert built.list(scope(companion), ListFilter()).items == []


def test_the_hash_join_setting_ends_with_its_statement(database: Database, service: MemoryService) -> None:
    # Given a user with memories, When the store ranks candidates inside a transaction
    companion = new_companion(database)
    service.store(scope(companion), NewMemory(content="tea at dawn"))
    store = PostgresMemoryStore(database)
    with store.unit(scope(companion)) as unit:
        from companion_memory.ports import CandidateQuery

        found = unit.candidates(
            "alice",
            CandidateQuery(
                model=EMBEDDER.model_id,
                vector=EMBEDDER.vector("tea"),
                terms=["tea"],
                criteria=MemoryCriteria(now=datetime.now(UTC)),
                k=5,
            ),
        )
        # Then later statements of the same transaction plan with nested loops again
        setting = one(unit._conn, "SELECT current_setting('enable_nestloop')")
    assert len(found) == 1
    assert setting == "on"
