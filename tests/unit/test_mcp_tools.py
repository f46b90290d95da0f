"""The MCP tools, resources and prompt through the in-process client, over a memory service with fakes."""

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from mcp import Client

from companion_memory.domain.memory import MemoryService
from companion_memory.domain.memory_access import MemoryAccess
from companion_memory.errors import QuotaExceeded, RateLimited
from companion_memory.mcp.access import MCP_SCOPES, Caller, McpServices
from companion_memory.mcp.server import build_server
from companion_memory.models.identity import CompanionUser
from tests.support.clock import FakeClock
from tests.support.embedders import HashEmbedder
from tests.support.identity import InMemoryIdentityStore, ManualClock, active_companion
from tests.support.memory_store import InMemoryMemoryStore

pytestmark = pytest.mark.anyio
COMPANION = uuid4()
OWNER = uuid4()
TOOLS = {
    "store_memory",
    "recall_memories",
    "get_memory",
    "update_memory",
    "forget_memory",
    "list_memories",
    "link_memories",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Guard:
    """Admits every call (and counts them) until told to refuse with an error."""

    def __init__(self) -> None:
        self.admitted: list[tuple[UUID, str]] = []
        self.refusal: Exception | None = None

    def admit(self, companion_id: UUID, user_id: str, config: Mapping[str, Any]) -> None:
        if self.refusal is not None:
            raise self.refusal
        self.admitted.append((companion_id, user_id))


class World:
    def __init__(self) -> None:
        self.memory = MemoryService(
            InMemoryMemoryStore({COMPANION: "standard"}),
            HashEmbedder(),
            FakeClock(datetime(2026, 5, 1, tzinfo=UTC)),
        )
        self.guard = Guard()
        self.identity = InMemoryIdentityStore()
        self.identity.companions[COMPANION] = active_companion(COMPANION, OWNER)
        self.clock = ManualClock()
        # The REST routes' own access check, with its permission cache (15 s, on a clock the test moves).
        self.access = MemoryAccess(self.identity, self.guard, cache_s=15, monotonic=self.clock.monotonic)
        self.caller = self.act_as("alice")

    def act_as(self, user: str, scopes: tuple[str, ...] = MCP_SCOPES, **permissions: bool) -> Caller:
        """The caller of the next connection: ``user`` with a token of ``scopes``, and the permissions the
        companion gives that user."""
        self.identity.users[(COMPANION, user)] = CompanionUser(
            companion_id=COMPANION, user_id=user, **permissions
        )
        self.caller = Caller(owner_id=OWNER, companion_id=COMPANION, user_id=user, scopes=frozenset(scopes))
        return self.caller

    def services(self) -> McpServices:
        return McpServices(
            authenticator=None,  # type: ignore[arg-type]  # the handler authenticates, not the tools
            access=self.access,
            memory=self.memory,
            sessions=None,  # type: ignore[arg-type]
        )

    def connect(self) -> Client:
        return Client(build_server(self.services, lambda: self.caller), raise_exceptions=False)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def client(world: World) -> AsyncIterator[Client]:
    async with world.connect() as connected:
        yield connected


async def call(client: Client, name: str, **arguments: Any) -> Any:
    return await client.call_tool(name, arguments)


async def store(client: Client, content: str, **extra: Any) -> dict[str, Any]:
    result = await call(client, "store_memory", content=content, **extra)
    assert not result.is_error, result.content
    memory: dict[str, Any] = result.structured_content["memory"]
    return memory


async def test_every_tool_has_a_title_annotations_described_parameters_and_an_output_schema(
    client: Client,
) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.title
        assert tool.description
        assert tool.annotations is not None
        assert tool.annotations.open_world_hint is False
        assert tool.output_schema is not None
        for name, schema in tool.input_schema["properties"].items():
            assert schema.get("description"), f"{tool.name}.{name} has no description"
    assert tools["recall_memories"].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert tools["forget_memory"].annotations.destructive_hint is True  # type: ignore[union-attr]
    assert tools["store_memory"].annotations.read_only_hint is False  # type: ignore[union-attr]


async def test_a_stored_memory_keeps_its_metadata_and_occurred_at_and_is_recalled_first(
    client: Client,
) -> None:
    # Given two memories, one with metadata and a past occurred_at
    stored = await store(
        client,
        "Alice is allergic to peanuts",
        type="fact",
        metadata={"source": "chat", "turn": 12},
        occurred_at="2024-03-01T10:00:00+00:00",
    )
    await store(client, "Alice plays the cello on Sundays", type="experience")
    # When a question about the first is asked
    result = await call(client, "recall_memories", query="peanuts allergic")
    # Then it comes first with its score and parts, and the operator contract's fields
    first = result.structured_content["memories"][0]
    assert first["id"] == stored["id"]
    assert first["metadata"] == {"source": "chat", "turn": 12}
    assert first["occurred_at"].startswith("2024-03-01T10:00:00")
    assert {"content", "type", "importance", "created_at", "score", "score_parts"} <= set(first)
    assert "peanuts" in result.content[0].text


async def test_get_update_with_a_stale_version_is_a_conflict_tool_error(client: Client) -> None:
    stored = await store(client, "Alice lives in Lyon")
    updated = await call(
        client, "update_memory", memory_id=stored["id"], expected_version=1, content="Alice lives in Paris"
    )
    assert updated.structured_content["version"] == 2
    # When an update names the old version
    stale = await call(client, "update_memory", memory_id=stored["id"], expected_version=1, importance=9)
    # Then the model reads a conflict with its stable code, and the memory is unchanged
    assert stale.is_error
    assert "code: conflict" in stale.content[0].text
    got = await call(client, "get_memory", memory_id=stored["id"])
    assert (got.structured_content["content"], got.structured_content["version"]) == (
        "Alice lives in Paris",
        2,
    )


async def test_forget_list_and_link(client: Client) -> None:
    first = await store(client, "Alice adopted a cat named Miso")
    second = await store(client, "Miso the cat is afraid of thunder")
    linked = await call(
        client, "link_memories", source_id=second["id"], target_id=first["id"], relation="elaborates"
    )
    assert linked.structured_content["type"] == "elaborates"
    forgotten = await call(client, "forget_memory", memory_id=first["id"], expected_version=1)
    assert forgotten.structured_content["id"] == first["id"]
    page = await call(client, "list_memories", limit=10)
    assert [m["id"] for m in page.structured_content["items"]] == [second["id"]]
    missing = await call(client, "get_memory", memory_id=first["id"])
    assert missing.is_error
    assert "code: not_found" in missing.content[0].text


async def test_invalid_arguments_are_tool_errors_naming_the_field(client: Client) -> None:
    result = await call(client, "store_memory", content="x", importance=42)
    assert result.is_error
    assert "importance" in result.content[0].text
    naive = await call(client, "store_memory", content="x", occurred_at="2024-03-01T10:00:00")
    assert naive.is_error
    assert "occurred_at" in naive.content[0].text


async def test_oversized_metadata_is_a_validation_error_not_a_crash(client: Client) -> None:
    result = await call(client, "store_memory", content="x", metadata={"blob": "y" * 20_000})
    assert result.is_error
    assert "code: validation_failed" in result.content[0].text


@pytest.mark.parametrize(
    ("scopes", "permissions", "expected"),
    [
        (("memories:read",), {}, "does not grant memories:write"),
        (MCP_SCOPES, {"can_write": False}, "does not allow this user to write"),
    ],
)
async def test_a_write_needs_the_scope_and_the_companions_permission(
    world: World, scopes: tuple[str, ...], permissions: dict[str, bool], expected: str
) -> None:
    world.act_as("alice", scopes, **permissions)
    async with world.connect() as client:
        result = await call(client, "store_memory", content="Alice likes tea")
    assert result.is_error
    assert expected in result.content[0].text
    assert "code: forbidden" in result.content[0].text


async def test_reading_is_refused_without_can_read(world: World) -> None:
    world.act_as("alice", can_read=False)
    async with world.connect() as client:
        result = await call(client, "recall_memories", query="tea")
    assert result.is_error
    assert "code: forbidden" in result.content[0].text


async def test_a_user_blocked_after_the_token_was_issued_is_refused_once_the_cache_expires(
    world: World,
) -> None:
    # Given alice, served once (her permissions are now cached)
    async with world.connect() as client:
        await store(client, "Alice drinks green tea")
        # When the companion blocks her, with her token still valid
        world.identity.users[(COMPANION, "alice")] = CompanionUser(
            companion_id=COMPANION, user_id="alice", is_blocked=True
        )
        within = await call(client, "recall_memories", query="tea")
        world.clock.advance(15)
        after = await call(client, "recall_memories", query="tea")
    # Then the cache bounds how long she keeps access, and the refusal is a forbidden tool error
    assert not within.is_error
    assert after.is_error
    assert "code: forbidden" in after.content[0].text


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        (RateLimited("too many requests this minute", retry_after_s=17), "retry after 17 s"),
        (QuotaExceeded("daily interactions used up", retry_after_s=3600), "code: quota_exceeded"),
    ],
)
async def test_a_rate_limited_call_is_a_tool_error_naming_the_retry_time(
    client: Client, world: World, refusal: Exception, expected: str
) -> None:
    world.guard.refusal = refusal
    result = await call(client, "recall_memories", query="tea")
    assert result.is_error
    assert expected in result.content[0].text


