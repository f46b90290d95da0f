"""Memory upkeep on the real PostgreSQL: on any seeded dataset it expires, decays, archives and consolidates
exactly what the companion's retention says and nothing else (a property test against an independent
model of the rules), a second run finds nothing left to do, and per-user caps (count and bytes) forget the
least valuable; the companion directory the schedules share tells ids and statuses only."""

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from companion_memory.adapters import aws
from companion_memory.adapters.dynamodb_sessions import DynamoDbSessionStore
from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_directory import PostgresCompanionDirectory
from companion_memory.adapters.postgres_upkeep import PostgresSessionLedger, PostgresUpkeepStore
from companion_memory.config import AwsSettings
from companion_memory.domain.upkeep import UpkeepPolicy, UpkeepService
from companion_memory.models.memory import MemoryType
from companion_memory.models.schedule import ScheduledCompanion
from companion_memory.models.tenancy import ALL_USERS, TenantScope
from companion_memory.models.upkeep import UpkeepSummary
from tests.support.clock import FakeClock
from tests.support.database import app_database
from tests.support.upkeep import new_companion

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
MODEL = "test:upkeep:8"
DIMS = 8
DAY = timedelta(days=1)
TYPES: tuple[MemoryType, ...] = ("fact", "preference", "experience", "instruction", "reflection")


class OnlyCompanions:
    """The real companion directory, walking only the given companions (the stack's database holds other
    tests')."""

    def __init__(self, directory: PostgresCompanionDirectory, ids: Sequence[UUID]) -> None:
        self._directory = directory
        self._ids = set(ids)

    def page(self, after: UUID | None, limit: int) -> list[UUID]:
        found: list[UUID] = []
        while len(found) < limit:
            page = self._directory.page(after, 1000)
            found.extend(c for c in page if c in self._ids)
            if len(page) < 1000:
                break
            after = page[-1]
        return found[:limit]

    def load(self, companion_id: UUID) -> ScheduledCompanion | None:
        return self._directory.load(companion_id)

    def deleted_with_data(self, after: UUID | None, limit: int) -> list[UUID]:
        found: list[UUID] = []
        while True:
            page = self._directory.deleted_with_data(after, 1000)
            found.extend(c for c in page if c in self._ids)
            if len(page) < 1000:
                return found[:limit]
            after = page[-1]


class OwnCursor:
    """The real upkeep store with the walk's cursor kept here, so tests never move the stack's own."""

    def __init__(self, store: PostgresUpkeepStore) -> None:
        self._store = store
        self.cursors: dict[str, UUID | None] = {}

    def cursor(self, job: str) -> UUID | None:
        return self.cursors.get(job)

    def save_cursor(self, job: str, after: UUID | None) -> None:
        self.cursors[job] = after

    def unit(self, companion_id: UUID) -> Any:
        return self._store.unit(companion_id)

    def purge_forgotten(self, cutoff: datetime, max_rows: int) -> int:
        return self._store.purge_forgotten(cutoff, max_rows)


def walker(database: Database, companions: Sequence[UUID]) -> tuple[OwnCursor, OnlyCompanions]:
    return OwnCursor(PostgresUpkeepStore(database)), OnlyCompanions(
        PostgresCompanionDirectory(database), companions
    )


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[Database]:
    with app_database(pool_size=4) as db:
        yield db


@pytest.fixture(scope="module")
def sessions(stack: object) -> DynamoDbSessionStore:
    settings = AwsSettings()
    return DynamoDbSessionStore(aws.client("dynamodb", settings), settings.sessions_table)


def upkeep(database: Database, sessions: DynamoDbSessionStore, companions: Sequence[UUID]) -> UpkeepService:
    return UpkeepService(
        *walker(database, companions),
        sessions,
        PostgresSessionLedger(database),
        FakeClock(NOW),
        UpkeepPolicy(reserve_s=0),
    )


def plenty() -> float:
    return 1e9


# --- seeding ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    user: str
    type: MemoryType
    importance: float
    created_days_ago: float
    accessed_days_ago: float | None
    occurred_extra_days: float
    expires: str  # none | past | future
    state: str  # live | archived | forgotten
    topic: int | None  # None: no vector
    variant: int
    reinforcement: int


