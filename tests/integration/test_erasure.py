"""User erasure and companion deletion on the real local stack, checked store by store.

Data is seeded through the real surfaces (REST memory routes and the MCP endpoint behind the local gateway,
with real credentials), so every store holds what production would: memories of several types with
vectors, relations, history (update, forget), import keys, MCP session records in DynamoDB, rate-limit
counters in Redis, the relationship row and audit entries in PostgreSQL. After the erasure each store is
read directly, bypassing every tenant filter (PostgreSQL as the database owner with row-level security
lifted for the read, Redis SCAN, DynamoDB Scan), and must hold nothing of the erased user, while another
user of the same companion and the same user id of another companion are untouched.
"""

import asyncio
import hashlib
import itertools
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
import redis

from companion_memory import wiring
from companion_memory.adapters.postgres_erasure import (
    CASCADED_TABLES,
    COMPANION_TABLES,
    RETAINED_TABLES,
    USER_TABLES,
)
from companion_memory.models.erasure import Budget, StorePurge
from localdev.stack import Running
from tests.support.mcp_client import connect, ok
from tests.support.rest import bearer, make_tenant, memories, user_token


@pytest.fixture(scope="module")
def api(stack: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.env["API_URL"], timeout=60) as client:
        yield client


# --- reading every store as it is, past every tenant filter -------------------------------------------------


@contextmanager
def owner_view() -> Iterator[psycopg.Connection[Any]]:
    """The database owner's connection with row-level security lifted for one transaction (rolled back)."""
    with psycopg.connect(os.environ["DATABASE_OWNER_URL"], connect_timeout=5) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relkind = 'r' AND relforcerowsecurity"
            ).fetchall()
        ]
        for table in tables:
            conn.execute(f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY')
        try:
            yield conn
        finally:
            conn.rollback()


def public_tables(conn: psycopg.Connection[Any], column: str) -> set[str]:
    rows = conn.execute(
        "SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t"
        " USING (table_schema, table_name)"
        " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.column_name = %s",
        (column,),
    ).fetchall()
    return {row[0] for row in rows}


def postgres_rows_of(companion_id: str, user_id: str) -> dict[str, int]:
    """Rows naming the user, per table with a user_id column, plus audit rows naming them in clear."""
    with owner_view() as conn:
        counts = {
            table: conn.execute(
                f'SELECT count(*) FROM "{table}" WHERE companion_id = %s AND user_id = %s',  # noqa: S608
                (companion_id, user_id),
            ).fetchone()[0]  # type: ignore[index]
            for table in sorted(public_tables(conn, "user_id"))
        }
        counts["audit_log"] = conn.execute(
            "SELECT count(*) FROM audit_log WHERE companion_id = %s AND (target = %s OR actor = %s"
            " OR details::text LIKE %s)",
            (companion_id, f"user:{user_id}", f"user:{user_id}", f"%{user_id}%"),
        ).fetchone()[0]  # type: ignore[index]
    return {table: n for table, n in counts.items() if n}


def text_mentions(marker: str) -> dict[str, int]:
    """Rows of any table whose text form holds ``marker`` (content, metadata, snapshots, ids)."""
    with owner_view() as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
            ).fetchall()
        ]
        counts = {
            table: conn.execute(
                f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE %s',  # noqa: S608
                (f"%{marker}%",),
            ).fetchone()[0]  # type: ignore[index]
            for table in tables
        }
    return {table: n for table, n in counts.items() if n}


def redis_keys(fragment: str) -> list[str]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5)
    try:
        return [key.decode() for key in client.scan_iter(count=1000) if fragment in key.decode()]
    finally:
        client.close()


def dynamodb_items(fragment: str) -> list[dict[str, Any]]:
    client = wiring.aws_client("dynamodb")
    items: list[dict[str, Any]] = []
    paging: dict[str, Any] = {}
    while True:
        page = client.scan(TableName=os.environ["SESSIONS_TABLE"], **paging)
        items.extend(item for item in page["Items"] if fragment in str(item))
        if "LastEvaluatedKey" not in page:
            return items
        paging = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def traces(companion_id: str, user_id: str) -> dict[str, Any]:
    tag = f"{companion_id}:{user_id}"
    return {
        "postgres": postgres_rows_of(companion_id, user_id),
        "redis": redis_keys("{" + tag + "}"),
        "dynamodb": dynamodb_items(f"COMPANION#{companion_id}#USER#{user_id}"),
    }


