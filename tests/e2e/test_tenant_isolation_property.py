"""Issue 4 item 9: random operations of two tenants through the public surfaces, REST and MCP; neither ever
observes the other's data, ids or counts.

Two owners, each with a companion, two users and user tokens. A hypothesis state machine stores, lists,
recalls, reads, updates and forgets, each operation on a surface it draws (a REST route, or the MCP tool
called with the same user token: JSON-RPC ``tools/call`` on the real endpoint, stateless, as any MCP client
sends it), handing every operation ids of both tenants (and of the other user of the same companion).
Invariants after every step: a foreign id answers exactly what a never-issued id answers (REST: 404, same
body; MCP: the same tool error, word for word); lists (on both surfaces) and recalls hold only the caller's
own ids and the caller's own count; a companion key on the other tenant's companion gets the 404 of a
companion that does not exist.
"""

from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from localdev.stack import Running
from tests.support.rest import make_tenant, memories, user_token

WORDS = ["tea", "chess", "Lisbon", "violin", "marathon", "nurse", "bees", "Oslo", "garden", "sushi"]
Actor = tuple[int, str]  # (tenant index, user slot)
USERS = ("ana", "ben")
Surface = str  # "rest" or "mcp"
SURFACES = st.sampled_from(["rest", "mcp"])
MCP_HEADERS = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}


