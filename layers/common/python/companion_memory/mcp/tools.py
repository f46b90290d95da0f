"""The memory tools (names are a contract: DESIGN.md §4), each a thin adapter over ``MemoryService``.

Every tool: passes ``MemoryAccess.authorize`` (the token's scope, the companion user's permission, one
admission by the rate limiter per ``tools/call``: the same check as every REST memory route), calls one
service method, and answers structured content (the service's own model, so REST and MCP results have one
shape) with a short text rendering. Errors are mapped in one
place (``mcp.errors.mapped``).
"""

from collections.abc import Callable
from typing import Annotated, Any
from uuid import UUID

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import AwareDatetime, BaseModel, Field

from companion_memory.domain.memory import MemoryService
from companion_memory.domain.memory_access import Operation
from companion_memory.errors import Unauthorized
from companion_memory.mcp.access import Caller, McpServices, current_caller
from companion_memory.mcp.errors import mapped
from companion_memory.models.memory import (
    MAX_CONTENT_CHARS,
    ForgetResult,
    ListFilter,
    Memory,
    MemoryChanges,
    MemoryPage,
    MemoryType,
    NewMemory,
    RecallQuery,
    RecallResult,
    Relation,
    RelationType,
    StoreResult,
)
from companion_memory.models.tenancy import TenantScope

type CallerOf = Callable[[], Caller]

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
ADDITIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
IDEMPOTENT_EDIT = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)
IDEMPOTENT_ADD = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)

MemoryId = Annotated[UUID, Field(description="The memory's id (from store, recall or list)")]
ExpectedVersion = Annotated[
    int, Field(ge=1, description="The version you last read; if the memory changed since, nothing is done")
]
Types = Annotated[list[MemoryType] | None, Field(description="Only memories of these types")]
Since = Annotated[
    AwareDatetime | None, Field(description="Only memories that happened at or after (ISO 8601)")
]
Until = Annotated[AwareDatetime | None, Field(description="Only memories that happened before (ISO 8601)")]
Metadata = Annotated[
    dict[str, Any] | None, Field(description="Any JSON object, kept verbatim and returned with the memory")
]


def caller_in_request() -> Caller:
    """The caller the handler authenticated for this request (``access.current_caller``)."""
    caller = current_caller.get()
    if caller is None:
        raise Unauthorized("missing credential")
    return caller


class Gate:
    """``MemoryAccess.authorize`` for the caller's own memories (scope, permission, block, one admission by
    the rate limiter), the check every REST memory route passes too."""

    def __init__(self, services: Callable[[], McpServices], caller_of: CallerOf) -> None:
        self._services = services
        self._caller_of = caller_of

    def enter(self, operation: Operation) -> tuple[MemoryService, TenantScope]:
        caller = self._caller_of()
        services = self._services()
        scope = services.access.authorize(caller, caller.companion_id, caller.user_id, operation)
        return services.memory, scope


def answer(result: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=result.model_dump(mode="json")
    )


def line(memory: Memory) -> str:
    when = memory.occurred_at.date().isoformat()
    return f"- [{memory.type}, importance {memory.importance:g}, {when}] {memory.content} (id {memory.id})"


