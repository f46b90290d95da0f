"""Analytics on the wire and between the domain and its store: time series, engagement, leaderboard, health.

Instants are UTC; a bucket is named by its start (an hour or a UTC day).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

# The schedules share one walk over companions (ports.CompanionDirectory) and its model.
from companion_memory.models.schedule import ScheduledCompanion as ScheduledCompanion

# What a memory request does: the scope it needs (domain.memory_access) and the activity column it counts in.
Operation = Literal["read", "write", "delete"]
Bucket = Literal["hour", "day"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- what the store answers (raw rows; the domain fills gaps and derives) ---------------------------------


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """Requests of one bucket, summed over the companion's users."""

    bucket: datetime
    reads: int
    writes: int
    deletes: int
    active_users: int


@dataclass(frozen=True, slots=True)
class SeriesRows:
    """The raw material of a companion's time series over [start, end): only buckets that have something."""

    activity: list[ActivityRow]
    conversations: dict[datetime, int]
    memories_created: dict[datetime, int]
    memories_forgotten: dict[datetime, int]
    # Live memories at ``start`` (created before it, not forgotten by then).
    memories_before: int


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """What the health score is computed from (see domain.analytics for the formula)."""

    companion_created_at: datetime
    recent_interactions: int  # the last 24 hours
    baseline_interactions: int  # the 7 days before them
    baseline_active_days: int
    writes_7d: int
    deletes_7d: int
    users: int
    blocked_users: int
    users_with_memories: int
    users_near_storage_limit: int


# --- the wire ---------------------------------------------------------------------------------------------


class SeriesPoint(_Frozen):
    at: datetime = Field(description="Start of the bucket (UTC)")
    interactions: int = Field(description="Memory requests admitted (reads + writes + deletes)")
    reads: int
    writes: int
    deletes: int
    active_users: int = Field(description="Users with at least one request in the bucket")
    conversations: int = Field(description="Sessions that started in the bucket (finished ones)")
    memories_created: int
    memories_forgotten: int
    memories_total: int = Field(description="Live memories at the end of the bucket")


class Metrics(_Frozen):
    companion_id: UUID
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    bucket: Bucket
    totals: dict[str, int]
    series: list[SeriesPoint]

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)


class UserEngagement(_Frozen):
    user_id: str
    interactions: int = Field(description="Memory requests in the period")
    reads: int
    writes: int
    deletes: int
    active_days: int = Field(description="UTC days in the period with at least one request")
    first_active_at: datetime | None = Field(description="Hour of the user's first recorded request, ever")
    last_active_at: datetime | None = Field(description="Hour of the user's latest recorded request, ever")
    memories: int = Field(description="Live memories now")


class Engagement(_Frozen):
    companion_id: UUID
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    users: list[UserEngagement] = Field(description="Most active first")

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)


class CompanionActivity(_Frozen):
    companion_id: UUID
    name: str
    status: str
    interactions: int
    active_users: int


class Leaderboard(_Frozen):
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    companions: list[CompanionActivity] = Field(description="Most active first")

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)


class HealthPart(_Frozen):
    name: str
    score: float | None = Field(
        description="0-100; None when there is no data for it (left out of the total)"
    )
    weight: float
    detail: str = Field(description="What was measured, in words")


class Health(_Frozen):
    companion_id: UUID
    score: float | None = Field(description="0-100, the weighted mean of the measured parts; None: no data")
    enough_data: bool = Field(description="Whether the score may pause the companion (see docs)")
    parts: list[HealthPart]
    computed_at: datetime


class AutoPauseRun(_Frozen):
    """What one run of the schedule did."""

    companions: int
    scored: int
    paused: list[UUID]
    not_enough_data: int
    resumed_recently: int = Field(description="Below the threshold, but resumed by the owner within 48 h")
    completed: bool = Field(description="False: the run stopped early; the next one carries on from there")
