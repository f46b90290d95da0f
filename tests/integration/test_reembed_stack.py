"""Re-embedding on the real local PostgreSQL + pgvector: memories stored by the app role with model A get
vectors of model B through the owner's ``companion_reembed`` role, recall with B finds them by vector at
once, concurrent runs share the work without a duplicate or an error, and the new role widens nothing
for the app."""

import json
import os
import threading
from collections.abc import Iterator
from typing import Any, LiteralString
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import errors

from companion_memory import cli
from companion_memory.adapters.clock import SystemClock
from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_memory import PostgresMemoryStore
from companion_memory.adapters.postgres_reembed import PostgresReembedStore
from companion_memory.domain.memory import MemoryService
from companion_memory.domain.reembed import Reembedder, ReembedReport
from companion_memory.models.memory import MemoryChanges, NewMemory, RecallQuery
from companion_memory.models.tenancy import ALL_USERS, TenantScope
from tests.support.cipher import FakeCipher
from tests.support.database import app_database
from tests.support.embedders import HashEmbedder

OLD = HashEmbedder(16, model_id="test:reembed-a:16")
NEW = HashEmbedder(24, model_id="test:reembed-b:24")
TEXTS = [
    "drinks green tea every morning",
    "has a sister called Maria who lives in Porto",
    "is learning to play the cello",
    "works night shifts at the city hospital",
    "went to a jazz concert last friday",
]


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[Database]:
    with app_database(pool_size=4) as db:
        yield db


@pytest.fixture(scope="module")
def owner_url(stack: object) -> str:
    return os.environ["DATABASE_OWNER_URL"]


def new_companion(database: Database, isolation: str = "standard") -> UUID:
    owner, companion = uuid4(), uuid4()
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        conn.execute("INSERT INTO owners (id, name) VALUES (%s, 'org')", (owner,))
        conn.execute(
            "INSERT INTO companions (id, owner_id, name, isolation_level) VALUES (%s, %s, 'c', %s)",
            (companion, owner, isolation),
        )
    return companion


def seed(database: Database, companion: UUID, texts: list[str], user: str = "alice") -> list[UUID]:
    service = MemoryService(PostgresMemoryStore(database), OLD, SystemClock(), cipher=FakeCipher())
    scope = TenantScope(companion_id=companion, user_id=user)
    return [r.memory.id for r in service.store_many(scope, [NewMemory(content=t) for t in texts])]


def reembed(owner_url: str, companion: UUID, **run: Any) -> ReembedReport:
    reembedder = Reembedder(PostgresReembedStore(owner_url), NEW, SystemClock(), companion_id=companion)
    return reembedder.run(**run)


def models_of(database: Database, companion: UUID) -> list[tuple[str, int]]:
    """(model, number of vectors) of the companion's memories, read as the app role."""
    with database.transaction(TenantScope(companion_id=companion, user_id=ALL_USERS)) as conn:
        rows = conn.execute(
            "SELECT model, count(*) FROM memory_embeddings GROUP BY model ORDER BY model"
        ).fetchall()
    return [(str(model), int(count)) for model, count in rows]


def test_memories_stored_with_one_model_gain_the_other_models_vectors_beside_the_old_ones(
    database: Database, owner_url: str
) -> None:
    # Given memories stored with model A by two users (one forgotten)
    companion = new_companion(database)
    ids = seed(database, companion, TEXTS) + seed(database, companion, ["likes hiking"], user="bob")
    service = MemoryService(PostgresMemoryStore(database), OLD, SystemClock())
    service.forget(TenantScope(companion_id=companion, user_id="bob"), ids[-1], expected_version=1)
    # When re-embedded with model B
    report = reembed(owner_url, companion, batch_size=2)
    # Then every memory has a vector of each model, and the tenant columns of the new rows are its memory's
    assert (report.embedded, report.batches, report.remaining) == (6, 3, 0)
    assert models_of(database, companion) == [(OLD.model_id, 6), (NEW.model_id, 6)]
    with database.transaction(TenantScope(companion_id=companion, user_id="bob")) as conn:
        row = conn.execute(
            "SELECT vector_dims(embedding) FROM memory_embeddings WHERE memory_id = %s AND model = %s",
            (ids[-1], NEW.model_id),
        ).fetchone()
    assert row == (24,)


