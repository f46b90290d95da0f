"""The REST memory handler on fakes: status codes, stable error codes, tenancy (404), scopes and permissions
(403), rate limits (429), JSON Lines import/export. The real stack runs in tests/e2e/test_rest_memories.py."""

import copy
import importlib.util
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID, uuid4

import pytest

from companion_memory import wiring
from companion_memory.auth.principal import Principal
from companion_memory.domain.memory import MemoryService
from companion_memory.domain.memory_access import MemoryAccess
from companion_memory.domain.memory_import import MemoryImporter
from companion_memory.errors import RateLimited
from companion_memory.models.identity import CompanionUser
from companion_memory.models.tenancy import TenantScope
from tests.support.clock import FakeClock
from tests.support.embedders import HashEmbedder
from tests.support.identity import InMemoryIdentityStore, active_companion
from tests.support.memory_store import InMemoryMemoryStore

ROOT = Path(__file__).resolve().parents[2]
BASE_EVENT = json.loads((ROOT / "events" / "health" / "get.json").read_text())
OWNER, OTHER_OWNER = uuid4(), uuid4()
COMPANION, OTHER_COMPANION = uuid4(), uuid4()
ALL = frozenset({"memories:read", "memories:write", "memories:delete"})


def _load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "memories_app_under_test", ROOT / "functions/memories/app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


APP = _load_app()


