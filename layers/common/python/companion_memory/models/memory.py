"""Memories on the wire and in the domain: what a companion stores about a user and gets back."""

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

MemoryType = Literal["fact", "preference", "experience", "instruction", "reflection"]
RelationType = Literal[
    "follows",
    "contradicts",
    "elaborates",
    "corrects",
    "references",
    "causes",
    "consolidated_into",
    "related_to",
]
StoreOutcome = Literal["created", "reinforced", "updated"]
HistoryChange = Literal["created", "reinforced", "updated", "forgotten", "restored", "archived"]

MAX_CONTENT_CHARS = 10_000
MAX_METADATA_BYTES = 16_384


def _metadata_fits(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata must serialise to at most {MAX_METADATA_BYTES} bytes")
    return value


def storable(value: Any) -> Any:
    """Refuse text PostgreSQL cannot store: a NUL character (text and jsonb refuse it) or a lone UTF-16
    surrogate (JSON can escape one, UTF-8 cannot encode it), anywhere in a string, key or nested value.
    Found by schemathesis: without this, such a body was a 500 instead of a 400, on REST and MCP alike."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain the NUL character (\\u0000)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no lone surrogate escapes)") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (JSON has no NaN or Infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            storable(item)
    elif isinstance(value, list):
        for item in value:
            storable(item)
    return value


def _utc(value: datetime | None) -> datetime | None:
    """Instants are kept and answered in UTC, whatever offset the caller wrote."""
    return None if value is None else value.astimezone(UTC)


def _importance_scale(value: float | None) -> float | None:
    """Importance is kept to three decimals: finer values mean nothing to ranking, and denormal floats
    (5e-324, found by schemathesis) underflow PostgreSQL's real column into a 500."""
    return None if value is None else round(value, 3)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NewMemory(_Frozen):
    """What a caller stores. Missing importance and expiry get defaults by type."""

    content: str = Field(
        min_length=1, max_length=MAX_CONTENT_CHARS, description="What to remember, in plain words"
    )
    type: MemoryType = Field(
        default="fact", description="fact, preference, experience, instruction or reflection"
    )
    importance: float | None = Field(
        default=None, ge=0, le=10, description="0-10; default depends on the type"
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Any JSON object, kept verbatim")
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it happened (ISO 8601); default now"
    )
    expires_at: AwareDatetime | None = Field(default=None, description="When to forget it; default by type")
    summary: str | None = Field(default=None, max_length=500, description="A one-line summary, if useful")

    _fits = field_validator("metadata")(_metadata_fits)
    _storable = field_validator("content", "summary", "metadata")(storable)
    _scale = field_validator("importance")(_importance_scale)
    _in_utc = field_validator("occurred_at", "expires_at")(_utc)


class Memory(_Frozen):
    id: UUID
    companion_id: UUID
    user_id: str
    type: MemoryType
    content: str
    summary: str | None
    metadata: dict[str, Any]
    importance: float
    confidence: float
    occurred_at: datetime
    created_at: datetime
    updated_at: datetime
    accessed_at: datetime | None
    access_count: int
    reinforcement_count: int
    expires_at: datetime | None
    archived: bool
    version: int
    embedding_model: str | None


class StoreResult(_Frozen):
    memory: Memory
    outcome: StoreOutcome = Field(
        description="created: a new memory; reinforced: a near-duplicate existed and was strengthened; "
        "updated: a near-duplicate existed and took the new wording"
    )
    duplicate_of: UUID | None = Field(default=None, description="The existing memory it merged into")
    similarity: float | None = Field(default=None, description="Similarity to that memory, 0-1")


class RecallQuery(_Frozen):
    query: str = Field(min_length=1, max_length=2_000, description="What to look for, in plain words")
    limit: int = Field(default=10, ge=1, le=50, description="How many memories at most")
    types: tuple[MemoryType, ...] | None = Field(default=None, description="Only these types")
    since: AwareDatetime | None = Field(
        default=None, description="Only memories that occurred at or after this"
    )
    until: AwareDatetime | None = Field(default=None, description="Only memories that occurred before this")
    min_score: float = Field(default=0.0, ge=0, le=1, description="Leave out memories scoring below this")

    _storable = field_validator("query")(storable)


class ScoreParts(_Frozen):
    """Why a memory ranked where it did; each part is in 0-1."""

    vector: float = Field(description="Semantic similarity to the query")
    keyword: float = Field(description="Keyword match strength")
    relevance: float = Field(description="The two fused")
    importance: float = Field(description="Stored importance, scaled")
    recency: float = Field(description="How recently it happened or was used")
    reinforcement: float = Field(description="How often it was repeated or recalled")


class RecalledMemory(Memory):
    score: float = Field(description="Final ranking score, 0-1")
    score_parts: ScoreParts


class RecallResult(_Frozen):
    query: str
    memories: list[RecalledMemory]


class MemoryChanges(_Frozen):
    """A partial update; ``expected_version`` must match the stored version (optimistic concurrency)."""

    expected_version: int = Field(ge=1, description="The version you read; a mismatch is a conflict")
    content: str | None = Field(default=None, min_length=1, max_length=MAX_CONTENT_CHARS)
    type: MemoryType | None = None
    importance: float | None = Field(default=None, ge=0, le=10)
    metadata: dict[str, Any] | None = None
    occurred_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    summary: str | None = Field(default=None, max_length=500)

    _fits = field_validator("metadata")(lambda v: v if v is None else _metadata_fits(v))
    _storable = field_validator("content", "summary", "metadata")(storable)
    _scale = field_validator("importance")(_importance_scale)
    _in_utc = field_validator("occurred_at", "expires_at")(_utc)


class ForgetResult(_Frozen):
    id: UUID
    forgotten_at: datetime
    purge_after: datetime = Field(description="When it is deleted for good (until then it can be restored)")


class ListFilter(_Frozen):
    types: tuple[MemoryType, ...] | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    include_archived: bool = False
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=200, description="From the previous page")


