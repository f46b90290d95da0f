"""A companion's export file (JSON Lines) and the import report.

Every page of an export starts with the same header line, then memory lines, then relation lines; each
page is thus a file that imports on its own (``POST /companions/import``), in any order, any number of
times. Vectors are never exported: the importing deployment embeds with its own model.

The sizes: an export page is at most ``MAX_EXPORT_PAGE_BYTES`` (a Lambda answers at most 6 MB), and an import
at most ``MAX_TRANSFER_BYTES`` (the HTTP API hands a Lambda the body base64-encoded, 4/3 as large, and a
Lambda takes at most 6 MB), so every page of an export imports as it is.
"""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from companion_memory.models.identity import USER_ID_PATTERN, IsolationLevel
from companion_memory.models.memory import MAX_CONTENT_CHARS, MAX_METADATA_BYTES, MemoryType, RelationType
from companion_memory.models.memory_import import MAX_EXPORT_PAGE as MAX_EXPORT_PAGE  # for the function

DEFAULT_EXPORT_PAGE = 500
# 4 MiB: 5.6 MB once base64-encoded, with room for the event around it under Lambda's 6 MB.
MAX_TRANSFER_BYTES = 4 * 1024 * 1024
MAX_EXPORT_PAGE_BYTES = MAX_TRANSFER_BYTES
# The most a line can take as JSON: content and summary at 6 bytes a character (a control character's
# \uXXXX escape; UTF-8 takes at most 4), metadata as measured on input (its escaped form, never shorter),
# the user id likewise, and the fixed fields. An export page reads no more memories (relations) at once than
# the bytes it has left can hold at this size, so a page never outgrows MAX_EXPORT_PAGE_BYTES.
MAX_MEMORY_LINE_BYTES = 6 * (MAX_CONTENT_CHARS + 500 + 200) + MAX_METADATA_BYTES + 1024
MAX_RELATION_LINE_BYTES = 6 * 200 + MAX_METADATA_BYTES + 1024


class _Line(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ExportedCompanion(_Line):
    name: str = Field(min_length=1, max_length=200)
    config: dict[str, Any]
    isolation_level: IsolationLevel
    version: str = Field(
        description="The source companion's config version (the import starts its own history)"
    )


class ExportHeader(_Line):
    kind: Literal["header"] = "header"
    format: Literal["companion-memory/companion-export"] = "companion-memory/companion-export"
    format_version: Literal[1] = 1
    exported_at: AwareDatetime
    source_companion_id: UUID
    companion: ExportedCompanion


class ExportedMemory(_Line):
    """A live memory (archived ones included, forgotten ones never), as stored minus its vectors."""

    kind: Literal["memory"] = "memory"
    user_id: str = Field(min_length=1, max_length=200, pattern=USER_ID_PATTERN)
    id: UUID = Field(description="The source memory's id: the import's key for it")
    type: MemoryType
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    summary: str | None = Field(default=None, max_length=500)
    metadata: dict[str, Any] = Field(default_factory=dict)
    importance: float = Field(ge=0, le=10)
    occurred_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    archived: bool = False
    created_at: AwareDatetime | None = None


class ExportedRelation(_Line):
    kind: Literal["relation"] = "relation"
    user_id: str = Field(min_length=1, max_length=200, pattern=USER_ID_PATTERN)
    source_id: UUID
    target_id: UUID
    type: RelationType
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("target_id")
    @classmethod
    def _not_itself(cls, value: UUID, info: Any) -> UUID:
        if value == info.data.get("source_id"):
            raise ValueError("a memory cannot be related to itself")
        return value


class CompanionImportReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    companion_id: UUID = Field(description="The companion the file was imported into")
    source_companion_id: UUID
    created: bool = Field(description="True when this call created the companion; false when it resumed")
    memories_stored: int = Field(
        description="Memories written now (created, or merged into a near-duplicate)"
    )
    memories_already_imported: int = Field(description="Memories an earlier import of the same source wrote")
    memories_pending: int = Field(
        default=0, description="Memories another import of the same export is storing right now: send again"
    )
    relations_linked: int = Field(description="Relations present after this call (linking again is a no-op)")
    relations_unresolved: list[int] = Field(
        default_factory=list,
        description="Lines of relations whose memories are not imported yet (import their page, then this "
        "one again)",
    )
    imported_at: datetime
