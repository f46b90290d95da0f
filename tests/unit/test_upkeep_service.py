"""UpkeepService's walk: deadline, resumable cursor, companions another run holds, unreadable configs, a
companion that fails, pending purges of deleted companions, and how near-duplicate pairs are resolved (the
SQL itself runs in tests/integration/test_upkeep_memories.py)."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from companion_memory.domain.upkeep import UpkeepPolicy, UpkeepService
from companion_memory.errors import DependencyUnavailable
from companion_memory.models.erasure import Budget, StorePurge
from companion_memory.models.schedule import ScheduledCompanion
from companion_memory.models.upkeep import (
    UPKEEP_JOB,
    DedupeMemory,
    DuplicatePair,
    DuplicateScan,
    RetentionRules,
)
from companion_memory.ports import CompanionDirectory, TenantDataStore, UpkeepStore, UpkeepUnit
from tests.support.clock import FakeClock
from tests.unit.test_sessions_service import FakeSessionLedger, FakeSessionStore

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
OWNER = UUID("00000000-0000-4000-8000-0000000000ff")


def companion(n: int, config: dict[str, object] | None = None) -> ScheduledCompanion:
    return ScheduledCompanion(UUID(f"00000000-0000-4000-8000-{n:012d}"), OWNER, "active", config or {})


def memory(n: int, importance: float, reinforcement: int = 0) -> DedupeMemory:
    return DedupeMemory(UUID(f"10000000-0000-4000-8000-{n:012d}"), importance, reinforcement, NOW)


class FakeUnit:
    def __init__(self, scans: list[DuplicateScan] | None = None, fails: bool = False) -> None:
        self.scans = list(scans or [])
        self.fails = fails
        self.rules: RetentionRules | None = None
        self.consolidated: list[tuple[UUID, UUID]] = []  # (loser, keeper)
        self.compared: list[UUID] = []
        self.scan_limits: list[int] = []

    def expire(self, rules: RetentionRules, limit: int) -> int:
        if self.fails:
            # What the adapter raises for a statement timeout or any other PostgreSQL error of a step
            raise DependencyUnavailable("The database is unavailable")
        self.rules = rules
        return 1

    def decay(self, rules: RetentionRules, limit: int) -> int:
        return 2

    def archive_unimportant(self, rules: RetentionRules, limit: int) -> int:
        return 3

    def duplicates(self, rules: RetentionRules, limit: int) -> DuplicateScan:
        self.scan_limits.append(limit)
        return self.scans.pop(0) if self.scans else DuplicateScan(pairs=[], compared=[])

    def consolidate(self, rules: RetentionRules, pair: DuplicatePair, keeper: UUID) -> bool:
        loser = pair.second.id if keeper == pair.first.id else pair.first.id
        self.consolidated.append((loser, keeper))
        return True

    def mark_compared(self, rules: RetentionRules, memory_ids: list[UUID]) -> None:
        self.compared += memory_ids

    def enforce_caps(self, rules: RetentionRules, limit: int) -> int:
        return 0


class FakeDirectory:
    """Companions across tenants: ids on the walk, each one's row loaded alone."""

    def __init__(
        self, companions: list[ScheduledCompanion], leftovers: frozenset[UUID] = frozenset()
    ) -> None:
        self.all = sorted(companions, key=lambda c: c.id)
        self.leftovers = set(leftovers)  # deleted companions whose purge is pending

    def page(self, after: UUID | None, limit: int) -> list[UUID]:
        return [c.id for c in self.all if c.status != "deleted" and (after is None or c.id > after)][:limit]

    def load(self, companion_id: UUID) -> ScheduledCompanion | None:
        return next((c for c in self.all if c.id == companion_id), None)

    def deleted_with_data(self, after: UUID | None, limit: int) -> list[UUID]:
        return sorted(i for i in self.leftovers if after is None or i > after)[:limit]


class FakeUpkeepStore:
    def __init__(self, companions: list[ScheduledCompanion], locked: frozenset[UUID] = frozenset()) -> None:
        self.directory = FakeDirectory(companions)
        self.all = self.directory.all
        self.locked = locked
        self.cursors: dict[str, UUID | None] = {}
        self.saved: list[UUID | None] = []
        self.units: dict[UUID, FakeUnit] = {}
        self.visited: list[UUID] = []

    def cursor(self, job: str) -> UUID | None:
        return self.cursors.get(job)

    def save_cursor(self, job: str, after: UUID | None) -> None:
        self.cursors[job] = after
        self.saved.append(after)

    @contextmanager
    def unit(self, companion_id: UUID) -> Iterator[UpkeepUnit | None]:
        if companion_id in self.locked:
            yield None
            return
        self.visited.append(companion_id)
        yield self.units.setdefault(companion_id, FakeUnit())

    def purge_forgotten(self, cutoff: datetime, max_rows: int) -> int:
        return 7


class Countdown:
    """Seconds left, falling by one on each look: a deadline without a wall clock."""

    def __init__(self, start: float) -> None:
        self.left = start

    def __call__(self) -> float:
        self.left -= 1
        return self.left


