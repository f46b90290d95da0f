"""Companion export and import (JSON Lines) through the local gateway, with real credentials and stores.

An export is read in small pages (so paging and per-page headers are exercised), each page is imported as
it comes, and the imported companion is exported again and compared with the source: content, metadata,
importance, times, expiry (none included) and the archived state, near-duplicates and the relation between
them included.
"""

import json
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from companion_memory import wiring
from localdev.stack import Running
from tests.support.rest import bearer, make_tenant, memories, user_token

NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture(scope="module")
def api(stack: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.env["API_URL"], timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def source(api: httpx.Client) -> dict[str, Any]:
    """A companion with two users' memories (types, metadata, past occurred_at), relations, and one
    forgotten memory (never exported)."""
    tenant = make_tenant(api, "Export Source")
    contents = {
        "ana": [
            ("Ana grows tomatoes on her balcony", "fact", {"src": "chat"}),
            ("Ana prefers tea without sugar", "preference", {}),
            ("Ana hiked the Dolomites in 2019", "experience", {"trip": {"year": 2019}}),
            ("Always greet Ana in Portuguese", "instruction", {}),
        ],
        "ben": [
            ("Ben restores old motorcycles", "fact", {}),
            ("Ben is allergic to peanuts", "fact", {"severity": "high"}),
            ("Ben's daughter started school in September", "experience", {}),
        ],
    }
    ids: dict[str, list[str]] = {}
    for user_id, items in contents.items():
        token = user_token(api, tenant, user_id)
        ids[user_id] = []
        for content, kind, metadata in items:
            answer = api.post(
                memories(tenant, user_id),
                json={
                    "content": content,
                    "type": kind,
                    "metadata": metadata,
                    "occurred_at": "2024-05-01T10:00:00+00:00",
                    "importance": 6,
                },
                headers=bearer(token),
            )
            assert answer.status_code == 201, answer.text
            ids[user_id].append(answer.json()["memory"]["id"])
        link = api.post(
            f"{memories(tenant, user_id)}/{ids[user_id][0]}/links",
            json={"target_id": ids[user_id][1], "type": "related_to", "metadata": {"why": "test"}},
            headers=bearer(token),
        )
        assert link.status_code == 201, link.text
    # A source may hold near-duplicates (an edit, or a store that was never deduplicated): twice the same
    # fact, related to each other; an experience whose default lifetime was lifted (no expiry); and an
    # archived memory. The import must bring each back as it was, not merged or given a lifetime.
    from companion_memory.models.memory import NewMemory
    from companion_memory.models.tenancy import TenantScope

    scope = TenantScope(
        owner_id=uuid.UUID(tenant["owner_id"]), companion_id=uuid.UUID(tenant["companion_id"]), user_id="ana"
    )
    service = wiring.memory_service()
    twins = service.store_many(
        scope, [NewMemory(content="Ana waters the tomatoes at dawn", importance=6)] * 2, verbatim=True
    )
    service.link(scope, twins[0].memory.id, twins[1].memory.id, "related_to", {"why": "twins"})
    contents["ana"] += [("Ana waters the tomatoes at dawn", "fact", {})] * 2
    sailed = api.post(
        memories(tenant, "ben"),
        json={"content": "Ben sailed to Corsica with his brother", "type": "experience", "importance": 5},
        headers=bearer(user_token(api, tenant, "ben")),
    )
    assert sailed.status_code == 201, sailed.text
    assert sailed.json()["memory"]["expires_at"] is not None  # the default lifetime of such an experience
    contents["ben"].append(("Ben sailed to Corsica with his brother", "experience", {}))
    with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=5) as conn:
        # As the app role, in the companion's own tenant context (what the service could have written)
        for name, value in (("owner_id", tenant["owner_id"]), ("companion_id", tenant["companion_id"])):
            conn.execute("SELECT set_config(%s, %s, true)", (f"app.{name}", value))
        conn.execute("SELECT set_config('app.user_id', '*', true)")
        lifted = conn.execute(
            "UPDATE memories SET expires_at = NULL WHERE id = %s", (sailed.json()["memory"]["id"],)
        )
        archived = conn.execute("UPDATE memories SET archived_at = now() WHERE id = %s", (ids["ben"][2],))
        assert (lifted.rowcount, archived.rowcount) == (1, 1)
    ana = user_token(api, tenant, "ana")
    forgotten = api.post(
        memories(tenant, "ana"),
        json={"content": "Ana once lived in Oslo", "type": "fact"},
        headers=bearer(ana),
    )
    gone = api.delete(
        f"{memories(tenant, 'ana')}/{forgotten.json()['memory']['id']}",
        params={"expected_version": 1},
        headers=bearer(ana),
    )
    assert gone.status_code == 200, gone.text
    tenant["contents"] = contents
    return tenant


