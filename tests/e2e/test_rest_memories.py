"""The REST memory API through the local gateway with real credentials: owner key (CLI bootstrap) ->
companion -> companion key -> user token; import idempotency and the export round trip on the real stack."""

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from localdev.stack import Running
from tests.support.rest import bearer, make_tenant, memories, user_token


@pytest.fixture(scope="module")
def api(stack: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.env["API_URL"], timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def tenant(api: httpx.Client) -> dict[str, Any]:
    return make_tenant(api, "Rest Memories Ltd")


def test_a_user_token_stores_and_recalls_its_own_memories(api: httpx.Client, tenant: dict[str, Any]) -> None:
    token = user_token(api, tenant, "rita")
    stored = api.post(
        memories(tenant, "rita"),
        json={"content": "Rita is learning Portuguese for a trip to Lisbon", "metadata": {"src": "chat"}},
        headers=bearer(token),
    )
    recalled = api.post(
        memories(tenant, "rita") + "/recall",
        json={"query": "which language is Rita learning?"},
        headers=bearer(token),
    )
    assert stored.status_code == 201, stored.text
    assert recalled.status_code == 200, recalled.text
    top = recalled.json()["memories"][0]
    assert (top["id"], top["metadata"]) == (stored.json()["memory"]["id"], {"src": "chat"})
    assert 0 < top["score"] <= 1


def test_a_bad_credential_is_401_and_a_missing_scope_403(api: httpx.Client, tenant: dict[str, Any]) -> None:
    read_only = user_token(api, tenant, "sam", ["memories:read"])
    bad = api.get(memories(tenant, "sam"), headers=bearer("ck_not-a-real-key-at-all"))
    refused = api.post(memories(tenant, "sam"), json={"content": "x"}, headers=bearer(read_only))
    assert bad.status_code == 401
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")


def test_an_import_sent_twice_stores_nothing_new_and_reports_the_bad_line(
    api: httpx.Client, tenant: dict[str, Any]
) -> None:
    # Given a file of five good keyed lines and one bad line (line 4)
    good = [
        {"content": c, "import_key": f"crm-{n}", "type": t}
        for n, (c, t) in enumerate(
            [
                ("Tom's daughter is called Ines", "fact"),
                ("Tom prefers short answers", "preference"),
                ("Tom ran the Paris marathon in 2023", "experience"),
                ("Always greet Tom in Spanish", "instruction"),
                ("Tom works as a nurse on night shifts", "fact"),
            ]
        )
    ]
    lines = (
        [json.dumps(g) for g in good[:3]]
        + ['{"content": "", "import_key": "crm-bad"}']
        + [json.dumps(g) for g in good[3:]]
    )
    body = "\n".join(lines) + "\n"
    headers = {**bearer(tenant["key"]), "content-type": "application/x-ndjson"}
    # When the backend sends it twice
    first = api.post(memories(tenant, "tom") + "/import", content=body, headers=headers)
    second = api.post(memories(tenant, "tom") + "/import", content=body, headers=headers)
    listed = api.get(memories(tenant, "tom"), params={"limit": 100}, headers=bearer(tenant["key"]))
    # Then the good lines are stored once, the bad line is reported by number, and nothing is duplicated
    assert first.status_code == 200, first.text
    report = first.json()
    assert (report["stored"], report["failed"]) == (5, 1)
    assert [r["line"] for r in report["results"] if r["status"] == "failed"] == [4]
    assert (second.json()["stored"], second.json()["already_imported"]) == (0, 5)
    assert len(listed.json()["items"]) == 5


def test_an_export_imports_into_another_user_with_the_same_contents(
    api: httpx.Client, tenant: dict[str, Any]
) -> None:
    key = bearer(tenant["key"])
    for content in (
        "Uma keeps bees",
        "Uma's favourite film is Spirited Away",
        "Uma is moving to Oslo in May",
    ):
        assert api.post(memories(tenant, "uma"), json={"content": content}, headers=key).status_code == 201
    exported, cursor = "", None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.get(memories(tenant, "uma") + "/export", params=params, headers=key)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("application/x-ndjson")
        exported += page.text
        cursor = page.headers.get("x-next-cursor")
        if cursor is None:
            break
    imported = api.post(
        memories(tenant, "vic") + "/import",
        content=exported,
        headers={**key, "content-type": "application/x-ndjson"},
    )
    vics = api.get(memories(tenant, "vic"), headers=key).json()["items"]

    def contents(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(
            (m["content"], m["type"], m["importance"], m["metadata"] == {}, m["occurred_at"]) for m in items
        )

    assert imported.json()["stored"] == 3
    assert contents(vics) == contents([json.loads(line) for line in exported.splitlines()])
