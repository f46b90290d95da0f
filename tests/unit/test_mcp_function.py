"""The MCP handler invoked in-process on function URL events, as the Lambda runtime would, warm."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from localdev import template
from localdev.lambda_runtime import HandlerLoader, invoke

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((ROOT / "events" / "mcp" / "url-initialize.json").read_text())
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "unit", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.fixture(scope="module")
def call() -> Any:
    loader = HandlerLoader()
    function = template.default().functions["McpFunction"]

    def _call(event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = invoke(loader, function, event)
        return result

    return _call


def event(
    body: object = None, *, method: str = "POST", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    built = copy.deepcopy(SAMPLE)
    # What AWS sends: the Host is the function URL's own domain.
    built["headers"]["host"] = built["requestContext"]["domainName"]
    built["headers"].update(headers or {})
    built["requestContext"]["http"]["method"] = method
    built["body"] = json.dumps(body) if body is not None else None
    return built


def test_initialize_works_on_three_warm_invocations_in_a_row(call: Any) -> None:
    initialize = json.loads(SAMPLE["body"])
    for _ in range(3):
        response = call(event(initialize))
        assert response["statusCode"] == 200
        assert json.loads(response["body"])["result"]["serverInfo"]["name"] == "companion-memory"


def test_the_2026_revision_needs_no_initialize(call: Any) -> None:
    request = {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"_meta": MODERN_META}}
    headers = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
    response = call(event(request, headers=headers))
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["id"] == 7


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_methods_other_than_post_answer_405(call: Any, method: str) -> None:
    response = call(event(method=method))
    assert response["statusCode"] == 405
    assert response["headers"]["allow"] == "POST"


def test_a_host_aws_did_not_route_by_is_refused(call: Any) -> None:
    response = call(event(json.loads(SAMPLE["body"]), headers={"host": "attacker.example"}))
    assert response["statusCode"] == 421
