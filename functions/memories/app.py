"""Memories over REST: the MCP tools' operations for one companion user, plus JSON Lines import and export.

Concurrency: PATCH takes ``expected_version`` in its JSON body, DELETE as a query parameter (a DELETE body
is dropped by many clients and proxies); a stale version answers 409 with the current one.
"""

from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime

from companion_memory import wiring
from companion_memory.auth.principal import principal_from_authorizer_context
from companion_memory.config import MemoriesSettings, settings_for
from companion_memory.domain.memory_access import Operation
from companion_memory.domain.memory_import import MAX_IMPORT_BYTES, MAX_IMPORT_LINES
from companion_memory.http.memories import ERROR_RESPONSES, answers
from companion_memory.http.resolver import build_resolver, json_response
from companion_memory.models.identity import USER_ID_PATTERN
from companion_memory.models.memory import (
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
    StoreResult,
)
from companion_memory.models.memory_import import MAX_EXPORT_PAGE, ImportReport, LinkRequest
from companion_memory.models.tenancy import TenantScope
from companion_memory.observability import logger, metrics, tracer

settings_for(MemoriesSettings)
app = build_resolver()

NDJSON = "application/x-ndjson"
BASE = "/companions/<companion_id>/users/<user_id>/memories"
CompanionId = Annotated[UUID, Path(description="The companion")]
UserId = Annotated[
    str, Path(min_length=1, max_length=200, pattern=USER_ID_PATTERN, description="The companion's user")
]
MemoryId = Annotated[UUID, Path(description="The memory")]


def _scope(companion_id: UUID, user_id: str, operation: Operation) -> TenantScope:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.memory_access().authorize(principal, companion_id, user_id, operation)


@app.post(
    BASE,
    summary="Store a memory (201 created; 200 when merged into a near-duplicate)",
    responses=answers(StoreResult, 201, 200),
)
def store_memory(companion_id: CompanionId, user_id: UserId, request: NewMemory) -> Response[StoreResult]:
    scope = _scope(companion_id, user_id, "write")
    result = wiring.memory_service().store(scope, request)
    return json_response(201 if result.outcome == "created" else 200, result)


@app.get(BASE, summary="List memories, newest first (cursor paging)", responses=answers(MemoryPage, 200))
def list_memories(
    companion_id: CompanionId,
    user_id: UserId,
    types: Annotated[list[MemoryType] | None, Query(description="Only these types")] = None,
    since: Annotated[AwareDatetime | None, Query(description="Occurred at or after (ISO 8601)")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Occurred before (ISO 8601)")] = None,
    include_archived: Annotated[bool, Query(description="Include archived memories")] = False,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
) -> MemoryPage:
    scope = _scope(companion_id, user_id, "read")
    page_filter = ListFilter(
        types=tuple(types) if types else None,
        since=since,
        until=until,
        include_archived=include_archived,
        limit=limit,
        cursor=cursor,
    )
    return wiring.memory_service().list(scope, page_filter)


@app.post(
    f"{BASE}/recall",
    summary="Recall the memories most relevant to a query, ranked with scores",
    responses=answers(RecallResult, 200),
)
def recall_memories(companion_id: CompanionId, user_id: UserId, request: RecallQuery) -> RecallResult:
    return wiring.memory_service().recall(_scope(companion_id, user_id, "read"), request)


@app.post(
    f"{BASE}/import",
    summary="Import memories from JSON Lines (idempotent per line by import_key)",
    description=(
        f"Body: `{NDJSON}`, one memory per line (the fields of a store, plus an optional `import_key`; an "
        f"export line imports unchanged). At most {MAX_IMPORT_LINES} lines and {MAX_IMPORT_BYTES} bytes. "
        "A line whose key was imported before writes nothing (`already_imported`); a bad line is reported "
        "with its number and writes nothing; the good lines are stored. Answers the per-line report."
    ),
    responses=answers(ImportReport, 200),
)
def import_memories(companion_id: CompanionId, user_id: UserId) -> ImportReport:
    scope = _scope(companion_id, user_id, "write")
    event = app.current_event
    body = event.decoded_body or ""
    raw = body.encode() if isinstance(body, str) else body
    return wiring.memory_importer().import_lines(scope, raw)


@app.get(
    f"{BASE}/export",
    summary="Export memories as JSON Lines, a page at a time",
    description=(
        f"Answers `{NDJSON}`: one memory per line, newest first, each with `import_key` (its id). When "
        "more remain, the `X-Next-Cursor` header holds the cursor of the next page."
    ),
    responses={
        200: {"description": "JSON Lines", "content": {NDJSON: {"schema": {"type": "string"}}}},
        **ERROR_RESPONSES,
    },
)
def export_memories(
    companion_id: CompanionId,
    user_id: UserId,
    limit: Annotated[int, Query(ge=1, le=MAX_EXPORT_PAGE, description="Memories per page")] = MAX_EXPORT_PAGE,
    cursor: Annotated[
        str | None, Query(max_length=200, description="X-Next-Cursor of the previous page")
    ] = None,
    include_archived: Annotated[bool, Query(description="Include archived memories")] = False,
) -> Response[str]:
    scope = _scope(companion_id, user_id, "read")
    page = wiring.memory_importer().export_page(scope, limit, cursor, include_archived)
    headers = {"Cache-Control": "no-store"}
    if page.next_cursor is not None:
        headers["X-Next-Cursor"] = page.next_cursor
    body = "".join(f"{line}\n" for line in page.lines)
    return Response(status_code=200, content_type=NDJSON, body=body, headers=headers)


@app.get(f"{BASE}/<memory_id>", summary="Read one memory", responses=answers(Memory, 200))
def get_memory(companion_id: CompanionId, user_id: UserId, memory_id: MemoryId) -> Memory:
    return wiring.memory_service().get(_scope(companion_id, user_id, "read"), memory_id)


@app.patch(
    f"{BASE}/<memory_id>",
    summary="Change a memory (expected_version in the body; 409 when stale)",
    responses=answers(Memory, 200),
)
def update_memory(
    companion_id: CompanionId, user_id: UserId, memory_id: MemoryId, request: MemoryChanges
) -> Memory:
    return wiring.memory_service().update(_scope(companion_id, user_id, "write"), memory_id, request)


@app.delete(
    f"{BASE}/<memory_id>",
    summary="Forget a memory (restorable until purge_after)",
    responses=answers(ForgetResult, 200),
)
def forget_memory(
    companion_id: CompanionId,
    user_id: UserId,
    memory_id: MemoryId,
    expected_version: Annotated[int, Query(ge=1, description="The version you read; 409 when stale")],
) -> ForgetResult:
    scope = _scope(companion_id, user_id, "delete")
    return wiring.memory_service().forget(scope, memory_id, expected_version)


@app.post(
    f"{BASE}/<memory_id>/links",
    summary="Relate this memory to another of the user's memories",
    responses=answers(Relation, 201),
)
def link_memories(
    companion_id: CompanionId, user_id: UserId, memory_id: MemoryId, request: LinkRequest
) -> Response[Relation]:
    scope = _scope(companion_id, user_id, "write")
    relation = wiring.memory_service().link(
        scope, memory_id, request.target_id, request.type, request.metadata
    )
    return json_response(201, relation)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
