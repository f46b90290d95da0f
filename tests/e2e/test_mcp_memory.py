"""The memory tools through the local gateway with the official MCP client, on both protocol revisions, with
user tokens from the real operator flow (CLI owner -> companion -> companion key -> POST /auth/token)."""

from collections.abc import Callable

import pytest

from localdev.stack import Running
from tests.e2e.conftest import Tenant
from tests.support.mcp_client import connect, ok

pytestmark = pytest.mark.anyio
MODES = [("legacy", "2025-11-25"), ("auto", "2026-07-28")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(("mode", "revision"), MODES)
async def test_memories_are_stored_with_metadata_and_recalled_ranked(
    stack: Running,
    new_tenant: Callable[[str], Tenant],
    user_token: Callable[..., str],
    mode: str,
    revision: str,
) -> None:
    tenant = new_tenant(f"Recall {mode}")
    token = user_token(tenant, "alice")
    async with connect(stack.env["MCP_URL"], token, mode) as client:
        assert client.protocol_version == revision
        # Given a few memories, one with metadata and a past occurred_at
        peanut = await ok(
            client,
            "store_memory",
            content="Alice is severely allergic to peanuts",
            type="fact",
            metadata={"source": "intake-form", "confidence": "high"},
            occurred_at="2023-06-01T09:30:00+02:00",
        )
        for content in (
            "Alice plays the cello in a community orchestra",
            "Alice's sister lives in Montreal",
            "Alice prefers to be called Ali",
        ):
            await ok(client, "store_memory", content=content)
        # When the model asks a paraphrased question
        recalled = await ok(client, "recall_memories", query="which foods make her sick?", limit=3)
        # Then the peanut memory comes first, with its metadata, occurred_at and score
        first = recalled["memories"][0]
        assert first["id"] == peanut["memory"]["id"]
        assert first["metadata"] == {"source": "intake-form", "confidence": "high"}
        assert first["occurred_at"].startswith("2023-06-01T07:30:00")
        assert 0 < first["score"] <= 1
        assert {"id", "content", "type", "importance", "created_at"} <= set(first)


@pytest.mark.parametrize(("mode", "revision"), MODES)
async def test_get_update_forget_list_and_link(
    stack: Running,
    new_tenant: Callable[[str], Tenant],
    user_token: Callable[..., str],
    mode: str,
    revision: str,
) -> None:
    tenant = new_tenant(f"Lifecycle {mode}")
    async with connect(stack.env["API_URL"] + "/mcp", user_token(tenant, "alice"), mode) as client:
        city = (await ok(client, "store_memory", content="Alice lives in Lyon"))["memory"]
        job = (await ok(client, "store_memory", content="Alice works as a nurse at night"))["memory"]
        assert (await ok(client, "get_memory", memory_id=city["id"]))["content"] == "Alice lives in Lyon"
        moved = await ok(
            client, "update_memory", memory_id=city["id"], expected_version=1, content="Alice moved to Paris"
        )
        assert moved["version"] == 2
        stale = await client.call_tool("update_memory", {"memory_id": city["id"], "expected_version": 1})
        assert stale.is_error
        assert "code: conflict" in stale.content[0].text  # type: ignore[union-attr]
        link = await ok(
            client, "link_memories", source_id=job["id"], target_id=city["id"], relation="related_to"
        )
        assert link["type"] == "related_to"
        await ok(client, "forget_memory", memory_id=job["id"], expected_version=job["version"])
        page = await ok(client, "list_memories")
        assert [m["id"] for m in page["items"]] == [city["id"]]


async def test_other_users_and_other_companions_never_see_the_memories(
    stack: Running, new_tenant: Callable[[str], Tenant], user_token: Callable[..., str]
) -> None:
    tenant, other = new_tenant("Isolation"), new_tenant("Isolation other")
    async with connect(stack.env["MCP_URL"], user_token(tenant, "alice"), "auto") as client:
        secret = (await ok(client, "store_memory", content="Alice's locker code is 4471"))["memory"]
    for token in (user_token(tenant, "bob"), user_token(other, "alice")):
        async with connect(stack.env["MCP_URL"], token, "legacy") as client:
            assert (await ok(client, "recall_memories", query="locker code"))["memories"] == []
            assert (await ok(client, "list_memories"))["items"] == []
            got = await client.call_tool("get_memory", {"memory_id": secret["id"]})
            assert got.is_error
            assert "code: not_found" in got.content[0].text  # type: ignore[union-attr]
