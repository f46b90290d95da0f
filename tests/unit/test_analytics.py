"""AnalyticsService on a fake store: periods, zero-filled series, the health formula, who may read what, the
auto-pause schedule, and the activity MemoryAccess records. PostgreSQL runs in
tests/integration/test_analytics_store.py."""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from companion_memory.auth.principal import Principal
from companion_memory.domain.analytics import (
    AUTO_PAUSED,
    AnalyticsService,
    fill_series,
    health_score,
    period,
)
from companion_memory.domain.memory_access import MemoryAccess, Operation
from companion_memory.errors import DependencyUnavailable, Forbidden, NotFound, RateLimited, ValidationFailed
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
from tests.support.clock import FakeClock
from tests.support.identity import InMemoryIdentityStore, active_companion

NOW = datetime(2026, 1, 15, 12, 30, tzinfo=UTC)
OWNER, OTHER_OWNER = uuid4(), uuid4()
COMPANION = uuid4()
READ = frozenset({"memories:read"})


def owner(owner_id: UUID = OWNER) -> Principal:
    return Principal(kind="owner", owner_id=owner_id, scopes=frozenset({"admin"}))


def companion_key(companion_id: UUID = COMPANION, scopes: frozenset[str] = READ) -> Principal:
    return Principal(kind="companion", owner_id=OWNER, companion_id=companion_id, scopes=scopes)


def healthy_inputs(**changes: object) -> HealthInputs:
    """A month-old companion used steadily: 100 requests a day, nothing blocked, nothing near a limit."""
    inputs = HealthInputs(
        companion_created_at=NOW - timedelta(days=30),
        recent_interactions=100,
        baseline_interactions=700,
        baseline_active_days=7,
        writes_7d=200,
        deletes_7d=0,
        users=10,
        blocked_users=0,
        users_with_memories=10,
        users_near_storage_limit=0,
    )
    return replace(inputs, **changes)  # type: ignore[arg-type]


@dataclass
class FakeAnalyticsStore:
    """``ports.AnalyticsStore`` in memory; it keeps the adapter's conditional pause."""

    companions: dict[UUID, Companion] = field(default_factory=dict)
    inputs: dict[UUID, HealthInputs] = field(default_factory=dict)
    rows: SeriesRows = field(default_factory=lambda: SeriesRows([], {}, {}, {}, 0))
    users: list[UserEngagement] = field(default_factory=list)
    audit: list[AuditEvent] = field(default_factory=list)
    scopes: list[TenantScope] = field(default_factory=list)
    resumed: dict[UUID, datetime] = field(default_factory=dict)
    cursors: dict[str, UUID | None] = field(default_factory=dict)
    # The companions health was computed for, in order (what a run visited).
    visited: list[UUID] = field(default_factory=list)

    def companion(self, owner_id: UUID, companion_id: UUID) -> Companion | None:
        found = self.companions.get(companion_id)
        return found if found is not None and found.owner_id == owner_id else None

    def series(self, scope: TenantScope, start: datetime, end: datetime, bucket: Bucket) -> SeriesRows:
        self.scopes.append(scope)
        return self.rows

    def engagement(
        self, scope: TenantScope, start: datetime, end: datetime, limit: int
    ) -> list[UserEngagement]:
        self.scopes.append(scope)
        return self.users[:limit]

    def leaderboard(
        self, owner_id: UUID, start: datetime, end: datetime, limit: int
    ) -> list[CompanionActivity]:
        return [
            CompanionActivity(companion_id=c.id, name=c.name, status=c.status, interactions=0, active_users=0)
            for c in self.companions.values()
            if c.owner_id == owner_id
        ][:limit]

    def health_inputs(self, scope: TenantScope, now: datetime, limits: Limits) -> HealthInputs:
        self.scopes.append(scope)
        assert scope.companion_id is not None
        self.visited.append(scope.companion_id)
        return self.inputs.get(scope.companion_id, healthy_inputs())

    # ports.CompanionDirectory: the walk the schedules share, over the same companions
    def page(self, after: UUID | None, limit: int) -> list[UUID]:
        ordered = sorted(
            (c for c in self.companions.values() if c.status != "deleted"), key=lambda c: c.id.int
        )
        return [c.id for c in ordered if after is None or c.id.int > after.int][:limit]

    def load(self, companion_id: UUID) -> ScheduledCompanion | None:
        c = self.companions.get(companion_id)
        return None if c is None else ScheduledCompanion(c.id, c.owner_id, c.status, dict(c.config))

    def deleted_with_data(self, after: UUID | None, limit: int) -> list[UUID]:
        return []

    def pause(self, companion: ScheduledCompanion, audit: AuditEvent) -> bool:
        stored = self.companions[companion.id]
        if stored.status != "active":
            return False
        self.companions[companion.id] = stored.model_copy(update={"status": "paused"})
        self.audit.append(audit)
        return True

    def last_resumed(self, owner_id: UUID, companion_id: UUID) -> datetime | None:
        return self.resumed.get(companion_id)

    def cursor(self, job: str) -> UUID | None:
        return self.cursors.get(job)

    def save_cursor(self, job: str, after: UUID | None) -> None:
        self.cursors[job] = after