def vector(topic: int, variant: int) -> list[float]:
    """Topic t is axis t; a variant leans 0.1 towards another axis: same topic ~0.99 similar, others ~0.1."""
    v = np.zeros(DIMS)
    v[topic] = 1.0
    if variant:
        v[(topic + variant) % DIMS] += 0.1
    return [float(x) for x in v / np.linalg.norm(v)]


seeds = st.builds(
    Seed,
    user=st.sampled_from(["ann", "bob"]),
    type=st.sampled_from(TYPES),
    importance=st.sampled_from([0.2, 0.6, 1.0, 2.0, 4.0, 8.0]),
    created_days_ago=st.sampled_from([0.0, 0.5, 1.0, 3.0, 30.0, 200.0]),
    accessed_days_ago=st.one_of(st.none(), st.sampled_from([0.0, 0.5, 2.0, 20.0])),
    occurred_extra_days=st.sampled_from([0.0, 10.0, 400.0]),
    expires=st.sampled_from(["none", "none", "past", "future"]),
    state=st.sampled_from(["live", "live", "live", "archived", "forgotten"]),
    topic=st.one_of(st.none(), st.integers(0, 3)),
    variant=st.integers(0, 2),
    reinforcement=st.integers(0, 3),
)


@dataclass(frozen=True)
class Retention:
    max_age_days: int | None
    decay_half_life_days: float
    archive_below_importance: float

    def config(self, cap: int = 10_000) -> dict[str, Any]:
        return {
            "retention": {
                "max_age_days": self.max_age_days,
                "decay_half_life_days": self.decay_half_life_days,
                "archive_below_importance": self.archive_below_importance,
                "consolidate_similarity": 0.95,
            },
            "limits": {"max_memories_per_user": cap},
        }


retentions = st.builds(
    Retention,
    max_age_days=st.sampled_from([None, 100, 365]),
    decay_half_life_days=st.sampled_from([30.0, 180.0]),
    archive_below_importance=st.sampled_from([0.5, 1.0]),
)


