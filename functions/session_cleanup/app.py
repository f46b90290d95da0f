"""Scheduled upkeep (EventBridge, every 5 minutes): expired sessions finalised, memories kept in shape,
pending purges of deleted companions finished.

One run of ``domain.upkeep.UpkeepService`` until ~20 s before the Lambda timeout; the next run resumes
where it stopped. Returns the run's summary and emits it as EMF metrics. Imports no MCP SDK.
"""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from companion_memory import wiring
from companion_memory.config import SessionCleanupSettings, settings_for
from companion_memory.models.upkeep import UpkeepSummary
from companion_memory.observability import logger, metrics, tracer

settings_for(SessionCleanupSettings)  # fail at init, not on the first run, when the environment is wrong

METRICS = {
    "companions_visited": "CompanionsVisited",
    "companions_skipped": "CompanionsSkipped",
    "companions_failed": "CompanionsFailed",
    "companions_misconfigured": "CompanionsMisconfigured",
    "sessions_finalised": "SessionsFinalised",
    "sessions_left": "SessionsLeft",
    "memories_expired": "MemoriesExpired",
    "memories_decayed": "MemoriesDecayed",
    "memories_archived": "MemoriesArchived",
    "memories_consolidated": "MemoriesConsolidated",
    "memories_over_cap": "MemoriesOverCap",
    "memories_purged": "MemoriesPurged",
    "deleted_companions_purged": "DeletedCompanionsPurged",
    "deleted_companions_pending": "DeletedCompanionsPending",
}


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    summary = wiring.upkeep_service().run(lambda: context.get_remaining_time_in_millis() / 1000)
    emit(summary)
    logger.info("Upkeep run", extra={"scheduled_at": event.time, "summary": summary.model_dump()})
    return summary.model_dump()


def emit(summary: UpkeepSummary) -> None:
    for field, name in METRICS.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=getattr(summary, field))
