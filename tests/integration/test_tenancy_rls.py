"""Row-level security on the tenancy tables, tried as an attacker would: as the app role, with and
without context, through a pooled connection reused across tenants."""

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors

from companion_memory.adapters.postgres import Database
from companion_memory.models.tenancy import ALL_USERS, TenantScope
from tests.support.database import app_database


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[Database]:
    # One pooled connection, so every transaction below reuses the same server session.
    with app_database(pool_size=1) as db:
        yield db


def _tenant(database: Database) -> tuple[uuid.UUID, uuid.UUID]:
    owner, companion = uuid.uuid4(), uuid.uuid4()
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        conn.execute("INSERT INTO owners (id, name) VALUES (%s, 'org')", (owner,))
        conn.execute("INSERT INTO companions (id, owner_id, name) VALUES (%s, %s, 'c')", (companion, owner))
    with database.transaction(TenantScope(companion_id=companion, user_id="alice")) as conn:
        conn.execute("INSERT INTO companion_users (companion_id, user_id) VALUES (%s, 'alice')", (companion,))
    with database.transaction(TenantScope(companion_id=companion, user_id="bob")) as conn:
        conn.execute("INSERT INTO companion_users (companion_id, user_id) VALUES (%s, 'bob')", (companion,))
    return owner, companion


def _count(conn: psycopg.Connection[object], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - fixed table names
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def test_without_context_every_tenant_table_is_empty(database: Database) -> None:
    _tenant(database)
    with database.transaction() as conn:
        assert [_count(conn, t) for t in ("owners", "companions", "companion_users")] == [0, 0, 0]


def test_an_owner_sees_only_its_own_companions(database: Database) -> None:
    mine, my_companion = _tenant(database)
    _tenant(database)
    with database.transaction(TenantScope(owner_id=mine)) as conn:
        assert conn.execute("SELECT id FROM companions").fetchall() == [(my_companion,)]
        assert _count(conn, "owners") == 1


def test_a_user_scope_sees_only_that_user_and_all_users_sees_the_companion(database: Database) -> None:
    _, companion = _tenant(database)
    with database.transaction(TenantScope(companion_id=companion, user_id="alice")) as conn:
        assert conn.execute("SELECT user_id FROM companion_users").fetchall() == [("alice",)]
    with database.transaction(TenantScope(companion_id=companion, user_id=ALL_USERS)) as conn:
        assert _count(conn, "companion_users") == 2


def test_a_companion_cannot_write_rows_of_another(database: Database) -> None:
    _, companion = _tenant(database)
    _, other = _tenant(database)
    with (
        pytest.raises(errors.InsufficientPrivilege, match="row-level security"),
        database.transaction(TenantScope(companion_id=companion, user_id=ALL_USERS)) as conn,
    ):
        conn.execute("INSERT INTO companion_users (companion_id, user_id) VALUES (%s, 'mallory')", (other,))


def test_a_companion_reads_its_own_row_but_cannot_change_it(database: Database) -> None:
    _, companion = _tenant(database)
    with database.transaction(TenantScope(companion_id=companion)) as conn:
        assert _count(conn, "companions") == 1
        updated = conn.execute("UPDATE companions SET status = 'active' WHERE id = %s", (companion,))
        assert updated.rowcount == 0


def test_context_never_outlives_its_transaction_on_a_pooled_connection(database: Database) -> None:
    owner, _ = _tenant(database)
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        backend = conn.info.backend_pid
        assert _count(conn, "companions") == 1
    with database.transaction() as conn:
        assert conn.info.backend_pid == backend  # the same server session...
        assert _count(conn, "companions") == 0  # ...without the previous tenant
        assert conn.execute("SELECT current_setting('app.owner_id', true)").fetchone() in (("",), (None,))


def test_a_failed_transaction_does_not_leak_its_context_either(database: Database) -> None:
    owner, _ = _tenant(database)
    with pytest.raises(errors.DivisionByZero), database.transaction(TenantScope(owner_id=owner)) as conn:
        conn.execute("SELECT 1/0")
    with database.transaction() as conn:
        assert _count(conn, "companions") == 0


def test_the_app_role_cannot_switch_row_security_off_or_become_the_owner(database: Database) -> None:
    with database.transaction() as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("ALTER TABLE companions DISABLE ROW LEVEL SECURITY")
    with database.transaction() as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SET ROLE companion_owner")
    with database.transaction() as conn:
        conn.execute("SET LOCAL row_security = off")
        # With row security off, a query that RLS would filter fails instead of returning rows.
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM companions")


def test_forged_context_values_are_data_not_sql(database: Database) -> None:
    _, companion = _tenant(database)
    scope = TenantScope(companion_id=companion, user_id="alice' OR '1'='1")
    with database.transaction(scope) as conn:
        assert _count(conn, "companion_users") == 0