def export_pages(api: httpx.Client, owner_key: str, companion_id: str, limit: int) -> list[str]:
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        answer = api.get(f"/companions/{companion_id}/export", params=params, headers=bearer(owner_key))
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/x-ndjson")
        pages.append(answer.text)
        cursor = answer.headers.get("x-next-cursor")
        if cursor is None:
            return pages


def lines(pages: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for page in pages for line in page.splitlines() if line.strip()]


def comparable(pages: list[str]) -> tuple[list[Any], list[Any]]:
    """The memories and relations of an export, without ids (an import gets new ones), each as often as it
    comes (near-duplicates count)."""
    items = lines(pages)
    by_id = {item["id"]: item for item in items if item["kind"] == "memory"}
    memories_seen = sorted(
        (
            m["user_id"],
            m["type"],
            m["content"],
            _canonical(m["metadata"]),
            m["importance"],
            m["occurred_at"],
            m["expires_at"] or "",
            m["archived"],
        )
        for m in by_id.values()
    )
    relations_seen = sorted(
        (
            r["user_id"],
            by_id[r["source_id"]]["content"],
            by_id[r["target_id"]]["content"],
            r["type"],
            _canonical(r["metadata"]),
        )
        for r in items
        if r["kind"] == "relation"
    )
    return memories_seen, relations_seen


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def memory_count(companion_id: str) -> int:
    from tests.integration.test_erasure import owner_view

    with owner_view() as conn:
        row = conn.execute(
            "SELECT count(*) FROM memories WHERE companion_id = %s", (companion_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_an_export_pages_with_a_header_each_and_never_holds_vectors_or_forgotten_memories(
    api: httpx.Client, source: dict[str, Any]
) -> None:
    # When the owner exports the companion three memories at a time
    pages = export_pages(api, source["owner_key"], source["companion_id"], limit=3)
    # Then every page starts with the same header, and the memories and relations are all there once
    assert len(pages) >= 3
    headers = [json.loads(page.splitlines()[0]) for page in pages]
    assert all(h == headers[0] for h in headers)
    assert headers[0]["kind"] == "header"
    assert headers[0]["format_version"] == 1
    assert headers[0]["source_companion_id"] == source["companion_id"]
    assert headers[0]["companion"]["version"]
    assert "limits" in headers[0]["companion"]["config"]
    items = lines(pages)
    exported = [item for item in items if item["kind"] == "memory"]
    assert sorted(m["content"] for m in exported) == sorted(
        c for items_ in source["contents"].values() for c, _, _ in items_
    )
    assert len([item for item in items if item["kind"] == "relation"]) == 3
    # And no line carries a vector or the forgotten memory
    assert not [item for item in items if {"embedding", "embeddings", "vector"} & set(item)]
    assert "Oslo" not in "".join(pages)


def test_an_export_imports_into_a_fresh_companion_with_the_same_memories_and_relations(
    api: httpx.Client, source: dict[str, Any]
) -> None:
    # Given the export, in pages, and an empty owner on the receiving side
    pages = export_pages(api, source["owner_key"], source["companion_id"], limit=3)
    _, receiver = wiring.identity_service().create_owner("Receiver Ltd")
    # When each page is imported in turn
    answers = [
        api.post("/companions/import", content=page.encode(), headers={**bearer(receiver), **NDJSON})
        for page in pages
    ]
    # Then the first page creates the companion and the others resume it
    assert [a.status_code for a in answers] == [201] + [200] * (len(pages) - 1), [a.text for a in answers]
    target = {a.json()["companion_id"] for a in answers}
    assert len(target) == 1
    assert sum(a.json()["memories_stored"] for a in answers) == 10
    assert sum(a.json()["relations_linked"] for a in answers) == 3
    assert all(a.json()["relations_unresolved"] == [] for a in answers)
    # And the imported companion exports the same memories and relations, and the same config
    (companion_id,) = target
    imported = export_pages(api, receiver, companion_id, limit=1000)
    assert comparable(imported) == comparable(pages)
    exported = [m for m in lines(imported) if m["kind"] == "memory"]
    assert sum(m["archived"] for m in exported) == 1
    assert [m["expires_at"] for m in exported if m["content"].startswith("Ben sailed")] == [None]
    assert (
        json.loads(imported[0].splitlines()[0])["companion"]["config"]
        == json.loads(pages[0].splitlines()[0])["companion"]["config"]
    )


def test_importing_the_same_export_again_creates_nothing(api: httpx.Client, source: dict[str, Any]) -> None:
    # Given an export imported once
    pages = export_pages(api, source["owner_key"], source["companion_id"], limit=1000)
    _, receiver = wiring.identity_service().create_owner("Twice Ltd")
    first = api.post("/companions/import", content=pages[0].encode(), headers={**bearer(receiver), **NDJSON})
    assert first.status_code == 201, first.text
    companion_id = first.json()["companion_id"]
    before = memory_count(companion_id)
    # When the same file is imported again
    again = api.post("/companions/import", content=pages[0].encode(), headers={**bearer(receiver), **NDJSON})
    # Then it resumes the same companion and stores nothing new
    assert again.status_code == 200, again.text
    report = again.json()
    assert (report["companion_id"], report["created"]) == (companion_id, False)
    assert (report["memories_stored"], report["memories_already_imported"], report["memories_pending"]) == (
        0,
        10,
        0,
    )
    assert memory_count(companion_id) == before == 10


def test_a_malformed_line_is_named_and_nothing_is_written(api: httpx.Client, source: dict[str, Any]) -> None:
    # Given an export whose source nobody imported yet, with line 3 broken
    page = export_pages(api, source["owner_key"], source["companion_id"], limit=1000)[0].splitlines()
    header = json.loads(page[0]) | {"source_companion_id": str(uuid.uuid4())}
    body = "\n".join([json.dumps(header), page[1], '{"kind": "memory", "content": ', *page[2:]]) + "\n"
    _, receiver = wiring.identity_service().create_owner("Broken Ltd")
    # When it is imported
    answer = api.post("/companions/import", content=body.encode(), headers={**bearer(receiver), **NDJSON})
    # Then the answer names the line, and no companion was created for the source
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["message"].startswith("line 3:")
    from tests.integration.test_erasure import owner_view

    with owner_view() as conn:
        mapped = conn.execute(
            "SELECT count(*) FROM companion_imports WHERE source_companion_id = %s",
            (header["source_companion_id"],),
        ).fetchone()
    assert mapped == (0,)


def test_another_owner_cannot_export_and_an_import_never_lands_in_another_owners_companion(
    api: httpx.Client, source: dict[str, Any]
) -> None:
    # Given another owner, and the source's own companion key
    other = make_tenant(api, "Nosy Ltd")
    # When they try to export the source companion
    by_other = api.get(f"/companions/{source['companion_id']}/export", headers=bearer(other["owner_key"]))
    by_key = api.get(f"/companions/{source['companion_id']}/export", headers=bearer(source["key"]))
    forged = api.get(f"/companions/{uuid.uuid4()}/export", headers=bearer(source["owner_key"]))
    anonymous = api.get(f"/companions/{source['companion_id']}/export")
    anonymous_import = api.post("/companions/import", content=b"{}\n", headers=NDJSON)
    # Then the other owner gets the 404 of a missing companion, a companion key lacks the admin scope
    assert (by_other.status_code, by_other.json()["error"]["code"]) == (404, "not_found")
    assert by_key.status_code == 403
    assert forged.status_code == 404
    assert (anonymous.status_code, anonymous_import.status_code) == (401, 401)
    # And when the other owner imports a file naming the source companion, it goes to a new companion of
    # their own, and the source is untouched
    before = memory_count(source["companion_id"])
    page = export_pages(api, source["owner_key"], source["companion_id"], limit=1000)[0]
    imported = api.post(
        "/companions/import", content=page.encode(), headers={**bearer(other["owner_key"]), **NDJSON}
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["companion_id"] not in (source["companion_id"], other["companion_id"])
    assert memory_count(source["companion_id"]) == before
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        conn.execute("SELECT set_config('app.owner_id', %s, true)", (other["owner_id"],))
        owner = conn.execute(
            "SELECT owner_id::text FROM companions WHERE id = %s", (imported.json()["companion_id"],)
        ).fetchone()
    assert owner == (other["owner_id"],)


def test_a_strict_companion_exports_plaintext_to_its_owner_and_imports_sealed_again(
    api: httpx.Client,
) -> None:
    from tests.integration.test_erasure import owner_view

    # Given a strict companion with a sealed memory
    _, owner_key = wiring.identity_service().create_owner("Strict Export Ltd")
    created = api.post(
        "/companions", json={"name": "Vault", "isolation_level": "strict"}, headers=bearer(owner_key)
    )
    companion_id = created.json()["id"]
    key = api.post(f"/companions/{companion_id}/api-keys", json={"name": "b"}, headers=bearer(owner_key))
    tenant = {"companion_id": companion_id, "key": key.json()["api_key"]}
    stored = api.post(
        memories(tenant, "sam"),
        json={"content": "Sam's locker code is 4711"},
        headers=bearer(key.json()["api_key"]),
    )
    assert stored.status_code == 201, stored.text
    # When its owner exports it and imports the export elsewhere
    page = export_pages(api, owner_key, companion_id, limit=1000)[0]
    _, receiver = wiring.identity_service().create_owner("Strict Receiver Ltd")
    imported = api.post("/companions/import", content=page.encode(), headers={**bearer(receiver), **NDJSON})
    # Then the export holds the plaintext, and the new companion is strict and keeps it sealed
    assert "Sam's locker code is 4711" in page
    assert imported.status_code == 201, imported.text
    with owner_view() as conn:
        row = conn.execute(
            "SELECT c.isolation_level, m.content IS NULL, m.content_sealed IS NOT NULL"
            " FROM memories m JOIN companions c ON c.id = m.companion_id WHERE m.companion_id = %s",
            (imported.json()["companion_id"],),
        ).fetchone()
    assert row == ("strict", True, True)


def test_two_imports_of_one_export_at_once_create_one_companion(
    api: httpx.Client, source: dict[str, Any]
) -> None:
    import concurrent.futures

    from tests.integration.test_erasure import owner_view

    # Given one export page and an owner who never imported it
    page = export_pages(api, source["owner_key"], source["companion_id"], limit=1000)[0].encode()
    owner, receiver = wiring.identity_service().create_owner("Racing Ltd")

    # When four imports of it run at once (each connected first, then all released together)
    start = threading.Barrier(4)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=str(api.base_url), timeout=120) as client:
            client.get("/health")
            start.wait()
            return client.post("/companions/import", content=page, headers={**bearer(receiver), **NDJSON})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, range(4)))
    # Then one created the companion; the others resumed it or were told to send again (409); the owner
    # has one companion holding each memory once
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(201) == 1, [a.text for a in answers]
    assert set(statuses) <= {200, 201, 409}
    assert all(a.json()["error"]["code"] == "conflict" for a in answers if a.status_code == 409)
    with owner_view() as conn:
        companions = conn.execute("SELECT id FROM companions WHERE owner_id = %s", (owner.id,)).fetchall()
    assert len(companions) == 1
    assert memory_count(str(companions[0][0])) == 10