def service(store: FakeAnalyticsStore) -> AnalyticsService:
    return AnalyticsService(store, FakeClock(NOW), store)


def store_with(*companions: Companion) -> FakeAnalyticsStore:
    return FakeAnalyticsStore(companions={c.id: c for c in companions})


def auto_pausing(companion_id: UUID, below: float = 50, enabled: bool = True) -> Companion:
    config = {"auto_pause": {"enabled": enabled, "below_health": below}}
    return active_companion(companion_id, OWNER, config)


# --- periods and series -------------------------------------------------------------------------------------


def test_the_default_period_is_the_last_seven_days_by_hour_ending_with_the_current_hour() -> None:
    start, end = period(None, None, "hour", NOW)
    assert end == datetime(2026, 1, 15, 13, tzinfo=UTC)
    assert end - start == timedelta(days=7)


def test_a_period_is_widened_to_whole_buckets() -> None:
    start, end = period(NOW - timedelta(days=2, minutes=10), NOW, "day", NOW)
    assert (start, end) == (datetime(2026, 1, 13, tzinfo=UTC), datetime(2026, 1, 16, tzinfo=UTC))


def test_a_period_longer_than_31_days_by_hour_is_refused() -> None:
    with pytest.raises(ValidationFailed) as refused:
        period(NOW - timedelta(days=32), NOW, "hour", NOW)
    assert refused.value.details == {"max_days": 31}


def test_a_period_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        period(NOW, NOW - timedelta(hours=3), "hour", NOW)


def test_a_period_ending_in_the_future_is_cut_back_to_the_end_of_the_current_bucket() -> None:
    start, end = period(NOW - timedelta(days=1), NOW + timedelta(days=3), "hour", NOW)
    assert (start, end) == (datetime(2026, 1, 14, 12, tzinfo=UTC), datetime(2026, 1, 15, 13, tzinfo=UTC))


def test_the_default_period_before_a_future_end_still_ends_now() -> None:
    start, end = period(None, NOW + timedelta(days=10), "day", NOW)
    assert end == datetime(2026, 1, 16, tzinfo=UTC)
    assert end - start == timedelta(days=30)


def test_a_period_that_starts_in_the_future_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="future"):
        period(NOW + timedelta(hours=1), NOW + timedelta(hours=5), "hour", NOW)


def test_an_empty_period_is_refused() -> None:
    at = datetime(2026, 1, 15, 9, tzinfo=UTC)
    with pytest.raises(ValidationFailed, match="before"):
        period(at, at, "hour", NOW)


def test_bounds_with_an_offset_are_whole_utc_hours() -> None:
    # Given bounds in India (+05:30): 14:00 there is 08:30 UTC, 18:30 there is 13:00 UTC (a UTC hour)
    india = timezone(timedelta(hours=5, minutes=30))
    start, end = period(
        datetime(2026, 1, 15, 14, tzinfo=india), datetime(2026, 1, 15, 18, 30, tzinfo=india), "hour", NOW
    )
    # Then the start is floored and the end, already on a UTC hour, is kept
    assert (start, end) == (datetime(2026, 1, 15, 8, tzinfo=UTC), datetime(2026, 1, 15, 13, tzinfo=UTC))
    assert start.tzinfo is UTC


