"""Bulk import and export of memories (JSON Lines) and the REST-only request bodies of the memory API."""

import json
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from companion_memory.models.memory import MAX_METADATA_BYTES, NewMemory, RelationType, storable

MAX_IMPORT_KEY_CHARS = 200
# An export page holds at most this many memories (the memory export's and the companion export's), read
# from the memory list this many at a time.
MAX_EXPORT_PAGE = 1_000
EXPORT_LIST_PAGE = 100


@dataclass(frozen=True, slots=True)
class ExportPage:
    """A page of an export: JSON Lines, and the cursor of the next page (None on the last)."""

    lines: list[str]
    next_cursor: str | None


ImportLineStatus = Literal["created", "reinforced", "updated", "already_imported", "failed"]


class ImportLine(NewMemory):
    """One line of an import file: a memory to store, with an optional client key.

    A line with ``import_key`` is stored at most once per user, however often it is sent (the key is
    kept as long as the memory). An export line imports unchanged: its ``id`` is used as the key when
    no ``import_key`` is given, and its other read-only fields are ignored.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    _key_storable = field_validator("import_key")(storable)
    import_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_IMPORT_KEY_CHARS,
        description="Your key for this line: a line re-sent with the same key is not stored again",
    )
    id: UUID | None = Field(
        default=None, description="From an export file: the key when import_key is absent"
    )
    # An export line's read-only fields: accepted so an export file imports as it is, and ignored (the
    # importing user's memory gets its own id, times, counters and version).
    companion_id: Any = Field(default=None, exclude=True)
    user_id: Any = Field(default=None, exclude=True)
    confidence: Any = Field(default=None, exclude=True)
    created_at: Any = Field(default=None, exclude=True)
    updated_at: Any = Field(default=None, exclude=True)
    accessed_at: Any = Field(default=None, exclude=True)
    access_count: Any = Field(default=None, exclude=True)
    reinforcement_count: Any = Field(default=None, exclude=True)
    archived: Any = Field(default=None, exclude=True)
    version: Any = Field(default=None, exclude=True)
    embedding_model: Any = Field(default=None, exclude=True)

    @property
    def key(self) -> str | None:
        if self.import_key is not None:
            return self.import_key
        return None if self.id is None else str(self.id)

    def to_new(self) -> NewMemory:
        return NewMemory.model_validate(self.model_dump(include=set(NewMemory.model_fields)))


class ImportLineReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    line: int = Field(description="1-based line number in the file")
    status: ImportLineStatus
    import_key: str | None = None
    memory_id: UUID | None = Field(default=None, description="The stored (or merged-into) memory")
    error: dict[str, Any] | None = Field(default=None, description="Why the line failed (code, message)")


class ImportReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    lines: int = Field(description="Non-blank lines read")
    stored: int = Field(description="Lines stored now (created, reinforced or updated)")
    already_imported: int = Field(description="Lines whose key was imported before: nothing written")
    failed: int = Field(description="Lines refused: nothing written for them")
    results: list[ImportLineReport]


class LinkRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    target_id: UUID = Field(description="The memory this one relates to")
    type: RelationType = Field(description="How this memory relates to the target")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Any JSON object, kept verbatim")

    @field_validator("metadata")
    @classmethod
    def _fits(cls, value: dict[str, Any]) -> dict[str, Any]:
        storable(value)
        if len(json.dumps(value, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must serialise to at most {MAX_METADATA_BYTES} bytes")
        return value
