"""Custom::Migrations: applies the SQL migrations on every deploy that changes the layer.

Delete leaves the schema in place: the database outlives this resource (its retention is the
cluster's deletion policy, not a migration's).
"""

import threading
from typing import Any, Literal

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
    # CloudFormation takes one answer; the deadline timer and this thread race to give it, and the
    # first to take the lock answers (a check-then-set on an Event could let both through).
    answered = threading.Lock()
    deadline = threading.Timer(
        max(context.get_remaining_time_in_millis() - TIMEOUT_MARGIN_MS, 0) / 1000,
        _answer_once,
        args=(answered, event, "FAILED"),
        kwargs={"reason": "timed out applying migrations"},
    )
    deadline.start()
    try:
        result = migrations.migrate(settings_for(MigrateSettings))
    except Exception:
        logger.exception("migrations failed")
        reason = f"migrations failed; see log stream {context.log_stream_name}"
        _answer_once(answered, event, "FAILED", reason=reason)
        return
    finally:
        deadline.cancel()
    logger.info("migrations applied", extra=result)
    _answer_once(answered, event, "SUCCESS", data={"Version": result["version"]})


def _answer_once(
    answered: threading.Lock,
    event: CloudFormationCustomResourceEvent,
    status: Literal["SUCCESS", "FAILED"],
    *,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    if answered.acquire(blocking=False):
        respond(event, status, physical_resource_id=PHYSICAL_ID, reason=reason, data=data)