def seed(database: Database, companion: UUID, seeded: Sequence[Seed]) -> list[UUID]:
    ids = [uuid4() for _ in seeded]
    with database.transaction(TenantScope(companion_id=companion, user_id=ALL_USERS)) as conn:
        for memory_id, s in zip(ids, seeded, strict=True):
            created = NOW - s.created_days_ago * DAY
            accessed = None
            if s.accessed_days_ago is not None:
                accessed = NOW - min(s.accessed_days_ago, s.created_days_ago) * DAY
            expires = {"none": None, "past": NOW - timedelta(hours=1), "future": NOW + 10 * DAY}[s.expires]
            conn.execute(
                """
                INSERT INTO memories (id, companion_id, user_id, type, content, importance, occurred_at,
                    created_at, updated_at, accessed_at, reinforcement_count, expires_at, archived_at,
                    forgotten_at, purge_after, embedding_model)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                (
                    memory_id,
                    companion,
                    s.user,
                    s.type,
                    f"memory {memory_id}",
                    s.importance,
                    created - s.occurred_extra_days * DAY,
                    created,
                    created,
                    accessed,
                    s.reinforcement,
                    expires,
                    NOW - DAY if s.state == "archived" else None,
                    NOW - DAY if s.state == "forgotten" else None,
                    NOW + 29 * DAY if s.state == "forgotten" else None,
                    MODEL if s.topic is not None else None,
                ),
            )
            if s.topic is not None:
                conn.execute(
                    "INSERT INTO memory_embeddings (memory_id, companion_id, user_id, model, embedding) "
                    "VALUES (%s, %s, %s, %s, %s::vector)",
                    (memory_id, companion, s.user, MODEL, str(vector(s.topic, s.variant))),
                )
    return ids


def rows(database: Database, companion: UUID) -> dict[UUID, dict[str, Any]]:
    with database.transaction(TenantScope(companion_id=companion, user_id=ALL_USERS)) as conn:
        cur = conn.cursor(row_factory=dict_row)
        memories = {
            r["id"]: r for r in cur.execute("SELECT * FROM memories WHERE companion_id = %s", (companion,))
        }
        for r in memories.values():
            r["history"] = []
            r["links"] = []
        for h in cur.execute(
            "SELECT memory_id, change, actor FROM memory_history WHERE companion_id = %s", (companion,)
        ):
            memories[h["memory_id"]]["history"].append((h["change"], h["actor"]))
        for link in cur.execute(
            "SELECT source_id, target_id, type FROM memory_relations WHERE companion_id = %s", (companion,)
        ):
            memories[link["source_id"]]["links"].append((link["type"], link["target_id"]))
        return memories


# --- the model of the rules -------------------------------------------------------------------------------


def expected_importance(s: Seed, retention: Retention) -> float:
    """Decay of a live memory: halves per half-life since its last recall or creation, when that is a day
    or more ago; in float32 like the real column."""
    since = (
        s.created_days_ago if s.accessed_days_ago is None else min(s.accessed_days_ago, s.created_days_ago)
    )
    if s.type == "instruction" or since < 1:
        return s.importance
    factor = np.float32(0.5 ** (since / retention.decay_half_life_days))
    return float(np.float32(s.importance) * factor)


def expires(s: Seed, retention: Retention) -> bool:
    occurred_days_ago = s.created_days_ago + s.occurred_extra_days
    too_old = (
        retention.max_age_days is not None
        and s.type != "instruction"
        and occurred_days_ago >= retention.max_age_days
    )
    return s.state != "forgotten" and (s.expires == "past" or too_old)


def stored_importance(s: Seed, retention: Retention) -> float:
    """The model's importance after upkeep, as the real column holds it (float32)."""
    return float(np.float32(expected_importance(s, retention)))


def model_rank(memory_id: UUID, s: Seed, retention: Retention) -> tuple[float, int, float, str]:
    """Which of two duplicates is kept, by the rules: more important (after decay), more reinforced,
    older, then by id."""
    created = NOW - s.created_days_ago * DAY
    return (stored_importance(s, retention), s.reinforcement, -created.timestamp(), str(memory_id))


# Boundaries every run checks: importance exactly at the threshold (kept), a duplicate group whose best
# is not the first stored, a more important instruction as near as a duplicate (never consolidated with the
# facts: types differ), a memory exactly max_age old.
@example(
    seeded=[
        Seed("ann", "fact", 1.0, 0.0, None, 0.0, "none", "live", None, 0, 0),
        Seed("ann", "fact", 2.0, 3.0, None, 0.0, "none", "live", 2, 0, 0),
        Seed("ann", "fact", 4.0, 0.0, 0.0, 0.0, "future", "live", 2, 1, 1),
        Seed("ann", "fact", 4.0, 0.5, None, 0.0, "none", "live", 2, 2, 3),
        Seed("ann", "instruction", 9.0, 0.0, None, 0.0, "none", "live", 2, 1, 0),
        Seed("bob", "fact", 8.0, 1.0, None, 99.0, "none", "live", 2, 0, 0),
    ],
    retention=Retention(100, 30.0, 1.0),
)
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seeded=st.lists(seeds, min_size=1, max_size=14), retention=retentions)
def test_upkeep_changes_exactly_what_the_retention_rules_say_and_a_second_run_nothing(
    database: Database, sessions: DynamoDbSessionStore, seeded: list[Seed], retention: Retention
) -> None:
    # Given a companion with these retention rules and these memories
    companion = new_companion(database, retention.config())
    ids = seed(database, companion, seeded)
    before = rows(database, companion)

    # When upkeep runs
    service = upkeep(database, sessions, [companion])
    summary = service.run(plenty)
    after = rows(database, companion)

    # Then expiry: exactly the memories past their expiry or the age limit are forgotten, with history
    expired = {i for i, s in zip(ids, seeded, strict=True) if expires(s, retention)}
    for i in expired:
        assert after[i]["forgotten_at"] == NOW
        assert after[i]["purge_after"] == NOW + UpkeepPolicy().forget_grace
        assert after[i]["history"] == [("expired", "system:upkeep")]
        assert after[i]["version"] == 2

    # decay: every memory live after expiry, not archived, has its decayed importance; the rest kept theirs
    live = {i for i, s in zip(ids, seeded, strict=True) if s.state == "live" and i not in expired}
    for i, s in zip(ids, seeded, strict=True):
        want = expected_importance(s, retention) if i in live else s.importance
        assert math.isclose(after[i]["importance"], want, rel_tol=1e-5), (s, after[i]["importance"], want)

    # archive: exactly the live ones (not instructions) whose decayed importance (by the model, not as
    # read back) is below the threshold
    seed_of = dict(zip(ids, seeded, strict=True))
    unimportant = {
        i
        for i in live
        if seed_of[i].type != "instruction"
        and stored_importance(seed_of[i], retention) < retention.archive_below_importance
    }
    for i in unimportant:
        assert after[i]["archived_at"] == NOW
        assert after[i]["history"] == [("archived", "system:upkeep")]

    # consolidation: among what is still live, each user's memories of one type and one topic (vectors
    # of one topic are near-duplicates, of two topics far apart) keep only the best by the model's rank;
    # an instruction is never folded into a fact
    candidates = [i for i in live - unimportant if seed_of[i].topic is not None]
    groups: dict[tuple[str, str, int], list[UUID]] = {}
    for i in candidates:
        s = seed_of[i]
        assert s.topic is not None
        groups.setdefault((s.user, s.type, s.topic), []).append(i)
    consolidated: set[UUID] = set()
    for members in groups.values():
        keeper = max(members, key=lambda i: model_rank(i, seed_of[i], retention))
        assert after[keeper]["archived_at"] is None
        assert after[keeper]["history"] == []
        for i in members:
            if i == keeper:
                continue
            consolidated.add(i)
            assert after[i]["archived_at"] == NOW
            assert after[i]["history"] == [("consolidated", "system:upkeep")]
            [(kind, target)] = after[i]["links"]
            assert kind == "consolidated_into"
            assert target in members
            assert model_rank(target, seed_of[target], retention) > model_rank(i, seed_of[i], retention)

    # and nothing else changed at all
    untouched = set(ids) - expired - unimportant - consolidated
    for i in untouched:
        assert after[i]["history"] == []
        assert after[i]["links"] == []
        for column in ("forgotten_at", "archived_at", "version", "expires_at", "content"):
            assert after[i][column] == before[i][column]
    assert summary.memories_expired == len(expired)
    assert summary.memories_archived == len(unimportant)
    assert summary.memories_consolidated == len(consolidated)
    assert summary.memories_decayed == sum(1 for i in live if after[i]["decayed_at"] == NOW)

    # When it runs again at the same instant, it finds nothing to do
    again = upkeep(database, sessions, [companion]).run(plenty)
    assert again.model_dump(exclude={"memories_purged"}) == UpkeepSummary(
        companions_visited=1, completed=True
    ).model_dump(exclude={"memories_purged"})
    assert rows(database, companion) == after


