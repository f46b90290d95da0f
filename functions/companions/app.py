"""Companions (owner key): create, read, list, update (a new version), version history, rollback, pause /
resume / archive, and a companion's users (relationship, preferences, permissions, block). The rules (version
bump, which status moves are allowed) are in companion_memory/domain/companions.py."""

import base64
import binascii
from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from companion_memory import wiring
from companion_memory.auth.principal import principal_from_authorizer_context
from companion_memory.config import IdentitySettings, settings_for
from companion_memory.errors import ValidationFailed
from companion_memory.http.resolver import build_resolver, json_response
from companion_memory.models.companion import (
    SEMVER,
    CompanionPage,
    CompanionRollback,
    CompanionUpdate,
    CompanionUserDetail,
    CompanionUserPage,
    CompanionVersion,
    CompanionVersionPage,
    PreferencesUpdate,
)
from companion_memory.models.companion_export import (
    DEFAULT_EXPORT_PAGE,
    MAX_EXPORT_PAGE,
    CompanionImportReport,
)
from companion_memory.models.erasure import Budget, CompanionDeletionReceipt, UserErasureReceipt
from companion_memory.models.identity import (
    USER_ID_PATTERN,
    Companion,
    CompanionCreate,
    CompanionStatus,
    CompanionUser,
    UserPermissions,
)
from companion_memory.observability import logger, metrics, tracer

settings_for(IdentitySettings)
app = build_resolver()


@app.post("/companions", summary="Create a companion")
def create_companion(request: CompanionCreate) -> Response[Companion]:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return json_response(201, wiring.identity_service().create_companion(principal, request))


@app.get("/companions/<companion_id>", summary="Read a companion")
def get_companion(companion_id: UUID) -> Companion:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.identity_service().get_companion(principal, companion_id)


