"""PostgreSQL through psycopg 3: a small per-process pool and transactions with local settings.

Per-transaction settings use ``set_config(..., true)``: session-level ``SET`` would leak into the
next request on a pooled connection and pin RDS Proxy connections.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import SecretStr

from companion_memory.config import MigrateSettings, PostgresSettings
from companion_memory.errors import DependencyUnavailable, companion_inactive
from companion_memory.models.tenancy import TenantScope
from companion_memory.observability import logger

_SET_LOCAL = "SELECT set_config(name, value, true) FROM unnest(%s::text[], %s::text[]) AS s(name, value)"
# The database refuses a row of a companion that is deleted (a memory: not active) with this constraint and
# the status as the detail (migrations/0013_lifecycle_guards.sql).
COMPANION_NOT_ACTIVE = "companion_not_active"


def conninfo_from(settings: PostgresSettings, secret: dict[str, Any] | None) -> str:
    """Build the libpq conninfo: an explicit URL wins; otherwise the RDS-style secret JSON."""
    return _conninfo(settings, settings.database_url, secret)


def _conninfo(settings: PostgresSettings, url: SecretStr | None, secret: dict[str, Any] | None) -> str:
    if url is not None:
        return make_conninfo(url.get_secret_value(), connect_timeout=settings.db_connect_timeout_s)
    if secret is None:
        raise ValueError("no database URL and no credentials secret configured")
    return make_conninfo(
        host=settings.db_host or secret["host"],
        port=settings.db_port if settings.db_host else secret.get("port", settings.db_port),
        dbname=settings.db_name,
        user=secret["username"],
        password=secret["password"],
        sslmode=settings.db_sslmode,
        connect_timeout=settings.db_connect_timeout_s,
    )


def owner_conninfo_from(settings: MigrateSettings, secret: dict[str, Any] | None) -> str:
    return _conninfo(settings, settings.database_owner_url, secret)


class Database:
    def __init__(self, conninfo: str, settings: PostgresSettings) -> None:
        self._statement_timeout_ms = settings.db_statement_timeout_ms
        self._pool = ConnectionPool(
            conninfo,
            min_size=0,
            max_size=settings.db_pool_max_size,
            timeout=settings.db_connect_timeout_s,
            # A Lambda sandbox may sit frozen for minutes (or be restored from a SnapStart snapshot):
            # check each connection as it leaves the pool instead of trusting it.
            check=ConnectionPool.check_connection,
            open=False,
        )
        self._pool.open(wait=False)

    @contextmanager
    def transaction(
        self, scope: TenantScope | None = None, *, dict_rows: bool = False
    ) -> Iterator[psycopg.Connection[Any]]:
        """A transaction whose settings (timeout, tenant context) end with it; rows as dicts if asked.

        Every setting is transaction-local, so a pooled connection never carries one request's
        tenant into the next; without a scope, row-level security shows no tenant rows at all.

        A database that cannot be reached, drops the connection, cancels a statement at its timeout or
        has no connection to lend (psycopg's OperationalError family) raises DependencyUnavailable:
        one retryable answer at every edge, translated here once instead of in every adapter. A row the
        database refuses because its companion is not active raises that status's CompanionInactive.
        """
        settings = {
            "statement_timeout": str(self._statement_timeout_ms),
            **(scope or TenantScope()).settings(),
        }
        try:
            with self._pool.connection() as pooled, pooled.transaction():
                conn: psycopg.Connection[Any] = pooled
                conn.execute(_SET_LOCAL, (list(settings), list(settings.values())))
                if dict_rows:
                    conn.row_factory = dict_row
                try:
                    yield conn
                finally:
                    # The pool lends this connection to every adapter next: give it back as it came.
                    conn.row_factory = tuple_row
        except (psycopg.OperationalError, PoolTimeout) as error:
            logger.warning("PostgreSQL unavailable", extra={"error": type(error).__name__})
            raise DependencyUnavailable("The database is unavailable") from None
        except psycopg.errors.CheckViolation as error:
            if error.diag.constraint_name != COMPANION_NOT_ACTIVE:
                raise
            # A credential still cached after its companion was deleted or paused: the same answer the
            # authenticator gives once its cache catches up (companion_deleted, ...).
            raise companion_inactive(error.diag.message_detail or "inactive") from None

    def close(self) -> None:
        self._pool.close()


class PostgresProbe:
    name = "postgres"

    def __init__(self, database: Callable[[], Database]) -> None:
        self._database = database

    def check(self) -> None:
        with self._database().transaction() as conn:
            conn.execute("SELECT 1")