def test_a_user_over_the_cap_loses_the_least_valuable_archived_first_instructions_last(
    database: Database, sessions: DynamoDbSessionStore
) -> None:
    # Given a cap of 3 and a user holding 6: an archived one, an instruction and four others
    companion = new_companion(database, Retention(None, 180.0, 0.0).config(cap=3))
    seeded = [
        Seed("ann", "instruction", 0.2, 0.0, None, 0.0, "none", "live", None, 0, 0),
        Seed("ann", "fact", 9.0, 0.0, None, 0.0, "none", "archived", None, 0, 0),
        Seed("ann", "fact", 1.0, 0.0, None, 0.0, "none", "live", None, 0, 0),
        Seed("ann", "fact", 1.0, 0.0, None, 0.0, "none", "live", None, 0, 2),
        Seed("ann", "fact", 5.0, 0.0, None, 0.0, "none", "live", None, 0, 0),
        Seed("ann", "fact", 7.0, 0.0, None, 0.0, "none", "live", None, 0, 0),
        Seed("bob", "fact", 1.0, 0.0, None, 0.0, "none", "live", None, 0, 0),
    ]
    ids = seed(database, companion, seeded)

    # When upkeep runs
    summary = upkeep(database, sessions, [companion]).run(plenty)

    # Then ann's three least valuable are forgotten: the archived one, then the less reinforced of the two
    # at importance 1, then the other; her instruction and best facts stay; bob (under the cap) is untouched
    after = rows(database, companion)
    forgotten = {i for i in ids if after[i]["forgotten_at"] is not None}
    assert forgotten == {ids[1], ids[2], ids[3]}
    assert all(after[i]["history"] == [("expired", "system:upkeep")] for i in forgotten)
    assert summary.memories_over_cap == 3


