"""Analytics: a companion's metrics time series, user engagement and health, the owner's leaderboard, the
dashboard page (owner key, or the companion's own key); and, on an hourly EventBridge schedule, health for
every companion with auto-pause where a companion's config enables it."""

from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime

from companion_memory import wiring
from companion_memory.auth.principal import principal_from_authorizer_context
from companion_memory.config import PostgresSettings, settings_for
from companion_memory.domain.analytics import MAX_TOP
from companion_memory.http import dashboard
from companion_memory.http.resolver import build_resolver
from companion_memory.models.analytics import Bucket, Engagement, Health, Leaderboard, Metrics
from companion_memory.observability import logger, metrics, tracer

settings_for(PostgresSettings)
app = build_resolver()

From = Annotated[AwareDatetime | None, Query(alias="from", description="Start (ISO 8601 with offset)")]
To = Annotated[
    AwareDatetime | None,
    Query(alias="to", description="End, exclusive (default and latest: the end of the current bucket)"),
]
Top = Annotated[int, Query(ge=1, le=MAX_TOP, description="How many, most active first")]


def _principal() -> Any:
    return principal_from_authorizer_context(app.current_event.raw_event)


@app.get("/companions/<companion_id>/analytics/metrics", summary="Hourly or daily time series of a companion")
def get_metrics(
    companion_id: UUID,
    start: From = None,
    end: To = None,
    bucket: Annotated[Bucket, Query(description="hour (at most 31 days) or day (366)")] = "hour",
) -> Metrics:
    return wiring.analytics_service().metrics(_principal(), companion_id, start, end, bucket)


@app.get(
    "/companions/<companion_id>/analytics/engagement",
    summary="The most engaged users of a companion (the top `limit`, at most 100; no further pages)",
)
def get_engagement(companion_id: UUID, start: From = None, end: To = None, limit: Top = 20) -> Engagement:
    return wiring.analytics_service().engagement(_principal(), companion_id, start, end, limit)


@app.get("/companions/<companion_id>/analytics/health", summary="A companion's health score and its parts")
def get_health(companion_id: UUID) -> Health:
    return wiring.analytics_service().health(_principal(), companion_id)


@app.get("/analytics/leaderboard", summary="The owner's companions ranked by activity")
def get_leaderboard(start: From = None, end: To = None, limit: Top = 20) -> Leaderboard:
    return wiring.analytics_service().leaderboard(_principal(), start, end, limit)


@app.get("/companions/<companion_id>/dashboard", summary="A companion's dashboard (HTML)")
def get_dashboard(
    companion_id: UUID, days: Annotated[int, Query(ge=1, le=31, description="Period, in days")] = 7
) -> Response[str]:
    page = dashboard.render(wiring.analytics_service().dashboard(_principal(), companion_id, days))
    return Response(
        status_code=200,
        content_type=content_types.TEXT_HTML,
        body=page,
        headers={
            "Content-Security-Policy": dashboard.HEADER_CONTENT_SECURITY_POLICY,
            "Referrer-Policy": dashboard.REFERRER_POLICY,
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _scheduled(context: LambdaContext) -> dict[str, Any]:
    run = wiring.analytics_service().run_schedule(lambda: context.get_remaining_time_in_millis() / 1000)
    logger.info("analytics schedule done", extra=run.model_dump(mode="json"))
    return run.model_dump(mode="json")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("source") == "aws.scheduler" or event.get("detail-type") == "Scheduled Event":
        return _scheduled(context)
    return app.resolve(event, context)