def test_recall_with_the_new_model_finds_re_embedded_memories_by_vector(
    database: Database, owner_url: str
) -> None:
    # Given memories stored while the service used model A, re-embedded with model B
    companion = new_companion(database)
    ids = seed(database, companion, TEXTS)
    reembed(owner_url, companion)
    # When the service is switched to model B (a deploy with the new EMBEDDING_PROVIDER) and recalls
    switched = MemoryService(PostgresMemoryStore(database), NEW, SystemClock())
    result = switched.recall(
        TenantScope(companion_id=companion, user_id="alice"), RecallQuery(query="cello lessons", limit=5)
    )
    # Then every memory is a vector candidate at once: no downtime of vector recall after the switch
    assert result.memories[0].id == ids[2]
    assert result.memories[0].score_parts.vector > 0
    assert len(result.memories) == len(TEXTS)


def test_a_second_run_finds_nothing_and_a_dry_run_counts_without_writing(
    database: Database, owner_url: str
) -> None:
    companion = new_companion(database)
    seed(database, companion, TEXTS)
    store = PostgresReembedStore(owner_url)
    dry = Reembedder(store, NEW, SystemClock(), companion_id=companion).count()
    assert (dry.dry_run, dry.remaining) == (True, 5)
    assert models_of(database, companion) == [(OLD.model_id, 5)]
    reembed(owner_url, companion)
    again = reembed(owner_url, companion)
    assert (again.embedded, again.batches, again.remaining) == (0, 0, 0)


def test_sealed_memories_without_a_cipher_are_skipped_and_with_one_are_embedded(
    database: Database, owner_url: str
) -> None:
    companion = new_companion(database, isolation="strict")
    seed(database, companion, TEXTS[:2])
    skipped = reembed(owner_url, companion)
    assert (skipped.skipped_sealed, skipped.remaining, skipped.remaining_sealed) == (2, 2, 2)
    reembedder = Reembedder(
        PostgresReembedStore(owner_url), NEW, SystemClock(), cipher=FakeCipher(), companion_id=companion
    )
    done = reembedder.run()
    assert (done.embedded, done.remaining) == (2, 0)


def test_two_concurrent_runs_share_the_work_without_duplicates_or_errors(
    database: Database, owner_url: str
) -> None:
    # Given about 60 memories and two runs started together in two threads
    companion = new_companion(database)
    # (near-duplicates among them are merged at store time: count the memories actually stored)
    count = len(set(seed(database, companion, [f"memory number {n} about topic {n % 7}" for n in range(60)])))
    reports: list[ReembedReport] = []
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            reports.append(reembed(owner_url, companion, batch_size=5))
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # Then neither failed, no memory was embedded by both (an insert would have met the other's row),
    # and every memory has exactly one vector of model B
    assert failures == []
    assert sum(r.embedded for r in reports) == count
    assert [r.changed_meanwhile for r in reports] == [0, 0]
    assert models_of(database, companion) == [(OLD.model_id, count), (NEW.model_id, count)]


def test_an_edit_committed_during_a_batch_leaves_no_stale_vector(database: Database, owner_url: str) -> None:
    # Given a memory edited (new content, still model A) after the run read it and before it inserted
    companion = new_companion(database)
    memory_id = seed(database, companion, ["plays the violin"])[0]
    scope = TenantScope(companion_id=companion, user_id="alice")
    service = MemoryService(PostgresMemoryStore(database), OLD, SystemClock())

    class EditingEmbedder(HashEmbedder):
        def embed_documents(self, texts: Any) -> list[list[float]]:
            if texts == ["plays the violin"]:
                service.update(scope, memory_id, MemoryChanges(expected_version=1, content="plays the viola"))
            return super().embed_documents(texts)

    embedder = EditingEmbedder(24, model_id=NEW.model_id)
    report = Reembedder(
        PostgresReembedStore(owner_url), embedder, SystemClock(), companion_id=companion
    ).run()
    # Then the old text's vector was not written; the next run embeds the new text
    assert (report.embedded, report.changed_meanwhile, report.remaining) == (0, 1, 1)
    reembed(owner_url, companion)
    with database.transaction(scope) as conn:
        row = conn.execute(
            "SELECT embedding::text FROM memory_embeddings WHERE memory_id = %s AND model = %s",
            (memory_id, NEW.model_id),
        ).fetchone()
    assert row is not None
    assert [float(x) for x in row[0].strip("[]").split(",")] == pytest.approx(NEW.vector("plays the viola"))


# --- the reembed role widens nothing ------------------------------------------------------------------------