def test_a_user_over_the_byte_cap_loses_the_least_valuable_until_under_it(
    database: Database, sessions: DynamoDbSessionStore
) -> None:
    # Given a byte cap of 100 and a user holding four memories of 43 bytes each (172 bytes), well under
    # the count cap; another user holds one
    config = Retention(None, 180.0, 0.0).config()
    config["limits"]["max_content_bytes_per_user"] = 100
    companion = new_companion(database, config)
    seeded = [
        Seed("ann", "fact", 1.0, 0.0, None, 0.0, "none", "live", None, 0, 0),
        Seed("ann", "fact", 2.0, 0.0, None, 0.0, "none", "live", None, 0, 0),
        Seed("ann", "fact", 3.0, 0.0, None, 0.0, "none", "live", None, 0, 0),
        Seed("ann", "fact", 4.0, 0.0, None, 0.0, "none", "live", None, 0, 0),
        Seed("bob", "fact", 1.0, 0.0, None, 0.0, "none", "live", None, 0, 0),
    ]
    ids = seed(database, companion, seeded)
    size = len(f"memory {ids[0]}".encode())
    assert size == 43

    # When upkeep runs
    summary = upkeep(database, sessions, [companion]).run(plenty)

    # Then ann's two least important are forgotten (172 - 86 = 86 bytes, under 100), the rest stay
    after = rows(database, companion)
    forgotten = {i for i in ids if after[i]["forgotten_at"] is not None}
    assert forgotten == {ids[0], ids[1]}
    assert summary.memories_over_cap == 2


# --- the companion directory the schedules share (migrations/0012) -----------------------------------------


def test_the_walk_across_tenants_tells_ids_and_statuses_only(database: Database) -> None:
    # Given companions of two tenants / When the app role pages through scheduled_companions
    new_companion(database, {"personality": {"name": "secret persona"}})
    with database.transaction() as conn:
        cursor = conn.execute("SELECT * FROM scheduled_companions(NULL, 5)")
        columns = [c.name for c in cursor.description or []]
        # and tries to read what the function's role may no longer read, through a table it cannot see
        configs = conn.execute("SELECT count(*) FROM companions").fetchone()

    # Then it learns ids and statuses, never an owner or a config
    assert columns == ["id", "status"]
    assert configs == (0,)


def test_a_companion_is_loaded_in_its_own_context_only(database: Database) -> None:
    # Given two companions of different owners
    mine = new_companion(database, {"limits": {"max_memories_per_user": 7}})
    other = new_companion(database)
    directory = PostgresCompanionDirectory(database)

    # When each is loaded, each read sees its own row (its owner, status and config)
    loaded = directory.load(mine)
    assert loaded is not None
    assert (loaded.status, loaded.config) == ("active", {"limits": {"max_memories_per_user": 7}})
    assert loaded.owner_id != (directory.load(other) or loaded).owner_id
    # and a forged id finds nothing
    assert directory.load(uuid4()) is None


def test_deleted_companions_are_listed_for_their_purge_only_while_they_hold_data(database: Database) -> None:
    # Given a deleted companion with a relationship row, a deleted one with nothing left, a live one
    leftover, clean, live = new_companion(database), new_companion(database), new_companion(database)
    seed(database, leftover, [Seed("ann", "fact", 1.0, 0.0, None, 0.0, "none", "live", None, 0, 0)])
    seed(database, live, [Seed("ann", "fact", 1.0, 0.0, None, 0.0, "none", "live", None, 0, 0)])
    for companion in (leftover, clean):
        with database.transaction(TenantScope(companion_id=companion)) as conn:
            row = conn.execute("SELECT owner_id FROM companions WHERE id = %s", (companion,)).fetchone()
        assert row is not None
        with database.transaction(TenantScope(owner_id=row[0])) as conn:
            conn.execute("UPDATE companions SET status = 'deleted' WHERE id = %s", (companion,))
    directory = PostgresCompanionDirectory(database)

    # When the cleanup asks which deleted companions still hold data
    pending: list[UUID] = []
    after: UUID | None = None
    while page := directory.deleted_with_data(after, 1000):
        pending += page
        after = page[-1]

    # Then only the deleted one with data is listed, and the walk of live companions skips both deleted
    assert leftover in pending
    assert clean not in pending
    assert live not in pending
    walked = OnlyCompanions(directory, [leftover, clean, live]).page(None, 10)
    assert walked == [live]
