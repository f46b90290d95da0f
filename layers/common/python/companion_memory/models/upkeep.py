"""Scheduled upkeep: what the cleanup schedule walks, what it decides, and the summary it reports."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from pydantic import BaseModel, ConfigDict

UPKEEP_ACTOR = "system:upkeep"
# The schedule_cursors row of the cleanup's walk over the companions (migrations/0009).
UPKEEP_JOB = "session_cleanup"


@dataclass(frozen=True, slots=True)
class RetentionRules:
    """One companion's retention, as instants and numbers for the store (from its ``retention`` config)."""

    now: datetime
    # Expire memories that occurred at or before this (retention.max_age_days); None: no age limit.
    occurred_before: datetime | None
    # When memories upkeep forgets are deleted for good (the forget grace after ``now``).
    purge_after: datetime
    decay_half_life: timedelta
    # Decay a memory only when this much time passed since its last decay, recall or creation: each decay
    # is a write, and decaying by the elapsed time composes, so daily steps reach the same importance.
    decay_interval: timedelta
    archive_below_importance: float
    consolidate_similarity: float
    max_memories_per_user: int
    max_content_bytes_per_user: int


@dataclass(frozen=True, slots=True)
class DedupeMemory:
    """A memory in a near-duplicate pair, with what decides which of two is kept."""

    id: UUID
    importance: float
    reinforcement_count: int
    created_at: datetime

    def rank(self) -> tuple[float, int, float, str]:
        """Higher is kept: more important, then more reinforced, then older (the original), then by id."""
        return (self.importance, self.reinforcement_count, -self.created_at.timestamp(), str(self.id))


@dataclass(frozen=True, slots=True)
class DuplicatePair:
    """Two live memories of one user, vectors of one model, at or above the consolidation similarity."""

    user_id: str
    first: DedupeMemory
    second: DedupeMemory
    similarity: float


@dataclass(frozen=True, slots=True)
class DuplicateScan:
    """One batch of consolidation candidates: the pairs they form, and every candidate compared."""

    pairs: list[DuplicatePair]
    compared: list[UUID]


class UpkeepSummary(BaseModel):
    """What one run did (also the EMF metrics it emits), returned by the cleanup function."""

    model_config = ConfigDict(extra="forbid")

    companions_visited: int = 0
    # Companions another run was working on (its lease held): left to it.
    companions_skipped: int = 0
    # Companions whose upkeep failed part way (a store error; logged with the companion id): what their
    # steps committed stays, the walk goes on past them, and the next walk tries them again.
    companions_failed: int = 0
    # Companions whose stored config does not parse: their sessions are finalised, their memories wait.
    companions_misconfigured: int = 0
    sessions_finalised: int = 0
    # Expired sessions not deleted: a request revived or restarted them between the read and the
    # conditional delete, or an overlapping run deleted them first.
    sessions_left: int = 0
    memories_expired: int = 0
    memories_decayed: int = 0
    memories_archived: int = 0
    memories_consolidated: int = 0
    memories_over_cap: int = 0
    memories_purged: int = 0
    # Deleted companions whose purge the delete left pending ("purge": "pending"), finished by this run,
    # and those still pending when its time ran out (the next run goes on with them).
    deleted_companions_purged: int = 0
    deleted_companions_pending: int = 0
    # True when the walk reached its last companion (the next run starts over), False when the deadline
    # stopped it (the next run resumes after the last companion finished).
    completed: bool = False

    def add(self, other: "UpkeepSummary") -> "UpkeepSummary":
        counts = {
            name: getattr(self, name) + getattr(other, name)
            for name in type(self).model_fields
            if name != "completed"
        }
        return UpkeepSummary(**counts, completed=self.completed or other.completed)
