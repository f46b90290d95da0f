"""Answering a CloudFormation custom resource request (a PUT of the result to its presigned URL)."""

import json
import urllib.request
from typing import Any, Literal

from aws_lambda_powertools.utilities.data_classes import CloudFormationCustomResourceEvent

RESPONSE_TIMEOUT_S = 10


def respond(
    event: CloudFormationCustomResourceEvent,
    status: Literal["SUCCESS", "FAILED"],
    *,
    physical_resource_id: str,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason or status,
            "PhysicalResourceId": physical_resource_id,
            "StackId": event.stack_id,
            "RequestId": event.request_id,
            "LogicalResourceId": event.logical_resource_id,
            "Data": data or {},
        }
    ).encode()
    # The presigned S3 URL expects no Content-Type; urllib would add a form type otherwise.
    request = urllib.request.Request(  # noqa: S310 - the URL comes from CloudFormation
        event.response_url,
        data=body,
        method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=RESPONSE_TIMEOUT_S) as response:  # noqa: S310
        response.read()
