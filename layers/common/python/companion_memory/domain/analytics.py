"""How a companion is used and how healthy it is: time series, user engagement, the owner's leaderboard, a
health score, and the hourly schedule that auto-pauses unhealthy companions whose config allows it.

Who may read what:
- An owner key (scope admin) reads the analytics of its own companions, and its leaderboard.
- A companion key (scope memories:read) reads its own companion's analytics (it already reads every user's
  memories; counts add nothing to that), not the leaderboard (other companions are its owner's business).
- Anything else, another tenant's companion included, is "not found", as a missing companion is.

Health (0-100) is the weighted mean of the parts measured now, each 0-100 (a part without data is left
out and says so):
- ``activity`` (weight 0.4): requests in the last 24 complete UTC hours against the daily mean of the 7 days
  before, 100 * min(1, recent / baseline); new activity with no baseline is 100. Complete hours only: the
  current hour has barely begun when the schedule runs, and counting it would read every companion up to
  1/24 less active than it is.
- ``storage`` (0.2): 100 * (1 - share of users holding memories who are at ≥ 90 % of a storage limit
  (``limits.max_memories_per_user`` or ``max_content_bytes_per_user``)).
- ``forgetting`` (0.2): 100 * (1 - deletes / (writes + deletes)) over the last 7 days: users deleting what
  the companion stores is the one signal of bad memories the service can see.
- ``blocked_users`` (0.2): 100 * (1 - blocked users / users).
Enough data to act on (auto-pause) means the companion is at least 8 days old and its baseline week had
≥ 70 requests on ≥ 3 distinct days: a brand-new or barely used companion is never paused.

The schedule resumes where the previous run stopped (its cursor in ``schedule_cursors``, job
``analytics_health``) and, with time left, wraps around to the companions before it: every run scores every
companion when it can, and when it cannot, the next one carries on instead of starting at the first again.
A companion resumed in the last 48 hours (audit ``companion.resumed``) is scored but not paused: its last
24 hours include the paused time, so the same week of data would pause it again within the hour.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

from companion_memory.auth.grants import SCOPE_ADMIN, SCOPE_MEMORIES_READ
from companion_memory.domain.memory_access import NO_SUCH_COMPANION, Actor, require_scope
from companion_memory.errors import CompanionMemoryError, Forbidden, NotFound, ValidationFailed
from companion_memory.models.analytics import (
    AutoPauseRun,
    Bucket,
    Engagement,
    Health,
    HealthInputs,
    HealthPart,
    Leaderboard,
    Metrics,
    ScheduledCompanion,
    SeriesPoint,
    SeriesRows,
)
from companion_memory.models.companion_config import AutoPause, Limits
from companion_memory.models.identity import AuditEvent, Companion
from companion_memory.models.tenancy import ALL_USERS, TenantScope
from companion_memory.observability import logger, metrics
from companion_memory.ports import AnalyticsStore, Clock, CompanionDirectory

STEP: Final[dict[Bucket, timedelta]] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
MAX_PERIOD: Final[dict[Bucket, timedelta]] = {"hour": timedelta(days=31), "day": timedelta(days=366)}
DEFAULT_PERIOD: Final[dict[Bucket, timedelta]] = {"hour": timedelta(days=7), "day": timedelta(days=30)}
MAX_TOP: Final = 100

WEIGHTS: Final = {"activity": 0.4, "storage": 0.2, "forgetting": 0.2, "blocked_users": 0.2}
NEAR_LIMIT: Final = 0.9
MIN_AGE: Final = timedelta(days=8)
MIN_BASELINE_INTERACTIONS: Final = 70
MIN_BASELINE_DAYS: Final = 3
AUTO_PAUSED: Final = "companion.auto_paused"
SCHEDULER_ACTOR: Final = "system:analytics"
SCHEDULE_JOB: Final = "analytics_health"
PAGE: Final = 100
# Seconds kept in hand when the run stops early: one companion's score and pause take milliseconds.
RESERVE_S: Final = 5.0
# After an owner resumes a companion, the schedule does not pause it again for this long.
RESUME_GRACE: Final = timedelta(hours=48)


@dataclass(frozen=True, slots=True)
class Dashboard:
    companion: Companion
    metrics: Metrics
    engagement: Engagement
    health: Health


def floor(at: datetime, bucket: Bucket) -> datetime:
    at = at.astimezone(UTC)
    if bucket == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.replace(minute=0, second=0, microsecond=0)


def period(
    start: datetime | None, end: datetime | None, bucket: Bucket, now: datetime
) -> tuple[datetime, datetime]:
    """[start, end) aligned to whole UTC buckets: ``end`` rounds up, ``start`` down; by default the last
    7 days by hour or 30 days by day, ending with the current bucket. At most 31 days by hour, 366 by day.
    Nothing is counted yet after the current bucket: a later ``end`` is cut back to its end (the answer's
    ``to`` says so), and a period that starts after it is refused rather than answered with zeros."""
    step = STEP[bucket]
    current = floor(now, bucket) + step
    try:
        last = floor(end, bucket) if end is not None else current
        stop = min(current, last + step if end is not None and last != end else last)
        begin = floor(start, bucket) if start is not None else stop - DEFAULT_PERIOD[bucket]
    except OverflowError:
        # A bound at the edge of the calendar (0001-01-01, 9999-12-31 with an offset) has no UTC bucket.
        raise ValidationFailed("from and to must be dates between the years 1 and 9999 in UTC") from None
    if begin >= current:
        raise ValidationFailed("from is in the future", details={"from": begin.isoformat()})
    if begin >= stop:
        raise ValidationFailed("from must be before to", details={"from": begin.isoformat()})
    if stop - begin > MAX_PERIOD[bucket]:
        raise ValidationFailed(
            f"the period is longer than {MAX_PERIOD[bucket].days} days for bucket={bucket}",
            details={"max_days": MAX_PERIOD[bucket].days},
        )
    return begin, stop


def fill_series(rows: SeriesRows, start: datetime, end: datetime, bucket: Bucket) -> list[SeriesPoint]:
    """One point per bucket of [start, end), zeros where nothing happened; memories_total runs on."""
    activity = {row.bucket: row for row in rows.activity}
    points: list[SeriesPoint] = []
    total = rows.memories_before
    at = start
    while at < end:
        row = activity.get(at)
        reads, writes, deletes, users = (
            (row.reads, row.writes, row.deletes, row.active_users) if row else (0, 0, 0, 0)
        )
        created, forgotten = rows.memories_created.get(at, 0), rows.memories_forgotten.get(at, 0)
        total += created - forgotten
        points.append(
            SeriesPoint(
                at=at,
                interactions=reads + writes + deletes,
                reads=reads,
                writes=writes,
                deletes=deletes,
                active_users=users,
                conversations=rows.conversations.get(at, 0),
                memories_created=created,
                memories_forgotten=forgotten,
                memories_total=max(total, 0),
            )
        )
        at += STEP[bucket]
    return points


def health_score(companion_id: UUID, inputs: HealthInputs, now: datetime) -> Health:
    """The score and its parts (module docstring: the formula)."""
    parts = [_activity(inputs), _storage(inputs), _forgetting(inputs), _blocked(inputs)]
    measured = [p for p in parts if p.score is not None]
    score = None
    if measured:
        weight = sum(p.weight for p in measured)
        score = round(sum(p.weight * (p.score or 0.0) for p in measured) / weight, 1)
    enough = (
        now - inputs.companion_created_at >= MIN_AGE
        and inputs.baseline_interactions >= MIN_BASELINE_INTERACTIONS
        and inputs.baseline_active_days >= MIN_BASELINE_DAYS
    )
    return Health(companion_id=companion_id, score=score, enough_data=enough, parts=parts, computed_at=now)


def _part(name: str, score: float | None, detail: str) -> HealthPart:
    value = None if score is None else round(min(100.0, max(0.0, score)), 1)
    return HealthPart(name=name, score=value, weight=WEIGHTS[name], detail=detail)


def _activity(i: HealthInputs) -> HealthPart:
    daily = i.baseline_interactions / 7
    detail = f"{i.recent_interactions} requests in 24 h, {daily:.0f} a day the week before"
    if daily == 0:
        return _part("activity", 100.0 if i.recent_interactions else None, detail)
    return _part("activity", 100 * min(1.0, i.recent_interactions / daily), detail)


def _storage(i: HealthInputs) -> HealthPart:
    detail = f"{i.users_near_storage_limit} of {i.users_with_memories} users at ≥ 90 % of a storage limit"
    if i.users_with_memories == 0:
        return _part("storage", None, detail)
    return _part("storage", 100 * (1 - i.users_near_storage_limit / i.users_with_memories), detail)


def _forgetting(i: HealthInputs) -> HealthPart:
    changes = i.writes_7d + i.deletes_7d
    detail = f"{i.deletes_7d} deletes against {i.writes_7d} writes in 7 days"
    return _part("forgetting", 100 * (1 - i.deletes_7d / changes) if changes else None, detail)


def _blocked(i: HealthInputs) -> HealthPart:
    detail = f"{i.blocked_users} of {i.users} users blocked"
    return _part("blocked_users", 100 * (1 - i.blocked_users / i.users) if i.users else None, detail)


class AnalyticsService:
    def __init__(self, store: AnalyticsStore, clock: Clock, directory: CompanionDirectory) -> None:
        self._store = store
        # The walk over companions the cleanup schedule shares: ids across tenants, each one read alone.
        self._directory = directory
        self._clock = clock

    # --- reads (REST) ------------------------------------------------------------------------------------

    def metrics(
        self,
        actor: Actor,
        companion_id: UUID,
        start: datetime | None = None,
        end: datetime | None = None,
        bucket: Bucket = "hour",
    ) -> Metrics:
        scope = self._companion_scope(actor, companion_id)[1]
        begin, stop = period(start, end, bucket, self._clock.now())
        series = fill_series(self._store.series(scope, begin, stop, bucket), begin, stop, bucket)
        totals = {
            name: sum(getattr(p, name) for p in series)
            for name in ("interactions", "reads", "writes", "deletes", "conversations", "memories_created")
        }
        totals["memories_total"] = series[-1].memories_total
        return Metrics(
            companion_id=companion_id, start=begin, end=stop, bucket=bucket, totals=totals, series=series
        )

    def engagement(
        self,
        actor: Actor,
        companion_id: UUID,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 20,
    ) -> Engagement:
        scope = self._companion_scope(actor, companion_id)[1]
        begin, stop = period(start, end, "day", self._clock.now())
        users = self._store.engagement(scope, begin, stop, _top(limit))
        return Engagement(companion_id=companion_id, start=begin, end=stop, users=users)

    def leaderboard(
        self, actor: Actor, start: datetime | None = None, end: datetime | None = None, limit: int = 20
    ) -> Leaderboard:
        if actor.kind != "owner":
            raise Forbidden("The leaderboard ranks an organisation's companions: it needs an owner key")
        require_scope(actor, SCOPE_ADMIN)
        begin, stop = period(start, end, "day", self._clock.now())
        ranked = self._store.leaderboard(actor.owner_id, begin, stop, _top(limit))
        return Leaderboard(start=begin, end=stop, companions=ranked)

    def health(self, actor: Actor, companion_id: UUID) -> Health:
        companion, scope = self._companion_scope(actor, companion_id)
        return self._health(companion.id, scope, companion.config)

    def dashboard(self, actor: Actor, companion_id: UUID, days: int = 7) -> Dashboard:
        if not 1 <= days <= MAX_PERIOD["hour"].days:
            raise ValidationFailed("days must be between 1 and 31", details={"days": days})
        companion, scope = self._companion_scope(actor, companion_id)
        now = self._clock.now()
        stop = floor(now, "hour") + STEP["hour"]
        begin = stop - timedelta(days=days)
        series = fill_series(self._store.series(scope, begin, stop, "hour"), begin, stop, "hour")
        totals = {"interactions": sum(p.interactions for p in series)}
        totals["conversations"] = sum(p.conversations for p in series)
        totals["memories_total"] = series[-1].memories_total
        top = self._store.engagement(scope, begin, stop, 10)
        return Dashboard(
            companion=companion,
            metrics=Metrics(
                companion_id=companion_id, start=begin, end=stop, bucket="hour", totals=totals, series=series
            ),
            engagement=Engagement(companion_id=companion_id, start=begin, end=stop, users=top),
            health=self._health(companion.id, scope, companion.config),
        )

    # --- the schedule ------------------------------------------------------------------------------------

    def run_schedule(self, time_left: Callable[[], float]) -> AutoPauseRun:
        """Score every companion that is not deleted, from where the previous run stopped round to it; pause
        the active ones whose config enables auto-pause, whose score, on enough data, is below its threshold
        and which were not resumed within ``RESUME_GRACE``. Stops early (logged, metric) when
        ``time_left()`` (seconds) runs low, keeping its place for the next run."""
        start = self._store.cursor(SCHEDULE_JOB)
        run = _Run()
        after, last, wrapped = start, start, start is None
        while True:
            page = self._directory.page(after, PAGE)
            for companion_id in page:
                if wrapped and start is not None and companion_id > start:
                    return self._finish(run, last, completed=True)  # round to where this run began
                if time_left() < RESERVE_S:
                    logger.warning("analytics run stopped early", extra={"companions": run.seen})
                    metrics.add_metric(name="AnalyticsRunIncomplete", unit="Count", value=1)
                    return self._finish(run, last, completed=False)
                self._visit(companion_id, run)
                last = companion_id
            self._store.save_cursor(SCHEDULE_JOB, last)  # a run killed at its timeout loses one page at most
            if len(page) == PAGE:
                after = page[-1]
            elif wrapped:
                return self._finish(run, last, completed=True)
            else:
                after, wrapped = None, True  # the end of the list: on to the companions before ``start``

    def _visit(self, companion_id: UUID, run: "_Run") -> None:
        run.seen += 1
        try:
            # Its owner and config, read in its own context (never a page of every tenant's configs).
            companion = self._directory.load(companion_id)
            if companion is None or companion.status == "deleted":
                return  # deleted since the page was read
            health = self._scheduled_health(companion)
        except CompanionMemoryError as error:
            logger.warning(
                "companion not scored", extra={"companion_id": str(companion_id), "code": error.code}
            )
            metrics.add_metric(name="HealthNotScored", unit="Count", value=1)
            return
        run.scored += 1
        run.not_enough += not health.enough_data
        if not self._should_pause(companion, health):
            return
        resumed = self._store.last_resumed(companion.owner_id, companion.id)
        if resumed is not None and health.computed_at - resumed < RESUME_GRACE:
            run.resumed_recently += 1
            logger.info("auto-pause deferred: resumed recently", extra={"companion_id": str(companion.id)})
            return
        if self._pause(companion, health):
            run.paused.append(companion.id)

    def _scheduled_health(self, companion: ScheduledCompanion) -> Health:
        scope = TenantScope(owner_id=companion.owner_id, companion_id=companion.id, user_id=ALL_USERS)
        return self._health(companion.id, scope, companion.config)

    @staticmethod
    def _should_pause(companion: ScheduledCompanion, health: Health) -> bool:
        try:
            rule = AutoPause.model_validate(companion.config.get("auto_pause", {}))
        except ValueError:
            return False  # a config the schedule cannot read never pauses anything
        return (
            rule.enabled
            and companion.status == "active"
            and health.enough_data
            and health.score is not None
            and health.score < rule.below_health
        )

    def _pause(self, companion: ScheduledCompanion, health: Health) -> bool:
        rule = companion.config.get("auto_pause", {})
        audit = AuditEvent(
            owner_id=companion.owner_id,
            companion_id=companion.id,
            actor=SCHEDULER_ACTOR,
            action=AUTO_PAUSED,
            target=str(companion.id),
            details={
                "score": health.score,
                "below_health": rule.get("below_health") if isinstance(rule, Mapping) else None,
                "parts": {p.name: p.score for p in health.parts},
            },
            at=health.computed_at,
        )
        done = self._store.pause(companion, audit)
        if done:
            logger.info(
                "companion auto-paused", extra={"companion_id": str(companion.id), "score": health.score}
            )
        return done

    def _finish(self, run: "_Run", last: UUID | None, *, completed: bool) -> AutoPauseRun:
        self._store.save_cursor(SCHEDULE_JOB, last)
        metrics.add_metric(name="CompanionsScored", unit="Count", value=run.scored)
        metrics.add_metric(name="CompanionsAutoPaused", unit="Count", value=len(run.paused))
        metrics.add_metric(name="HealthNotEnoughData", unit="Count", value=run.not_enough)
        metrics.add_metric(name="AutoPauseDeferredAfterResume", unit="Count", value=run.resumed_recently)
        return AutoPauseRun(
            companions=run.seen,
            scored=run.scored,
            paused=run.paused,
            not_enough_data=run.not_enough,
            resumed_recently=run.resumed_recently,
            completed=completed,
        )

    # --- shared ------------------------------------------------------------------------------------------

    def _health(self, companion_id: UUID, scope: TenantScope, config: Mapping[str, object]) -> Health:
        now = self._clock.now()
        try:
            limits = Limits.of(config)
        except ValidationFailed:
            limits = Limits()  # an unreadable stored config: judge storage by the defaults
        return health_score(companion_id, self._store.health_inputs(scope, now, limits), now)

    def _companion_scope(self, actor: Actor, companion_id: UUID) -> tuple[Companion, TenantScope]:
        if actor.kind == "owner":
            require_scope(actor, SCOPE_ADMIN)
        elif actor.kind == "companion" and actor.companion_id == companion_id:
            require_scope(actor, SCOPE_MEMORIES_READ)
        else:
            raise NotFound(NO_SUCH_COMPANION)
        companion = self._store.companion(actor.owner_id, companion_id)
        if companion is None or companion.status == "deleted":
            raise NotFound(NO_SUCH_COMPANION)
        return companion, TenantScope(owner_id=actor.owner_id, companion_id=companion_id, user_id=ALL_USERS)


@dataclass(slots=True)
class _Run:
    """What one schedule run has done so far."""

    seen: int = 0
    scored: int = 0
    not_enough: int = 0
    resumed_recently: int = 0
    paused: list[UUID] = field(default_factory=list)


def _top(limit: int) -> int:
    if not 1 <= limit <= MAX_TOP:
        raise ValidationFailed(f"limit must be between 1 and {MAX_TOP}", details={"limit": limit})
    return limit