def service(
    store: FakeUpkeepStore, policy: UpkeepPolicy | None = None, purges: list[TenantDataStore] | None = None
) -> UpkeepService:
    typed: UpkeepStore = store  # the fakes must keep to the ports
    directory: CompanionDirectory = store.directory
    return UpkeepService(
        typed,
        directory,
        FakeSessionStore(),
        FakeSessionLedger(),
        FakeClock(NOW),
        policy or UpkeepPolicy(reserve_s=0),
        purges=purges or [],
    )


def test_a_run_walks_every_companion_then_starts_over_next_time() -> None:
    store = FakeUpkeepStore([companion(n) for n in range(5)])

    summary = service(store, UpkeepPolicy(companions_per_page=2, reserve_s=0)).run(lambda: 1e9)

    assert summary.completed
    assert store.visited == [c.id for c in store.all]
    assert (summary.companions_visited, summary.memories_expired, summary.memories_purged) == (5, 5, 7)
    assert store.cursors[UPKEEP_JOB] is None


def test_a_run_stops_before_its_deadline_and_the_next_resumes_after_the_last_companion_done() -> None:
    # Given a deadline that leaves room for two companions (each look at the time costs a "second")
    store = FakeUpkeepStore([companion(n) for n in range(5)])
    policy = UpkeepPolicy(reserve_s=10)

    # When one run goes until the reserve, and the next has all the time it needs
    first = service(store, policy).run(Countdown(13))
    second = service(store, policy).run(lambda: 1e9)

    # Then the first stopped unfinished, saving where; the second did the rest and finished the walk
    assert not first.completed
    assert first.companions_visited == 2
    assert second.completed
    assert second.companions_visited == 3
    assert store.visited == [c.id for c in store.all]


def test_a_companion_another_run_holds_is_left_to_it() -> None:
    held = companion(1)
    store = FakeUpkeepStore([companion(0), held, companion(2)], locked=frozenset({held.id}))

    summary = service(store).run(lambda: 1e9)

    assert (summary.companions_visited, summary.companions_skipped) == (2, 1)
    assert held.id not in store.visited


def test_a_companion_whose_config_does_not_parse_gets_its_sessions_finalised_but_no_memory_upkeep() -> None:
    broken = companion(0, {"retention": {"decay_half_life_days": -1}})
    store = FakeUpkeepStore([broken])

    summary = service(store).run(lambda: 1e9)

    assert summary.companions_misconfigured == 1
    assert summary.memories_expired == 0
    assert store.units[broken.id].rules is None


def test_the_rules_come_from_the_companions_retention_and_limits() -> None:
    config = {
        "retention": {"max_age_days": 10, "decay_half_life_days": 5, "archive_below_importance": 2},
        "limits": {"max_memories_per_user": 50},
    }
    store = FakeUpkeepStore([companion(0, config)])

    service(store).run(lambda: 1e9)

    rules = store.units[companion(0).id].rules
    assert rules is not None
    assert rules.occurred_before == NOW - timedelta(days=10)
    assert rules.decay_half_life == timedelta(days=5)
    assert rules.archive_below_importance == 2
    assert rules.max_memories_per_user == 50
    assert rules.purge_after == NOW + timedelta(days=30)


@pytest.mark.parametrize("flipped", [False, True], ids=["as found", "reversed"])
def test_each_pair_keeps_the_more_valuable_and_an_archived_memory_is_never_kept_or_archived_again(
    flipped: bool,
) -> None:
    # Given a scan where a, b and c are duplicates: c most important, b and a tied but b more reinforced
    a, b, c = memory(1, 2.0), memory(2, 2.0, reinforcement=1), memory(3, 5.0)
    pairs = [
        DuplicatePair("ann", a, b, 0.99),
        DuplicatePair("ann", b, c, 0.98),
        DuplicatePair("ann", a, c, 0.97),
    ]
    if flipped:
        pairs = [DuplicatePair(p.user_id, p.second, p.first, p.similarity) for p in reversed(pairs)]
    unit = FakeUnit([DuplicateScan(pairs=pairs, compared=[a.id, b.id, c.id])])
    store = FakeUpkeepStore([companion(0)])
    store.units[companion(0).id] = unit

    # When upkeep resolves them
    summary = service(store).run(lambda: 1e9)

    # Then the most similar pair goes first (a into b), then b into c; a, already archived, is skipped
    assert unit.consolidated == [(a.id, b.id), (b.id, c.id)]
    assert summary.memories_consolidated == 2
    # and none of the paired candidates is marked compared: each is scanned again until it pairs no more
    assert unit.compared == []


def test_a_companion_whose_upkeep_fails_is_counted_and_passed_and_the_next_run_goes_on_after_it() -> None:
    # Given five companions, the second of which fails every time (a statement timeout, say), and a
    # deadline that leaves room for two companions
    store = FakeUpkeepStore([companion(n) for n in range(5)])
    poison = store.all[1].id
    store.units[poison] = FakeUnit(fails=True)
    policy = UpkeepPolicy(reserve_s=10)

    # When one run goes until its reserve, and the next has all the time it needs
    first = service(store, policy).run(Countdown(13))
    second = service(store, policy).run(lambda: 1e9)

    # Then the first did the first companion, counted the poison one failed and saved the cursor past it;
    # the second resumed after it and finished the walk
    assert (first.companions_visited, first.companions_failed) == (1, 1)
    assert store.saved[:2] == [store.all[0].id, poison]
    assert second.completed
    assert (second.companions_visited, second.companions_failed) == (3, 0)
    assert store.visited == [c.id for c in store.all]


