"""The re-embedding job's view of every tenant's memories (ports.ReembedStore), on PostgreSQL.

It connects as the schema owner (an operator action, like migrations) and runs every transaction as the
narrow role ``companion_reembed`` (migrations/0006_reembed_role.sql) with ``SET LOCAL ROLE``: the role
may read the columns needed to embed, see which vectors exist and insert new ones, nothing else; the
owner's own privileges are not used for any statement. The app role is not a member and cannot switch
to it.

Claims are transaction-level advisory locks, one per (model, memory), taken as rows are read: a second
run skips the memories the first holds, and a crashed run's claims end with its connection. They lock
no row, so the application never waits for the job; the insert alone locks the few rows it writes for,
FOR SHARE and for the length of one statement, so a concurrent content edit is ordered with it (the
edit's own vector write then removes the new model's stale vector, or the insert skips the changed row).
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg

from companion_memory.adapters.postgres_memory import vector_text
from companion_memory.ports import PendingCount, PendingEmbedding

ROLE = "companion_reembed"
_NIL = UUID(int=0)  # below every uuid4: "from the start" without a second form of the query

# The subquery is fenced (OFFSET 0) so the lock function runs on rows as they stream out in id order and
# LIMIT stops it: exactly the rows returned are locked, no others.
_CLAIM = """
SELECT c.id, c.companion_id, c.user_id, c.version, c.content, c.content_sealed
FROM (
    SELECT m.id, m.companion_id, m.user_id, m.version, m.content, m.content_sealed
    FROM memories m
    WHERE m.id > %(after)s
      AND (%(companion)s::uuid IS NULL OR m.companion_id = %(companion)s)
      AND NOT EXISTS (SELECT FROM memory_embeddings e WHERE e.memory_id = m.id AND e.model = %(model)s)
    ORDER BY m.id
    OFFSET 0
) c
WHERE pg_try_advisory_xact_lock(hashtext(%(model)s), hashtext(c.id::text))
LIMIT %(limit)s
"""

# The claim's snapshot predates its locks: a memory another run embedded and committed in between is locked
# by this run once that run ends. A new statement sees that commit; those memories are not pending.
_DONE = """
SELECT e.memory_id FROM memory_embeddings e
WHERE e.memory_id = ANY(%(ids)s::uuid[]) AND e.model = %(model)s
"""

# Only rows still at the version that was embedded; FOR SHARE waits for an edit in flight and then
# re-checks the version. DO NOTHING: a vector of this model that exists already is never replaced.
_INSERT = """
WITH fresh AS (
    SELECT m.id, m.companion_id, m.user_id, v.vector
    FROM unnest(%(ids)s::uuid[], %(versions)s::integer[], %(vectors)s::text[]) AS v (id, version, vector)
    JOIN memories m ON m.id = v.id AND m.version = v.version
    FOR SHARE OF m
)
INSERT INTO memory_embeddings (memory_id, companion_id, user_id, model, embedding)
SELECT fresh.id, fresh.companion_id, fresh.user_id, %(model)s, fresh.vector::vector FROM fresh
ON CONFLICT (memory_id, model) DO NOTHING
"""

_PENDING = """
SELECT count(*), count(*) FILTER (WHERE m.content_sealed IS NOT NULL)
FROM memories m
WHERE (%(companion)s::uuid IS NULL OR m.companion_id = %(companion)s)
  AND NOT EXISTS (SELECT FROM memory_embeddings e WHERE e.memory_id = m.id AND e.model = %(model)s)
"""


class PostgresReembedBatch:
    def __init__(
        self, conn: psycopg.Connection[Any], pending: list[PendingEmbedding], scanned_to: UUID | None
    ) -> None:
        self._conn = conn
        self._pending = pending
        self._scanned_to = scanned_to

    @property
    def pending(self) -> Sequence[PendingEmbedding]:
        return self._pending

    @property
    def scanned_to(self) -> UUID | None:
        return self._scanned_to

    def insert(self, model: str, vectors: Sequence[tuple[PendingEmbedding, Sequence[float]]]) -> int:
        if not vectors:
            return 0
        cur = self._conn.execute(
            _INSERT,
            {
                "ids": [item.memory_id for item, _ in vectors],
                "versions": [item.version for item, _ in vectors],
                "vectors": [vector_text(vector) for _, vector in vectors],
                "model": model,
            },
        )
        return cur.rowcount


class PostgresReembedStore:
    """One connection per claim (a batch runs for seconds; reconnecting costs milliseconds and never
    reuses a connection a timeout or failover left broken)."""

    def __init__(
        self, owner_conninfo: str, *, statement_timeout_ms: int = 60_000, idle_timeout_ms: int = 300_000
    ) -> None:
        self._conninfo = owner_conninfo
        # Longer than a request's: counting what is left reads every memory once.
        self._statement_timeout_ms = statement_timeout_ms
        # A claim stays open while the model embeds its batch; if this process hangs, the server ends the
        # transaction (and its claim locks) rather than keep them forever.
        self._idle_timeout_ms = idle_timeout_ms

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(self._conninfo, autocommit=True) as conn, conn.transaction():
            conn.execute("SET LOCAL ROLE companion_reembed")  # ROLE; an identifier, never a parameter
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true),"
                " set_config('idle_in_transaction_session_timeout', %s, true)",
                (str(self._statement_timeout_ms), str(self._idle_timeout_ms)),
            )
            yield conn

    @contextmanager
    def claim(
        self, model: str, after: UUID | None, limit: int, companion_id: UUID | None = None
    ) -> Iterator[PostgresReembedBatch]:
        params = {"after": after or _NIL, "companion": companion_id, "model": model, "limit": limit}
        with self._transaction() as conn:
            rows = conn.execute(_CLAIM, params).fetchall()
            done: set[UUID] = set()
            if rows:
                ids = [row[0] for row in rows]
                done = {r[0] for r in conn.execute(_DONE, {"ids": ids, "model": model}).fetchall()}
            pending = [
                PendingEmbedding(
                    memory_id=row[0],
                    companion_id=row[1],
                    user_id=row[2],
                    version=row[3],
                    content=row[4],
                    sealed=None if row[5] is None else bytes(row[5]),
                )
                for row in rows
                if row[0] not in done
            ]
            yield PostgresReembedBatch(conn, pending, max((row[0] for row in rows), default=None))

    def pending(self, model: str, companion_id: UUID | None = None) -> PendingCount:
        with self._transaction() as conn:
            row = conn.execute(_PENDING, {"model": model, "companion": companion_id}).fetchone()
        assert row is not None
        return PendingCount(total=int(row[0]), sealed=int(row[1]))
