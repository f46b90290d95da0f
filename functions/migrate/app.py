"""Custom::Migrations: applies the SQL migrations on every deploy that changes the layer.

Delete leaves the schema in place: the database outlives this resource (its retention is the
cluster's deletion policy, not a migration's).
"""

import threading

from aws_lambda_powertools.utilities.data_classes import CloudFormationCustomResourceEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from companion_memory.adapters import migrations
from companion_memory.adapters.cloudformation import respond
from companion_memory.config import MigrateSettings, settings_for
from companion_memory.observability import logger

PHYSICAL_ID = "companion-memory-schema"
# Answer before Lambda kills us: an unanswered custom resource blocks the stack for an hour.
TIMEOUT_MARGIN_MS = 10_000


@logger.inject_lambda_context
@event_source(data_class=CloudFormationCustomResourceEvent)
def lambda_handler(event: CloudFormationCustomResourceEvent, context: LambdaContext) -> None:
    if event.request_type == "Delete":
        respond(event, "SUCCESS", physical_resource_id=event.physical_resource_id or PHYSICAL_ID)
        return
    answered = threading.Event()
    deadline = threading.Timer(
        max(context.get_remaining_time_in_millis() - TIMEOUT_MARGIN_MS, 0) / 1000,
        _fail_once,
        args=(event, answered, "timed out applying migrations"),
    )
    deadline.start()
    try:
        result = migrations.migrate(settings_for(MigrateSettings))
    except Exception:
        logger.exception("migrations failed")
        _fail_once(event, answered, f"migrations failed; see log stream {context.log_stream_name}")
        return
    finally:
        deadline.cancel()
    logger.info("migrations applied", extra=result)
    if not answered.is_set():
        answered.set()
        respond(event, "SUCCESS", physical_resource_id=PHYSICAL_ID, data={"Version": result["version"]})


def _fail_once(event: CloudFormationCustomResourceEvent, answered: threading.Event, reason: str) -> None:
    if not answered.is_set():
        answered.set()
        respond(event, "FAILED", physical_resource_id=PHYSICAL_ID, reason=reason)
