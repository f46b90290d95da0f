"""The lifecycle's guarantees, enforced where no code path can skip them (migrations/0013).

- A deleted companion's credentials may work on for up to 45 s (status caches): whatever they write in that
  window is refused, by the memory store's usage lock and by the database, and a write racing the delete
  either lands before the tombstone (and is purged) or is refused: nothing survives the purge.
- An erased user's token is refused; a token issued after the erasure works.
- As the app role, each thing the migrations say it cannot do is refused: forge a config version, bring a
  deleted companion back (or give it a data key), delete an import claim, pseudonymise a live companion's
  audit log.
"""

import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import errors

from companion_memory import wiring
from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_activity import PostgresActivityRecorder
from companion_memory.adapters.postgres_erasure import RETAINED_TABLES
from companion_memory.auth.principal import Principal
from companion_memory.domain.erasure import user_pseudonym
from companion_memory.errors import CompanionDeleted, CompanionPaused
from companion_memory.models.identity import Companion, CompanionCreate
from companion_memory.models.memory import NewMemory
from companion_memory.models.tenancy import ALL_USERS, TenantScope
from localdev.stack import Running
from tests.support.database import app_database
from tests.support.rest import bearer, make_tenant, memories, user_token

pytestmark = pytest.mark.integration

INSERT_MEMORY = (
    "INSERT INTO memories (id, companion_id, user_id, type, content, importance, occurred_at, created_at,"
    " updated_at) VALUES (gen_random_uuid(), %(c)s, 'alice', 'fact', 'x', 5, %(t)s, %(t)s, %(t)s)"
)


@pytest.fixture(scope="module")
def database(stack: Running) -> Iterator[Database]:
    with app_database(pool_size=3) as db:
        yield db


@contextmanager
def owner_view() -> Iterator[psycopg.Connection[Any]]:
    """The database owner, row-level security lifted for one transaction (rolled back): what is there."""
    with psycopg.connect(os.environ["DATABASE_OWNER_URL"], connect_timeout=5) as conn:
        for table in ("companions", "memories", "companion_users", "erased_users", "audit_log"):
            conn.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        try:
            yield conn
        finally:
            conn.rollback()


def rows_of(companion_id: uuid.UUID) -> dict[str, int]:
    with owner_view() as conn:
        return {
            table: int(
                conn.execute(
                    f"SELECT count(*) FROM {table} WHERE companion_id = %s",  # noqa: S608 (constant names)
                    (companion_id,),
                ).fetchone()[0]  # type: ignore[index]
            )
            for table in ("memories", "companion_users")
        }


def companion_of_new_owner() -> tuple[Principal, Companion]:
    owner_record, _ = wiring.identity_service().create_owner(f"Guards {uuid.uuid4()}")
    owner = Principal(
        kind="owner", owner_id=owner_record.id, scopes=frozenset({"admin"}), key_id=uuid.uuid4()
    )
    companion = wiring.identity_service().create_companion(owner, CompanionCreate(name="Ava"))
    return owner, companion


def scope_of(companion: Companion, user_id: str = "alice") -> TenantScope:
    return TenantScope(owner_id=companion.owner_id, companion_id=companion.id, user_id=user_id)


# --- writes after a delete or a pause -----------------------------------------------------------------------


def test_a_memory_stored_after_its_companion_was_deleted_is_refused_and_nothing_is_written(
    stack: Running,
) -> None:
    # Given a companion whose user stored a memory (caches warm: whatever a credential's sandbox holds)
    owner, companion = companion_of_new_owner()
    service = wiring.memory_service()
    service.store(scope_of(companion), NewMemory(content="Alice keeps bees", type="fact"))
    # When its owner deletes it, and a request that got past a cached credential then stores a memory
    wiring.erasure_service().delete_companion(owner, companion.id)
    with pytest.raises(CompanionDeleted):
        service.store(scope_of(companion), NewMemory(content="Alice moved to Porto", type="fact"))
    # Then it is refused with the deleted status's code, and nothing of it is left behind the purge
    assert rows_of(companion.id) == {"memories": 0, "companion_users": 0}


def test_a_paused_companion_stores_no_memory(stack: Running) -> None:
    # Given a companion its owner paused a moment ago
    owner, companion = companion_of_new_owner()
    wiring.companion_service().transition(owner, companion.id, "pause")
    # When a memory is stored for it (a cached credential)
    with pytest.raises(CompanionPaused):
        wiring.memory_service().store(scope_of(companion), NewMemory(content="Alice keeps bees", type="fact"))
    # Then no memory was written
    assert rows_of(companion.id)["memories"] == 0


