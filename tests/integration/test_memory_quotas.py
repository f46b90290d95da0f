"""Storage quotas per companion user (issue 4 item 7) on the real PostgreSQL: the counters on companion_users
(migrations/0007) are exact under concurrent stores, agree with COUNT/SUM after every kind of change, and a
write over a quota is refused with nothing written."""

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from companion_memory.adapters.clock import SystemClock
from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_memory import PostgresMemoryStore
from companion_memory.domain.memory import MemoryService
from companion_memory.errors import QuotaExceeded
from companion_memory.models.memory import MemoryChanges, NewMemory
from companion_memory.models.tenancy import TenantScope
from tests.support.cipher import FakeCipher
from tests.support.clock import FakeClock
from tests.support.database import app_database
from tests.support.embedders import HashEmbedder

EMBEDDER = HashEmbedder(256)
# Contents far apart for the hash embedder, so no store is merged into another as a near-duplicate.
TOPICS = [
    "plays the bassoon on sundays",
    "allergic to shellfish since childhood",
    "moved from Porto to Helsinki",
    "collects vintage fountain pens",
    "runs an allotment with courgettes",
    "learning Icelandic grammar slowly",
    "volunteers at the cat shelter",
    "fears thunderstorms at night",
    "brews kombucha in the kitchen",
    "supports a third division football club",
    "repairs old mechanical watches",
    "dreams of sailing to Madeira",
]


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[Database]:
    with app_database(pool_size=8) as db:
        yield db


@pytest.fixture(scope="module")
def service(database: Database) -> MemoryService:
    return MemoryService(PostgresMemoryStore(database), EMBEDDER, SystemClock(), cipher=FakeCipher())


def new_companion(database: Database, isolation: str = "standard", **limits: int) -> UUID:
    owner, companion = uuid4(), uuid4()
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        conn.execute("INSERT INTO owners (id, name) VALUES (%s, 'org')", (owner,))
        conn.execute(
            "INSERT INTO companions (id, owner_id, name, isolation_level, config) "
            "VALUES (%s, %s, 'c', %s, %s)",
            (companion, owner, isolation, json.dumps({"limits": limits})),
        )
    return companion


def scope(companion: UUID, user: str = "alice") -> TenantScope:
    return TenantScope(companion_id=companion, user_id=user)


def counters(database: Database, companion: UUID, user: str = "alice") -> dict[str, int]:
    """The kept counters and the truth they stand for (COUNT and SUM of the live memories)."""
    with database.transaction(scope(companion, user)) as conn:
        row = conn.execute(
            """
            SELECT cu.memory_count, cu.content_bytes,
                   (SELECT count(*) FROM memories m WHERE m.forgotten_at IS NULL),
                   (SELECT coalesce(sum(memory_stored_bytes(m.content, m.content_sealed)), 0)
                    FROM memories m WHERE m.forgotten_at IS NULL)
            FROM companion_users cu WHERE cu.companion_id = %s AND cu.user_id = %s
            """,
            (companion, user),
        ).fetchone()
    assert row is not None
    return {"memories": row[0], "bytes": row[1], "counted": row[2], "summed": row[3]}