def test_the_cursor_is_saved_after_every_companion_so_a_run_that_dies_resumes_there() -> None:
    # Given a run that dies (the Lambda is killed, say) inside its third companion
    store = FakeUpkeepStore([companion(n) for n in range(5)])
    dying = store.all[2].id

    class Killed(BaseException):
        pass

    class DyingUnit(FakeUnit):
        def expire(self, rules: RetentionRules, limit: int) -> int:
            raise Killed

    store.units[dying] = DyingUnit()

    # When it runs
    with pytest.raises(Killed):
        service(store).run(lambda: 1e9)

    # Then the cursor names the last companion finished: the next run starts with the one it died in
    assert store.cursors[UPKEEP_JOB] == store.all[1].id


def test_consolidation_scans_small_batches() -> None:
    # An exact nearest-neighbour search per candidate: batches stay small so one scan stays far below
    # the statement timeout for a user with ~10^4 vectors
    store = FakeUpkeepStore([companion(0)])
    candidates = [memory(n, 1.0).id for n in range(3)]
    unit = FakeUnit([DuplicateScan(pairs=[], compared=candidates)])
    store.units[companion(0).id] = unit

    service(store).run(lambda: 1e9)

    assert unit.scan_limits[0] == UpkeepPolicy().dedupe_batch == 50


class FakePurgingStore:
    """A tenant data store that needs ``calls`` calls to purge a companion (its budget runs out before)."""

    def __init__(self, name: str, calls: int = 1, fails: bool = False) -> None:
        self.name = name
        self.calls = calls
        self.fails = fails
        self.erased: list[tuple[UUID, UUID]] = []

    def erase_user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> dict[str, int]:
        raise AssertionError("the sweep erases companions, not users")

    def erase_companion(self, owner_id: UUID, companion_id: UUID, budget: Budget | None = None) -> StorePurge:
        if self.fails:
            raise DependencyUnavailable("down")
        assert budget is not None
        self.erased.append((owner_id, companion_id))
        finished = sum(1 for _, c in self.erased if c == companion_id) >= self.calls
        return StorePurge(removed={"items": 1}, finished=finished)


def test_the_walks_end_finishes_pending_purges_of_deleted_companions_in_every_store() -> None:
    # Given a live companion and two deleted ones whose purge is pending; PostgreSQL needs two calls for
    # the second (it runs out of budget once)
    gone_a = ScheduledCompanion(UUID("20000000-0000-4000-8000-000000000001"), OWNER, "deleted", {})
    gone_b = ScheduledCompanion(UUID("20000000-0000-4000-8000-000000000002"), OWNER, "deleted", {})
    store = FakeUpkeepStore([companion(0), gone_a, gone_b])
    store.directory.leftovers = {gone_a.id, gone_b.id}
    dynamodb = FakePurgingStore("dynamodb")

    class SlowPostgres(FakePurgingStore):
        def erase_companion(
            self, owner_id: UUID, companion_id: UUID, budget: Budget | None = None
        ) -> StorePurge:
            self.calls = 2 if companion_id == gone_b.id else 1
            return super().erase_companion(owner_id, companion_id, budget)

    postgres = SlowPostgres("postgres")

    # When a run walks the companions
    summary = service(store, purges=[dynamodb, postgres]).run(lambda: 1e9)

    # Then the deleted companions were not walked for upkeep, each store was asked to purge both, one is
    # done and one still pending (the next run resumes it)
    assert store.visited == [companion(0).id]
    assert dynamodb.erased == [(OWNER, gone_a.id), (OWNER, gone_b.id)]
    assert (summary.deleted_companions_purged, summary.deleted_companions_pending) == (1, 1)


def test_a_pending_purge_that_fails_is_left_for_the_next_run_and_does_not_stop_the_others() -> None:
    gone = ScheduledCompanion(UUID("20000000-0000-4000-8000-000000000001"), OWNER, "deleted", {})
    store = FakeUpkeepStore([gone])
    store.directory.leftovers = {gone.id}

    summary = service(store, purges=[FakePurgingStore("redis", fails=True)]).run(lambda: 1e9)

    assert summary.completed
    assert (summary.deleted_companions_purged, summary.deleted_companions_pending) == (0, 1)


def test_an_unexpected_error_type_is_not_swallowed() -> None:
    # Only the store errors (CompanionMemoryError) are a companion's failure; a bug stays loud
    store = FakeUpkeepStore([companion(0)])

    class Broken(FakeUnit):
        def decay(self, rules: RetentionRules, limit: int) -> int:
            raise ZeroDivisionError

    store.units[companion(0).id] = Broken()

    with pytest.raises(ZeroDivisionError):
        service(store).run(lambda: 1e9)
