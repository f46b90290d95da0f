"""The official MCP client against the local gateway, for e2e tests: connect with a Bearer token, call a tool
that must succeed, and read the stable code of a tool error."""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

_CODE = re.compile(r"\(code: ([a-z_]+)")


@asynccontextmanager
async def connect(url: str, token: str, mode: str = "auto") -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(timeout=60, headers={"authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
    ):
        yield client


async def ok(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    structured: dict[str, Any] = result.structured_content
    return structured


async def error_code(client: Client, tool: str, **arguments: Any) -> str:
    """The stable code of the tool error ``tool`` answers (the call must fail)."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    text = result.content[0].text  # type: ignore[union-attr]
    found = _CODE.search(text)
    assert found is not None, text
    return found.group(1)
