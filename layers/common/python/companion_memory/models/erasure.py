"""Receipts of erasing a companion user and of deleting a companion: what was removed, per store and kind;
and the time budget a bounded purge runs within.

Counts only, never content; a repeated call answers the same shape with zeros.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

Removed = dict[str, dict[str, int]]
PurgeState = Literal["complete", "pending"]

# Seconds kept back from a budget for answering (the receipt, the audit entry) after the last batch.
BUDGET_RESERVE = 3.0


@dataclass(frozen=True, slots=True)
class Budget:
    """How long a bounded purge may still run: ``remaining()`` answers the seconds left (a Lambda's
    ``get_remaining_time_in_millis() / 1000``); a store checks ``spent()`` before each batch and stops,
    unfinished, when it is. Every batch is short (well under ``reserve``), so stopping before one keeps the
    call within the time it was given."""

    remaining: Callable[[], float]
    reserve: float = BUDGET_RESERVE

    def spent(self) -> bool:
        return self.remaining() <= self.reserve


@dataclass(frozen=True, slots=True)
class StorePurge:
    """What one store's ``erase_companion`` removed in this call, and whether the companion is now gone
    from it (False: the budget ran out first; calling again resumes where this call stopped)."""

    removed: dict[str, int] = field(default_factory=dict)
    finished: bool = True


class UserErasureReceipt(BaseModel):
    model_config = ConfigDict(frozen=True)

    companion_id: UUID
    user_id: str
    erased_at: datetime
    removed: Removed = Field(
        description='Per store, per kind, how many items went: {"postgres": {"memories": 12, ...}, ...}'
    )


class CompanionDeletionReceipt(BaseModel):
    model_config = ConfigDict(frozen=True)

    companion_id: UUID
    status: str = Field(description="Always `deleted`: the companion stays as a tombstone")
    deleted_at: datetime
    shredded: bool = Field(
        description="True when this call destroyed the data key and revoked the keys; false on a repeat"
    )
    purge: PurgeState = Field(
        default="complete",
        description="`complete`: no store holds the companion's data; `pending` (answered 202): the call ran "
        "out of time, the cleanup schedule finishes the purge (or send the delete again)",
    )
    removed: Removed