def test_days_are_utc_days_whatever_the_offset_of_the_bounds() -> None:
    # Midnight in Berlin (+01:00) is 23:00 UTC the day before: the period ends with that UTC day
    berlin = timezone(timedelta(hours=1))
    start, end = period(
        datetime(2026, 1, 10, tzinfo=berlin), datetime(2026, 1, 12, tzinfo=berlin), "day", NOW
    )
    assert (start, end) == (datetime(2026, 1, 9, tzinfo=UTC), datetime(2026, 1, 12, tzinfo=UTC))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (None, datetime(9999, 12, 31, 23, 30, tzinfo=UTC)),
        (None, datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5)))),
        (None, datetime(1, 1, 1, 0, 30, tzinfo=UTC)),
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))), None),
    ],
)
@pytest.mark.parametrize("bucket", ["hour", "day"])
def test_bounds_at_the_edges_of_the_calendar_are_refused_not_an_error(
    start: datetime | None, end: datetime | None, bucket: Bucket
) -> None:
    with pytest.raises(ValidationFailed):
        period(start, end, bucket, NOW)


def test_the_series_has_a_point_per_hour_with_zeros_where_nothing_happened() -> None:
    # Given activity in one hour of three, memories before, created and forgotten
    start = datetime(2026, 1, 15, 9, tzinfo=UTC)
    rows = SeriesRows(
        activity=[ActivityRow(start + timedelta(hours=1), reads=3, writes=2, deletes=1, active_users=2)],
        conversations={start + timedelta(hours=1): 2},
        memories_created={start: 4, start + timedelta(hours=2): 1},
        memories_forgotten={start + timedelta(hours=2): 2},
        memories_before=10,
    )
    # When the series is filled
    points = fill_series(rows, start, start + timedelta(hours=3), "hour")
    # Then every hour is there, and the running total of memories moves with creations and forgets
    assert [p.interactions for p in points] == [0, 6, 0]
    assert [p.conversations for p in points] == [0, 2, 0]
    assert [p.memories_total for p in points] == [14, 14, 13]
    assert points[1].active_users == 2


# --- health -------------------------------------------------------------------------------------------------


def test_a_steadily_used_companion_is_fully_healthy_with_enough_data() -> None:
    health = health_score(COMPANION, healthy_inputs(), NOW)
    assert health.score == 100
    assert health.enough_data


def test_health_is_the_weighted_mean_of_the_parts() -> None:
    # Given activity halved (50), a quarter of users near a limit (75), 50 deletes to 200 writes (80), 1 of 10
    # users blocked (90)
    inputs = healthy_inputs(
        recent_interactions=50,
        users_near_storage_limit=2,
        users_with_memories=8,
        deletes_7d=50,
        blocked_users=1,
    )
    health = health_score(COMPANION, inputs, NOW)
    parts = {p.name: p.score for p in health.parts}
    assert parts == {"activity": 50, "storage": 75, "forgetting": 80, "blocked_users": 90}
    assert health.score == pytest.approx(0.4 * 50 + 0.2 * 75 + 0.2 * 80 + 0.2 * 90)


def test_parts_without_data_are_left_out_of_the_score() -> None:
    # Given users but no requests and no memories at all
    inputs = healthy_inputs(
        recent_interactions=0,
        baseline_interactions=0,
        baseline_active_days=0,
        writes_7d=0,
        users_with_memories=0,
        blocked_users=5,
    )
    health = health_score(COMPANION, inputs, NOW)
    assert [p.name for p in health.parts if p.score is None] == ["activity", "storage", "forgetting"]
    assert health.score == 50  # blocked_users alone
    assert not health.enough_data


def test_a_companion_with_no_data_has_no_score() -> None:
    inputs = healthy_inputs(
        recent_interactions=0,
        baseline_interactions=0,
        baseline_active_days=0,
        writes_7d=0,
        users=0,
        users_with_memories=0,
    )
    assert health_score(COMPANION, inputs, NOW).score is None


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"companion_created_at": NOW - timedelta(days=7)}, "younger than 8 days"),
        ({"baseline_interactions": 69}, "fewer than 70 requests in the baseline week"),
        ({"baseline_active_days": 2}, "active on fewer than 3 days of it"),
    ],
)
def test_health_is_not_enough_data_to_act_on_when(changes: dict[str, object], why: str) -> None:
    assert not health_score(COMPANION, healthy_inputs(**changes), NOW).enough_data, why