# --- seeding through the real surfaces ----------------------------------------------------------------------


def seed_user(api: httpx.Client, tenant: dict[str, Any], user_id: str, marker: str) -> None:
    """Memories of several types (vectors, relations, history by update and forget, import keys) over REST,
    a session and more memories over MCP, rate counters from every request."""
    token = user_token(api, tenant, user_id)
    base = memories(tenant, user_id)
    stored = []
    for content, kind in [
        (f"{marker} keeps bees on the roof", "fact"),
        (f"{marker} prefers green tea to coffee", "preference"),
        (f"{marker} ran a marathon in Porto last spring", "experience"),
    ]:
        answer = api.post(base, json={"content": content, "type": kind}, headers=bearer(token))
        assert answer.status_code == 201, answer.text
        stored.append(answer.json()["memory"])
    linked = api.post(
        f"{base}/{stored[0]['id']}/links",
        json={"target_id": stored[2]["id"], "type": "related_to"},
        headers=bearer(token),
    )
    updated = api.patch(
        f"{base}/{stored[1]['id']}",
        json={"content": f"{marker} prefers jasmine tea", "expected_version": stored[1]["version"]},
        headers=bearer(token),
    )
    forgotten = api.delete(
        f"{base}/{stored[2]['id']}", params={"expected_version": stored[2]["version"]}, headers=bearer(token)
    )
    imported = api.post(
        f"{base}/import",
        content=f'{{"content": "{marker} was born in Lyon", "import_key": "crm-1"}}\n'.encode(),
        headers={**bearer(token), "content-type": "application/x-ndjson"},
    )
    for answer in (linked, updated, forgotten, imported):
        assert answer.status_code in (200, 201), answer.text

    async def over_mcp() -> None:
        async with connect(os.environ["MCP_URL"], token, mode="legacy") as client:
            await ok(client, "store_memory", content=f"{marker} plays the cello", type="fact")

    asyncio.run(over_mcp())


@pytest.fixture(scope="module")
def world(api: httpx.Client) -> dict[str, Any]:
    """Tenant A with users "erased" and "kept", tenant B with its own user of the erased user's id."""
    a, b = make_tenant(api, "Erasure A"), make_tenant(api, "Erasure B")
    erased, kept = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    markers = {name: f"marker{uuid.uuid4().hex[:10]}" for name in ("erased", "kept", "other")}
    seed_user(api, a, erased, markers["erased"])
    seed_user(api, a, kept, markers["kept"])
    seed_user(api, b, erased, markers["other"])
    return {"a": a, "b": b, "erased": erased, "kept": kept, "markers": markers}


def test_the_seeded_user_is_present_in_every_store(world: dict[str, Any]) -> None:
    # The seeding reached every store: otherwise "no trace afterwards" would prove nothing
    found = traces(world["a"]["companion_id"], world["kept"])
    assert {"memories", "memory_history", "memory_embeddings", "memory_relations"} <= set(found["postgres"])
    assert {"memory_imports", "companion_users", "audit_log"} <= set(found["postgres"])
    assert found["redis"]
    assert found["dynamodb"]


