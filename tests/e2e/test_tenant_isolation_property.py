"""Issue 4 item 9: random operations of two tenants through the public REST surface; neither ever observes
the other's data, ids or counts.

Two owners, each with a companion, two users and user tokens. A hypothesis state machine stores, lists,
recalls, reads, updates and forgets, handing every operation ids of both tenants (and of the other user of
the same companion). Invariants after every step: a foreign id answers exactly what a never-issued id
answers (404, same body); lists and recalls hold only the caller's own ids and the caller's own count; a
companion key on the other tenant's companion gets the 404 of a companion that does not exist.
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


@pytest.fixture(scope="module")
def api(stack: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.env["API_URL"], timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def tenants(api: httpx.Client) -> list[dict[str, Any]]:
    return [make_tenant(api, f"Isolation {n} {uuid4().hex[:6]}") for n in (0, 1)]


def _machine(api: httpx.Client, tenants: list[dict[str, Any]], record: Callable[[str], None]) -> type:
    # Each example gets fresh users (and tokens), so every run starts from nothing: hypothesis replays
    # an example only when it sees the same state.
    users: dict[Actor, str] = {}
    tokens: dict[Actor, str] = {}

    def headers(actor: Actor) -> dict[str, str]:
        return {"authorization": f"Bearer {tokens[actor]}"}

    def path(actor: Actor) -> str:
        return memories(tenants[actor[0]], users[actor])

    actors = st.sampled_from([(t, u) for t in (0, 1) for u in USERS])

    class TwoTenants(RuleBasedStateMachine):
        @initialize()
        def start(self) -> None:
            # What each actor owns now (live memories: id -> version), as the model of the truth.
            self.owned: dict[Actor, dict[str, int]] = {(t, u): {} for t in (0, 1) for u in USERS}
            self.ever: list[str] = []
            for actor in self.owned:
                users[actor] = f"{actor[1]}-{uuid4().hex[:8]}"
                tokens[actor] = user_token(api, tenants[actor[0]], users[actor])

        def missing(self, actor: Actor, suffix: str = "", method: str = "GET", **kw: Any) -> httpx.Response:
            return api.request(method, f"{path(actor)}/{uuid4()}{suffix}", headers=headers(actor), **kw)

        def foreign_is_like_missing(self, answer: httpx.Response, baseline: httpx.Response) -> None:
            assert answer.status_code == baseline.status_code == 404, answer.text
            assert answer.json() == baseline.json()
            record("foreign id answered as missing")

        @rule(actor=actors, words=st.lists(st.sampled_from(WORDS), min_size=2, max_size=4, unique=True))
        def store(self, actor: Actor, words: list[str]) -> None:
            content = f"{actor[1]} likes {' and '.join(words)}"
            answer = api.post(path(actor), json={"content": content}, headers=headers(actor))
            assert answer.status_code in (200, 201), answer.text
            memory = answer.json()["memory"]
            # A merge can only be into the actor's own memory.
            assert memory["id"] in self.owned[actor] or answer.status_code == 201
            self.owned[actor][memory["id"]] = memory["version"]
            self.ever.append(memory["id"])

        @rule(actor=actors, data=st.data())
        def get(self, actor: Actor, data: st.DataObject) -> None:
            if not self.ever:
                return
            memory_id = data.draw(st.sampled_from(self.ever))
            answer = api.get(f"{path(actor)}/{memory_id}", headers=headers(actor))
            if memory_id in self.owned[actor]:
                assert answer.status_code == 200, answer.text
            else:
                self.foreign_is_like_missing(answer, self.missing(actor))

        @rule(actor=actors, data=st.data())
        def update(self, actor: Actor, data: st.DataObject) -> None:
            if not self.ever:
                return
            memory_id = data.draw(st.sampled_from(self.ever))
            version = self.owned[actor].get(memory_id, 1)
            body = {"expected_version": version, "importance": data.draw(st.integers(0, 10))}
            answer = api.patch(f"{path(actor)}/{memory_id}", json=body, headers=headers(actor))
            if memory_id in self.owned[actor]:
                assert answer.status_code == 200, answer.text
                self.owned[actor][memory_id] = answer.json()["version"]
            else:
                self.foreign_is_like_missing(answer, self.missing(actor, method="PATCH", json=body))

        @rule(actor=actors, data=st.data())
        def forget(self, actor: Actor, data: st.DataObject) -> None:
            if not self.ever:
                return
            memory_id = data.draw(st.sampled_from(self.ever))
            version = self.owned[actor].get(memory_id, 1)
            query = {"expected_version": version}
            answer = api.delete(f"{path(actor)}/{memory_id}", params=query, headers=headers(actor))
            if memory_id in self.owned[actor]:
                assert answer.status_code == 200, answer.text
                del self.owned[actor][memory_id]
            else:
                self.foreign_is_like_missing(answer, self.missing(actor, method="DELETE", params=query))

        @rule(actor=actors, word=st.sampled_from(WORDS))
        def recall(self, actor: Actor, word: str) -> None:
            answer = api.post(
                f"{path(actor)}/recall", json={"query": word, "limit": 50}, headers=headers(actor)
            )
            assert answer.status_code == 200, answer.text
            assert {m["id"] for m in answer.json()["memories"]} <= set(self.owned[actor])
            record("recall holds only own ids")

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
            for actor, owned in self.owned.items():
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
    api: httpx.Client, tenants: list[dict[str, Any]], security_cases: Callable[[str, str], None]
) -> None:
    checks: dict[str, int] = {}

    def record(what: str) -> None:
        checks[what] = checks.get(what, 0) + 1
        security_cases("tenant isolation property (REST)", "held")

    machine = _machine(api, tenants, record)
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
