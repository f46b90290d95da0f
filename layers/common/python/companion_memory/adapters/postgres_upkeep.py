"""Sessions' ledger and scheduled memory upkeep on PostgreSQL (migrations/0009, 0012).

Everything runs as the app role under row-level security: a session's ledger in its user's context, a
companion's upkeep in its companion-wide context (``app.user_id = '*'``). The only cross-tenant calls are
the companion directory's (adapters/postgres_directory.py) and the purge of forgotten memories past their
grace (``purge_forgotten_memories``, 0003).

Two upkeep runs that overlap never work on one companion at once: a run holds the companion by its row in
``upkeep_leases`` (taken only when absent or expired, deleted at the end, expiring by itself after
``lease_s`` when a run dies), and the run that cannot take it leaves the companion to the holder. No
transaction outlives one step: each step commits on its own, so upkeep never holds row locks (or a pool
connection) for a whole companion. Every step's rows are picked ``FOR UPDATE SKIP LOCKED`` so a user's own
write in progress is never waited on (the row is done next run), and each step's predicate excludes what
it has done, so repeating a step changes nothing.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg import sql

from companion_memory.adapters.postgres import Database
from companion_memory.errors import CompanionMemoryError, DependencyUnavailable, NotFound, ValidationFailed
from companion_memory.models.companion_config import Limits
from companion_memory.models.session import SessionRecord
from companion_memory.models.tenancy import ALL_USERS, TenantScope
from companion_memory.models.upkeep import (
    UPKEEP_ACTOR,
    DedupeMemory,
    DuplicatePair,
    DuplicateScan,
    RetentionRules,
)
from companion_memory.observability import logger

# A lease outlasts the cleanup function's timeout (120 s), so a live run never loses it; a run that dies
# frees its companions for the run after the next.
LEASE_S = 300.0
# Upkeep's statements scan more than a request's (an exact nearest-neighbour search per candidate, batches
# of hundreds of rows); each still runs in its own short transaction, under this bound.
UPKEEP_STATEMENT_TIMEOUT_MS = 30_000

# A memory's history snapshot, as domain.memory.snapshot writes it (no vector; sealed content only as its
# base64 ciphertext), of the row ``c`` after the change.
MEMORY_SNAPSHOT = """
    CASE WHEN c.content_sealed IS NOT NULL
         THEN jsonb_build_object('content_sealed', translate(encode(c.content_sealed, 'base64'), E'\\n', ''))
         ELSE jsonb_build_object('content', c.content, 'summary', c.summary) END
    || jsonb_build_object(
        'type', c.type, 'metadata', c.metadata, 'importance', c.importance, 'confidence', c.confidence,
        'occurred_at', c.occurred_at, 'expires_at', c.expires_at, 'archived_at', c.archived_at,
        'forgotten_at', c.forgotten_at, 'purge_after', c.purge_after,
        'reinforcement_count', c.reinforcement_count, 'version', c.version,
        'embedding_model', c.embedding_model)
"""

_HISTORY = sql.SQL("""
    INSERT INTO memory_history (id, memory_id, companion_id, user_id, version, change, snapshot, actor, at)
    SELECT gen_random_uuid(), c.id, c.companion_id, c.user_id, c.version, %(change)s, {snapshot},
           %(actor)s, %(now)s
    FROM changed c