class MemoryPage(_Frozen):
    items: list[Memory]
    next_cursor: str | None


class Relation(_Frozen):
    id: UUID
    source_id: UUID
    target_id: UUID
    type: RelationType
    metadata: dict[str, Any]
    created_at: datetime


# --- Records between the memory service and its store (not on the wire) ---------------------------------


@dataclass(frozen=True, slots=True)
class StoredMemory:
    """A row of ``memories`` as the store keeps it. A strict companion's memory has ``content`` and
    ``summary`` None and both sealed together in ``sealed``; only the service opens it."""

    id: UUID
    companion_id: UUID
    user_id: str
    type: MemoryType
    content: str | None
    sealed: bytes | None
    summary: str | None
    metadata: dict[str, Any]
    importance: float
    confidence: float
    occurred_at: datetime
    created_at: datetime
    updated_at: datetime
    accessed_at: datetime | None
    access_count: int
    reinforcement_count: int
    expires_at: datetime | None
    archived_at: datetime | None
    forgotten_at: datetime | None
    purge_after: datetime | None
    version: int
    embedding_model: str | None


@dataclass(frozen=True, slots=True)
class MemoryCriteria:
    """Which of a user's memories are live candidates: not forgotten, not expired at ``now``, not archived
    (unless asked), of these types, occurred in [since, until)."""

    now: datetime
    types: tuple[MemoryType, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_archived: bool = False


@dataclass(frozen=True, slots=True)
class Candidate:
    """A recall candidate with its raw ranker scores: cosine similarity (None without a vector of the
    query's model) and keyword rank (0 when no query term matches)."""

    memory: StoredMemory
    vector_similarity: float | None
    keyword_rank: float


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    memory_id: UUID
    companion_id: UUID
    user_id: str
    version: int
    change: HistoryChange
    snapshot: dict[str, Any]
    actor: str
    at: datetime
