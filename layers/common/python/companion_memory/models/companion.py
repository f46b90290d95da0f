"""The companion lifecycle on the wire: updates and rollbacks (each a new version), version history, pages of
companions and of a companion's users, a user's relationship and preferences."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from companion_memory.models.identity import Companion, CompanionUser

Bump = Literal["major", "minor", "patch"]
SEMVER = r"^\d{1,9}\.\d{1,9}\.\d{1,9}$"
# A user's preferences, as compact JSON: enough for settings a companion keeps per user, not a data store.
MAX_PREFERENCES_BYTES = 16 * 1024


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class CompanionUpdate(BaseModel):
    """A change of name and/or config: a new version (see domain/companions.py for the bump rule)."""

    model_config = ConfigDict(extra="forbid")

    expected_version: str = Field(
        pattern=SEMVER, description="The version this change is made against; 409 with current_version if not"
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    config: dict[str, Any] | None = Field(
        default=None,
        description="Merged over the current config: sections and fields left out stay; a list replaces",
    )
    bump: Bump | None = Field(
        default=None, description="At least this bump (it raises the computed one, never lowers it)"
    )


class CompanionRollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_version: str = Field(pattern=SEMVER, description="The version whose name and config come back")
    expected_version: str = Field(pattern=SEMVER)


class CompanionPage(_Frozen):
    companions: list[Companion]
    next_cursor: str | None = None


class CompanionVersion(_Frozen):
    """A companion's name and config as they were at one version (written when the version was made)."""

    companion_id: UUID
    version: str
    name: str
    config: dict[str, Any]
    created_at: datetime


class CompanionVersionPage(_Frozen):
    versions: list[CompanionVersion]
    next_cursor: str | None = None


class CompanionUserDetail(CompanionUser):
    """A user of a companion: permissions, preferences and the relationship so far."""

    preferences: dict[str, Any] = Field(default_factory=dict)
    interaction_count: int = 0
    first_interaction_at: datetime | None = None
    last_interaction_at: datetime | None = None
    memory_count: int = 0
    content_bytes: int = 0
    created_at: datetime
    updated_at: datetime


class CompanionUserPage(_Frozen):
    users: list[CompanionUserDetail]
    next_cursor: str | None = None


class PreferencesUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preferences: dict[str, Any] = Field(
        description=f"Replaces the user's preferences; at most {MAX_PREFERENCES_BYTES} bytes as JSON"
    )