def one(conn: psycopg.Connection[Any], query: LiteralString, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_the_app_role_still_sees_only_its_tenant_and_cannot_take_the_reembed_role(
    database: Database, owner_url: str
) -> None:
    # Given two companions' memories, both re-embedded (so the reembed policies have rows to widen)
    mine, theirs = new_companion(database), new_companion(database)
    seed(database, mine, TEXTS[:1])
    seed(database, theirs, TEXTS[:2])
    reembed(owner_url, mine)
    reembed(owner_url, theirs)
    # When the app role reads without context, then in its own scope
    with database.transaction() as conn:
        assert one(conn, "SELECT count(*) FROM memories") == 0
        assert one(conn, "SELECT count(*) FROM memory_embeddings") == 0
    with database.transaction(TenantScope(companion_id=mine, user_id=ALL_USERS)) as conn:
        assert one(conn, "SELECT count(DISTINCT companion_id) FROM memories") == 1
        assert one(conn, "SELECT count(*) FROM memory_embeddings WHERE companion_id = %s", (theirs,)) == 0
    # And it cannot switch to the reembed role
    with pytest.raises(errors.InsufficientPrivilege), database.transaction() as conn:
        conn.execute("SET LOCAL ROLE companion_reembed")


def test_the_reembed_role_can_neither_change_nor_delete_nor_read_beyond_what_embedding_needs(
    database: Database, owner_url: str
) -> None:
    companion = new_companion(database)
    memory_id = seed(database, companion, TEXTS[:1])[0]
    attempts: list[LiteralString] = [
        "UPDATE memories SET version = version + 1",  # the lock-only UPDATE policy refuses every new row
        "DELETE FROM memories",
        "DELETE FROM memory_embeddings",
        "UPDATE memory_embeddings SET model = 'x'",
        "SELECT metadata FROM memories",
        "SELECT embedding FROM memory_embeddings",
        "INSERT INTO memories (id, companion_id, user_id, type, content, importance, occurred_at, created_at,"
        " updated_at) VALUES (gen_random_uuid(), %(companion)s, 'x', 'fact', 'x', 1, now(), now(), now())",
        # a vector whose tenant columns are not its memory's
        "INSERT INTO memory_embeddings (memory_id, companion_id, user_id, model, embedding)"
        " VALUES (%(memory)s, gen_random_uuid(), 'mallory', 'x', '[1,2]')",
    ]
    refused = []
    for attempt in attempts:
        with psycopg.connect(owner_url, autocommit=True) as conn:
            try:
                with conn.transaction():
                    conn.execute("SET LOCAL ROLE companion_reembed")
                    conn.execute(attempt, {"companion": companion, "memory": memory_id})
            except errors.InsufficientPrivilege:
                refused.append(attempt)
    assert refused == attempts


def test_the_owner_gains_no_read_from_the_reembed_role_without_switching_to_it(
    database: Database, owner_url: str
) -> None:
    # Given a live memory (SECURITY DEFINER functions run as the owner, never as the reembed role)
    companion = new_companion(database)
    seed(database, companion, TEXTS[:1])
    with psycopg.connect(owner_url, autocommit=True) as conn, conn.transaction():
        # Then the owner sees only what its own policies give it (forgotten rows past their grace)
        assert one(conn, "SELECT count(*) FROM memories WHERE companion_id = %s", (companion,)) == 0
        assert one(conn, "SELECT pg_has_role(current_user, 'companion_reembed', 'USAGE')") is False
        assert one(conn, "SELECT pg_has_role(current_user, 'companion_reembed', 'SET')") is True


# --- the CLI ------------------------------------------------------------------------------------------------


def test_the_cli_dry_run_prints_the_pending_count_as_json(
    database: Database, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    companion = new_companion(database)
    seed(database, companion, TEXTS)
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "24")
    code = cli.main(["reembed", "--provider", "hash", "--dry-run", "--companion", str(companion)])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    assert (report["dry_run"], report["remaining"], report["embedded"]) == (True, 5, 0)
    assert report["model"] == "hash:words-1-2:24"


def test_the_cli_embeds_with_the_named_provider_and_reports_what_is_left(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    companion = new_companion(database)
    seed(database, companion, TEXTS)
    args = ["reembed", "--provider", "hash", "--dims", "32", "--batch", "2", "--companion", str(companion)]
    assert cli.main([*args, "--max-batches", "1"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["embedded"], first["remaining"], first["skipped_sealed"]) == (2, 3, 0)
    assert cli.main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["embedded"], second["remaining"]) == (3, 0)
    assert models_of(database, companion) == [("hash:words-1-2:32", 5), (OLD.model_id, 5)]