class ToolAnswer:
    """What an MCP ``tools/call`` answered: structured content, or a tool error's text."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.is_error: bool = bool(result.get("isError"))
        self.text: str = result["content"][0]["text"] if result.get("content") else ""
        self.structured: dict[str, Any] = result.get("structuredContent") or {}


@pytest.fixture(scope="module")
def api(stack: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.env["API_URL"], timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def tenants(api: httpx.Client) -> list[dict[str, Any]]:
    return [make_tenant(api, f"Isolation {n} {uuid4().hex[:6]}") for n in (0, 1)]


def _machine(
    api: httpx.Client, mcp_url: str, tenants: list[dict[str, Any]], record: Callable[[str], None]
) -> type:
    # Each example gets fresh users (and tokens), so every run starts from nothing: hypothesis replays
    # an example only when it sees the same state.
    users: dict[Actor, str] = {}
    tokens: dict[Actor, str] = {}

    def headers(actor: Actor) -> dict[str, str]:
        return {"authorization": f"Bearer {tokens[actor]}"}

    def path(actor: Actor) -> str:
        return memories(tenants[actor[0]], users[actor])

    def tool(actor: Actor, name: str, **arguments: Any) -> ToolAnswer:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        }
        answer = api.post(mcp_url, json=body, headers={**headers(actor), **MCP_HEADERS})
        assert answer.status_code == 200, answer.text
        return ToolAnswer(answer.json()["result"])

    actors = st.sampled_from([(t, u) for t in (0, 1) for u in USERS])

    class TwoTenants(RuleBasedStateMachine):
        @initialize()
        def start(self) -> None:
            # What each actor owns now (live memories: id -> version), as the model of the truth.
            self.owned: dict[Actor, dict[str, int]] = {(t, u): {} for t in (0, 1) for u in USERS}
            self.ever: list[str] = []
            self.checks_run = 0
            for actor in self.owned:
                users[actor] = f"{actor[1]}-{uuid4().hex[:8]}"
                tokens[actor] = user_token(api, tenants[actor[0]], users[actor])

        def missing(self, actor: Actor, suffix: str = "", method: str = "GET", **kw: Any) -> httpx.Response:
            return api.request(method, f"{path(actor)}/{uuid4()}{suffix}", headers=headers(actor), **kw)

        def foreign_is_like_missing(self, answer: httpx.Response, baseline: httpx.Response) -> None:
            assert answer.status_code == baseline.status_code == 404, answer.text
            assert answer.json() == baseline.json()
            record("foreign id answered as missing")

        def foreign_tool_is_like_missing(
            self, actor: Actor, answer: ToolAnswer, name: str, **kw: Any
        ) -> None:
            baseline = tool(actor, name, memory_id=str(uuid4()), **kw)
            assert answer.is_error, answer.structured
            assert baseline.is_error, baseline.structured
            assert answer.text == baseline.text
            assert "(code: not_found)" in answer.text
            record("foreign id answered as missing (MCP)")

        @rule(
            actor=actors,
            surface=SURFACES,
            words=st.lists(st.sampled_from(WORDS), min_size=2, max_size=4, unique=True),
        )
        def store(self, actor: Actor, surface: Surface, words: list[str]) -> None:
            content = f"{actor[1]} likes {' and '.join(words)}"
            if surface == "mcp":
                stored = tool(actor, "store_memory", content=content)
                assert not stored.is_error, stored.text
                created = stored.structured["outcome"] == "created"
                memory = stored.structured["memory"]
            else:
                answer = api.post(path(actor), json={"content": content}, headers=headers(actor))
                assert answer.status_code in (200, 201), answer.text
                created = answer.status_code == 201
                memory = answer.json()["memory"]
            # A merge can only be into the actor's own memory.
            assert memory["id"] in self.owned[actor] or created
            self.owned[actor][memory["id"]] = memory["version"]
            self.ever.append(memory["id"])

        @rule(actor=actors, surface=SURFACES, data=st.data())
        def get(self, actor: Actor, surface: Surface, data: st.DataObject) -> None:
            if not self.ever:
                return
            memory_id = data.draw(st.sampled_from(self.ever))
            if surface == "mcp":
                got = tool(actor, "get_memory", memory_id=memory_id)
                if memory_id in self.owned[actor]:
                    assert not got.is_error, got.text
                    assert got.structured["id"] == memory_id
                else:
                    self.foreign_tool_is_like_missing(actor, got, "get_memory")
                return
            answer = api.get(f"{path(actor)}/{memory_id}", headers=headers(actor))
            if memory_id in self.owned[actor]:
                assert answer.status_code == 200, answer.text
            else:
                self.foreign_is_like_missing(answer, self.missing(actor))

        @rule(actor=actors, surface=SURFACES, data=st.data())
        def update(self, actor: Actor, surface: Surface, data: st.DataObject) -> None:
            if not self.ever:
                return
            memory_id = data.draw(st.sampled_from(self.ever))
            version = self.owned[actor].get(memory_id, 1)
            body = {"expected_version": version, "importance": data.draw(st.integers(0, 10))}
            if surface == "mcp":
                changed = tool(actor, "update_memory", memory_id=memory_id, **body)
                if memory_id in self.owned[actor]:
                    assert not changed.is_error, changed.text
                    self.owned[actor][memory_id] = changed.structured["version"]
                else:
                    self.foreign_tool_is_like_missing(actor, changed, "update_memory", **body)
                return
            answer = api.patch(f"{path(actor)}/{memory_id}", json=body, headers=headers(actor))
            if memory_id in self.owned[actor]:
                assert answer.status_code == 200, answer.text
                self.owned[actor][memory_id] = answer.json()["version"]
            else:
                self.foreign_is_like_missing(answer, self.missing(actor, method="PATCH", json=body))

        @rule(actor=actors, surface=SURFACES, data=st.data())
        def forget(self, actor: Actor, surface: Surface, data: st.DataObject) -> None:
            if not self.ever:
                return
            memory_id = data.draw(st.sampled_from(self.ever))
            version = self.owned[actor].get(memory_id, 1)
            query = {"expected_version": version}
            if surface == "mcp":
                forgotten = tool(actor, "forget_memory", memory_id=memory_id, **query)
                if memory_id in self.owned[actor]:
                    assert not forgotten.is_error, forgotten.text
                    del self.owned[actor][memory_id]
                else:
                    self.foreign_tool_is_like_missing(actor, forgotten, "forget_memory", **query)
                return
            answer = api.delete(f"{path(actor)}/{memory_id}", params=query, headers=headers(actor))
            if memory_id in self.owned[actor]:
                assert answer.status_code == 200, answer.text
                del self.owned[actor][memory_id]
            else:
                self.foreign_is_like_missing(answer, self.missing(actor, method="DELETE", params=query))

        @rule(actor=actors, surface=SURFACES, word=st.sampled_from(WORDS))
        def recall(self, actor: Actor, surface: Surface, word: str) -> None:
            if surface == "mcp":
                recalled = tool(actor, "recall_memories", query=word, limit=50)
                assert not recalled.is_error, recalled.text
                found = recalled.structured["memories"]
            else:
                answer = api.post(
                    f"{path(actor)}/recall", json={"query": word, "limit": 50}, headers=headers(actor)
                )
                assert answer.status_code == 200, answer.text
                found = answer.json()["memories"]
            assert {m["id"] for m in found} <= set(self.owned[actor])
            record("recall holds only own ids" + (" (MCP)" if surface == "mcp" else ""))

        @rule(actor=actors)
        def reach_into_the_other_companion(self, actor: Actor) -> None:
            # The actor's companion key, on the other tenant's companion and on one that does not exist.
            key = {"authorization": f"Bearer {tenants[actor[0]]['key']}"}
            other = memories(tenants[1 - actor[0]], users[(1 - actor[0], actor[1])])
            nowhere = f"/companions/{uuid4()}/users/{users[actor]}/memories"
            foreign, missing = api.get(other, headers=key), api.get(nowhere, headers=key)
            self.foreign_is_like_missing(foreign, missing)

        @invariant()
        def lists_and_exports_hold_exactly_own_ids(self) -> None:
            if not hasattr(self, "owned"):
                return
            # The surfaces take turns, so the file stays within its time budget; each sees every state kind.
            self.checks_run += 1
            on_mcp = self.checks_run % 2 == 0
            for actor, owned in self.owned.items():
                if on_mcp:
                    listed = tool(actor, "list_memories", limit=100)
                    assert not listed.is_error, listed.text
                    assert {m["id"] for m in listed.structured["items"]} == set(owned)
                    record("list holds exactly own ids (MCP)")
                    continue
                page = api.get(path(actor), params={"limit": 100}, headers=headers(actor))
                assert page.status_code == 200, page.text
                assert {m["id"] for m in page.json()["items"]} == set(owned)
                record("list holds exactly own ids")
            actor = (0, USERS[0])
            exported = api.get(f"{path(actor)}/export", headers=headers(actor)).text.splitlines()
            assert len(exported) == len(self.owned[actor])
            record("export holds exactly own ids")

    return TwoTenants


def test_two_tenants_never_observe_each_others_memories(
    stack: Running,
    api: httpx.Client,
    tenants: list[dict[str, Any]],
    security_cases: Callable[[str, str], None],
) -> None:
    checks: dict[str, int] = {}

    def record(what: str) -> None:
        checks[what] = checks.get(what, 0) + 1
        surface = "MCP" if what.endswith("(MCP)") else "REST"
        security_cases(f"tenant isolation property ({surface})", "held")

    machine = _machine(api, stack.env["MCP_URL"], tenants, record)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=12,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
    print(f"tenant isolation property: {sum(checks.values())} checks held: {checks}")
    assert checks.get("foreign id answered as missing", 0) > 0
    assert checks.get("foreign id answered as missing (MCP)", 0) > 0
