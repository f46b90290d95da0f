"""The sample events in events/ stay true to the template and to the shapes the local gateway builds."""

import json
from pathlib import Path
from typing import Any

import pytest

from localdev import events
from localdev.events import HttpRequest
from localdev.template import ROOT, Intrinsic, default

EVENT_FILES = sorted((ROOT / "events").rglob("*.json"))


def _function_for(path: Path) -> str:
    folder = path.relative_to(ROOT / "events").parts[0]
    matches = [
        f.logical_id for f in default().functions.values() if f.code_uri == ROOT / "functions" / folder
    ]
    assert len(matches) == 1, f"events/{folder}/ names no single function's folder under functions/"
    return matches[0]


def _shape(value: Any) -> Any:
    """The nested keys of an event (values differ per request; the structure must not)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items() if key not in _OPTIONAL}
    return type(value).__name__


# Present only when the request has them (AWS omits them otherwise).
_OPTIONAL = {"body", "cookies", "queryStringParameters", "pathParameters", "authorizer", "headers"}


def _gateway_event(event: dict[str, Any], function: str) -> dict[str, Any]:
    request = HttpRequest(event["requestContext"]["http"]["method"], event["rawPath"])
    if event["routeKey"] == "$default":
        assert default().functions[function].function_url, "a $default event needs a function URL"
        return events.function_url_event(request, url_id="x" * 32, region="us-east-1")
    match = events.match_route(default().routes, request.method, request.raw_path)
    assert match is not None, f"{event['routeKey']} is no route of template.yaml"
    assert match.route.function == function
    assert match.route_key == event["routeKey"]
    return events.http_api_event(request, match, api_id="x" * 10, region="us-east-1")


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: str(p.relative_to(ROOT / "events")))
def test_each_sample_event_fits_the_template(path: Path) -> None:
    event = json.loads(path.read_text())
    function = _function_for(path)
    if "RequestType" in event:  # a CloudFormation custom resource request
        resource = default().raw["Resources"].get(event["LogicalResourceId"], {})
        assert resource.get("Type") == event["ResourceType"]
        token = resource["Properties"]["ServiceToken"]
        assert isinstance(token, Intrinsic)
        assert token.value in (f"{function}.Arn", [function, "Arn"])
        assert event["RequestType"] in ("Create", "Update", "Delete")
    elif event.get("type") == "REQUEST":  # the HttpApi Lambda authorizer's event for a guarded route
        request = HttpRequest(event["requestContext"]["http"]["method"], event["rawPath"])
        match = events.match_route(default().routes, request.method, request.raw_path)
        assert match is not None, f"{event['routeKey']} is no route of template.yaml"
        assert match.route.auth is not None, f"{event['routeKey']} has no authorizer"
        assert match.route.auth.function == function
        route_event = _gateway_event(event, match.route.function)
        built = events.authorizer_event(route_event, event["routeArn"], event["identitySource"])
        assert _shape(event) == _shape(built)
    elif event.get("detail-type") == "Scheduled Event":  # an EventBridge rule of a Schedule event
        assert event["source"] == "aws.events"
        assert default().functions[function].schedules, f"{function} has no Schedule event in the template"
    else:
        assert _shape(event) == _shape(_gateway_event(event, function))