def test_erasing_a_user_leaves_no_trace_in_any_store_and_returns_a_receipt(
    api: httpx.Client, world: dict[str, Any]
) -> None:
    a, b, erased = world["a"], world["b"], world["erased"]
    # Given a user present in every store (see the seeding)
    assert all(traces(a["companion_id"], erased).values())
    # When the owner erases them
    answer = api.delete(f"/companions/{a['companion_id']}/users/{erased}", headers=bearer(a["owner_key"]))
    # Then the receipt counts what went, per store
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert (receipt["companion_id"], receipt["user_id"]) == (a["companion_id"], erased)
    postgres = receipt["removed"]["postgres"]
    assert postgres["memories"] == 5
    assert postgres["memory_relations"] == 1
    assert postgres["memory_embeddings"] >= 5
    assert postgres["memory_history"] >= 7
    assert postgres["memory_imports"] == 1
    assert postgres["companion_users"] == 1
    assert postgres["audit_log_pseudonymised"] >= 1
    assert receipt["removed"]["redis"]["rate_limit_counters"] >= 1
    assert receipt["removed"]["redis"]["daily_quota_counters"] >= 1
    assert receipt["removed"]["dynamodb"]["sessions"] >= 1
    # And no store holds anything of the user: no row, no key, no item, no content anywhere
    assert traces(a["companion_id"], erased) == {"postgres": {}, "redis": [], "dynamodb": []}
    assert text_mentions(world["markers"]["erased"]) == {}
    # And the other user of the companion and the same user id of another companion are untouched
    for companion_id, user_id, marker in [
        (a["companion_id"], world["kept"], world["markers"]["kept"]),
        (b["companion_id"], erased, world["markers"]["other"]),
    ]:
        kept = traces(companion_id, user_id)
        assert kept["postgres"]["memories"] == 5
        assert kept["redis"]
        assert kept["dynamodb"]
        assert text_mentions(marker)["memories"] == 5


def test_the_audit_log_records_the_erasure_under_a_pseudonym_only(
    api: httpx.Client, world: dict[str, Any]
) -> None:
    a, erased = world["a"], world["erased"]
    # Given the erasure ran (idempotent: run it here too, so the test stands alone)
    api.delete(f"/companions/{a['companion_id']}/users/{erased}", headers=bearer(a["owner_key"]))
    pseudonym = "user_sha256:" + hashlib.sha256(f"{a['companion_id']}:{erased}".encode()).hexdigest()
    # When the audit log is read as the database owner
    with owner_view() as conn:
        rows = conn.execute(
            "SELECT action, target, actor FROM audit_log WHERE companion_id = %s", (a["companion_id"],)
        ).fetchall()
    # Then the erasure is recorded, earlier entries about the user carry the same pseudonym, and none
    # names the user in clear
    actions_on_user = {action for action, target, _ in rows if target == pseudonym}
    assert {"user.erased", "token.issued"} <= actions_on_user
    assert not [row for row in rows if erased in f"{row[1]}{row[2]}"]


def test_erasing_again_answers_the_same_receipt_shape_with_zeros(
    api: httpx.Client, world: dict[str, Any]
) -> None:
    a, erased = world["a"], world["erased"]
    api.delete(f"/companions/{a['companion_id']}/users/{erased}", headers=bearer(a["owner_key"]))
    # When the same user is erased once more
    again = api.delete(f"/companions/{a['companion_id']}/users/{erased}", headers=bearer(a["owner_key"]))
    # Then nothing is left to remove, and the receipt says so
    assert again.status_code == 200, again.text
    removed = again.json()["removed"]
    assert set(removed) == {"postgres", "redis", "dynamodb"}
    assert all(n == 0 for store in removed.values() for n in store.values()), removed


@pytest.mark.parametrize("method", ["erase", "delete"])
def test_another_owner_cannot_erase_a_user_or_delete_the_companion(
    api: httpx.Client, world: dict[str, Any], method: str
) -> None:
    a, b = world["a"], world["b"]
    # Given owner B's key, and A's companion
    path = f"/companions/{a['companion_id']}" + (f"/users/{world['kept']}" if method == "erase" else "")
    # When B tries to erase A's user or delete A's companion, and A's companion key tries the same
    by_other_owner = api.delete(path, headers=bearer(b["owner_key"]))
    by_companion_key = api.delete(path, headers=bearer(a["key"]))
    forged = api.delete(f"/companions/{uuid.uuid4()}", headers=bearer(a["owner_key"]))
    anonymous = api.delete(path)
    bad_key = api.delete(path, headers=bearer("ok_not-a-real-key-at-all"))
    # Then B gets the same 404 as for a missing companion, the companion key lacks the admin scope, and
    # A's data is untouched
    assert (by_other_owner.status_code, by_other_owner.json()["error"]["code"]) == (404, "not_found")
    assert by_companion_key.status_code == 403
    assert forged.status_code == 404
    assert (anonymous.status_code, bad_key.status_code) == (401, 401)
    assert traces(a["companion_id"], world["kept"])["postgres"]["memories"] == 5


