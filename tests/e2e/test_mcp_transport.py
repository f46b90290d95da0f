"""The MCP function through the local gateway, spoken to by the official MCP SDK client.

Both protocol revisions the SDK speaks, on the function URL and on the HttpApi route; each client
session is several warm invocations of one handler process.
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from localdev.stack import Running

pytestmark = pytest.mark.anyio

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def connect(url: str, mode: str, token: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(timeout=30, headers={"authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
    ):
        yield client


@pytest.mark.parametrize(("mode", "revision"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
@pytest.mark.parametrize("surface", ["MCP_URL", "API_URL"])
async def test_the_official_client_connects_on_both_revisions_and_surfaces(
    stack: Running, alice_token: str, mode: str, revision: str, surface: str
) -> None:
    # Given the function URL (MCP_URL) or the HttpApi route (API_URL + /mcp)
    url = stack.env["MCP_URL"] if surface == "MCP_URL" else stack.env["API_URL"] + "/mcp"
    # When the client negotiates and lists the server's tools
    async with connect(url, mode, alice_token) as client:
        tools = await client.list_tools()
        # Then it speaks the expected revision with our server
        assert client.protocol_version == revision
        assert client.server_info is not None
        assert client.server_info.name == "companion-memory"
        assert tools.tools is not None


async def test_warm_invocations_keep_serving(stack: Running, alice_token: str) -> None:
    # Three sessions in a row reuse the same handler process (and its one-time ASGI lifespan).
    for _ in range(3):
        async with connect(stack.env["MCP_URL"], "legacy", alice_token) as client:
            assert (await client.list_tools()).tools is not None


@pytest.mark.parametrize("surface", ["MCP_URL", "API_URL"])
def test_a_request_without_a_token_is_401_with_the_resource_metadata_challenge(
    stack: Running, surface: str
) -> None:
    url = stack.env["MCP_URL"] if surface == "MCP_URL" else stack.env["API_URL"] + "/mcp"
    response = httpx.post(url, json=INITIALIZE, headers=JSON_HEADERS, timeout=10)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    metadata_url = stack.env["API_URL"] + "/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{metadata_url}"' in challenge
    # And the metadata is there, naming the resource the tokens are issued for
    metadata = httpx.get(metadata_url, timeout=10).json()
    assert metadata["resource"] == stack.env["API_URL"] + "/mcp"


def test_a_token_in_the_query_string_is_ignored(stack: Running, alice_token: str) -> None:
    url = stack.env["MCP_URL"] + f"?access_token={alice_token}"
    response = httpx.post(url, json=INITIALIZE, headers=JSON_HEADERS, timeout=10)
    assert response.status_code == 401


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_are_refused_with_405_not_an_endless_stream(stack: Running, method: str) -> None:
    response = httpx.request(method, stack.env["MCP_URL"], headers=JSON_HEADERS, timeout=10)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_a_foreign_host_header_is_refused(stack: Running, alice_token: str) -> None:
    # DNS rebinding: a browser tricked into sending our traffic under another name is turned away.
    response = httpx.post(
        stack.env["MCP_URL"],
        json=INITIALIZE,
        headers={**JSON_HEADERS, "host": "attacker.example", "authorization": f"Bearer {alice_token}"},
        timeout=10,
    )
    assert response.status_code == 421


def test_a_foreign_origin_is_refused(stack: Running, alice_token: str) -> None:
    headers = {**JSON_HEADERS, "origin": "https://attacker.example", "authorization": f"Bearer {alice_token}"}
    response = httpx.post(stack.env["MCP_URL"], json=INITIALIZE, headers=headers, timeout=10)
    assert response.status_code == 403


def test_a_batch_body_is_a_client_error(stack: Running, alice_token: str) -> None:
    response = httpx.post(
        stack.env["MCP_URL"],
        content=json.dumps([INITIALIZE]),
        headers={**JSON_HEADERS, "authorization": f"Bearer {alice_token}"},
        timeout=10,
    )
    assert response.status_code == 400
