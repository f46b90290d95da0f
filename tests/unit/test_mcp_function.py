"""The MCP handler invoked in-process on function URL events, as the Lambda runtime would, warm."""

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from companion_memory.config import settings_for
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
def call() -> Iterator[Any]:
    # The template passes PUBLIC_BASE_URL (the API's public URL) to the function; so does this test.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PUBLIC_BASE_URL", "https://api.example")
        settings_for.cache_clear()
        yield from _caller()
    settings_for.cache_clear()


def _caller() -> Iterator[Any]:
    loader = HandlerLoader()
    function = template.default().functions["McpFunction"]

    def _call(event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = invoke(loader, function, event)
        return result

    yield _call


def event(
    body: object = None, *, method: str = "POST", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    built: dict[str, Any] = copy.deepcopy(SAMPLE)
    # What AWS sends: the Host is the function URL's own domain.
    built["headers"]["host"] = built["requestContext"]["domainName"]
    built["headers"].update(headers or {})
    built["requestContext"]["http"]["method"] = method
    built["body"] = json.dumps(body) if body is not None else None
    return built


def test_a_tokenless_request_gets_401_with_the_challenge_on_three_warm_invocations(call: Any) -> None:
    # The real handler module, loaded once: the authenticated path (with fakes behind it) is in
    # test_mcp_handler.py; here nothing is read or built for a request without a credential.
    initialize = json.loads(SAMPLE["body"])
    for _ in range(3):
        response = call(event(initialize))
        assert response["statusCode"] == 401
        challenge = response["headers"]["www-authenticate"]
        assert challenge.startswith(
            'Bearer resource_metadata="https://api.example/.well-known/oauth-protected-resource/mcp"'
        )


def test_the_2026_revision_needs_a_token_too(call: Any) -> None:
    request = {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"_meta": MODERN_META}}
    headers = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
    response = call(event(request, headers=headers))
    assert response["statusCode"] == 401
    assert "www-authenticate" in response["headers"]


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_methods_other_than_post_answer_405(call: Any, method: str) -> None:
    response = call(event(method=method))
    assert response["statusCode"] == 405
    assert response["headers"]["allow"] == "POST"