def test_every_table_with_user_or_companion_data_is_known_to_the_eraser(stack: Running) -> None:
    # Given the catalog as the database owner sees it
    with owner_view() as conn:
        with_user = public_tables(conn, "user_id")
        with_companion = public_tables(conn, "companion_id")
    # Then every table holding a user's rows is erased, and every table holding a companion's rows is
    # either purged or kept on purpose (a new table must be added to one of the eraser's lists)
    erased = set(USER_TABLES) | set(CASCADED_TABLES)
    assert with_user <= erased, f"user data the eraser does not know: {sorted(with_user - erased)}"
    known = erased | set(COMPANION_TABLES) | set(RETAINED_TABLES)
    assert with_companion <= known, (
        f"companion data the eraser does not know: {sorted(with_companion - known)}"
    )
    assert not (set(USER_TABLES) | set(COMPANION_TABLES)) - (with_user | with_companion), (
        "a listed table is gone"
    )


# --- deleting a companion -----------------------------------------------------------------------------------


def companion_row(companion_id: str) -> dict[str, Any]:
    with owner_view() as conn:
        row = conn.execute(
            "SELECT status, config, wrapped_data_key, (SELECT count(*) FROM api_keys k"
            "  WHERE k.companion_id = c.id AND k.revoked_at IS NULL) AS live_keys"
            " FROM companions c WHERE id = %s",
            (companion_id,),
        ).fetchone()
    assert row is not None
    return dict(zip(("status", "config", "wrapped_data_key", "live_keys"), row, strict=True))


@pytest.fixture
def doomed(api: httpx.Client) -> dict[str, Any]:
    """A companion with two seeded users, and a second companion key never used yet."""
    tenant = make_tenant(api, "Doomed Ltd")
    tenant["users"] = {f"u{n}-{uuid.uuid4().hex[:6]}": f"marker{uuid.uuid4().hex[:10]}" for n in range(2)}
    for user_id, marker in tenant["users"].items():
        seed_user(api, tenant, user_id, marker)
    spare = api.post(
        f"/companions/{tenant['companion_id']}/api-keys",
        json={"name": "spare"},
        headers=bearer(tenant["owner_key"]),
    )
    assert spare.status_code == 201, spare.text
    tenant["spare_key"] = spare.json()["api_key"]
    return tenant


def test_deleting_a_companion_tombstones_it_revokes_its_keys_and_leaves_no_trace(
    api: httpx.Client, world: dict[str, Any], doomed: dict[str, Any]
) -> None:
    companion_id = doomed["companion_id"]
    # When the owner deletes the companion
    answer = api.delete(f"/companions/{companion_id}", headers=bearer(doomed["owner_key"]))
    # Then the receipt counts both users' data in every store
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert (receipt["companion_id"], receipt["status"], receipt["shredded"]) == (
        companion_id,
        "deleted",
        True,
    )
    postgres = receipt["removed"]["postgres"]
    assert (postgres["memories"], postgres["companion_users"], postgres["memory_imports"]) == (10, 2, 2)
    assert postgres["memory_relations"] == 2
    assert postgres["companion_versions"] >= 1
    assert receipt["removed"]["redis"]["rate_limit_counters"] >= 2
    assert receipt["removed"]["dynamodb"]["sessions"] >= 2
    # And nothing of either user is left anywhere
    for user_id, marker in doomed["users"].items():
        assert traces(companion_id, user_id) == {"postgres": {}, "redis": [], "dynamodb": []}
        assert text_mentions(marker) == {}
    assert redis_keys("{" + companion_id) == []
    assert dynamodb_items(companion_id) == []
    # And the companion is a tombstone: no key, no config, no config history, every API key revoked
    row = companion_row(companion_id)
    assert (row["status"], row["config"], row["wrapped_data_key"], row["live_keys"]) == (
        "deleted",
        {},
        None,
        0,
    )
    # And a key of the companion is refused (one never used, so no cache of any sandbox holds it)
    token = api.post("/auth/token", json={"user_id": "x"}, headers=bearer(doomed["spare_key"]))
    assert token.status_code == 401, token.text
    # And another companion's data is untouched
    assert traces(world["b"]["companion_id"], world["erased"])["postgres"]["memories"] == 5


