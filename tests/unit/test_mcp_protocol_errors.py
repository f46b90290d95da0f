"""Protocol errors the MCP server answers with the specification's codes (found by the conformance suite)."""

import pytest
from mcp import Client, MCPError
from mcp.types import INVALID_PARAMS

from companion_memory.mcp.access import McpServices
from companion_memory.mcp.server import build_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def no_services() -> McpServices:
    raise AssertionError("an unknown prompt is refused before any service is needed")


async def test_an_unknown_prompt_name_is_invalid_params_not_an_internal_error() -> None:
    # Given the server with its one prompt, memory_context
    async with Client(build_server(no_services)) as client:
        # When a client asks for a prompt that does not exist
        with pytest.raises(MCPError) as refused:
            await client.get_prompt("test_simple_prompt")

    # Then it is the client's mistake, -32602 (Invalid params), naming the prompt
    assert refused.value.error.code == INVALID_PARAMS
    assert refused.value.error.message == "Unknown prompt: test_simple_prompt"