# The user id a token names (TokenRequest.user_id): no whitespace or braces, not starting with "*".
UserId = Annotated[str, Path(min_length=1, max_length=200, pattern=USER_ID_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size")]
Cursor = Annotated[str | None, Query(max_length=500, description="next_cursor of the previous page")]


@app.get("/companions", summary="List the owner's companions, newest first (cursor paging)")
def list_companions(
    status: Annotated[
        CompanionStatus | None, Query(description="Only this status (default: all but deleted)")
    ] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> CompanionPage:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().list_companions(principal, status, cursor, limit)


@app.patch(
    "/companions/<companion_id>",
    summary="Change the name and/or config: a new version (409 with current_version when stale); audited",
)
def update_companion(companion_id: UUID, request: CompanionUpdate) -> Companion:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().update(principal, companion_id, request)


@app.get("/companions/<companion_id>/versions", summary="The companion's versions, newest first")
def list_versions(companion_id: UUID, limit: Limit = 20, cursor: Cursor = None) -> CompanionVersionPage:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().versions(principal, companion_id, cursor, limit)


@app.get("/companions/<companion_id>/versions/<version>", summary="One version's name and config")
def get_version(companion_id: UUID, version: Annotated[str, Path(pattern=SEMVER)]) -> CompanionVersion:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().version(principal, companion_id, version)


@app.post(
    "/companions/<companion_id>/rollback",
    summary="A new version whose name and config are an old version's (history is kept); audited",
)
def rollback_companion(companion_id: UUID, request: CompanionRollback) -> Companion:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().rollback(principal, companion_id, request)


@app.post("/companions/<companion_id>/pause", summary="Pause: its keys and user tokens are refused; audited")
def pause_companion(companion_id: UUID) -> Companion:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().transition(principal, companion_id, "pause")


@app.post("/companions/<companion_id>/resume", summary="Resume a paused companion; audited")
def resume_companion(companion_id: UUID) -> Companion:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().transition(principal, companion_id, "resume")


@app.post(
    "/companions/<companion_id>/archive",
    summary="Archive (one-way: it serves nothing, keeps its memories, waits to be deleted); audited",
)
def archive_companion(companion_id: UUID) -> Companion:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().transition(principal, companion_id, "archive")


@app.get("/companions/<companion_id>/users", summary="The companion's users by id (cursor paging)")
def list_companion_users(companion_id: UUID, limit: Limit = 20, cursor: Cursor = None) -> CompanionUserPage:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().users(principal, companion_id, cursor, limit)


@app.get(
    "/companions/<companion_id>/users/<user_id>",
    summary="A user: permissions, preferences and relationship statistics",
)
def get_companion_user(companion_id: UUID, user_id: UserId) -> CompanionUserDetail:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().user(principal, companion_id, user_id)


@app.put(
    "/companions/<companion_id>/users/<user_id>/preferences",
    summary="Replace a user's preferences (a JSON object of at most 16 KiB); audited",
)
def set_user_preferences(
    companion_id: UUID, user_id: UserId, request: PreferencesUpdate
) -> CompanionUserDetail:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().set_preferences(principal, companion_id, user_id, request.preferences)


@app.post("/companions/<companion_id>/users/<user_id>/block", summary="Block a user; audited")
def block_user(companion_id: UUID, user_id: UserId) -> CompanionUserDetail:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().set_blocked(principal, companion_id, user_id, True)


@app.post("/companions/<companion_id>/users/<user_id>/unblock", summary="Unblock a user; audited")
def unblock_user(companion_id: UUID, user_id: UserId) -> CompanionUserDetail:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().set_blocked(principal, companion_id, user_id, False)


@app.put(
    "/companions/<companion_id>/users/<user_id>/permissions",
    summary="Set a user's permissions (fields left out stay as they are); audited",
)
def set_user_permissions(companion_id: UUID, user_id: UserId, request: UserPermissions) -> CompanionUser:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.companion_service().set_permissions(principal, companion_id, user_id, request)


@app.delete(
    "/companions/<companion_id>",
    summary="Delete a companion: tombstone, crypto-shred, revoke its keys, purge every store (idempotent)",
    description=(
        "200 when every store is purged; 202 with `purge: pending` when the request ran out of time first "
        "(the cleanup schedule finishes the purge; sending the delete again does too)."
    ),
)
def delete_companion(companion_id: UUID) -> Response[CompanionDeletionReceipt]:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    # The purge stops before the HTTP API gives up on the request (29 s, the function's timeout).
    context = app.lambda_context
    budget = Budget(remaining=lambda: context.get_remaining_time_in_millis() / 1000)
    receipt = wiring.erasure_service().delete_companion(principal, companion_id, budget)
    return json_response(202 if receipt.purge == "pending" else 200, receipt)


@app.delete(
    "/companions/<companion_id>/users/<user_id>",
    summary="Erase a user: memories, history, sessions, counters, relationship record, in every store",
)
def erase_user(companion_id: UUID, user_id: UserId) -> UserErasureReceipt:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.erasure_service().erase_user(principal, companion_id, user_id)


NDJSON = "application/x-ndjson"


@app.get(
    "/companions/<companion_id>/export",
    summary="Export a companion (config, memories, relations) as JSON Lines, a page at a time",
    description=(
        f"Answers `{NDJSON}`: a header line (format, companion config and version, exported_at), then "
        "memories user by user (no vectors), then each user's relations. Every page starts with the header, "
        "so each page imports on its own. When more remain, `X-Next-Cursor` holds the next page's cursor."
    ),
    responses={200: {"description": "JSON Lines", "content": {NDJSON: {"schema": {"type": "string"}}}}},
)
def export_companion(
    companion_id: UUID,
    limit: Annotated[
        int, Query(ge=1, le=MAX_EXPORT_PAGE, description="About this many memories per page")
    ] = DEFAULT_EXPORT_PAGE,
    cursor: Annotated[
        str | None, Query(max_length=2000, description="X-Next-Cursor of the last page")
    ] = None,
) -> Response[str]:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    page = wiring.companion_transfer().export_page(principal, companion_id, limit, cursor)
    headers = {"Cache-Control": "no-store"}
    if page.next_cursor is not None:
        headers["X-Next-Cursor"] = page.next_cursor
    body = "".join(f"{line}\n" for line in page.lines)
    return Response(status_code=200, content_type=NDJSON, body=body, headers=headers)


@app.post(
    "/companions/import",
    summary="Import a companion export page (JSON Lines): creates the companion or resumes it; idempotent",
)
def import_companion() -> Response[CompanionImportReport]:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    report = wiring.companion_transfer().import_file(principal, _body_bytes(app.current_event.raw_event))
    return json_response(201 if report.created else 200, report)


def _body_bytes(event: dict[str, Any]) -> bytes:
    """The request body as sent: bytes, so the import names what is wrong with them (Powertools'
    ``decoded_body`` decodes them as UTF-8 itself and fails with a 500 on anything else)."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationFailed("the body is not valid base64") from None
    return body.encode("utf-8", "surrogatepass")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