def test_deleting_a_companion_again_answers_zeros_and_keeps_the_tombstone(
    api: httpx.Client, doomed: dict[str, Any]
) -> None:
    companion_id = doomed["companion_id"]
    first = api.delete(f"/companions/{companion_id}", headers=bearer(doomed["owner_key"]))
    # When it is deleted a second time
    again = api.delete(f"/companions/{companion_id}", headers=bearer(doomed["owner_key"]))
    # Then the same receipt shape comes back, with nothing shredded or removed, and the row stays
    assert (first.status_code, again.status_code) == (200, 200), again.text
    receipt = again.json()
    assert receipt["shredded"] is False
    assert set(receipt["removed"]) == set(first.json()["removed"])
    assert all(n == 0 for store in receipt["removed"].values() for n in store.values()), receipt
    assert companion_row(companion_id)["status"] == "deleted"


def test_a_delete_cut_short_by_an_outage_is_finished_by_the_retry(
    api: httpx.Client, doomed: dict[str, Any]
) -> None:
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.adapters.postgres_erasure import PostgresErasure
    from companion_memory.auth.principal import Principal
    from companion_memory.domain.erasure import ErasureService
    from companion_memory.errors import DependencyUnavailable

    class RedisDown:
        name = "redis"

        def erase_user(self, owner_id: uuid.UUID, companion_id: uuid.UUID, user_id: str) -> dict[str, int]:
            raise DependencyUnavailable("the rate limiter's store is unavailable")

        def erase_companion(
            self, owner_id: uuid.UUID, companion_id: uuid.UUID, budget: Budget | None = None
        ) -> StorePurge:
            raise DependencyUnavailable("the rate limiter's store is unavailable")

    companion_id = doomed["companion_id"]
    postgres, _, dynamodb = wiring.tenant_data_stores()
    owner = Principal(kind="owner", owner_id=uuid.UUID(doomed["owner_id"]), scopes=frozenset({"admin"}))
    broken = ErasureService(
        wiring.identity_store(),
        PostgresErasure(wiring.database()),
        [postgres, RedisDown(), dynamodb],
        SystemClock(),
    )
    # Given a delete that stopped when Redis was unreachable (after the tombstone and the PostgreSQL purge)
    with pytest.raises(DependencyUnavailable):
        broken.delete_companion(owner, uuid.UUID(companion_id))
    assert companion_row(companion_id)["status"] == "deleted"
    assert redis_keys("{" + companion_id)
    # When the owner sends the delete again
    retry = api.delete(f"/companions/{companion_id}", headers=bearer(doomed["owner_key"]))
    # Then the retry removes what was left, and nothing remains
    assert retry.status_code == 200, retry.text
    assert retry.json()["shredded"] is False
    assert retry.json()["removed"]["redis"]["rate_limit_counters"] >= 2
    assert redis_keys("{" + companion_id) == []
    assert dynamodb_items(companion_id) == []
    for user_id in doomed["users"]:
        assert traces(companion_id, user_id) == {"postgres": {}, "redis": [], "dynamodb": []}