def register(server: MCPServer, gate: Gate) -> None:
    @server.tool(title="Store a memory", annotations=ADDITIVE)
    @mapped
    def store_memory(
        content: Annotated[
            str,
            Field(min_length=1, max_length=MAX_CONTENT_CHARS, description="What to remember, in plain words"),
        ],
        type: Annotated[
            MemoryType, Field(description="fact, preference, experience, instruction or reflection")
        ] = "fact",
        importance: Annotated[
            float | None, Field(ge=0, le=10, description="0-10; default depends on the type")
        ] = None,
        metadata: Metadata = None,
        occurred_at: Annotated[
            AwareDatetime | None, Field(description="When it happened (ISO 8601 with offset); default now")
        ] = None,
        expires_at: Annotated[
            AwareDatetime | None, Field(description="When to forget it (ISO 8601); default by type")
        ] = None,
    ) -> Annotated[CallToolResult, StoreResult]:
        """Remember something about the user. A near-duplicate of an existing memory reinforces or rewords
        it instead of adding a copy (see `outcome`)."""
        memory, scope = gate.enter("write")
        new = NewMemory(
            content=content,
            type=type,
            importance=importance,
            metadata=metadata or {},
            occurred_at=occurred_at,
            expires_at=expires_at,
        )
        stored = memory.store(scope, new)
        return answer(stored, f"{stored.outcome}: {stored.memory.content} (id {stored.memory.id})")

    @server.tool(title="Recall memories", annotations=READ_ONLY)
    @mapped
    def recall_memories(
        query: Annotated[
            str, Field(min_length=1, max_length=2_000, description="What to look for, in plain words")
        ],
        limit: Annotated[int, Field(ge=1, le=50, description="How many memories at most")] = 10,
        types: Types = None,
        since: Since = None,
        until: Until = None,
        min_score: Annotated[
            float, Field(ge=0, le=1, description="Leave out memories scoring below this")
        ] = 0.0,
    ) -> Annotated[CallToolResult, RecallResult]:
        """The user's memories most relevant to a question, best first, each with its score and why."""
        memory, scope = gate.enter("read")
        found = memory.recall(
            scope,
            RecallQuery(
                query=query,
                limit=limit,
                types=tuple(types) if types else None,
                since=since,
                until=until,
                min_score=min_score,
            ),
        )
        lines = [f"{line(m)} score {m.score:.2f}" for m in found.memories]
        return answer(found, "\n".join(lines) or "No memory matches.")

    @server.tool(title="Get a memory", annotations=READ_ONLY)
    @mapped
    def get_memory(memory_id: MemoryId) -> Annotated[CallToolResult, Memory]:
        """One memory by id, with its current version (needed to update or forget it)."""
        memory, scope = gate.enter("read")
        found = memory.get(scope, memory_id)
        return answer(found, f"{line(found)} version {found.version}")

    @server.tool(title="Update a memory", annotations=IDEMPOTENT_EDIT)
    @mapped
    def update_memory(
        memory_id: MemoryId,
        expected_version: ExpectedVersion,
        content: Annotated[
            str | None, Field(min_length=1, max_length=MAX_CONTENT_CHARS, description="The new wording")
        ] = None,
        type: Annotated[MemoryType | None, Field(description="The new type")] = None,
        importance: Annotated[
            float | None, Field(ge=0, le=10, description="The new importance, 0-10")
        ] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Replaces the metadata (a JSON object, kept verbatim)")
        ] = None,
        occurred_at: Annotated[AwareDatetime | None, Field(description="When it happened (ISO 8601)")] = None,
        expires_at: Annotated[AwareDatetime | None, Field(description="When to forget it (ISO 8601)")] = None,
    ) -> Annotated[CallToolResult, Memory]:
        """Change a memory if it is still at `expected_version` (otherwise a conflict: get it again)."""
        memory, scope = gate.enter("write")
        changes = MemoryChanges(
            expected_version=expected_version,
            content=content,
            type=type,
            importance=importance,
            metadata=metadata,
            occurred_at=occurred_at,
            expires_at=expires_at,
        )
        updated = memory.update(scope, memory_id, changes)
        return answer(updated, f"updated to version {updated.version}: {line(updated)}")

    @server.tool(title="Forget a memory", annotations=IDEMPOTENT_EDIT)
    @mapped
    def forget_memory(
        memory_id: MemoryId, expected_version: ExpectedVersion
    ) -> Annotated[CallToolResult, ForgetResult]:
        """Forget a memory at once; it is deleted for good after a grace period (`purge_after`)."""
        memory, scope = gate.enter("delete")
        forgotten = memory.forget(scope, memory_id, expected_version)
        return answer(
            forgotten, f"forgotten {forgotten.id}; deleted for good after {forgotten.purge_after:%Y-%m-%d}"
        )

    @server.tool(title="List memories", annotations=READ_ONLY)
    @mapped
    def list_memories(
        types: Types = None,
        since: Since = None,
        until: Until = None,
        limit: Annotated[int, Field(ge=1, le=100, description="How many per page")] = 20,
        cursor: Annotated[
            str | None,
            Field(max_length=200, description="`next_cursor` of the previous page, with the same filters"),
        ] = None,
    ) -> Annotated[CallToolResult, MemoryPage]:
        """The user's memories, newest first, a page at a time."""
        memory, scope = gate.enter("read")
        page = memory.list(
            scope,
            ListFilter(
                types=tuple(types) if types else None, since=since, until=until, limit=limit, cursor=cursor
            ),
        )
        more = "\n(more: pass next_cursor)" if page.next_cursor else ""
        return answer(page, ("\n".join(line(m) for m in page.items) or "No memories.") + more)

    @server.tool(title="Link two memories", annotations=IDEMPOTENT_ADD)
    @mapped
    def link_memories(
        source_id: Annotated[UUID, Field(description="The memory the relation starts from")],
        target_id: Annotated[UUID, Field(description="The memory it points to")],
        relation: Annotated[
            RelationType,
            Field(
                description="follows, contradicts, elaborates, corrects, references, causes, "
                "consolidated_into or related_to"
            ),
        ],
        metadata: Metadata = None,
    ) -> Annotated[CallToolResult, Relation]:
        """Relate two of the user's memories (linking again with the same relation replaces its metadata)."""
        memory, scope = gate.enter("write")
        linked = memory.link(scope, source_id, target_id, relation, metadata)
        return answer(linked, f"{linked.source_id} {linked.type} {linked.target_id}")
