"""REST vs MCP parity (issue 3: "the REST memory routes and the MCP tools give the same results for the same
data"), through the local gateway with one user token on both surfaces: what one stores the other reads
field for field, one query ranks the same on both (ids, order, scores and their parts, exactly), and the
same bad input gets the same stable error code.

Memories here happen in the future (a planned trip, a booked concert): their recency part is exactly 1
whenever they are recalled, so a recall's score does not depend on the second it runs in, and two recalls
of the same data can be compared to the last bit. A recall counts an access, so the second recall sees
each memory's ``access_count`` one higher: that, and only that, differs.
"""

from datetime import datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest

from localdev.stack import Running
from tests.support.mcp_client import connect, error_code, ok
from tests.support.rest import bearer, make_tenant, memories, user_token

pytestmark = pytest.mark.anyio
SEEN_AFRESH = {"access_count", "accessed_at"}
PLANS: list[dict[str, Any]] = [
    {
        "content": "Pat is flying to Reykjavik for the northern lights",
        "type": "experience",
        "importance": 7.5,
        "metadata": {"source": "chat", "tags": ["travel", "iceland"], "n": 3},
        "occurred_at": "2099-02-10T08:00:00+00:00",
    },
    {
        "content": "Pat wants reminders in Portuguese",
        "type": "instruction",
        "metadata": {"source": "settings"},
        "occurred_at": "2099-01-01T00:00:00+01:00",
    },
    {
        "content": "Pat has tickets for a cello concert in Lisbon",
        "type": "fact",
        "importance": 4,
        "metadata": {},
        "occurred_at": "2099-03-05T19:30:00-03:00",
    },
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def api(api_client: httpx.Client) -> httpx.Client:
    return api_client


@pytest.fixture(scope="module")
def tenant(api: httpx.Client) -> dict[str, Any]:
    return make_tenant(api, f"Parity {uuid4().hex[:6]}")


def fresh_user(api: httpx.Client, tenant: dict[str, Any], scopes: list[str] | None = None) -> tuple[str, str]:
    user = f"pat-{uuid4().hex[:8]}"
    return user, user_token(api, tenant, user, scopes)


def rest_ok(answer: httpx.Response) -> Any:
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def same_instants(memory: dict[str, Any]) -> dict[str, Any]:
    """A memory with its times as instants: a store answers ``occurred_at`` in the offset it was given,
    a read in UTC (on both surfaces alike)."""
    return {
        k: datetime.fromisoformat(v) if k.endswith("_at") and isinstance(v, str) else v
        for k, v in memory.items()
    }


def rest_code(answer: httpx.Response) -> str:
    code: str = answer.json()["error"]["code"]
    return code


async def test_what_rest_stores_mcp_reads_field_for_field(
    stack: Running, api: httpx.Client, tenant: dict[str, Any]
) -> None:
    # Given memories stored through REST
    user, token = fresh_user(api, tenant)
    path = memories(tenant, user)
    stored = [rest_ok(api.post(path, json=plan, headers=bearer(token)))["memory"] for plan in PLANS]
    rest_page = rest_ok(api.get(path, headers=bearer(token)))
    rest_got = [rest_ok(api.get(f"{path}/{m['id']}", headers=bearer(token))) for m in stored]
    # When MCP reads them with the same user's token
    async with connect(stack.env["MCP_URL"], token) as client:
        mcp_got = [await ok(client, "get_memory", memory_id=m["id"]) for m in stored]
        mcp_page = await ok(client, "list_memories")
    # Then both surfaces answer the same, every field (ids, contents, metadata, types, importance, times)
    assert mcp_got == rest_got
    assert [same_instants(m) for m in rest_got] == [same_instants(m) for m in stored]
    assert mcp_page == rest_page
    assert [m["id"] for m in mcp_page["items"]] == [m["id"] for m in reversed(stored)]


async def test_what_mcp_stores_rest_reads_field_for_field(
    stack: Running, api: httpx.Client, tenant: dict[str, Any]
) -> None:
    # Given memories stored through MCP
    user, token = fresh_user(api, tenant)
    path = memories(tenant, user)
    async with connect(stack.env["MCP_URL"], token) as client:
        results = [await ok(client, "store_memory", **plan) for plan in PLANS]
        mcp_page = await ok(client, "list_memories")
    # When REST reads them
    rest_got = [rest_ok(api.get(f"{path}/{r['memory']['id']}", headers=bearer(token))) for r in results]
    rest_page = rest_ok(api.get(path, headers=bearer(token)))
    # Then REST answers what MCP stored and listed, every field
    assert [r["outcome"] for r in results] == ["created"] * len(PLANS)
    assert [same_instants(m) for m in rest_got] == [same_instants(r["memory"]) for r in results]
    assert rest_page == mcp_page
    assert {m["metadata"]["source"] for m in rest_page["items"] if m["metadata"]} == {"chat", "settings"}


async def test_one_query_ranks_the_same_on_both_surfaces(
    stack: Running, api: httpx.Client, tenant: dict[str, Any]
) -> None:
    # Given the same memories, half stored through each surface
    user, token = fresh_user(api, tenant)
    path = memories(tenant, user)
    rest_ok(api.post(path, json=PLANS[0], headers=bearer(token)))
    async with connect(stack.env["MCP_URL"], token) as client:
        for plan in PLANS[1:]:
            await ok(client, "store_memory", **plan)
        query = {"query": "which trip is Pat planning?", "limit": 3}
        # When one question is asked on REST, then on MCP
        by_rest = rest_ok(api.post(f"{path}/recall", json=query, headers=bearer(token)))
        by_mcp = await ok(client, "recall_memories", **query)
    # Then the same memories come back in the same order, with the same scores and parts, to the bit
    assert by_mcp["query"] == by_rest["query"]
    assert [m["id"] for m in by_mcp["memories"]] == [m["id"] for m in by_rest["memories"]]
    assert len(by_rest["memories"]) == len(PLANS)
    assert by_rest["memories"][0]["content"] == PLANS[0]["content"]
    for first, second in zip(by_rest["memories"], by_mcp["memories"], strict=True):
        assert {k: v for k, v in second.items() if k not in SEEN_AFRESH} == {
            k: v for k, v in first.items() if k not in SEEN_AFRESH
        }
        # And the only difference is the access the first recall counted
        assert second["access_count"] == first["access_count"] + 1


async def test_the_same_bad_input_gets_the_same_error_code_on_both_surfaces(
    stack: Running, api: httpx.Client, tenant: dict[str, Any]
) -> None:
    user, token = fresh_user(api, tenant)
    path = memories(tenant, user)
    memory = rest_ok(api.post(path, json=PLANS[0], headers=bearer(token)))["memory"]
    rest_ok(
        api.patch(
            f"{path}/{memory['id']}", json={"expected_version": 1, "importance": 9}, headers=bearer(token)
        )
    )
    # Another tenant's memory, and an id never issued
    other = make_tenant(api, f"Parity other {uuid4().hex[:6]}")
    other_user, other_token = fresh_user(api, other)
    foreign = rest_ok(api.post(memories(other, other_user), json=PLANS[1], headers=bearer(other_token)))[
        "memory"
    ]
    read_only = fresh_user(api, tenant, ["memories:read"])
    rest: dict[str, str] = {
        "stale version": rest_code(
            api.patch(
                f"{path}/{memory['id']}", json={"expected_version": 1, "importance": 1}, headers=bearer(token)
            )
        ),
        "foreign id": rest_code(api.get(f"{path}/{foreign['id']}", headers=bearer(token))),
        "missing id": rest_code(api.get(f"{path}/{uuid4()}", headers=bearer(token))),
        "foreign forget": rest_code(
            api.delete(f"{path}/{foreign['id']}", params={"expected_version": 1}, headers=bearer(token))
        ),
        "oversized metadata": rest_code(
            api.post(path, json={"content": "x", "metadata": {"blob": "y" * 20_000}}, headers=bearer(token))
        ),
        "missing scope": rest_code(
            api.post(memories(tenant, read_only[0]), json={"content": "x"}, headers=bearer(read_only[1]))
        ),
    }
    async with connect(stack.env["MCP_URL"], token) as client:
        mcp = {
            "stale version": await error_code(
                client, "update_memory", memory_id=memory["id"], expected_version=1, importance=1
            ),
            "foreign id": await error_code(client, "get_memory", memory_id=foreign["id"]),
            "missing id": await error_code(client, "get_memory", memory_id=str(uuid4())),
            "foreign forget": await error_code(
                client, "forget_memory", memory_id=foreign["id"], expected_version=1
            ),
            "oversized metadata": await error_code(
                client, "store_memory", content="x", metadata={"blob": "y" * 20_000}
            ),
        }
    async with connect(stack.env["MCP_URL"], read_only[1]) as client:
        mcp["missing scope"] = await error_code(client, "store_memory", content="x")
    assert (
        mcp
        == rest
        == {
            "stale version": "conflict",
            "foreign id": "not_found",
            "missing id": "not_found",
            "foreign forget": "not_found",
            "oversized metadata": "validation_failed",
            "missing scope": "forbidden",
        }
    )


async def test_a_storage_quota_refuses_the_same_way_on_both_surfaces(
    stack: Running, api: httpx.Client
) -> None:
    # Given a companion that lets each user keep one memory
    tenant = make_tenant(api, f"Parity quota {uuid4().hex[:6]}", max_memories_per_user=1)
    user, token = fresh_user(api, tenant)
    path = memories(tenant, user)
    rest_ok(api.post(path, json=PLANS[0], headers=bearer(token)))
    # When a second memory is stored on each surface
    by_rest = api.post(path, json=PLANS[1], headers=bearer(token))
    async with connect(stack.env["MCP_URL"], token) as client:
        by_mcp = await error_code(client, "store_memory", **PLANS[2])
        page = await ok(client, "list_memories")
    # Then both refuse with quota_exceeded, and nothing was written
    assert (by_rest.status_code, rest_code(by_rest), by_mcp) == (429, "quota_exceeded", "quota_exceeded")
    assert by_rest.json()["error"]["details"]["quota"] == "max_memories_per_user"
    assert len(page["items"]) == 1