def test_a_strict_companions_sealed_content_cannot_be_opened_after_the_delete(api: httpx.Client) -> None:
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.adapters.kms_envelope import KmsDataKeys, PostgresWrappedKeys
    from companion_memory.domain.envelope import EnvelopeCipher
    from companion_memory.errors import ContentShredded

    # Given a strict companion with one sealed memory, and its ciphertext copied out (a backup, say)
    _, owner_key = wiring.identity_service().create_owner("Strict Ltd")
    created = api.post(
        "/companions", json={"name": "Vault", "isolation_level": "strict"}, headers=bearer(owner_key)
    )
    assert created.status_code == 201, created.text
    companion_id = created.json()["id"]
    key = api.post(f"/companions/{companion_id}/api-keys", json={"name": "b"}, headers=bearer(owner_key))
    tenant = {"companion_id": companion_id, "key": key.json()["api_key"]}
    token = user_token(api, tenant, "sally")
    stored = api.post(memories(tenant, "sally"), json={"content": "Sally's PIN hint"}, headers=bearer(token))
    assert stored.status_code == 201, stored.text
    memory_id = uuid.UUID(stored.json()["memory"]["id"])
    with owner_view() as conn:
        sealed = conn.execute("SELECT content_sealed FROM memories WHERE id = %s", (memory_id,)).fetchone()[0]  # type: ignore[index]

    def fresh() -> EnvelopeCipher:  # a new process: nothing cached
        return EnvelopeCipher(
            KmsDataKeys(wiring.aws_client("kms"), os.environ["KMS_KEY_ID"]),
            PostgresWrappedKeys(wiring.database()),
            SystemClock(),
        )

    opened = fresh().open(uuid.UUID(companion_id), "sally", memory_id, bytes(sealed))
    assert json.loads(opened)["content"] == "Sally's PIN hint"
    # When the owner deletes the companion
    assert api.delete(f"/companions/{companion_id}", headers=bearer(owner_key)).status_code == 200
    # Then the copied ciphertext no longer opens: the data key is gone
    with pytest.raises(ContentShredded):
        fresh().open(uuid.UUID(companion_id), "sally", memory_id, bytes(sealed))
    assert companion_row(companion_id)["wrapped_data_key"] is None


def test_the_cli_erases_a_user_with_an_owner_key_from_the_environment(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from companion_memory import cli

    # Given a user with a memory
    tenant = make_tenant(api, "Cli Erasure Ltd")
    stored = api.post(
        memories(tenant, "carol"), json={"content": "Carol sings in a choir"}, headers=bearer(tenant["key"])
    )
    assert stored.status_code == 201, stored.text
    command = ["user", "erase", "--companion", tenant["companion_id"], "--user", "carol"]
    # When the operator runs the CLI without an owner key, then with one
    monkeypatch.delenv("COMPANION_MEMORY_OWNER_KEY", raising=False)
    refused = cli.main(command)
    refusal = capsys.readouterr().err
    monkeypatch.setenv("COMPANION_MEMORY_OWNER_KEY", tenant["owner_key"])
    done = cli.main(command)
    receipt = json.loads(capsys.readouterr().out)
    # Then the first is refused in one line, the second prints the receipt, and the user is gone
    assert refused == 1
    assert "COMPANION_MEMORY_OWNER_KEY" in json.loads(refusal)["error"]
    assert done == 0
    assert (receipt["user_id"], receipt["removed"]["postgres"]["memories"]) == ("carol", 1)
    assert traces(tenant["companion_id"], "carol") == {"postgres": {}, "redis": [], "dynamodb": []}


def test_a_user_id_with_glob_characters_erases_only_its_own_counters(stack: Running) -> None:
    from companion_memory.adapters.redis_erasure import RedisErasure

    # Given counters of users whose ids a SCAN pattern would read as wildcards, and of their look-alikes
    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5)
    companion = uuid.uuid4()
    users = ["a*", "ab", "a?c", "abc", "a[b]", "ab]", "a\\b"]
    for user in users:
        client.set(f"cm:limits:{{{companion}:{user}}}:d:20000", 1, ex=600)
    try:
        # When each wildcard-looking user is erased
        for user in ["a*", "a?c", "a[b]", "a\\b"]:
            removed = RedisErasure(client).erase_user(uuid.uuid4(), companion, user)
            assert removed["daily_quota_counters"] == 1, user
        # Then exactly their keys went, and the look-alikes are still there
        left = sorted(
            key.decode() for key in client.scan_iter(match=f"cm:limits:{{{companion}:*", count=1000)
        )
        assert left == sorted(f"cm:limits:{{{companion}:{user}}}:d:20000" for user in ["ab", "abc", "ab]"])
    finally:
        RedisErasure(client).erase_companion(uuid.uuid4(), companion)
        client.close()


