"""Receipts of erasing a companion user and of deleting a companion: what was removed, per store and kind.

Counts only, never content; a repeated call answers the same shape with zeros.
"""

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

Removed = dict[str, dict[str, int]]


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
    removed: Removed