def test_the_database_refuses_a_deleted_companions_rows_on_every_write_path(
    stack: Running, database: Database
) -> None:
    # Given a deleted companion
    owner, companion = companion_of_new_owner()
    wiring.erasure_service().delete_companion(owner, companion.id)
    now = datetime.now(UTC)
    # When rows of its user are inserted directly, as the app role in the user's own context
    inserts = {
        "memories": INSERT_MEMORY,
        "companion_users": "INSERT INTO companion_users (companion_id, user_id) VALUES (%(c)s, 'alice')",
        "session_log": (
            "INSERT INTO session_log (session_id, companion_id, user_id, started_at, ended_at, request_count)"
            " VALUES (gen_random_uuid(), %(c)s, 'alice', %(t)s, %(t)s, 1)"
        ),
        "activity_hourly": (
            "INSERT INTO activity_hourly (companion_id, user_id, hour, writes)"
            " VALUES (%(c)s, 'alice', %(t)s, 1)"
        ),
    }
    for table, statement in inserts.items():
        # Then each is refused with the deleted status's own error (adapters/postgres.py maps the guard)
        with pytest.raises(CompanionDeleted), database.transaction(scope_of(companion)) as conn:
            conn.execute(statement, {"c": companion.id, "t": now})
        assert table
    assert rows_of(companion.id) == {"memories": 0, "companion_users": 0}


def test_a_paused_companion_keeps_its_statistics_but_gets_no_memory_and_no_activity(
    stack: Running, database: Database
) -> None:
    # Given a paused companion
    owner, companion = companion_of_new_owner()
    wiring.companion_service().transition(owner, companion.id, "pause")
    # When its sessions are folded (upkeep still does that for a paused companion), a memory is inserted,
    # and a request's activity is counted
    with database.transaction(scope_of(companion)) as conn:
        conn.execute(
            "INSERT INTO companion_users (companion_id, user_id) VALUES (%s, 'alice')", (companion.id,)
        )
    with pytest.raises(CompanionPaused), database.transaction(scope_of(companion)) as conn:
        conn.execute(
            INSERT_MEMORY,
            {"c": companion.id, "t": datetime.now(UTC)},
        )
    PostgresActivityRecorder(database).record(scope_of(companion), "write", datetime.now(UTC))
    # Then the relationship row is there, and no memory and no activity
    with database.transaction(scope_of(companion)) as conn:
        activity = conn.execute(
            "SELECT count(*) FROM activity_hourly WHERE companion_id = %s", (companion.id,)
        )
        assert activity.fetchone() == (0,)
    assert rows_of(companion.id) == {"memories": 0, "companion_users": 1}


def test_a_write_racing_the_delete_either_lands_before_the_tombstone_and_is_purged_or_is_refused(
    stack: Running, database: Database
) -> None:
    # Given a memory written and not yet committed (a store in flight when the owner deletes)
    owner, companion = companion_of_new_owner()
    with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=5) as writer:
        writer.execute(
            "SELECT set_config('app.owner_id', %s, true), set_config('app.companion_id', %s, true),"
            " set_config('app.user_id', 'alice', true)",
            (str(companion.owner_id), str(companion.id)),
        )
        writer.execute(
            INSERT_MEMORY,
            {"c": companion.id, "t": datetime.now(UTC)},
        )
        # When the owner deletes the companion meanwhile (tombstone, then purge)
        deleting = threading.Thread(
            target=wiring.erasure_service().delete_companion, args=(owner, companion.id)
        )
        deleting.start()
        # Then the tombstone waits for the write in flight: wait until it is blocked on a lock (or done)
        # (an observer that locks nothing: pg_locks needs no tenant context)
        with psycopg.connect(
            os.environ["DATABASE_OWNER_URL"], connect_timeout=5, autocommit=True
        ) as observer:
            while deleting.is_alive():
                waiting = observer.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
                if waiting is not None and waiting[0] > 0:
                    break
                deleting.join(0.02)
        writer.commit()
        deleting.join()
    # and the write, committed before the tombstone, is purged with the rest: nothing survives
    assert rows_of(companion.id) == {"memories": 0, "companion_users": 0}


# --- erased users -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(stack: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.env["API_URL"], timeout=60) as client:
        yield client


def test_an_erased_users_old_token_is_refused_and_a_token_issued_after_the_erasure_works(
    api: httpx.Client,
) -> None:
    # Given a token of alice, issued before her erasure
    tenant = make_tenant(api, "Erased token")
    alice = f"alice-{uuid.uuid4().hex[:8]}"
    token = user_token(api, tenant, alice)
    # When the owner erases her, and the old token then stores a memory
    erased = api.delete(
        f"/companions/{tenant['companion_id']}/users/{alice}", headers=bearer(tenant["owner_key"])
    )
    assert erased.status_code == 200, erased.text
    late = api.post(
        memories(tenant, alice), json={"content": "Alice is back", "type": "fact"}, headers=bearer(token)
    )
    # Then the token is refused as an invalid credential, and nothing was written for her
    assert late.status_code == 401, late.text
    assert late.json()["error"]["code"] == "unauthorized"
    companion_id = uuid.UUID(tenant["companion_id"])
    assert rows_of(companion_id) == {"memories": 0, "companion_users": 0}
    # and the erasure is kept by pseudonym only
    with owner_view() as conn:
        kept = conn.execute("SELECT * FROM erased_users WHERE companion_id = %s", (companion_id,)).fetchall()
    assert [row[1] for row in kept] == [user_pseudonym(companion_id, alice)]
    assert alice not in repr(kept)
    # When the companion starts afresh with her: a token issued after the erasure (iat has whole seconds, so
    # the next second: one of the erasure's own second may predate it)
    erased_at = datetime.fromisoformat(erased.json()["erased_at"])
    while int(time.time()) <= erased_at.timestamp():
        time.sleep(0.05)
    fresh = user_token(api, tenant, alice)
    stored = api.post(
        memories(tenant, alice), json={"content": "Alice is new here", "type": "fact"}, headers=bearer(fresh)
    )
    # Then it works
    assert stored.status_code == 201, stored.text