def test_a_brace_in_a_user_id_is_refused_at_the_edges_and_never_reaches_another_users_counters(
    api: httpx.Client, world: dict[str, Any]
) -> None:
    from companion_memory.adapters.redis_erasure import RedisErasure

    tenant = world["a"]
    # Given a user id that would end the Redis hash tag early ("a}:x" reads as user "a" followed by ":x")
    token = api.post(
        "/auth/token", json={"user_id": "a}:x", "scopes": ["memories:read"]}, headers=bearer(tenant["key"])
    )
    # Then no token names it (a token's user is the only way a user id reaches the rate limiter's keys)
    assert token.status_code == 400, token.text
    # And should such a user's counters exist (written before the ids were refused), erasing user "a"
    # leaves them alone
    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5)
    companion = uuid.uuid4()
    client.set(f"cm:limits:{{{companion}:a}}:m:1", 1, ex=600)
    client.set(f"cm:limits:{{{companion}:a}}:x}}:m:1", 1, ex=600)
    try:
        removed = RedisErasure(client).erase_user(uuid.uuid4(), companion, "a")
        assert removed["rate_limit_counters"] == 1
        assert [key.decode() for key in client.scan_iter(match=f"cm:limits:{{{companion}:*")] == [
            f"cm:limits:{{{companion}:a}}:x}}:m:1"
        ]
    finally:
        RedisErasure(client).erase_companion(uuid.uuid4(), companion)
        client.close()


def _seed_directly(tenant: dict[str, Any], user_id: str, count: int) -> list[uuid.UUID]:
    """``count`` memories of one user, related in a chain, through the memory service (no HTTP)."""
    from companion_memory.models.memory import NewMemory
    from companion_memory.models.tenancy import TenantScope

    scope = TenantScope(
        owner_id=uuid.UUID(tenant["owner_id"]),
        companion_id=uuid.UUID(tenant["companion_id"]),
        user_id=user_id,
    )
    service = wiring.memory_service()
    stored = service.store_many(
        scope, [NewMemory(content=f"{user_id} note number {n}") for n in range(count)], verbatim=True
    )
    ids = [result.memory.id for result in stored]
    for source, target in itertools.pairwise(ids):
        service.link(scope, source, target, "related_to")
    return ids


def test_a_user_is_erased_in_batches_down_to_the_last_row(api: httpx.Client) -> None:
    from companion_memory.adapters.postgres_erasure import PostgresErasure

    # Given a user with five memories related in a chain, and another user of the same companion
    tenant = make_tenant(api, "Batched Erasure Ltd")
    _seed_directly(tenant, "dora", 5)
    _seed_directly(tenant, "eve", 2)
    # When dora is erased two memories a transaction
    removed = PostgresErasure(wiring.database(), batch=2).erase_user(
        uuid.UUID(tenant["owner_id"]), uuid.UUID(tenant["companion_id"]), "dora"
    )
    # Then three batches and a last, empty one removed every row of hers, counted once
    assert (removed["memories"], removed["memory_relations"], removed["memory_embeddings"]) == (5, 4, 5)
    assert removed["memory_history"] == 5
    assert removed["companion_users"] == 1
    assert postgres_rows_of(tenant["companion_id"], "dora") == {}
    # And eve keeps her memories and her usage counters
    with owner_view() as conn:
        row = conn.execute(
            "SELECT memory_count FROM companion_users WHERE companion_id = %s AND user_id = 'eve'",
            (tenant["companion_id"],),
        ).fetchone()
    assert row == (2,)


def test_a_purge_within_a_budget_stops_unfinished_and_the_next_call_finishes_it(api: httpx.Client) -> None:
    from companion_memory.adapters.postgres_erasure import PostgresErasure

    # Given a companion with seven memories, and a budget that runs out after three checks
    tenant = make_tenant(api, "Budget Purge Ltd")
    _seed_directly(tenant, "finn", 7)
    owner_id, companion_id = uuid.UUID(tenant["owner_id"]), uuid.UUID(tenant["companion_id"])
    checks = iter([10.0] * 3 + [0.0] * 1000)
    store = PostgresErasure(wiring.database(), batch=2)
    # When the purge runs within the budget
    first = store.erase_companion(owner_id, companion_id, Budget(remaining=lambda: next(checks)))
    # Then it stopped with memories left, having removed whole batches only
    assert first.finished is False
    assert first.removed["memories"] == 4
    assert postgres_rows_of(str(companion_id), "finn")["memories"] == 3
    # When it is called again with no budget (as the cleanup sweep's next run would), it finishes
    second = store.erase_companion(owner_id, companion_id)
    assert second.finished is True
    assert first.removed["memories"] + second.removed["memories"] == 7
    assert postgres_rows_of(str(companion_id), "finn") == {}


