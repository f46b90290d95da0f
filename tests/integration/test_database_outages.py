"""PostgreSQL trouble reaches callers as one retryable error (DependencyUnavailable), not a driver error:
every edge maps it to 503 / a retryable tool error (tests/unit/test_errors.py)."""

import os
import socket
from uuid import uuid4

import psycopg
import pytest

from companion_memory.adapters.clock import SystemClock
from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_memory import PostgresMemoryStore
from companion_memory.config import PostgresSettings
from companion_memory.domain.memory import MemoryService
from companion_memory.errors import DependencyUnavailable
from companion_memory.models.memory import RecallQuery
from companion_memory.models.tenancy import TenantScope
from tests.support.embedders import HashEmbedder


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_database_nobody_listens_on_is_a_retryable_dependency_error() -> None:
    # Given a pool pointed at a port with no server behind it
    database = Database(
        f"postgresql://companion_app@127.0.0.1:{_closed_port()}/companion_memory?connect_timeout=1",
        PostgresSettings(db_connect_timeout_s=1),
    )
    service = MemoryService(PostgresMemoryStore(database), HashEmbedder(16), SystemClock())
    try:
        # When a recall needs it, Then the caller gets DependencyUnavailable (retryable), not psycopg's error
        with pytest.raises(DependencyUnavailable) as raised:
            service.recall(TenantScope(companion_id=uuid4(), user_id="ana"), RecallQuery(query="tea"))
        assert raised.value.retryable
    finally:
        database.close()


def test_a_statement_cancelled_at_its_timeout_is_a_retryable_dependency_error(stack: object) -> None:
    # Given the stack's database with a 100 ms statement timeout
    database = Database(os.environ["DATABASE_URL"], PostgresSettings(db_statement_timeout_ms=100))
    try:
        # When a statement runs past it, Then DependencyUnavailable
        with pytest.raises(DependencyUnavailable), database.transaction() as conn:
            conn.execute("SELECT pg_sleep(1)")
        # And a statement error that is the caller's own stays what it is (not an outage)
        with pytest.raises(psycopg.errors.DivisionByZero), database.transaction() as conn:
            conn.execute("SELECT 1 / 0")
        # And the pool lends tuple rows again after a transaction that asked for dict rows
        with database.transaction(dict_rows=True) as conn:
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
        with database.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").fetchone() == (1,)
    finally:
        database.close()
