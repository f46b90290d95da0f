"""Row-level security on the memory tables, tried as an attacker would: as the app role, through
``Database.transaction(scope)``, without context, across users, across companions, and against history."""

from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import errors

from companion_memory.adapters.clock import SystemClock
from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_memory import PostgresMemoryStore
from companion_memory.domain.memory import MemoryService
from companion_memory.models.memory import NewMemory
from companion_memory.models.tenancy import ALL_USERS, TenantScope
from tests.support.database import app_database
from tests.support.embedders import HashEmbedder

TABLES = ("memories", "memory_embeddings", "memory_relations", "memory_history")


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[Database]:
    with app_database(pool_size=1) as db:
        yield db


def _seed(database: Database) -> UUID:
    """A companion whose users alice and bob each have two linked memories (with vectors and history)."""
    owner, companion = uuid4(), uuid4()
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        conn.execute("INSERT INTO owners (id, name) VALUES (%s, 'org')", (owner,))
        conn.execute("INSERT INTO companions (id, owner_id, name) VALUES (%s, %s, 'c')", (companion, owner))
    service = MemoryService(PostgresMemoryStore(database), HashEmbedder(16), SystemClock())
    for user in ("alice", "bob"):
        scope = TenantScope(companion_id=companion, user_id=user)
        first, second = service.store_many(
            scope, [NewMemory(content=f"{user} one"), NewMemory(content="zz qq")]
        )
        service.link(scope, first.memory.id, second.memory.id, "follows")
    return companion


def _counts(conn: psycopg.Connection[Any]) -> list[int]:
    counts = []
    for table in TABLES:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - fixed table names
        assert row is not None
        counts.append(int(row[0]))
    return counts


def _users(conn: psycopg.Connection[Any]) -> set[str]:
    users: set[str] = set()
    for table in TABLES:
        users |= {str(r[0]) for r in conn.execute(f"SELECT user_id FROM {table}").fetchall()}  # noqa: S608
    return users


def test_without_context_every_memory_table_is_empty(database: Database) -> None:
    _seed(database)
    with database.transaction() as conn:
        assert _counts(conn) == [0, 0, 0, 0]


def test_a_companion_without_a_user_sees_no_memories(database: Database) -> None:
    companion = _seed(database)
    with database.transaction(TenantScope(companion_id=companion)) as conn:
        assert _counts(conn) == [0, 0, 0, 0]


def test_a_user_scope_sees_only_that_users_rows_in_every_table(database: Database) -> None:
    companion = _seed(database)
    with database.transaction(TenantScope(companion_id=companion, user_id="alice")) as conn:
        assert _users(conn) == {"alice"}
        assert _counts(conn) == [2, 2, 1, 2]
    with database.transaction(TenantScope(companion_id=companion, user_id=ALL_USERS)) as conn:
        assert _users(conn) == {"alice", "bob"}


def test_another_companions_all_users_scope_sees_nothing(database: Database) -> None:
    _seed(database)
    other = _seed(database)
    with database.transaction(TenantScope(companion_id=other, user_id=ALL_USERS)) as conn:
        assert _counts(conn) == [4, 4, 2, 4]  # its own, not the first companion's


def test_a_user_cannot_insert_rows_for_another_user_or_companion(database: Database) -> None:
    companion = _seed(database)
    other = _seed(database)
    alice = TenantScope(companion_id=companion, user_id="alice")
    for target_companion, target_user in ((companion, "bob"), (other, "alice")):
        with (
            pytest.raises(errors.InsufficientPrivilege, match="row-level security"),
            database.transaction(alice) as conn,
        ):
            conn.execute(
                "INSERT INTO memories (id, companion_id, user_id, type, content, importance, occurred_at, "
                "created_at, updated_at) VALUES (%s, %s, %s, 'fact', 'x', 5, now(), now(), now())",
                (uuid4(), target_companion, target_user),
            )


def test_a_user_cannot_move_or_touch_another_users_rows(database: Database) -> None:
    companion = _seed(database)
    alice = TenantScope(companion_id=companion, user_id="alice")
    with database.transaction(alice) as conn:
        # Bob's rows are invisible: an update or delete by any predicate reaches none of them
        assert conn.execute("UPDATE memories SET importance = 0 WHERE user_id = 'bob'").rowcount == 0
        assert conn.execute("DELETE FROM memory_embeddings WHERE user_id = 'bob'").rowcount == 0
    with (
        pytest.raises(errors.InsufficientPrivilege, match="row-level security"),
        database.transaction(alice) as conn,
    ):
        # ...and alice's own rows cannot be handed to bob
        conn.execute("UPDATE memories SET user_id = 'bob'")
    with database.transaction(TenantScope(companion_id=companion, user_id="bob")) as conn:
        assert conn.execute("SELECT min(importance) FROM memories").fetchone() != (0,)


def test_history_is_append_only_for_the_app_role(database: Database) -> None:
    companion = _seed(database)
    alice = TenantScope(companion_id=companion, user_id="alice")
    for statement in ("UPDATE memory_history SET actor = 'forged'", "DELETE FROM memory_history"):
        with pytest.raises(errors.InsufficientPrivilege), database.transaction(alice) as conn:
            conn.execute(statement)
    with database.transaction(alice) as conn:
        assert _counts(conn)[3] == 2


def test_the_app_role_cannot_build_indexes_or_call_the_owners_ddl(database: Database) -> None:
    with pytest.raises(errors.InsufficientPrivilege), database.transaction() as conn:
        conn.execute("CREATE INDEX evil ON memories (content)")


def test_purge_as_the_app_role_removes_no_live_or_recently_forgotten_memory(database: Database) -> None:
    companion = _seed(database)
    with database.transaction() as conn:
        # A cutoff in the far future is clamped to now: nothing within its grace period goes
        conn.execute("SELECT purge_forgotten_memories(now() + interval '100 years', 100000)")
    with database.transaction(TenantScope(companion_id=companion, user_id=ALL_USERS)) as conn:
        assert _counts(conn) == [4, 4, 2, 4]