def test_a_delete_out_of_time_answers_202_pending_and_the_stores_finish_the_purge(
    api: httpx.Client, doomed: dict[str, Any]
) -> None:
    import base64
    import importlib.util

    from localdev.template import ROOT

    # Given the companions function, called as Lambda calls it, with no time left in its budget
    spec = importlib.util.spec_from_file_location(
        "companions_app_out_of_time", ROOT / "functions/companions/app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class OutOfTime:
        function_name = "CompanionsFunction"
        memory_limit_in_mb = 512
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:CompanionsFunction"
        aws_request_id = "out-of-time"

        def get_remaining_time_in_millis(self) -> int:
            return 1_000

    companion_id = doomed["companion_id"]
    event = json.loads((ROOT / "events/companions/delete.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/companions/{companion_id}"
    event["pathParameters"] = {"companion_id": companion_id}
    # The authorizer's answer for the owner's key, as the sample event carries it
    event["requestContext"]["authorizer"]["lambda"]["owner_id"] = doomed["owner_id"]
    # When the owner deletes the companion
    response = module.app.resolve(event, OutOfTime())
    body = response["body"]
    receipt = json.loads(base64.b64decode(body) if response.get("isBase64Encoded") else body)
    # Then the companion is tombstoned and shredded at once, and the answer is 202 with the purge pending
    assert response["statusCode"] == 202, receipt
    assert (receipt["shredded"], receipt["purge"]) == (True, "pending")
    assert companion_row(companion_id)["status"] == "deleted"
    assert any(traces(companion_id, user)["postgres"] for user in doomed["users"])
    # And each store, called again as the cleanup sweep calls it, finishes the purge
    for store in wiring.tenant_data_stores():
        assert store.erase_companion(uuid.UUID(doomed["owner_id"]), uuid.UUID(companion_id)).finished
    for user_id in doomed["users"]:
        assert traces(companion_id, user_id) == {"postgres": {}, "redis": [], "dynamodb": []}


def test_the_tombstone_version_follows_a_concurrent_major_bump_instead_of_colliding(
    api: httpx.Client,
) -> None:
    import threading

    from companion_memory.models.identity import AuditEvent

    # Given a companion, and an update raising its version to 2.0.0 that holds its row, not yet committed
    tenant = make_tenant(api, "Racing Versions Ltd")
    owner_id, companion_id = uuid.UUID(tenant["owner_id"]), uuid.UUID(tenant["companion_id"])
    bump = psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=5)
    bump.execute("SELECT set_config('app.owner_id', %s, true)", (str(owner_id),))
    bump.execute(
        "UPDATE companions SET config = config || '{\"racing\": true}'::jsonb, version = '2.0.0'"
        " WHERE id = %s",
        (companion_id,),
    )
    # When the delete's tombstone runs meanwhile (it waits for the row), and the update commits
    at = datetime.now(UTC)
    audit = AuditEvent(
        owner_id=owner_id,
        companion_id=companion_id,
        actor="test",
        action="companion.deleted",
        target=f"companion:{companion_id}",
        details={},
        at=at,
    )
    outcome: dict[str, Any] = {}

    def retire() -> None:
        try:
            outcome["retired"] = wiring.postgres_erasure().retire_companion(owner_id, companion_id, at, audit)
        except Exception as error:  # the test reports whatever it was
            outcome["error"] = error

    racer = threading.Thread(target=retire)
    racer.start()
    with psycopg.connect(os.environ["DATABASE_OWNER_URL"], connect_timeout=5, autocommit=True) as watcher:
        # The tombstone's UPDATE waits for the update's row lock (a transaction id lock, not granted)
        while not watcher.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
        ).fetchone()[0]:  # type: ignore[index]
            racer.join(0.05)
            assert racer.is_alive(), outcome
    bump.commit()
    bump.close()
    racer.join()
    # Then the tombstone takes the next major version after the bump's, instead of failing on it
    assert outcome == {"retired": True}
    with owner_view() as conn:
        row = conn.execute("SELECT status, version FROM companions WHERE id = %s", (companion_id,)).fetchone()
    assert row == ("deleted", "3.0.0")