def test_erased_users_are_a_retained_table_with_a_reason() -> None:
    assert "erased_users" in RETAINED_TABLES


# --- what the app role cannot do ----------------------------------------------------------------------------


def test_the_app_role_cannot_write_a_config_version_itself(stack: Running, database: Database) -> None:
    # Given a companion (its first version written by the trigger)
    _, companion = companion_of_new_owner()
    # When the app role inserts a version directly, Then it is refused
    with (
        pytest.raises(errors.InsufficientPrivilege),
        database.transaction(TenantScope(owner_id=companion.owner_id)) as conn,
    ):
        conn.execute(
            "INSERT INTO companion_versions (companion_id, owner_id, version, name, config, created_at)"
            " VALUES (%s, %s, '9.9.9', 'Forged', '{}', now())",
            (companion.id, companion.owner_id),
        )
    # while the trigger still records the versions of a real change
    with database.transaction(TenantScope(owner_id=companion.owner_id)) as conn:
        conn.execute("UPDATE companions SET name = 'Ava 2', version = '1.0.1' WHERE id = %s", (companion.id,))
        versions = conn.execute(
            "SELECT version FROM companion_versions WHERE companion_id = %s ORDER BY version_key",
            (companion.id,),
        ).fetchall()
    assert versions == [("1.0.0",), ("1.0.1",)]


def test_a_deleted_companion_cannot_be_brought_back_or_given_a_data_key(
    stack: Running, database: Database
) -> None:
    # Given a deleted companion
    owner, companion = companion_of_new_owner()
    wiring.erasure_service().delete_companion(owner, companion.id)
    owner_scope = TenantScope(owner_id=companion.owner_id)
    # When the app role sets it active again, or gives it a wrapped data key, Then each is refused
    for assignment in ("status = 'active'", "status = 'paused'", "wrapped_data_key = '\\x00'::bytea"):
        with pytest.raises(errors.CheckViolation), database.transaction(owner_scope) as conn:
            conn.execute(f"UPDATE companions SET {assignment} WHERE id = %s", (companion.id,))  # noqa: S608
    with database.transaction(owner_scope) as conn:
        row = conn.execute("SELECT status FROM companions WHERE id = %s", (companion.id,)).fetchone()
    assert row == ("deleted",)


def test_the_app_role_cannot_delete_an_import_claim(stack: Running, database: Database) -> None:
    _, companion = companion_of_new_owner()
    owner_scope = TenantScope(owner_id=companion.owner_id)
    with database.transaction(owner_scope) as conn:
        conn.execute(
            "INSERT INTO companion_imports (owner_id, source_companion_id, companion_id, claimed_at)"
            " VALUES (%s, gen_random_uuid(), %s, now())",
            (companion.owner_id, companion.id),
        )
    with pytest.raises(errors.InsufficientPrivilege), database.transaction(owner_scope) as conn:
        conn.execute("DELETE FROM companion_imports WHERE owner_id = %s", (companion.owner_id,))


def test_a_live_companions_audit_log_is_not_pseudonymised_at_once(stack: Running, database: Database) -> None:
    # Given a live companion whose audit log names a user in clear
    owner, companion = companion_of_new_owner()
    wiring.companion_service().set_blocked(owner, companion.id, "alice", True)
    scope = TenantScope(owner_id=companion.owner_id, companion_id=companion.id, user_id=ALL_USERS)
    # When the companion-wide pseudonymisation is called on it
    with database.transaction(scope) as conn:
        rewritten = conn.execute("SELECT pseudonymise_audit_companion(%s)", (companion.id,)).fetchone()
    # Then nothing is rewritten (a live companion's users are erased one by one)
    assert rewritten == (0,)
    targets = [e.target for e in wiring.identity_store().audit_events(companion.owner_id, companion.id)]
    assert "user:alice" in targets
    # and once the companion is deleted, its users are pseudonymised
    wiring.erasure_service().delete_companion(owner, companion.id)
    targets = [e.target for e in wiring.identity_store().audit_events(companion.owner_id, companion.id)]
    assert "user:alice" not in targets
    assert user_pseudonym(companion.id, "alice") in targets