async def test_each_tool_call_is_admitted_once(client: Client, world: World) -> None:
    await store(client, "Alice drinks green tea")
    await call(client, "recall_memories", query="tea")
    assert world.guard.admitted == [(COMPANION, "alice"), (COMPANION, "alice")]


async def test_another_user_of_the_same_companion_never_sees_the_memories(world: World) -> None:
    async with world.connect() as client:
        stored = await store(client, "Alice's secret: she sings in the shower")
    world.act_as("bob")
    async with world.connect() as client:
        recalled = await call(client, "recall_memories", query="secret shower")
        got = await call(client, "get_memory", memory_id=stored["id"])
    assert recalled.structured_content["memories"] == []
    assert got.is_error
    assert "code: not_found" in got.content[0].text


async def test_the_profile_resource_and_a_memory_resource_are_the_users_own(client: Client) -> None:
    low = await store(client, "Alice once saw a heron", importance=1)
    high = await store(client, "Always answer Alice in French", type="instruction", importance=9)
    profile = await client.read_resource("memory://profile")
    text = profile.contents[0].text  # type: ignore[union-attr]
    assert text.index("French") < text.index("heron")
    one = await client.read_resource(f"memory://memories/{high['id']}")
    assert '"Always answer Alice in French"' in one.contents[0].text  # type: ignore[union-attr]
    assert low["id"] != high["id"]


async def test_the_memory_context_prompt_renders_the_relevant_memories(client: Client) -> None:
    await store(client, "Alice is training for the Lyon marathon")
    await store(client, "Alice's favourite colour is teal")
    prompt = await client.get_prompt("memory_context", {"topic": "marathon training"})
    text = prompt.messages[0].content.text  # type: ignore[union-attr]
    assert text.startswith("<user_memories>")
    assert text.index("marathon") < text.index("teal") if "teal" in text else "marathon" in text
