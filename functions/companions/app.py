"""Companions: create and read (owner key). Issue 5 adds the rest of the lifecycle here."""

from typing import Any
from uuid import UUID

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from companion_memory import wiring
from companion_memory.auth.principal import principal_from_authorizer_context
from companion_memory.config import IdentitySettings, settings_for
from companion_memory.http.resolver import build_resolver, json_response
from companion_memory.models.identity import Companion, CompanionCreate
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


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
