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
async def connect(url: str, mode: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
    ):
        yield client


@pytest.mark.parametrize(("mode", "revision"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
@pytest.mark.parametrize("surface", ["MCP_URL", "API_URL"])
async def test_the_official_client_connects_on_both_revisions_and_surfaces(
    stack: Running, mode: str, revision: str, surface: str
) -> None:
    # Given the function URL (MCP_URL) or the HttpApi route (API_URL + /mcp)
    url = stack.env["MCP_URL"] if surface == "MCP_URL" else stack.env["API_URL"] + "/mcp"
    # When the client negotiates and lists the server's tools
    async with connect(url, mode) as client:
        tools = await client.list_tools()
        # Then it speaks the expected revision with our server
        assert client.protocol_version == revision
        assert client.server_info is not None
        assert client.server_info.name == "companion-memory"
        assert tools.tools is not None


async def test_warm_invocations_keep_serving(stack: Running) -> None:
    # Three sessions in a row reuse the same handler process (and its one-time ASGI lifespan).
    for _ in range(3):
        async with connect(stack.env["MCP_URL"], "legacy") as client:
            assert (await client.list_tools()).tools is not None


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_are_refused_with_405_not_an_endless_stream(stack: Running, method: str) -> None:
    response = httpx.request(method, stack.env["MCP_URL"], headers=JSON_HEADERS, timeout=10)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_a_foreign_host_header_is_refused(stack: Running) -> None:
    # DNS rebinding: a browser tricked into sending our traffic under another name is turned away.
    response = httpx.post(
        stack.env["MCP_URL"],
        json=INITIALIZE,
        headers={**JSON_HEADERS, "host": "attacker.example"},
        timeout=10,
    )
    assert response.status_code == 421


def test_a_foreign_origin_is_refused(stack: Running) -> None:
    headers = {**JSON_HEADERS, "origin": "https://attacker.example"}
    response = httpx.post(stack.env["MCP_URL"], json=INITIALIZE, headers=headers, timeout=10)
    assert response.status_code == 403


def test_a_batch_body_is_a_client_error(stack: Running) -> None:
    response = httpx.post(
        stack.env["MCP_URL"], content=json.dumps([INITIALIZE]), headers=JSON_HEADERS, timeout=10
    )
    assert response.status_code == 400
