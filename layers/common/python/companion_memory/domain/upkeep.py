"""Scheduled upkeep (the session cleanup schedule): finish expired sessions and keep memories in shape.

One run walks the companions (every one not deleted, in id order, from where the last run stopped) until
its deadline. For each one it reads the companion's config in that companion's own context, takes the
companion's upkeep lease (a second run that overlaps leaves the companion to the holder), and then:

1. finalises its expired sessions: DynamoDB's TTL deletes them lazily (up to days later), so the run
   reads those whose expiry passed, folds their statistics into ``companion_users`` exactly once
   (``session_log``), then deletes each on condition that it is still the same incarnation with the same
   expiry (a session a request revived in between is left alone); no PostgreSQL transaction is open
   while it talks to DynamoDB;
2. expires memories past their ``expires_at`` or the companion's ``retention.max_age_days``
   (soft-forget, restorable until the purge);
3. decays importance by the time since the last decay or recall (instructions never decay);
4. archives memories whose importance fell below ``retention.archive_below_importance``;
5. consolidates near-duplicates (cosine at or above ``retention.consolidate_similarity``, one user, one
   type, one embedding model): the most important (then most reinforced, then oldest) is kept, the others
   archived and linked ``consolidated_into`` it;
6. enforces ``limits.max_memories_per_user`` and ``max_content_bytes_per_user``: the least valuable
   surplus is forgotten.

Each step is its own short transaction over a bounded batch, so no user's write waits long on upkeep and
one companion never holds the run past its deadline; what is left is done by the next run. A companion
whose upkeep fails (a store error) is logged by id, counted in ``companions_failed``, and passed: the
cursor is saved after every companion, so no companion can stop the walk for good. Forgotten memories past
their grace are purged first (every tenant, bounded); when the walk is over, deleted companions whose
purge is still pending are purged within what is left of the run's time.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from companion_memory.domain.memory import MemoryPolicy
from companion_memory.errors import CompanionMemoryError, ValidationFailed
from companion_memory.models.companion_config import CompanionConfig
from companion_memory.models.erasure import Budget
from companion_memory.models.upkeep import UPKEEP_JOB, DuplicatePair, RetentionRules, UpkeepSummary
from companion_memory.observability import logger
from companion_memory.ports import (
    Clock,
    CompanionDirectory,
    SessionLedger,
    SessionStore,
    TenantDataStore,
    UpkeepStore,
    UpkeepUnit,
)


@dataclass(frozen=True, slots=True)
class UpkeepPolicy:
    companions_per_page: int = 100
    sessions_per_companion: int = 500
    rows_per_step: int = 500
    # Consolidation compares each candidate with its user's memories exactly (5 nearest): a user with
    # ~10^4 vectors costs ~10 ms a candidate, so a round of 50 stays far inside the statement timeout.
    dedupe_batch: int = 50
    consolidation_rounds: int = 16
    purge_batch: int = 10_000
    decay_interval: timedelta = timedelta(days=1)
    forget_grace: timedelta = MemoryPolicy.forget_grace
    # No companion is started with less time than this left: its steps must finish inside the timeout.
    reserve_s: float = 20.0


class UpkeepService:
    def __init__(
        self,
        upkeep: UpkeepStore,
        directory: CompanionDirectory,
        sessions: SessionStore,
        ledger: SessionLedger,
        clock: Clock,
        policy: UpkeepPolicy | None = None,
        *,
        purges: Sequence[TenantDataStore] = (),
    ) -> None:
        self._upkeep = upkeep
        self._directory = directory
        self._sessions = sessions
        self._ledger = ledger
        self._clock = clock
        self._policy = policy or UpkeepPolicy()
        self._purges = tuple(purges)

    def run(self, seconds_left: Callable[[], float]) -> UpkeepSummary:
        """One run, until the walk ends or ``seconds_left()`` falls under the reserve; resumable."""
        policy = self._policy
        now = self._clock.now()
        summary = UpkeepSummary(memories_purged=self._upkeep.purge_forgotten(now, policy.purge_batch))
        after = self._upkeep.cursor(UPKEEP_JOB)
        while True:
            page = self._directory.page(after, policy.companions_per_page)
            for companion_id in page:
                if seconds_left() < policy.reserve_s:
                    return summary
                summary = summary.add(self._guarded(companion_id, now, seconds_left))
                after = companion_id
                # Saved after every companion, the failed ones too: a run that dies, or a companion that
                # fails every time, never holds the walk back.
                self._upkeep.save_cursor(UPKEEP_JOB, after)
            if len(page) < policy.companions_per_page:
                # The walk is over: the next run starts from the first companion again.
                self._upkeep.save_cursor(UPKEEP_JOB, None)
                summary = summary.add(self._purge_deleted(seconds_left))
                return summary.model_copy(update={"completed": True})

    def _guarded(self, companion_id: UUID, now: datetime, seconds_left: Callable[[], float]) -> UpkeepSummary:
        try:
            return self._companion(companion_id, now, seconds_left)
        except CompanionMemoryError as error:
            # The id and the error's code only: details may carry store messages, never content.
            logger.warning(
                "Upkeep of a companion failed; the walk goes on",
                extra={"companion_id": str(companion_id), "error_code": error.code},
            )
            return UpkeepSummary(companions_failed=1)

    def _companion(
        self, companion_id: UUID, now: datetime, seconds_left: Callable[[], float]
    ) -> UpkeepSummary:
        companion = self._directory.load(companion_id)
        if companion is None or companion.status == "deleted":
            return UpkeepSummary()  # deleted since the page was read: the purge is not upkeep's
        with self._upkeep.unit(companion.id) as unit:
            if unit is None:
                return UpkeepSummary(companions_skipped=1)
            summary = self._finalise_sessions(companion.id, now).model_copy(update={"companions_visited": 1})
            try:
                config = CompanionConfig.of(companion.config)
            except ValidationFailed:
                # A stored config this code cannot read: its memories wait rather than being kept by
                # rules their owner did not set.
                return summary.model_copy(update={"companions_misconfigured": 1})
            return summary.add(self._memories(unit, self._rules(config, now), seconds_left))

    def _memories(
        self, unit: UpkeepUnit, rules: RetentionRules, seconds_left: Callable[[], float]
    ) -> UpkeepSummary:
        limit = self._policy.rows_per_step
        expired = unit.expire(rules, limit)
        decayed = unit.decay(rules, limit)
        archived = unit.archive_unimportant(rules, limit)
        consolidated = self._consolidate(unit, rules, seconds_left)
        return UpkeepSummary(
            memories_expired=expired,
            memories_decayed=decayed,
            memories_archived=archived,
            memories_consolidated=consolidated,
            memories_over_cap=unit.enforce_caps(rules, limit),
        )

    def _purge_deleted(self, seconds_left: Callable[[], float]) -> UpkeepSummary:
        """Finish the purges that companion deletes left pending: each store's ``erase_companion`` is
        resumable and idempotent, so a purge cut short here goes on next run."""
        if not self._purges:
            return UpkeepSummary()
        purged = pending = 0
        for companion_id in self._directory.deleted_with_data(None, self._policy.companions_per_page):
            if seconds_left() < self._policy.reserve_s:
                pending += 1
                continue
            try:
                finished = self._purge(companion_id, seconds_left)
            except CompanionMemoryError as error:
                logger.warning(
                    "Pending purge of a deleted companion failed; the next run retries",
                    extra={"companion_id": str(companion_id), "error_code": error.code},
                )
                finished = False
            purged += finished
            pending += not finished
        return UpkeepSummary(deleted_companions_purged=purged, deleted_companions_pending=pending)

    def _purge(self, companion_id: UUID, seconds_left: Callable[[], float]) -> bool:
        companion = self._directory.load(companion_id)
        if companion is None or companion.status != "deleted":
            return False
        budget = Budget(remaining=seconds_left, reserve=self._policy.reserve_s)
        finished = True
        for store in self._purges:  # wiring's order: PostgreSQL last, so its rows mark a purge unfinished
            finished = store.erase_companion(companion.owner_id, companion.id, budget).finished and finished
        return finished

    def _finalise_sessions(self, companion_id: UUID, now: datetime) -> UpkeepSummary:
        expired = self._sessions.expired(companion_id, now, self._policy.sessions_per_companion)
        # Folded before deleted: a run that stops between the two leaves the record, and the next
        # run's fold of it adds nothing (session_log already has it).
        self._ledger.fold(companion_id, expired)
        removed = sum(1 for record in expired if self._sessions.remove_expired(record))
        return UpkeepSummary(sessions_finalised=removed, sessions_left=len(expired) - removed)

    def _consolidate(self, unit: UpkeepUnit, rules: RetentionRules, seconds_left: Callable[[], float]) -> int:
        """Rounds of: scan a batch of uncompared memories, resolve their pairs most-similar first, mark
        the candidates that formed no pair. A candidate with pairs is scanned again next round (its
        partners archived, further neighbours come into view) until it forms none or is archived, so no
        two live near-duplicates stay behind a scan's neighbour limit."""
        consolidated = 0
        for _ in range(self._policy.consolidation_rounds):
            if seconds_left() < self._policy.reserve_s / 2:
                break
            scan = unit.duplicates(rules, self._policy.dedupe_batch)
            if not scan.compared:
                break
            archived = self._resolve(unit, rules, scan.pairs)
            consolidated += len(archived)
            paired = {m for pair in scan.pairs for m in (pair.first.id, pair.second.id)}
            unit.mark_compared(rules, [m for m in scan.compared if m not in paired])
            if not scan.pairs:
                continue
            if not archived:
                break  # pairs whose losers another writer changed meanwhile: the next run sees them
        return consolidated

    @staticmethod
    def _resolve(unit: UpkeepUnit, rules: RetentionRules, pairs: list[DuplicatePair]) -> set[UUID]:
        archived: set[UUID] = set()
        for pair in sorted(pairs, key=lambda p: (-p.similarity, str(p.first.id), str(p.second.id))):
            if pair.first.id in archived or pair.second.id in archived:
                continue
            keeper, loser = sorted((pair.first, pair.second), key=lambda m: m.rank(), reverse=True)
            if unit.consolidate(rules, pair, keeper.id):
                archived.add(loser.id)
        return archived

    def _rules(self, config: CompanionConfig, now: datetime) -> RetentionRules:
        retention = config.retention
        max_age = retention.max_age_days
        return RetentionRules(
            now=now,
            occurred_before=None if max_age is None else now - timedelta(days=max_age),
            purge_after=now + self._policy.forget_grace,
            decay_half_life=timedelta(days=retention.decay_half_life_days),
            decay_interval=self._policy.decay_interval,
            archive_below_importance=retention.archive_below_importance,
            consolidate_similarity=retention.consolidate_similarity,
            max_memories_per_user=config.limits.max_memories_per_user,
            max_content_bytes_per_user=config.limits.max_content_bytes_per_user,
        )