class InMemoryImportKeys:
    """``ports.ImportKeyStore`` as a dict: (companion, user, key) -> (memory id or None, claimed at)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[UUID | None, str | None, str], tuple[UUID | None, datetime]] = {}

    def claim(
        self, scope: TenantScope, keys: Sequence[str], now: datetime, stale_before: datetime
    ) -> tuple[set[str], dict[str, UUID | None]]:
        mine: set[str] = set()
        held: dict[str, UUID | None] = {}
        for key in keys:
            row = self.rows.get((scope.companion_id, scope.user_id, key))
            if row is None or (row[0] is None and row[1] < stale_before):
                self.rows[(scope.companion_id, scope.user_id, key)] = (None, now)
                mine.add(key)
            else:
                held[key] = row[0]
        return mine, held

    def complete(self, scope: TenantScope, memory_ids: dict[str, UUID]) -> None:
        for key, memory_id in memory_ids.items():
            self.rows[(scope.companion_id, scope.user_id, key)] = (memory_id, datetime.now(UTC))

    def release(self, scope: TenantScope, keys: Sequence[str]) -> None:
        for key in keys:
            self.rows.pop((scope.companion_id, scope.user_id, key), None)


class Admission:
    def __init__(self) -> None:
        self.admitted: list[tuple[UUID, str]] = []
        self.refuse = False

    def admit(self, companion_id: UUID, user_id: str, config: Any) -> None:
        if self.refuse:
            raise RateLimited("too many requests", retry_after_s=17)
        self.admitted.append((companion_id, user_id))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    identity = InMemoryIdentityStore()
    identity.companions[COMPANION] = active_companion(COMPANION, OWNER)
    identity.companions[OTHER_COMPANION] = active_companion(OTHER_COMPANION, OTHER_OWNER)
    admission = Admission()
    service = MemoryService(
        InMemoryMemoryStore({COMPANION: "standard", OTHER_COMPANION: "standard"}), HashEmbedder(), FakeClock()
    )
    access = MemoryAccess(identity, admission, cache_s=0, monotonic=lambda: 0.0)
    importer = MemoryImporter(service, InMemoryImportKeys(), FakeClock())
    monkeypatch.setattr(wiring, "memory_access", lambda: access)
    monkeypatch.setattr(wiring, "memory_service", lambda: service)
    monkeypatch.setattr(wiring, "memory_importer", lambda: importer)
    return {"identity": identity, "admission": admission}


def backend(companion: UUID = COMPANION, owner: UUID = OWNER, scopes: frozenset[str] = ALL) -> Principal:
    return Principal(kind="companion", owner_id=owner, companion_id=companion, scopes=scopes, key_id=uuid4())


def user(name: str, scopes: frozenset[str] = ALL) -> Principal:
    return Principal(kind="user", owner_id=OWNER, companion_id=COMPANION, user_id=name, scopes=scopes)


def owner_key(owner: UUID = OWNER) -> Principal:
    return Principal(kind="owner", owner_id=owner, scopes=frozenset({"admin"}), key_id=uuid4())


def call(
    method: str,
    path: str,
    principal: Principal,
    body: object = None,
    query: dict[str, str] | None = None,
    raw: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    event = copy.deepcopy(BASE_EVENT)
    event["routeKey"] = "$default"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["queryStringParameters"] = query or None
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    event["headers"] = {"content-type": "application/json"}
    if body is not None:
        event["body"] = json.dumps(body)
    if raw is not None:
        event["body"] = raw
        event["headers"]["content-type"] = "application/x-ndjson"
    event["requestContext"]["authorizer"] = {"lambda": principal.to_context()}
    answer = APP.app.resolve(event, None)
    text = answer.get("body") or ""
    is_json = answer["headers"].get("Content-Type", "").startswith("application/json")
    return answer["statusCode"], answer["headers"], json.loads(text) if is_json and text else text


def memories(user_id: str = "alice", companion: UUID = COMPANION) -> str:
    return f"/companions/{companion}/users/{user_id}/memories"


def test_a_new_memory_is_201_and_a_repeat_is_200_merged_into_it(world: dict[str, Any]) -> None:
    # When the backend stores a memory, then the same one again
    status, _, first = call("POST", memories(), backend(), {"content": "Alice is vegetarian"})
    again, _, second = call("POST", memories(), backend(), {"content": "Alice is vegetarian"})
    # Then the first is created and the second reinforces it instead of copying it
    assert (status, first["outcome"]) == (201, "created")
    assert (again, second["outcome"], second["duplicate_of"]) == (200, "reinforced", first["memory"]["id"])


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"content": ""},
        {"content": "x", "type": "rumour"},
        {"content": "x", "importance": 11},
        {"content": "x", "y": 1},
    ],
    ids=["missing", "empty", "bad-type", "importance", "unknown-field"],
)
def test_an_invalid_store_is_400_with_the_stable_code(world: dict[str, Any], body: dict[str, Any]) -> None:
    status, _, answer = call("POST", memories(), backend(), body)
    assert status == 400
    assert answer["error"]["code"] == "validation_failed"


@pytest.mark.parametrize(
    "body",
    [
        {"content": "a\x00b"},
        {"content": "x", "metadata": {"k": ["\x00"]}},
        {"content": "x", "metadata": {"\x00": 1}},
        {"content": "lone \ud800 surrogate"},
        {"content": "x", "summary": "\udfff"},
    ],
    ids=["nul-content", "nul-metadata-value", "nul-metadata-key", "surrogate-content", "surrogate-summary"],
)
def test_text_postgresql_cannot_hold_is_400_not_500(world: dict[str, Any], body: dict[str, Any]) -> None:
    # Found by schemathesis: NUL and lone surrogates reached PostgreSQL and answered 500.
    status, _, answer = call("POST", memories(), backend(), body)
    assert status == 400
    assert answer["error"]["code"] == "validation_failed"


def test_a_malformed_path_is_400_not_a_crash(world: dict[str, Any]) -> None:
    status, _, answer = call("GET", "/companions/not-a-uuid/users/alice/memories", backend())
    assert (status, answer["error"]["code"]) == (400, "validation_failed")


def test_another_tenants_companion_is_the_same_404_as_a_missing_one(world: dict[str, Any]) -> None:
    # Given a memory of the other tenant's user
    stored = call(
        "POST", memories(companion=OTHER_COMPANION), backend(OTHER_COMPANION, OTHER_OWNER), {"content": "x"}
    )
    assert stored[0] == 201
    # When this tenant's key and owner key reach for it, and for a companion that does not exist
    foreign = [
        call("GET", memories(companion=OTHER_COMPANION), backend()),
        call("GET", memories(companion=OTHER_COMPANION), owner_key()),
        call("GET", f"{memories(companion=OTHER_COMPANION)}/{stored[2]['memory']['id']}", backend()),
    ]
    missing = call("GET", memories(companion=uuid4()), owner_key())
    # Then every answer is the same 404, body included
    assert {(status, json.dumps(body)) for status, _, body in foreign} == {
        (missing[0], json.dumps(missing[2]))
    }
    assert missing[0] == 404


def test_a_user_token_reaches_only_its_own_user(world: dict[str, Any]) -> None:
    call("POST", memories("bob"), backend(), {"content": "Bob plays chess"})
    status, _, body = call("GET", memories("bob"), user("alice"))
    own, _, page = call("GET", memories("alice"), user("alice"))
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert (own, page["items"]) == (200, [])


def test_another_users_memory_id_is_404_like_a_missing_id(world: dict[str, Any]) -> None:
    _, _, bob = call("POST", memories("bob"), backend(), {"content": "Bob plays chess"})
    theirs = call("GET", f"{memories('alice')}/{bob['memory']['id']}", backend())
    missing = call("GET", f"{memories('alice')}/{uuid4()}", backend())
    assert theirs[0] == missing[0] == 404
    assert theirs[2] == missing[2]


@pytest.mark.parametrize(
    ("method", "suffix", "body", "needed"),
    [
        ("POST", "", {"content": "x"}, "memories:write"),
        ("GET", "", None, "memories:read"),
        ("POST", "/recall", {"query": "x"}, "memories:read"),
        ("DELETE", f"/{uuid4()}", None, "memories:delete"),
    ],
)
def test_a_credential_without_the_scope_is_403(
    world: dict[str, Any], method: str, suffix: str, body: object, needed: str
) -> None:
    query = {"expected_version": "1"} if method == "DELETE" else None
    status, _, answer = call(method, memories() + suffix, user("alice", ALL - {needed}), body, query)
    assert (status, answer["error"]["code"], answer["error"]["details"]) == (
        403,
        "forbidden",
        {"required_scope": needed},
    )


def test_an_owner_key_reads_but_does_not_write(world: dict[str, Any]) -> None:
    call("POST", memories(), backend(), {"content": "Alice likes tea"})
    read, _, page = call("GET", memories(), owner_key())
    write, _, refused = call("POST", memories(), owner_key(), {"content": "x"})
    assert (read, len(page["items"])) == (200, 1)
    assert (write, refused["error"]["code"]) == (403, "forbidden")


def test_the_users_permissions_and_block_apply_to_a_companion_key(world: dict[str, Any]) -> None:
    users = world["identity"].users
    users[(COMPANION, "carol")] = CompanionUser(companion_id=COMPANION, user_id="carol", can_write=False)
    users[(COMPANION, "dave")] = CompanionUser(companion_id=COMPANION, user_id="dave", is_blocked=True)
    assert call("GET", memories("carol"), backend())[0] == 200
    assert call("POST", memories("carol"), backend(), {"content": "x"})[0] == 403
    assert call("GET", memories("dave"), backend())[0] == 403


def test_a_request_over_the_rate_limit_is_429_with_retry_after(world: dict[str, Any]) -> None:
    world["admission"].refuse = True
    status, headers, body = call("GET", memories(), backend())
    assert (status, headers["Retry-After"], body["error"]["code"]) == (429, "17", "rate_limited")


def test_each_request_is_admitted_once_for_its_user(world: dict[str, Any]) -> None:
    call("POST", memories(), backend(), {"content": "Alice likes tea"})
    call("POST", memories() + "/recall", backend(), {"query": "tea"})
    assert world["admission"].admitted == [(COMPANION, "alice"), (COMPANION, "alice")]


def test_update_and_forget_check_the_expected_version(world: dict[str, Any]) -> None:
    _, _, stored = call("POST", memories(), backend(), {"content": "Alice lives in Lyon"})
    path = f"{memories()}/{stored['memory']['id']}"
    stale, _, conflict = call("PATCH", path, backend(), {"expected_version": 7, "importance": 9})
    updated, _, memory = call("PATCH", path, backend(), {"expected_version": 1, "importance": 9})
    gone, _, forgot = call("DELETE", path, backend(), query={"expected_version": "2"})
    after = call("GET", path, backend())[0]
    assert (stale, conflict["error"]["code"], conflict["error"]["details"]) == (
        409,
        "conflict",
        {"current_version": 1},
    )
    assert (updated, memory["importance"], memory["version"]) == (200, 9.0, 2)
    assert (gone, forgot["id"], after) == (200, stored["memory"]["id"], 404)


def test_a_link_relates_two_of_the_users_memories(world: dict[str, Any]) -> None:
    _, _, a = call("POST", memories(), backend(), {"content": "Alice moved to Lyon"})
    _, _, b = call("POST", memories(), backend(), {"content": "Alice started a bakery", "type": "experience"})
    status, _, relation = call(
        "POST",
        f"{memories()}/{a['memory']['id']}/links",
        backend(),
        {"target_id": b["memory"]["id"], "type": "causes"},
    )
    assert (status, relation["type"], relation["target_id"]) == (201, "causes", b["memory"]["id"])


def test_an_import_sent_twice_stores_each_keyed_line_once_and_reports_bad_lines(
    world: dict[str, Any],
) -> None:
    # Given a file with two good keyed lines, a line that is not JSON and one that is not a memory
    lines = [
        json.dumps({"content": "Alice is allergic to peanuts", "import_key": "k1"}),
        "{not json",
        "",
        json.dumps({"content": "Alice runs marathons", "type": "experience", "import_key": "k2"}),
        json.dumps({"content": "x", "type": "rumour", "import_key": "k3"}),
    ]
    body = "\n".join(lines) + "\n"
    # When it is imported twice
    status, _, first = call("POST", memories() + "/import", backend(), raw=body)
    again, _, second = call("POST", memories() + "/import", backend(), raw=body)
    _, _, page = call("GET", memories(), backend())
    # Then the good lines are stored once, and the bad ones are reported by number with nothing written
    assert (status, first["stored"], first["failed"], first["lines"]) == (200, 2, 2, 4)
    failed = {r["line"]: r["error"]["code"] for r in first["results"] if r["status"] == "failed"}
    assert failed == {2: "invalid_json", 5: "validation_failed"}
    assert (again, second["stored"], second["already_imported"]) == (200, 0, 2)
    stored_ids = {r["memory_id"] for r in first["results"] if r["status"] == "created"}
    assert {r["memory_id"] for r in second["results"] if r["status"] == "already_imported"} == stored_ids
    assert len(page["items"]) == 2


@pytest.mark.parametrize(
    ("raw", "problem"),
    [("", "empty"), ("\n\n", "empty"), ("{}\n" * 501, "at most 500 lines")],
    ids=["empty", "blank", "too-many-lines"],
)
def test_an_import_body_that_cannot_be_an_import_is_400(
    world: dict[str, Any], raw: str, problem: str
) -> None:
    status, _, answer = call("POST", memories() + "/import", backend(), raw=raw)
    assert (status, answer["error"]["code"]) == (400, "validation_failed")
    assert problem in answer["error"]["message"]


def test_a_key_repeated_within_one_file_is_reported_on_its_second_line(world: dict[str, Any]) -> None:
    body = "\n".join(
        json.dumps({"content": c, "import_key": "same"}) for c in ("Alice sings", "Alice dances")
    )
    _, _, report = call("POST", memories() + "/import", backend(), raw=body)
    assert [(r["line"], r["status"]) for r in report["results"]] == [(1, "created"), (2, "failed")]
    assert "line 1" in report["results"][1]["error"]["message"]


def test_an_export_pages_as_json_lines_that_import_unchanged_into_another_user(world: dict[str, Any]) -> None:
    # Given three memories of alice
    for content in ("Alice likes tea", "Alice has a cat named Miso", "Alice works nights"):
        call("POST", memories(), backend(), {"content": content, "metadata": {"source": "chat"}})
    # When they are exported two at a time and the pages imported into bob
    status, headers, page1 = call("GET", memories() + "/export", backend(), query={"limit": "2"})
    _, last_headers, page2 = call(
        "GET", memories() + "/export", backend(), query={"limit": "2", "cursor": headers["X-Next-Cursor"]}
    )
    assert (status, headers["Content-Type"]) == (200, "application/x-ndjson")
    assert "X-Next-Cursor" not in last_headers
    _, _, report = call("POST", memories("bob") + "/import", backend(), raw=page1 + page2)
    # Then bob holds the same contents and metadata
    _, _, bobs = call("GET", memories("bob"), backend())

    def contents(items: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(m["content"], json.dumps(m["metadata"])) for m in items}

    exported = [json.loads(line) for line in (page1 + page2).splitlines()]
    assert (report["stored"], report["failed"]) == (3, 0)
    assert contents(bobs["items"]) == contents(exported)
    assert len(exported) == 3
