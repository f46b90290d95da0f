"""Companions: create and read, and a companion user's permissions (owner key). Issue 5 adds the rest of the
lifecycle here."""

from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from companion_memory import wiring
from companion_memory.auth.principal import principal_from_authorizer_context
from companion_memory.config import IdentitySettings, settings_for
from companion_memory.http.resolver import build_resolver, json_response
from companion_memory.models.erasure import CompanionDeletionReceipt, UserErasureReceipt
from companion_memory.models.identity import Companion, CompanionCreate, CompanionUser, UserPermissions
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


# The user id a token names (TokenRequest.user_id): no whitespace, not starting with "*".
UserId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^*\s][^\s]*$")]


@app.get("/companions/<companion_id>/users/<user_id>", summary="Read a user's permissions")
def get_companion_user(companion_id: UUID, user_id: UserId) -> CompanionUser:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.identity_service().get_companion_user(principal, companion_id, user_id)


@app.put(
    "/companions/<companion_id>/users/<user_id>/permissions",
    summary="Set a user's permissions (fields left out stay as they are); audited",
)
def set_user_permissions(companion_id: UUID, user_id: UserId, request: UserPermissions) -> CompanionUser:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.identity_service().update_user_permissions(principal, companion_id, user_id, request)


@app.delete(
    "/companions/<companion_id>",
    summary="Delete a companion: tombstone, crypto-shred, revoke its keys, purge every store (idempotent)",
)
def delete_companion(companion_id: UUID) -> CompanionDeletionReceipt:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.erasure_service().delete_companion(principal, companion_id)


@app.delete(
    "/companions/<companion_id>/users/<user_id>",
    summary="Erase a user: memories, history, sessions, counters, relationship record, in every store",
)
def erase_user(companion_id: UUID, user_id: UserId) -> UserErasureReceipt:
    principal = principal_from_authorizer_context(app.current_event.raw_event)
    return wiring.erasure_service().erase_user(principal, companion_id, user_id)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