def test_activity_above_the_baseline_scores_100_and_new_activity_without_a_baseline_too() -> None:
    busier = health_score(COMPANION, healthy_inputs(recent_interactions=500), NOW)
    new = health_score(COMPANION, healthy_inputs(baseline_interactions=0, baseline_active_days=0), NOW)
    assert [p.score for p in busier.parts if p.name == "activity"] == [100]
    assert [p.score for p in new.parts if p.name == "activity"] == [100]
    assert not new.enough_data


@given(
    recent=st.integers(0, 10**9),
    baseline=st.integers(0, 10**9),
    days=st.integers(0, 7),
    writes=st.integers(0, 10**9),
    deletes=st.integers(0, 10**9),
    users=st.integers(0, 10**6),
    blocked_share=st.floats(0, 1),
    stored_share=st.floats(0, 1),
    near_share=st.floats(0, 1),
    age_days=st.integers(0, 400),
)
def test_any_inputs_give_parts_and_a_score_between_0_and_100_or_none(
    recent: int,
    baseline: int,
    days: int,
    writes: int,
    deletes: int,
    users: int,
    blocked_share: float,
    stored_share: float,
    near_share: float,
    age_days: int,
) -> None:
    # Any counts the store can answer (blocked and storing users among the users, near ones among the storing)
    with_memories = int(users * stored_share)
    inputs = HealthInputs(
        companion_created_at=NOW - timedelta(days=age_days),
        recent_interactions=recent,
        baseline_interactions=baseline,
        baseline_active_days=days,
        writes_7d=writes,
        deletes_7d=deletes,
        users=users,
        blocked_users=int(users * blocked_share),
        users_with_memories=with_memories,
        users_near_storage_limit=int(with_memories * near_share),
    )
    health = health_score(COMPANION, inputs, NOW)
    assert all(p.score is None or 0 <= p.score <= 100 for p in health.parts)
    assert health.score is None or 0 <= health.score <= 100
    # No score exactly when no part was measured; a part is unmeasured only when its denominator is zero
    assert (health.score is None) == all(p.score is None for p in health.parts)
    unmeasured = {p.name for p in health.parts if p.score is None}
    assert ("blocked_users" in unmeasured) == (users == 0)
    assert ("storage" in unmeasured) == (with_memories == 0)
    assert ("forgetting" in unmeasured) == (writes + deletes == 0)
    assert ("activity" in unmeasured) == (recent == baseline == 0)


# --- who may read what ---------------------------------------------------------------------------------


def test_an_owner_reads_its_companions_metrics_companion_wide() -> None:
    store = store_with(active_companion(COMPANION, OWNER))
    metrics = service(store).metrics(owner(), COMPANION)
    assert len(metrics.series) == 7 * 24
    assert store.scopes == [TenantScope(owner_id=OWNER, companion_id=COMPANION, user_id="*")]


def test_another_owners_companion_is_not_found() -> None:
    store = store_with(active_companion(COMPANION, OWNER))
    with pytest.raises(NotFound):
        service(store).health(owner(OTHER_OWNER), COMPANION)
    assert store.scopes == []


def test_a_companion_key_reads_its_own_companions_analytics() -> None:
    store = store_with(active_companion(COMPANION, OWNER))
    assert service(store).health(companion_key(), COMPANION).score == 100


def test_a_companion_key_of_another_companion_gets_not_found() -> None:
    other = uuid4()
    store = store_with(active_companion(COMPANION, OWNER), active_companion(other, OWNER))
    with pytest.raises(NotFound):
        service(store).engagement(companion_key(other), COMPANION)


def test_a_companion_key_without_memories_read_is_forbidden() -> None:
    store = store_with(active_companion(COMPANION, OWNER))
    with pytest.raises(Forbidden):
        service(store).metrics(companion_key(scopes=frozenset({"memories:write"})), COMPANION)


def test_a_user_token_reads_no_analytics() -> None:
    store = store_with(active_companion(COMPANION, OWNER))
    user = Principal(kind="user", owner_id=OWNER, companion_id=COMPANION, user_id="alice", scopes=READ)
    with pytest.raises(NotFound):
        service(store).dashboard(user, COMPANION)