def test_concurrent_stores_admit_exactly_the_memory_quota(database: Database, service: MemoryService) -> None:
    # Given a companion that lets a user keep 5 memories
    companion = new_companion(database, max_memories_per_user=5)
    barrier = threading.Barrier(len(TOPICS))
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(content: str) -> None:
        barrier.wait()
        try:
            service.store(scope(companion), NewMemory(content=f"Alice {content}"))
            outcome = "stored"
        except QuotaExceeded as refused:
            outcome = f"refused ({refused.details['quota']})"
        with lock:
            outcomes.append(outcome)

    # When 12 stores of different memories race
    threads = [threading.Thread(target=attempt, args=(topic,)) for topic in TOPICS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly 5 are stored, the rest refused, and the counters agree with COUNT
    assert sorted(outcomes) == ["refused (max_memories_per_user)"] * 7 + ["stored"] * 5
    usage = counters(database, companion)
    assert usage["memories"] == usage["counted"] == 5
    assert usage["bytes"] == usage["summed"]


def test_a_store_over_the_byte_quota_writes_nothing(database: Database, service: MemoryService) -> None:
    # Given 40 bytes allowed and 30 used
    companion = new_companion(database, max_content_bytes_per_user=40)
    service.store(scope(companion), NewMemory(content="x" * 30))
    # When 11 more bytes are stored (a multi-byte character counts as its UTF-8 octets)
    with pytest.raises(QuotaExceeded) as refused:
        service.store(scope(companion), NewMemory(content="Zoë likes é"))
    # Then it is refused with the quota named, and nothing of it is written
    assert refused.value.details == {"quota": "max_content_bytes_per_user", "limit": 40}
    assert refused.value.status == 429
    usage = counters(database, companion)
    assert (usage["memories"], usage["bytes"], usage["counted"]) == (1, 30, 1)
    # And 10 more bytes still fit exactly
    service.store(scope(companion), NewMemory(content="0123456789"))
    assert counters(database, companion)["bytes"] == 40


def test_a_batch_that_would_pass_the_quota_is_refused_whole(
    database: Database, service: MemoryService
) -> None:
    companion = new_companion(database, max_memories_per_user=3)
    service.store(scope(companion), NewMemory(content=f"Alice {TOPICS[0]}"))
    with pytest.raises(QuotaExceeded):
        service.store_many(scope(companion), [NewMemory(content=f"Alice {t}") for t in TOPICS[1:4]])
    assert counters(database, companion)["counted"] == 1


def test_reinforcing_a_duplicate_does_not_count_twice(database: Database, service: MemoryService) -> None:
    # Given a user at one memory of a quota of one
    companion = new_companion(database, max_memories_per_user=1)
    first = service.store(scope(companion), NewMemory(content="Alice loves green tea"))
    # When the same memory is stored again
    again = service.store(scope(companion), NewMemory(content="Alice loves green tea"))
    # Then it reinforces the first, is admitted, and the counters do not move
    assert (again.outcome, again.duplicate_of) == ("reinforced", first.memory.id)
    usage = counters(database, companion)
    assert (usage["memories"], usage["bytes"]) == (1, len(b"Alice loves green tea"))


def test_forget_frees_quota_at_once_and_restore_takes_it_again(
    database: Database, service: MemoryService
) -> None:
    # Given a user at a quota of two memories
    companion = new_companion(database, max_memories_per_user=2)
    tea = service.store(scope(companion), NewMemory(content=f"Alice {TOPICS[0]}")).memory
    service.store(scope(companion), NewMemory(content=f"Alice {TOPICS[1]}"))
    # When one is forgotten, a new one fits
    service.forget(scope(companion), tea.id, tea.version)
    service.store(scope(companion), NewMemory(content=f"Alice {TOPICS[2]}"))
    # Then restoring the forgotten one would pass the quota: refused, still forgotten
    with pytest.raises(QuotaExceeded):
        service.restore(scope(companion), tea.id, tea.version + 1)
    usage = counters(database, companion)
    assert usage["memories"] == usage["counted"] == 2
    assert usage["bytes"] == usage["summed"]


def test_an_update_that_grows_content_past_the_quota_is_refused(
    database: Database, service: MemoryService
) -> None:
    companion = new_companion(database, max_content_bytes_per_user=50)
    memory = service.store(scope(companion), NewMemory(content="Alice lives in Lyon")).memory
    with pytest.raises(QuotaExceeded):
        service.update(scope(companion), memory.id, MemoryChanges(expected_version=1, content="L" * 51))
    shrunk = service.update(scope(companion), memory.id, MemoryChanges(expected_version=1, content="Lyon"))
    assert service.get(scope(companion), memory.id).version == shrunk.version == 2
    usage = counters(database, companion)
    assert (usage["bytes"], usage["summed"]) == (4, 4)


def test_counters_agree_with_count_after_every_kind_of_change(
    database: Database, service: MemoryService
) -> None:
    # Given a strict companion (sealed content counts as its envelope) and every change the service makes
    companion = new_companion(database, "strict")
    clock = FakeClock(datetime.now(UTC) - timedelta(days=40))
    aged = MemoryService(PostgresMemoryStore(database), EMBEDDER, clock, cipher=FakeCipher())
    stored = [aged.store(scope(companion), NewMemory(content=f"Alice {t}")).memory for t in TOPICS[:6]]
    aged.store(scope(companion), NewMemory(content=f"Alice {TOPICS[0]}"))  # reinforced
    aged.update(scope(companion), stored[1].id, MemoryChanges(expected_version=1, content="Alice left"))
    aged.forget(scope(companion), stored[2].id, 1)
    aged.forget(scope(companion), stored[3].id, 1)
    aged.restore(scope(companion), stored[3].id, 2)
    clock.advance(timedelta(days=40))
    # When the forgotten memory is purged after its grace period
    assert aged.purge_forgotten(datetime.now(UTC)) >= 1
    # Then the kept counters are exactly the COUNT and SUM of the live memories
    usage = counters(database, companion)
    assert usage["memories"] == usage["counted"] == 5
    assert usage["bytes"] == usage["summed"] > 0


def test_reconciliation_corrects_drifted_counters_in_its_scope_only(
    database: Database, service: MemoryService
) -> None:
    # Given two users whose counters drifted (as a bug or a manual edit would leave them)
    companion = new_companion(database)
    for user in ("alice", "bob"):
        service.store(scope(companion, user), NewMemory(content=f"{user} {TOPICS[4]}"))
        with database.transaction(scope(companion, user)) as conn:
            conn.execute("UPDATE companion_users SET memory_count = 99, content_bytes = 0")
    # When alice's scope reconciles
    with database.transaction(scope(companion)) as conn:
        row: Any = conn.execute("SELECT reconcile_memory_usage()").fetchone()
    # Then alice's counters are the truth again, and bob's (another scope) are untouched
    assert row[0] == 1
    alice, bob = counters(database, companion), counters(database, companion, "bob")
    assert (alice["memories"], alice["bytes"]) == (alice["counted"], alice["summed"])
    assert bob["memories"] == 99
