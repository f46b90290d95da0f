"""A companion's configuration: what its owner sets, with a sensible default for every field.

Stored as ``companions.config`` (jsonb) and versioned with the companion (``companion_versions``).
Every section refuses unknown fields, so a typo is an error at create/update time, not a setting
that silently does nothing. Each field is read by the code named beside it.
"""

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from companion_memory.errors import ValidationFailed
from companion_memory.models.memory import MemoryType

ALL_MEMORY_TYPES: tuple[MemoryType, ...] = ("fact", "preference", "experience", "instruction", "reflection")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Personality(_Section):
    """Who the companion is. Kept for the companion's own runtime (and the ``memory_context`` prompt)."""

    description: str = Field(default="", max_length=2000)
    traits: list[str] = Field(default_factory=list, max_length=20)
    tone: str = Field(default="warm", max_length=100)


class Limits(_Section):
    """Rate limits and quotas (domain.limits, domain.sessions)."""

    requests_per_minute: int = Field(default=120, ge=1, le=100_000)
    interactions_per_day: int = Field(default=10_000, ge=1, le=10_000_000)
    max_memories_per_user: int = Field(default=10_000, ge=1, le=1_000_000)
    max_content_bytes_per_user: int = Field(default=10 * 1024 * 1024, ge=1, le=10 * 1024**3)
    # Live sessions (conversations) at once across the companion's users; a new one past it is refused.
    # Soft under concurrency (domain.sessions); at most 10^4, since a start counts up to it on an index.
    max_concurrent_sessions: int = Field(default=1_000, ge=1, le=10_000)
    # Live sessions of one user: one user's fresh conversation ids cannot fill the companion's limit.
    max_sessions_per_user: int = Field(default=5, ge=1, le=1_000)

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> "Limits":
        """The limits of a companion config; a malformed ``limits`` object is a clear error."""
        raw = config.get("limits", {})
        if not isinstance(raw, Mapping):
            raise ValidationFailed("config.limits must be an object")
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as error:
            raise ValidationFailed(
                "config.limits is invalid", details={"problems": _problems(error, "config.limits")}
            ) from None


class Capabilities(_Section):
    """What the companion may do (domain.memory refuses a memory of a type not listed)."""

    memory_types: list[MemoryType] = Field(default_factory=lambda: list(ALL_MEMORY_TYPES), min_length=1)


class Retention(_Section):
    """How long memories live and how they fade (domain.upkeep, run on the cleanup schedule)."""

    # Memories older than this (by occurred_at) expire; None keeps them until their own expires_at.
    max_age_days: int | None = Field(default=None, ge=1, le=36_500)
    # Importance halves over this many days without the memory being recalled; instructions never decay.
    decay_half_life_days: float = Field(default=180.0, gt=0, le=36_500)
    # A memory whose importance has decayed below this is archived (kept, but no longer recalled).
    archive_below_importance: float = Field(default=0.5, ge=0, le=10)
    # Near-duplicates at or above this cosine similarity are consolidated into one memory.
    consolidate_similarity: float = Field(default=0.95, gt=0.5, le=1)


class AutoPause(_Section):
    """Whether the analytics schedule may pause this companion when its health falls (domain.analytics)."""

    enabled: bool = False
    # Health is a score from 0 (failing) to 100 (healthy).
    below_health: float = Field(default=20.0, ge=0, le=100)


class CompanionConfig(_Section):
    personality: Personality = Field(default_factory=Personality)
    limits: Limits = Field(default_factory=Limits)
    capabilities: Capabilities = Field(default_factory=Capabilities)
    retention: Retention = Field(default_factory=Retention)
    auto_pause: AutoPause = Field(default_factory=AutoPause)

    @model_validator(mode="after")
    def _consistent(self) -> "CompanionConfig":
        if len(set(self.capabilities.memory_types)) != len(self.capabilities.memory_types):
            raise ValueError("capabilities.memory_types lists a type twice")
        return self

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> "CompanionConfig":
        """The config of a stored or requested companion; anything malformed is a clear ValidationFailed
        naming each problem's field."""
        try:
            return cls.model_validate(dict(config))
        except ValidationError as error:
            raise ValidationFailed(
                "config is invalid", details={"problems": _problems(error, "config")}
            ) from None

    def stored(self) -> dict[str, Any]:
        """The jsonb form: every field spelled out, so a stored config reads alike after defaults change."""
        return self.model_dump(mode="json")


def _problems(error: ValidationError, prefix: str) -> list[dict[str, str]]:
    return [
        {"field": ".".join([prefix, *(str(p) for p in e["loc"])]), "problem": e["msg"]}
        for e in error.errors(include_url=False)
    ]