def test_a_deleted_companion_has_no_analytics() -> None:
    deleted = active_companion(COMPANION, OWNER).model_copy(update={"status": "deleted"})
    with pytest.raises(NotFound):
        service(store_with(deleted)).health(owner(), COMPANION)


def test_only_an_owner_key_gets_the_leaderboard() -> None:
    store = store_with(active_companion(COMPANION, OWNER))
    assert [c.companion_id for c in service(store).leaderboard(owner()).companions] == [COMPANION]
    with pytest.raises(Forbidden):
        service(store).leaderboard(companion_key())


def test_engagement_asks_for_at_most_100_users() -> None:
    with pytest.raises(ValidationFailed):
        service(store_with(active_companion(COMPANION, OWNER))).engagement(owner(), COMPANION, limit=101)


# --- the schedule -------------------------------------------------------------------------------------------


def test_the_schedule_pauses_an_unhealthy_companion_that_allows_it_and_audits_why() -> None:
    # Given a companion with auto-pause below 50 whose activity collapsed and whose users are all blocked (40)
    unhealthy = auto_pausing(uuid4())
    store = store_with(unhealthy)
    store.inputs[unhealthy.id] = healthy_inputs(recent_interactions=0, blocked_users=10)
    # When the schedule runs
    run = service(store).run_schedule(lambda: 60.0)
    # Then it is paused, with an audit entry carrying the score and its parts
    assert run.paused == [unhealthy.id]
    assert store.companions[unhealthy.id].status == "paused"
    [audit] = store.audit
    assert (audit.action, audit.actor, audit.companion_id) == (AUTO_PAUSED, "system:analytics", unhealthy.id)
    assert audit.details["score"] == 40
    assert audit.details["below_health"] == 50
    assert audit.details["parts"]["activity"] == 0


def test_the_schedule_leaves_healthy_disabled_and_brand_new_companions_alone() -> None:
    healthy, disabled, new = (
        auto_pausing(uuid4()),
        auto_pausing(uuid4(), enabled=False),
        auto_pausing(uuid4()),
    )
    store = store_with(healthy, disabled, new)
    store.inputs[disabled.id] = healthy_inputs(recent_interactions=0, blocked_users=10)
    # A brand-new companion: no requests, no users: no score, not enough data
    store.inputs[new.id] = healthy_inputs(
        companion_created_at=NOW - timedelta(hours=2),
        recent_interactions=0,
        baseline_interactions=0,
        baseline_active_days=0,
        writes_7d=0,
        users=0,
        users_with_memories=0,
    )
    run = service(store).run_schedule(lambda: 60.0)
    assert run.paused == []
    assert (run.companions, run.scored, run.not_enough_data) == (3, 3, 1)
    assert {c.status for c in store.companions.values()} == {"active"}


def test_a_second_run_does_not_pause_or_audit_again() -> None:
    unhealthy = auto_pausing(uuid4())
    store = store_with(unhealthy)
    store.inputs[unhealthy.id] = healthy_inputs(recent_interactions=0, blocked_users=10)
    first = service(store).run_schedule(lambda: 60.0)
    second = service(store).run_schedule(lambda: 60.0)
    assert (first.paused, second.paused) == ([unhealthy.id], [])
    assert len(store.audit) == 1


def test_the_schedule_walks_every_page_of_companions() -> None:
    store = store_with(*(active_companion(uuid4(), OWNER) for _ in range(250)))
    assert service(store).run_schedule(lambda: 60.0).scored == 250


def test_the_schedule_stops_early_when_the_invocation_runs_out_of_time() -> None:
    store = store_with(*(active_companion(uuid4(), OWNER) for _ in range(3)))
    run = service(store).run_schedule(lambda: 1.0)
    assert (run.companions, run.completed) == (0, False)


def by_id(count: int) -> list[Companion]:
    return sorted((active_companion(uuid4(), OWNER) for _ in range(count)), key=lambda c: c.id.int)


def seconds_for(companions: int) -> Callable[[], float]:
    """A clock of the invocation's time left that runs low after ``companions`` visits."""
    calls = iter(range(10_000))
    return lambda: 60.0 if next(calls) < companions else 1.0