def test_an_import_into_a_paused_companion_is_refused(api: httpx.Client, source: dict[str, Any]) -> None:
    # Given an export imported once, whose companion its owner paused since
    page = export_pages(api, source["owner_key"], source["companion_id"], limit=1000)[0].encode()
    _, receiver = wiring.identity_service().create_owner("Paused Receiver Ltd")
    first = api.post("/companions/import", content=page, headers={**bearer(receiver), **NDJSON})
    assert first.status_code == 201, first.text
    companion_id = first.json()["companion_id"]
    paused = api.post(f"/companions/{companion_id}/pause", headers=bearer(receiver))
    assert paused.status_code == 200, paused.text
    before = memory_count(companion_id)
    # When the export is imported again
    again = api.post("/companions/import", content=page, headers={**bearer(receiver), **NDJSON})
    # Then it is refused as a move the companion's status does not allow, and nothing is written
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "illegal_transition"
    assert again.json()["error"]["details"] == {"status": "paused", "action": "import"}
    assert memory_count(companion_id) == before


def test_a_body_that_is_not_utf8_is_a_clear_400(api: httpx.Client) -> None:
    _, receiver = wiring.identity_service().create_owner("Latin-1 Ltd")
    # When the import body is Latin-1 (sent base64-encoded, as the HTTP API sends any binary body)
    answer = api.post(
        "/companions/import",
        content='{"kind": "h\u00e9ader"}\n'.encode("latin-1"),
        headers={**bearer(receiver), **NDJSON},
    )
    # Then the import names the problem instead of failing with a 500
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "validation_failed"
    assert "UTF-8" in answer.json()["error"]["message"]


