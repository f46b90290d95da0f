"""The application role's database pool on the test stack, for integration tests' module fixtures."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from companion_memory.adapters.postgres import Database
from companion_memory.config import PostgresSettings


@contextmanager
def app_database(pool_size: int = 2) -> Iterator[Database]:
    """A pool of ``pool_size`` connections as ``companion_app`` (DATABASE_URL), closed on exit."""
    database = Database(os.environ["DATABASE_URL"], PostgresSettings(db_pool_max_size=pool_size))
    try:
        yield database
    finally:
        database.close()