def test_a_run_that_stops_early_is_resumed_by_the_next_one_where_it_stopped() -> None:
    # Given 250 companions (three pages) and a first run that has time for 120 of them
    companions = by_id(250)
    store = store_with(*companions)
    first = service(store).run_schedule(seconds_for(120))
    # When the next run has time for all
    store.visited.clear()
    second = service(store).run_schedule(lambda: 60.0)
    # Then the first stopped after 120, and the second began with the 121st, went to the end, and wrapped
    # round to the first 120
    assert (first.companions, first.completed) == (120, False)
    assert store.visited[:130] == [c.id for c in companions[120:]]
    assert store.visited[130:] == [c.id for c in companions[:120]]
    assert (second.companions, second.completed) == (250, True)


def test_late_companions_are_reached_by_runs_that_each_stop_early() -> None:
    # Given 30 companions and runs that each have time for 12
    companions = by_id(30)
    store = store_with(*companions)
    # When three runs go one after the other
    for _ in range(3):
        service(store).run_schedule(seconds_for(12))
    # Then every companion was scored, the last ones by the third run, none skipped
    assert store.visited[:30] == [c.id for c in companions]


def test_a_companion_resumed_within_48_hours_is_not_paused_again() -> None:
    # Given an unhealthy auto-pausing companion that its owner resumed 47 hours ago, and another 49 hours ago
    recent, earlier = auto_pausing(uuid4()), auto_pausing(uuid4())
    store = store_with(recent, earlier)
    for companion in (recent, earlier):
        store.inputs[companion.id] = healthy_inputs(recent_interactions=0, blocked_users=10)
    store.resumed[recent.id] = NOW - timedelta(hours=47)
    store.resumed[earlier.id] = NOW - timedelta(hours=49)
    # When the schedule runs
    run = service(store).run_schedule(lambda: 60.0)
    # Then only the one resumed more than 48 hours ago is paused; the other is counted as deferred
    assert run.paused == [earlier.id]
    assert run.resumed_recently == 1
    assert store.companions[recent.id].status == "active"


def test_a_companion_whose_config_cannot_be_read_is_scored_but_never_paused() -> None:
    broken = active_companion(uuid4(), OWNER, {"auto_pause": {"enabled": "sometimes"}, "limits": []})
    store = store_with(broken)
    store.inputs[broken.id] = healthy_inputs(recent_interactions=0, blocked_users=10)
    run = service(store).run_schedule(lambda: 60.0)
    assert (run.scored, run.paused) == (1, [])


# --- activity recorded by the access check ----------------------------------------------------------------


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[TenantScope, Operation, datetime]] = []
        self.fail = fail

    def record(self, scope: TenantScope, operation: Operation, at: datetime) -> None:
        if self.fail:
            raise DependencyUnavailable("The database is unavailable")
        self.calls.append((scope, operation, at))


class Admission:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse

    def admit(self, companion_id: UUID, user_id: str, config: object) -> None:
        if self.refuse:
            raise RateLimited("slow down", retry_after_s=3)


def access(recorder: Recorder, admission: Admission | None = None) -> MemoryAccess:
    identity = InMemoryIdentityStore()
    identity.companions[COMPANION] = active_companion(COMPANION, OWNER)
    return MemoryAccess(
        identity,
        admission or Admission(),
        cache_s=0,
        monotonic=lambda: 0.0,
        activity=recorder,
        now=lambda: NOW,
    )


def test_every_admitted_request_is_recorded_once_with_its_operation() -> None:
    recorder = Recorder()
    key = companion_key(scopes=frozenset({"memories:read", "memories:write"}))
    access(recorder).authorize(key, COMPANION, "alice", "write")
    scope = TenantScope(owner_id=OWNER, companion_id=COMPANION, user_id="alice")
    assert recorder.calls == [(scope, "write", NOW)]


def test_a_refused_request_is_not_recorded() -> None:
    recorder = Recorder()
    with pytest.raises(RateLimited):
        access(recorder, Admission(refuse=True)).authorize(companion_key(), COMPANION, "alice", "read")
    with pytest.raises(NotFound):
        access(recorder).authorize(companion_key(uuid4()), COMPANION, "alice", "read")
    assert recorder.calls == []


def test_a_request_goes_on_when_its_activity_cannot_be_recorded() -> None:
    scope = access(Recorder(fail=True)).authorize(companion_key(), COMPANION, "alice", "read")
    assert scope.user_id == "alice"