def test_a_large_export_comes_in_pages_within_the_byte_cap_that_import_as_they_are(
    api: httpx.Client,
) -> None:
    from companion_memory.models.companion_export import MAX_EXPORT_PAGE_BYTES, MAX_TRANSFER_BYTES
    from companion_memory.models.memory import NewMemory
    from companion_memory.models.tenancy import TenantScope

    # Given 60 memories and 285 relations between them with 16 KB of metadata each: 5.6 MB in all (short
    # contents: the size is in what is not embedded, so the test spends its time on the pages)
    tenant = make_tenant(api, "Large Export Ltd")
    service = wiring.memory_service()
    scope = TenantScope(
        owner_id=uuid.UUID(tenant["owner_id"]), companion_id=uuid.UUID(tenant["companion_id"]), user_id="gia"
    )
    ids = [
        result.memory.id
        for start in range(0, 60, 20)
        for result in service.store_many(
            scope,
            [
                NewMemory(content=f"Gia's note {n}", metadata={"pad": "m" * 16_000})
                for n in range(start, start + 20)
            ],
            verbatim=True,
        )
    ]
    for offset in range(1, 6):
        for source_id, target_id in zip(ids, ids[offset:], strict=False):
            service.link(scope, source_id, target_id, "related_to", {"pad": "r" * 16_000})
    # When the owner exports it, 1,000 memories a page
    pages = export_pages(api, tenant["owner_key"], tenant["companion_id"], limit=1000)
    # Then it comes in more than one page, none past the cap, every memory once
    assert len(pages) >= 2
    assert all(len(page.encode()) <= MAX_EXPORT_PAGE_BYTES <= MAX_TRANSFER_BYTES for page in pages)
    assert len([m for m in lines(pages) if m["kind"] == "memory"]) == 60
    assert len([r for r in lines(pages) if r["kind"] == "relation"]) == 285
    # And each page imports as it is
    _, receiver = wiring.identity_service().create_owner("Large Receiver Ltd")
    answers = [
        api.post("/companions/import", content=page.encode(), headers={**bearer(receiver), **NDJSON})
        for page in pages
    ]
    assert [a.status_code for a in answers] == [201] + [200] * (len(pages) - 1), [a.text for a in answers]
    assert sum(a.json()["memories_stored"] for a in answers) == 60
    assert sum(a.json()["relations_linked"] for a in answers) == 285
    assert all(a.json()["relations_unresolved"] == [] for a in answers)