""").format(snapshot=sql.SQL(MEMORY_SNAPSHOT))

_LIVE = sql.SQL(
    "m.forgotten_at IS NULL AND m.archived_at IS NULL AND (m.expires_at IS NULL OR m.expires_at > %(now)s)"
)


def _statement(template: str) -> sql.Composed:
    """A statement with the shared fragments: ``{history}`` (log the ``changed`` rows) and ``{live}``."""
    return sql.SQL(template).format(history=_HISTORY, live=_LIVE)


@contextmanager
def _ledger_errors() -> Iterator[None]:
    """A PostgreSQL error at session start or fold is a retryable store failure, never an unhandled one
    (Database.transaction already turns an unreachable database into DependencyUnavailable)."""
    try:
        yield
    except psycopg.Error as error:
        logger.warning("Session ledger write failed", extra={"sqlstate": error.sqlstate})
        raise DependencyUnavailable("The session ledger could not be written") from None


class PostgresSessionLedger:
    def __init__(self, database: Database) -> None:
        self._database = database

    def session_limits(self, companion_id: UUID) -> Limits:
        # The companion's own context may read its row (0002 companion_self_read).
        with _ledger_errors(), self._database.transaction(TenantScope(companion_id=companion_id)) as conn:
            row = conn.execute("SELECT config FROM companions WHERE id = %s", (companion_id,)).fetchone()
        if row is None:
            raise NotFound("No such companion")
        try:
            return Limits.of(row[0] or {})
        except ValidationFailed as error:
            # The stored config is the server's fault, not the caller's: the defaults hold meanwhile.
            logger.error(
                "Stored companion limits do not parse; session limits use the defaults",
                extra={"companion_id": str(companion_id), "error_details": error.details},
            )
            return Limits()

    def started(self, companion_id: UUID, user_id: str, at: datetime) -> None:
        scope = TenantScope(companion_id=companion_id, user_id=user_id)
        with _ledger_errors(), self._database.transaction(scope) as conn:
            conn.execute(
                """
                INSERT INTO companion_users AS cu
                    (companion_id, user_id, first_interaction_at, last_interaction_at)
                VALUES (%(companion)s, %(user)s, %(at)s, %(at)s)
                ON CONFLICT (companion_id, user_id) DO UPDATE
                SET first_interaction_at = coalesce(cu.first_interaction_at, EXCLUDED.first_interaction_at),
                    last_interaction_at = greatest(cu.last_interaction_at, EXCLUDED.last_interaction_at)
                """,
                {"companion": companion_id, "user": user_id, "at": at},
            )

    def fold(self, companion_id: UUID, sessions: Sequence[SessionRecord]) -> int:
        if not sessions:
            return 0
        scope = TenantScope(companion_id=companion_id, user_id=ALL_USERS)
        with _ledger_errors(), self._database.transaction(scope) as conn:
            return _fold(conn, companion_id, sessions)


def _fold(conn: psycopg.Connection[Any], companion_id: UUID, sessions: Sequence[SessionRecord]) -> int:
    """Log the sessions not logged yet and add only those to their users' statistics, in the caller's
    transaction: the insert that takes is the one that counts (a racing folder's insert finds the row and
    adds nothing)."""
    if any(s.companion_id != companion_id for s in sessions):
        raise ValueError("every session folded together belongs to one companion")
    row = conn.execute(
        """
        WITH logged AS (
            INSERT INTO session_log (session_id, companion_id, user_id, started_at, ended_at, request_count)
            SELECT s.session_id, %(companion)s, s.user_id, s.started_at, greatest(s.ended_at, s.started_at),
                   s.request_count
            FROM unnest(%(ids)s::uuid[], %(users)s::text[], %(started)s::timestamptz[],
                        %(ended)s::timestamptz[], %(counts)s::int[])
                 AS s(session_id, user_id, started_at, ended_at, request_count)
            ON CONFLICT (session_id) DO NOTHING
            RETURNING user_id, started_at, ended_at, request_count
        ), per_user AS (
            SELECT user_id, sum(request_count) AS requests, min(started_at) AS first_at,
                   max(ended_at) AS last_at
            FROM logged GROUP BY user_id
        ), counted AS (
            INSERT INTO companion_users AS cu
                (companion_id, user_id, interaction_count, first_interaction_at, last_interaction_at)
            SELECT %(companion)s, user_id, requests, first_at, last_at FROM per_user
            ON CONFLICT (companion_id, user_id) DO UPDATE
            SET interaction_count = cu.interaction_count + EXCLUDED.interaction_count,
                first_interaction_at = coalesce(cu.first_interaction_at, EXCLUDED.first_interaction_at),
                last_interaction_at = greatest(cu.last_interaction_at, EXCLUDED.last_interaction_at)
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM logged), (SELECT count(*) FROM counted)
        """,
        {
            "companion": companion_id,
            "ids": [s.session_id for s in sessions],
            "users": [s.user_id for s in sessions],
            "started": [s.created_at for s in sessions],
            # A session's end is its last request: it was live until expiry, but idle.
            "ended": [s.last_activity_at for s in sessions],
            "counts": [s.request_count for s in sessions],
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


class PostgresUpkeepStore:
    def __init__(
        self,
        database: Database,
        *,
        lease_s: float = LEASE_S,
        statement_timeout_ms: int = UPKEEP_STATEMENT_TIMEOUT_MS,
    ) -> None:
        self._database = database
        self._lease_s = lease_s
        self._statement_timeout_ms = statement_timeout_ms

    def cursor(self, job: str) -> UUID | None:
        with self._database.transaction() as conn:
            row = conn.execute("SELECT after_id FROM schedule_cursors WHERE job = %s", (job,)).fetchone()
        return None if row is None else row[0]

    def save_cursor(self, job: str, after: UUID | None) -> None:
        with self._database.transaction() as conn:
            conn.execute(
                """
                INSERT INTO schedule_cursors (job, after_id, updated_at) VALUES (%s, %s, now())
                ON CONFLICT (job) DO UPDATE SET after_id = EXCLUDED.after_id, updated_at = now()
                """,
                (job, after),
            )

    @contextmanager
    def unit(self, companion_id: UUID) -> Iterator["PostgresUpkeepUnit | None"]:
        holder = uuid4()
        if not self._take_lease(companion_id, holder):
            yield None
            return
        try:
            yield PostgresUpkeepUnit(self._database, companion_id, self._statement_timeout_ms)
        finally:
            self._release_lease(companion_id, holder)

    def _take_lease(self, companion_id: UUID, holder: UUID) -> bool:
        # The database's clock decides expiry, so runs on machines whose clocks differ agree on it.
        with _step_errors(), self._database.transaction(TenantScope(companion_id=companion_id)) as conn:
            row = conn.execute(
                """
                INSERT INTO upkeep_leases AS l (companion_id, holder, until)
                VALUES (%(companion)s, %(holder)s, now() + make_interval(secs => %(lease_s)s))
                ON CONFLICT (companion_id) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
                WHERE l.until < now()
                RETURNING holder
                """,
                {"companion": companion_id, "holder": holder, "lease_s": self._lease_s},
            ).fetchone()
        return row is not None

    def _release_lease(self, companion_id: UUID, holder: UUID) -> None:
        try:
            with _step_errors(), self._database.transaction(TenantScope(companion_id=companion_id)) as conn:
                conn.execute(
                    "DELETE FROM upkeep_leases WHERE companion_id = %s AND holder = %s",
                    (companion_id, holder),
                )
        except CompanionMemoryError as error:
            # Not released: it expires by itself after lease_s; the companion waits until then.
            logger.warning(
                "Upkeep lease not released",
                extra={"companion_id": str(companion_id), "error_code": error.code},
            )

    def purge_forgotten(self, cutoff: datetime, max_rows: int) -> int:
        with self._database.transaction() as conn:
            row = conn.execute("SELECT purge_forgotten_memories(%s, %s)", (cutoff, max_rows)).fetchone()
        if row is None:
            raise DependencyUnavailable("The purge returned nothing")
        return int(row[0])


@contextmanager
def _step_errors() -> Iterator[None]:
    """Any PostgreSQL error of an upkeep step as a CompanionMemoryError (the walk logs the companion and
    goes on); an unreachable database or a statement timeout is already DependencyUnavailable."""
    try:
        yield
    except psycopg.Error as error:
        raise CompanionMemoryError("An upkeep step failed", details={"sqlstate": error.sqlstate}) from None


class PostgresUpkeepUnit:
    def __init__(self, database: Database, companion_id: UUID, statement_timeout_ms: int) -> None:
        self._database = database
        self._companion_id = companion_id
        self._statement_timeout_ms = statement_timeout_ms

    @contextmanager
    def _step(self, *, dict_rows: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """One step's own transaction in the companion-wide context, with upkeep's statement timeout."""
        scope = TenantScope(companion_id=self._companion_id, user_id=ALL_USERS)
        with _step_errors(), self._database.transaction(scope, dict_rows=dict_rows) as conn:
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true)", (str(self._statement_timeout_ms),)
            )
            yield conn

    def _count(self, query: sql.Composed, params: dict[str, Any]) -> int:
        with self._step() as conn:
            row = conn.execute(query, {"companion": self._companion_id, "actor": UPKEEP_ACTOR, **params})
            found = row.fetchone()
        return 0 if found is None else int(found[0])

    def expire(self, rules: RetentionRules, limit: int) -> int:
        return self._count(
            _statement("""
            WITH picked AS (
                SELECT m.id FROM memories m
                WHERE m.companion_id = %(companion)s AND m.forgotten_at IS NULL
                  AND (m.expires_at <= %(now)s
                       OR (m.type <> 'instruction' AND m.occurred_at <= %(occurred_before)s::timestamptz))
                ORDER BY m.id LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED
            ), changed AS (
                UPDATE memories m
                SET forgotten_at = %(now)s, purge_after = %(purge_after)s, updated_at = %(now)s,
                    version = m.version + 1
                FROM picked WHERE m.id = picked.id
                RETURNING m.*
            ), logged AS ({history} RETURNING 1)
            SELECT count(*) FROM logged
            """),
            {
                "now": rules.now,
                "occurred_before": rules.occurred_before,
                "purge_after": rules.purge_after,
                "limit": limit,
                "change": "expired",
            },
        )

    def decay(self, rules: RetentionRules, limit: int) -> int:
        # importance * 0.5^(elapsed / half-life), elapsed since the later of last decay, recall, creation.
        return self._count(
            _statement("""
            WITH picked AS (
                SELECT m.id, greatest(m.decayed_at, m.accessed_at, m.created_at) AS since
                FROM memories m
                WHERE m.companion_id = %(companion)s AND {live} AND m.type <> 'instruction'
                  AND m.importance > 0
                  AND greatest(m.decayed_at, m.accessed_at, m.created_at) <= %(now)s - %(interval)s
                ORDER BY m.id LIMIT %(limit)s
                FOR UPDATE OF m SKIP LOCKED
            ), changed AS (
                UPDATE memories m
                SET importance = m.importance * power(
                        0.5, extract(epoch FROM %(now)s - picked.since) / %(half_life_s)s)::real,
                    decayed_at = %(now)s
                FROM picked WHERE m.id = picked.id
                RETURNING 1
            )
            SELECT count(*) FROM changed
            """),
            {
                "now": rules.now,
                "interval": rules.decay_interval,
                "half_life_s": rules.decay_half_life.total_seconds(),
                "limit": limit,
            },
        )

    def archive_unimportant(self, rules: RetentionRules, limit: int) -> int:
        return self._count(
            _statement("""
            WITH picked AS (
                SELECT m.id FROM memories m
                WHERE m.companion_id = %(companion)s AND {live} AND m.type <> 'instruction'
                  AND m.importance < %(below)s
                ORDER BY m.id LIMIT %(limit)s
                FOR UPDATE OF m SKIP LOCKED
            ), changed AS (
                UPDATE memories m
                SET archived_at = %(now)s, updated_at = %(now)s, version = m.version + 1
                FROM picked WHERE m.id = picked.id
                RETURNING m.*
            ), logged AS ({history} RETURNING 1)
            SELECT count(*) FROM logged
            """),
            {"now": rules.now, "below": rules.archive_below_importance, "limit": limit, "change": "archived"},
        )

    def duplicates(self, rules: RetentionRules, limit: int) -> DuplicateScan:
        # Exact cosine distance over the user's own rows (the un-cast column matches no HNSW index), the
        # few nearest of each candidate; a pair needs both memories' current vectors of the same model.
        with self._step(dict_rows=True) as conn:
            found = conn.execute(
                _statement("""
            WITH candidates AS (
                SELECT m.id, m.user_id, m.type, m.embedding_model, m.importance, m.reinforcement_count,
                       m.created_at
                FROM memories m
                WHERE m.companion_id = %(companion)s AND {live}
                  AND (m.deduped_at IS NULL OR m.deduped_at < m.updated_at)
                ORDER BY m.created_at, m.id LIMIT %(limit)s
            )
            SELECT c.id, c.user_id, c.importance, c.reinforcement_count, c.created_at,
                   n.id AS other_id, n.importance AS other_importance,
                   n.reinforcement_count AS other_reinforcement_count, n.created_at AS other_created_at,
                   n.similarity
            FROM candidates c
            LEFT JOIN memory_embeddings ce ON ce.memory_id = c.id AND ce.model = c.embedding_model
            LEFT JOIN LATERAL (
                SELECT o.id, o.importance, o.reinforcement_count, o.created_at,
                       1 - (oe.embedding <=> ce.embedding) AS similarity
                FROM memories o
                JOIN memory_embeddings oe ON oe.memory_id = o.id AND oe.model = ce.model
                WHERE o.companion_id = %(companion)s AND o.user_id = c.user_id AND o.id <> c.id
                  AND o.type = c.type AND o.embedding_model = ce.model
                  AND o.forgotten_at IS NULL AND o.archived_at IS NULL
                  AND (o.expires_at IS NULL OR o.expires_at > %(now)s)
                ORDER BY oe.embedding <=> ce.embedding
                LIMIT 5
            ) n ON n.similarity >= %(similarity)s
            """),
                {
                    "companion": self._companion_id,
                    "now": rules.now,
                    "limit": limit,
                    "similarity": rules.consolidate_similarity,
                },
            ).fetchall()
        pairs: list[DuplicatePair] = []
        compared: list[UUID] = []
        for row in found:
            if row["id"] not in compared:
                compared.append(row["id"])
            if row["other_id"] is None:
                continue
            pairs.append(
                DuplicatePair(
                    user_id=row["user_id"],
                    first=DedupeMemory(
                        row["id"], row["importance"], row["reinforcement_count"], row["created_at"]
                    ),
                    second=DedupeMemory(
                        row["other_id"],
                        row["other_importance"],
                        row["other_reinforcement_count"],
                        row["other_created_at"],
                    ),
                    similarity=float(row["similarity"]),
                )
            )
        return DuplicateScan(pairs=pairs, compared=compared)

    def consolidate(self, rules: RetentionRules, pair: DuplicatePair, keeper: UUID) -> bool:
        loser = pair.second.id if keeper == pair.first.id else pair.first.id
        archived = self._count(
            _statement("""
            WITH changed AS (
                UPDATE memories m
                SET archived_at = %(now)s, updated_at = %(now)s, version = m.version + 1
                WHERE m.id = %(loser)s AND m.companion_id = %(companion)s AND {live}
                  AND EXISTS (SELECT 1 FROM memories k WHERE k.id = %(keeper)s AND k.forgotten_at IS NULL
                              AND k.archived_at IS NULL)
                RETURNING m.*
            ), logged AS ({history} RETURNING 1), linked AS (
                INSERT INTO memory_relations (id, companion_id, user_id, source_id, target_id, type, metadata,
                                              created_at)
                SELECT %(relation)s, c.companion_id, c.user_id, c.id, %(keeper)s, 'consolidated_into',
                       jsonb_build_object('similarity', %(similarity)s::float8, 'by', %(actor)s), %(now)s
                FROM changed c
                ON CONFLICT (source_id, target_id, type) DO NOTHING
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM logged)
            """),
            {
                "now": rules.now,
                "loser": loser,
                "keeper": keeper,
                "relation": uuid4(),
                "similarity": round(pair.similarity, 6),
                "change": "consolidated",
            },
        )
        return archived == 1

    def mark_compared(self, rules: RetentionRules, memory_ids: list[UUID]) -> None:
        if memory_ids:
            with self._step() as conn:
                conn.execute(
                    "UPDATE memories SET deduped_at = %s WHERE id = ANY(%s::uuid[]) AND companion_id = %s",
                    (rules.now, memory_ids, self._companion_id),
                )

    def enforce_caps(self, rules: RetentionRules, limit: int) -> int:
        # companion_users.memory_count and content_bytes (0007's trigger) count every memory not forgotten,
        # archived ones too: they are kept and restorable, so they take quota. Forgetting is what brings a
        # user back under both caps; the least valuable go first, until the count surplus is gone and the
        # bytes freed before a memory already cover the byte surplus.
        return self._count(
            _statement("""
            WITH over AS (
                SELECT cu.user_id, greatest(cu.memory_count - %(cap)s, 0) AS surplus,
                       greatest(cu.content_bytes - %(byte_cap)s, 0) AS byte_surplus
                FROM companion_users cu
                WHERE cu.companion_id = %(companion)s
                  AND (cu.memory_count > %(cap)s OR cu.content_bytes > %(byte_cap)s)
            ), ordered AS (
                SELECT m.id, over.surplus, over.byte_surplus,
                       memory_stored_bytes(m.content, m.content_sealed) AS bytes,
                       row_number() OVER w AS position,
                       sum(memory_stored_bytes(m.content, m.content_sealed)) OVER w AS bytes_through
                FROM memories m JOIN over ON over.user_id = m.user_id
                WHERE m.companion_id = %(companion)s AND m.forgotten_at IS NULL
                WINDOW w AS (
                    PARTITION BY m.user_id
                    ORDER BY (m.archived_at IS NULL), (m.type = 'instruction'), m.importance,
                             m.reinforcement_count, coalesce(m.accessed_at, m.created_at), m.id
                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                )
            ), picked AS (
                SELECT m.id FROM memories m JOIN ordered r ON r.id = m.id
                WHERE r.position <= r.surplus OR r.bytes_through - r.bytes < r.byte_surplus
                ORDER BY r.position LIMIT %(limit)s
                FOR UPDATE OF m SKIP LOCKED
            ), changed AS (
                UPDATE memories m
                SET forgotten_at = %(now)s, purge_after = %(purge_after)s, updated_at = %(now)s,
                    version = m.version + 1
                FROM picked WHERE m.id = picked.id
                RETURNING m.*
            ), logged AS ({history} RETURNING 1)
            SELECT count(*) FROM logged
            """),
            {
                "now": rules.now,
                "cap": rules.max_memories_per_user,
                "byte_cap": rules.max_content_bytes_per_user,
                "purge_after": rules.purge_after,
                "limit": limit,
                "change": "expired",
            },
        )
