"""GET /health: reachability of PostgreSQL, Redis and DynamoDB (200 when all are up, else 503)."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from companion_memory import wiring
from companion_memory.config import HealthSettings, settings_for
from companion_memory.http.resolver import build_resolver, json_response
from companion_memory.models.health import HealthReport
from companion_memory.observability import logger, metrics, tracer

settings_for(HealthSettings)  # fail at init, not on the first request, when the environment is wrong
app = build_resolver()


@app.get("/health", summary="Dependency reachability")
def health() -> Response[HealthReport]:
    report = wiring.health_service().check()
    return json_response(200 if report.healthy else 503, report, {"Cache-Control": "no-store"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
