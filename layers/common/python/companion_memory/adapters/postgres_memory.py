"""The memory store on PostgreSQL + pgvector (migrations/0003_memories.sql).

Every statement runs inside ``Database.transaction(scope)``, so row-level security confines it to the
scope's tenant; the explicit companion and user predicates are there for the planner (they match the
B-tree indexes), not for isolation.

Vectors travel as pgvector's text form with an explicit ``::vector`` cast rather than through a
registered type: the store never reads a vector back, and the cast needs no per-connection type lookup
(one round trip less on every new pooled connection, which on Lambda is most of them).

Per-user recall is exact: it orders by ``embedding <=> q`` on the un-cast column, which no index matches,
over the user's B-tree-filtered rows. Companion-wide search orders by ``(embedding::vector(d)) <=> q``
with the model as a literal, which is exactly the partial HNSW index of that model; pgvector's iterative
scan keeps reading the index until enough rows pass the filters.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, LiteralString, get_args
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb

from companion_memory.adapters.postgres import Database
from companion_memory.errors import NotFound, companion_inactive
from companion_memory.models.memory import (
    Candidate,
    HistoryEntry,
    MemoryCriteria,
    MemoryType,
    Relation,
    RelationType,
    StoredMemory,
)
from companion_memory.models.tenancy import ALL_USERS, TenantScope
from companion_memory.ports import CandidateQuery, UserStorage

_COLUMNS: LiteralString = (
    "m.id, m.companion_id, m.user_id, m.type, m.content, m.content_sealed AS sealed, m.summary, m.metadata, "
    "m.importance, m.confidence, m.occurred_at, m.created_at, m.updated_at, m.accessed_at, m.access_count, "
    "m.reinforcement_count, m.expires_at, m.archived_at, m.forgotten_at, m.purge_after, m.version, "
    "m.embedding_model"
)
_TEXT_SEARCH_CONFIG = "english"  # the config of the generated column memories.search
# The user's vectors of one model with their distance to the query: one range scan of the
# (companion_id, user_id, model) index, hash-joined with the user's live memories (see _hash_joined).
_USER_DISTANCES = sql.SQL(
    "(SELECT e.memory_id, e.embedding <=> %(vector)s::vector AS distance FROM memory_embeddings e "
    "WHERE e.companion_id = %(companion)s AND e.user_id = %(user)s AND e.model = %(model)s)"
)
# The OR query as an expression, not a joined CTE: with nested loops off, a join to it would push the
# planner off the primary-key lookup of the final candidates. The config is a literal, so to_tsquery of
# constants folds at planning instead of running per row.
_TSQUERY = sql.SQL("to_tsquery({config}::regconfig, %(tsq)s)").format(config=sql.Literal(_TEXT_SEARCH_CONFIG))
# One memory's distance, by the embeddings' primary key: for the few final candidates only.
_DISTANCE = sql.SQL(
    "(SELECT e.embedding <=> %(vector)s::vector FROM memory_embeddings e "
    "WHERE e.memory_id = m.id AND e.model = %(model)s)"
)


def vector_text(vector: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def _or_query(terms: Sequence[str]) -> str:
    # Terms are runs of letters and digits (domain.ranking.terms), so they need no quoting in
    # to_tsquery; OR, because a natural question rarely contains every word of the memory it asks for.
    return " | ".join(terms)


def _live(criteria: MemoryCriteria, params: dict[str, Any]) -> sql.Composed:
    """The predicate of a candidate memory, built from what is asked only (constant filters left out
    keep the plan on the partial index)."""
    params["now"] = criteria.now
    parts: list[sql.Composable] = [
        sql.SQL("m.forgotten_at IS NULL AND (m.expires_at IS NULL OR m.expires_at > %(now)s)")
    ]
    if not criteria.include_archived:
        parts.append(sql.SQL("m.archived_at IS NULL"))
    if criteria.types:
        params["types"] = list(criteria.types)
        parts.append(sql.SQL("m.type = ANY(%(types)s::text[])"))
    if criteria.since is not None:
        params["since"] = criteria.since
        parts.append(sql.SQL("m.occurred_at >= %(since)s"))
    if criteria.until is not None:
        params["until"] = criteria.until
        parts.append(sql.SQL("m.occurred_at < %(until)s"))
    return sql.SQL(" AND ").join(parts)


class PostgresMemoryStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    @contextmanager
    def unit(self, scope: TenantScope) -> Iterator["PostgresMemoryUnit"]:
        with self._database.transaction(scope) as conn:
            yield PostgresMemoryUnit(conn, scope)

    def purge_forgotten(self, cutoff: datetime, max_rows: int) -> int:
        with self._database.transaction() as conn:
            row = conn.execute("SELECT purge_forgotten_memories(%s, %s)", (cutoff, max_rows)).fetchone()
        assert row is not None
        return int(row[0])


class PostgresMemoryUnit:
    def __init__(self, conn: psycopg.Connection[Any], scope: TenantScope) -> None:
        self._conn = conn
        self._companion_id = scope.companion_id
        self._scope_user = scope.user_id

    def _rows(self, query: sql.Composed, params: dict[str, Any]) -> list[StoredMemory]:
        with self._conn.cursor(row_factory=class_row(StoredMemory)) as cur:
            return cur.execute(query, params).fetchall()

    def _owner_filter(self, params: dict[str, Any], user_id: str | None = None) -> sql.Composed:
        params["companion"] = self._companion_id
        user = user_id if user_id is not None else self._scope_user
        if user is None or user == ALL_USERS:
            return sql.SQL("m.companion_id = %(companion)s").format()
        params["user"] = user
        return sql.SQL("m.companion_id = %(companion)s AND m.user_id = %(user)s").format()

    def isolation_level(self) -> str | None:
        row = self._conn.execute(
            "SELECT isolation_level FROM companions WHERE id = app_companion_id()"
        ).fetchone()
        return None if row is None else str(row[0])

    def lock_usage(self, user_id: str) -> UserStorage:
        # An upsert, not SELECT FOR UPDATE: a user the companion never saw gets its row (and its lock) in
        # the same statement; ON CONFLICT DO UPDATE waits for a concurrent writer and returns the row as it
        # committed. The counters are moved by the memories_usage trigger (migrations/0007).
        row = self._conn.execute(
            """
            WITH usage AS (
                INSERT INTO companion_users AS cu (companion_id, user_id) VALUES (%(companion)s, %(user)s)
                ON CONFLICT (companion_id, user_id) DO UPDATE SET memory_count = cu.memory_count
                RETURNING memory_count, content_bytes
            )
            SELECT u.memory_count, u.content_bytes, c.config, c.status FROM usage u, companions c
            WHERE c.id = %(companion)s
            """,
            {"companion": self._companion_id, "user": user_id},
        ).fetchone()
        if row is None:
            raise NotFound("companion not found")
        # Every memory write takes this lock first: a credential still cached after its companion was paused
        # or deleted writes nothing (the database refuses such a memory too, and a deleted companion's
        # usage row above: migrations/0013).
        if row[3] != "active":
            raise companion_inactive(str(row[3]))
        return UserStorage(memories=int(row[0]), content_bytes=int(row[1]), companion_config=row[2])

    def get(self, memory_id: UUID, *, include_forgotten: bool = False) -> StoredMemory | None:
        params: dict[str, Any] = {"id": memory_id}
        live = sql.SQL("") if include_forgotten else sql.SQL(" AND m.forgotten_at IS NULL")
        query = sql.SQL("SELECT {cols} FROM memories m WHERE m.id = %(id)s AND {owner}{live}").format(
            cols=sql.SQL(_COLUMNS), owner=self._owner_filter(params), live=live
        )
        rows = self._rows(query, params)
        return rows[0] if rows else None

    def insert(self, memory: StoredMemory) -> None:
        self._conn.execute(
            """
            INSERT INTO memories (id, companion_id, user_id, type, content, content_sealed, summary,
                metadata, importance, confidence, occurred_at, created_at, updated_at, accessed_at,
                access_count, reinforcement_count, expires_at, archived_at, forgotten_at, purge_after,
                version, embedding_model)
            VALUES (%(id)s, %(companion_id)s, %(user_id)s, %(type)s, %(content)s, %(sealed)s, %(summary)s,
                %(metadata)s, %(importance)s, %(confidence)s, %(occurred_at)s, %(created_at)s, %(updated_at)s,
                %(accessed_at)s, %(access_count)s, %(reinforcement_count)s, %(expires_at)s, %(archived_at)s,
                %(forgotten_at)s, %(purge_after)s, %(version)s, %(embedding_model)s)
            """,
            _params(memory),
        )

    def save(self, memory: StoredMemory, *, expected_version: int) -> bool:
        cur = self._conn.execute(
            """
            UPDATE memories SET type = %(type)s, content = %(content)s, content_sealed = %(sealed)s,
                summary = %(summary)s, metadata = %(metadata)s, importance = %(importance)s,
                confidence = %(confidence)s, occurred_at = %(occurred_at)s, updated_at = %(updated_at)s,
                accessed_at = %(accessed_at)s, reinforcement_count = %(reinforcement_count)s,
                expires_at = %(expires_at)s, archived_at = %(archived_at)s, forgotten_at = %(forgotten_at)s,
                purge_after = %(purge_after)s, version = %(version)s, embedding_model = %(embedding_model)s
            WHERE id = %(id)s AND version = %(expected_version)s
            """,
            {**_params(memory), "expected_version": expected_version},
        )
        return cur.rowcount == 1

    def put_embedding(self, memory: StoredMemory, model: str, vector: Sequence[float]) -> None:
        # The content changed (or is new): vectors of other models describe older text, so they go.
        self._conn.execute(
            """
            WITH stale AS (DELETE FROM memory_embeddings WHERE memory_id = %(id)s AND model <> %(model)s)
            INSERT INTO memory_embeddings (memory_id, companion_id, user_id, model, embedding)
            VALUES (%(id)s, %(companion)s, %(user)s, %(model)s, %(vector)s::vector)
            ON CONFLICT (memory_id, model) DO UPDATE SET embedding = EXCLUDED.embedding, created_at = now()
            """,
            {
                "id": memory.id,
                "companion": memory.companion_id,
                "user": memory.user_id,
                "model": model,
                "vector": vector_text(vector),
            },
        )

    def add_history(self, entry: HistoryEntry) -> None:
        self._conn.execute(
            """
            INSERT INTO memory_history
                (id, memory_id, companion_id, user_id, version, change, snapshot, actor, at)
            VALUES (gen_random_uuid(), %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (
                entry.memory_id,
                entry.companion_id,
                entry.user_id,
                entry.version,
                entry.change,
                Jsonb(entry.snapshot),
                entry.actor,
                entry.at,
            ),
        )

    def history(self, memory_id: UUID) -> list[HistoryEntry]:
        with self._conn.cursor(row_factory=class_row(HistoryEntry)) as cur:
            return cur.execute(
                """
                SELECT memory_id, companion_id, user_id, version, change, snapshot, actor, at
                FROM memory_history WHERE memory_id = %s ORDER BY version, at
                """,
                (memory_id,),
            ).fetchall()

    def nearest(
        self, user_id: str, criteria: MemoryCriteria, model: str, vector: Sequence[float], limit: int
    ) -> list[tuple[StoredMemory, float]]:
        params: dict[str, Any] = {"model": model, "vector": vector_text(vector), "limit": limit}
        query = sql.SQL(
            """
            SELECT {cols}, 1 - v.distance AS similarity
            FROM {distances} v JOIN memories m ON m.id = v.memory_id
            WHERE {owner} AND {live}
            ORDER BY v.distance, m.id
            LIMIT %(limit)s
            """
        ).format(
            cols=sql.SQL(_COLUMNS),
            distances=_USER_DISTANCES,
            owner=self._owner_filter(params, user_id),
            live=_live(criteria, params),
        )
        rows, names = self._hash_joined(query, params)
        return [(_record(dict(zip(names[:-1], row[:-1], strict=True))), float(row[-1])) for row in rows]

    def candidates(self, user_id: str, query: CandidateQuery) -> list[Candidate]:
        params: dict[str, Any] = {
            "model": query.model,
            "vector": vector_text(query.vector),
            "k": query.k,
            "tsq": _or_query(query.terms),
        }
        owner = self._owner_filter(params, user_id)
        live = _live(query.criteria, params)
        keyword: sql.Composable = sql.SQL("")
        if query.terms:
            keyword = sql.SQL(
                """
                UNION
                (SELECT m.id FROM memories m
                 WHERE {owner} AND {live} AND m.search @@ {tsq}
                 ORDER BY ts_rank(m.search, {tsq}) DESC, m.id LIMIT %(k)s)
                """
            ).format(owner=owner, live=live, tsq=_TSQUERY)
        # Two statements: the ids (a hash join, nested loops off), then the rows by primary key with
        # nested loops on, where a literal id array gives the planner the true row count.
        ids_statement = sql.SQL(
            """
            (SELECT m.id FROM {distances} v JOIN memories m ON m.id = v.memory_id
             WHERE {owner} AND {live}
             ORDER BY v.distance, m.id LIMIT %(k)s)
            {keyword}
            """
        ).format(distances=_USER_DISTANCES, owner=owner, live=live, keyword=keyword)
        rows, _ = self._hash_joined(ids_statement, params)
        if not rows:
            return []
        params["ids"] = [row[0] for row in rows]
        statement = sql.SQL(
            """
            SELECT {cols},
                   1 - {distance} AS vector_similarity,
                   coalesce(ts_rank(m.search, {tsq}), 0) AS keyword_rank
            FROM memories m
            WHERE m.id = ANY(%(ids)s::uuid[])
            """
        ).format(cols=sql.SQL(_COLUMNS), distance=_DISTANCE, tsq=_TSQUERY)
        return self._candidates(statement, params)

    def companion_candidates(self, query: CandidateQuery, ef_search: int) -> list[Candidate]:
        dims = len(query.vector)
        self._conn.execute(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.ef_search', %s, true)",
            (str(ef_search),),
        )
        params: dict[str, Any] = {"vector": vector_text(query.vector), "k": query.k}
        # The dimension and the model are literals: the planner matches the index expression and the
        # partial index's predicate only against constants.
        distance = sql.SQL("(e.embedding::vector({dims})) <=> %(vector)s::vector({dims})").format(
            dims=sql.Literal(dims)
        )
        statement = sql.SQL(
            """
            WITH nearest AS MATERIALIZED (
                SELECT e.memory_id, {distance} AS distance
                FROM memory_embeddings e JOIN memories m ON m.id = e.memory_id
                WHERE e.model = {model} AND e.companion_id = %(companion)s AND {owner} AND {live}
                ORDER BY {distance}
                LIMIT %(k)s
            )
            SELECT {cols}, 1 - n.distance AS vector_similarity, 0.0::real AS keyword_rank
            FROM nearest n JOIN memories m ON m.id = n.memory_id
            """
        ).format(
            distance=distance,
            model=sql.Literal(query.model),
            owner=self._owner_filter(params),
            live=_live(query.criteria, params),
            cols=sql.SQL(_COLUMNS),
        )
        return self._candidates(statement, params)

    def neighbours(
        self,
        user_id: str,
        anchors: Sequence[tuple[UUID, datetime]],
        criteria: MemoryCriteria,
        window: timedelta,
    ) -> list[tuple[UUID, StoredMemory]]:
        if not anchors:
            return []
        params: dict[str, Any] = {
            "anchor_ids": [anchor for anchor, _ in anchors],
            "anchor_ats": [at for _, at in anchors],
            "window": window,
            # Every type when none is asked: the type list lets each side be a few descents of the
            # (companion, user, type, occurred_at) index instead of a walk through the user's rows.
            "all_types": list(criteria.types or get_args(MemoryType)),
        }
        owner = self._owner_filter(params, user_id)
        live = _live(criteria, params)
        # One statement, at most two rows an anchor: the nearest earlier and the nearest later memory by
        # (occurred_at, id) within the window, under the same filters (and tenant scope) as the candidates.
        side = """
            (SELECT {cols} FROM memories m
             WHERE {owner} AND {live} AND m.type = ANY(%(all_types)s::text[])
               AND (m.occurred_at, m.id) {cmp} (a.at, a.anchor) AND m.occurred_at {bound}
             ORDER BY m.occurred_at {order}, m.id {order} LIMIT 1)
        """
        earlier = sql.SQL(side).format(
            cols=sql.SQL(_COLUMNS),
            owner=owner,
            live=live,
            cmp=sql.SQL("<"),
            bound=sql.SQL(">= a.at - %(window)s::interval"),
            order=sql.SQL("DESC"),
        )
        later = sql.SQL(side).format(
            cols=sql.SQL(_COLUMNS),
            owner=owner,
            live=live,
            cmp=sql.SQL(">"),
            bound=sql.SQL("<= a.at + %(window)s::interval"),
            order=sql.SQL("ASC"),
        )
        statement = sql.SQL(
            """
            SELECT a.anchor AS anchor_id, n.*
            FROM unnest(%(anchor_ids)s::uuid[], %(anchor_ats)s::timestamptz[]) AS a(anchor, at)
            CROSS JOIN LATERAL ({earlier} UNION ALL {later}) n
            """
        ).format(earlier=earlier, later=later)
        with self._conn.cursor() as cur:
            rows = cur.execute(statement, params).fetchall()
            names = [d.name for d in cur.description or ()]
        found = []
        for row in rows:
            fields = dict(zip(names, row, strict=True))
            anchor = fields.pop("anchor_id")
            found.append((anchor, _record(fields)))
        return found

    def _candidates(self, statement: sql.Composed, params: dict[str, Any]) -> list[Candidate]:
        with self._conn.cursor() as cur:
            rows = cur.execute(statement, params).fetchall()
            names = [d.name for d in cur.description or ()]
        found = []
        for row in rows:
            fields = dict(zip(names, row, strict=True))
            similarity, rank = fields.pop("vector_similarity"), fields.pop("keyword_rank")
            found.append(
                Candidate(
                    memory=_record(fields),
                    vector_similarity=None if similarity is None else float(similarity),
                    keyword_rank=float(rank),
                )
            )
        return found

    def _hash_joined(self, statement: sql.Composed, params: dict[str, Any]) -> tuple[list[Any], list[str]]:
        """Run a per-user statement with nested loops off, in one round trip (pipeline).

        Joining a user's vectors with their live memories is a hash join of two index range scans (about
        2 µs a memory). Planned on stale statistics (a fresh user is "1 row") it became a nested loop over
        both sets, 450 ms for 10^3 memories; per-memory lookups instead cost 10 µs each. Turning nested
        loops off for this one statement keeps the hash join whatever the estimates say."""
        with self._conn.pipeline(), self._conn.cursor() as cur:
            self._conn.execute("SELECT set_config('enable_nestloop', 'off', true)")
            cur.execute(statement, params)
            self._conn.execute("SELECT set_config('enable_nestloop', 'on', true)")
            rows = cur.fetchall()
            names = [d.name for d in cur.description or ()]
        return rows, names

    def touch(self, memory_ids: Sequence[UUID], at: datetime) -> None:
        if not memory_ids:
            return
        # SKIP LOCKED: a row being updated elsewhere misses one access count rather than making the
        # recall wait for that transaction.
        self._conn.execute(
            """
            WITH free AS (SELECT id FROM memories WHERE id = ANY(%(ids)s) FOR UPDATE SKIP LOCKED)
            UPDATE memories m
            SET access_count = m.access_count + 1, accessed_at = greatest(m.accessed_at, %(at)s)
            FROM free WHERE m.id = free.id
            """,
            {"ids": list(memory_ids), "at": at},
        )

    def page(
        self, user_id: str, criteria: MemoryCriteria, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[StoredMemory]:
        params: dict[str, Any] = {"limit": limit}
        keyset = sql.SQL("")
        if after is not None:
            params["after_created"], params["after_id"] = after
            keyset = sql.SQL(" AND (m.created_at, m.id) < (%(after_created)s, %(after_id)s)")
        query = sql.SQL(
            "SELECT {cols} FROM memories m WHERE {owner} AND {live}{keyset} "
            "ORDER BY m.created_at DESC, m.id DESC LIMIT %(limit)s"
        ).format(
            cols=sql.SQL(_COLUMNS),
            owner=self._owner_filter(params, user_id),
            live=_live(criteria, params),
            keyset=keyset,
        )
        return self._rows(query, params)

    def link(
        self,
        relation_id: UUID,
        source: StoredMemory,
        target: StoredMemory,
        type: RelationType,
        metadata: dict[str, Any],
        at: datetime,
    ) -> Relation:
        with self._conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                """
                INSERT INTO memory_relations (id, companion_id, user_id, source_id, target_id, type, metadata,
                    created_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (source_id, target_id, type) DO UPDATE SET metadata = EXCLUDED.metadata
                RETURNING id, source_id, target_id, type, metadata, created_at
                """,
                (
                    relation_id,
                    source.companion_id,
                    source.user_id,
                    source.id,
                    target.id,
                    type,
                    Jsonb(metadata),
                    at,
                ),
            ).fetchone()
        assert row is not None
        return Relation.model_validate(row)


def _params(memory: StoredMemory) -> dict[str, Any]:
    return {
        "id": memory.id,
        "companion_id": memory.companion_id,
        "user_id": memory.user_id,
        "type": memory.type,
        "content": memory.content,
        "sealed": memory.sealed,
        "summary": memory.summary,
        "metadata": Jsonb(memory.metadata),
        "importance": memory.importance,
        "confidence": memory.confidence,
        "occurred_at": memory.occurred_at,
        "created_at": memory.created_at,
        "updated_at": memory.updated_at,
        "accessed_at": memory.accessed_at,
        "access_count": memory.access_count,
        "reinforcement_count": memory.reinforcement_count,
        "expires_at": memory.expires_at,
        "archived_at": memory.archived_at,
        "forgotten_at": memory.forgotten_at,
        "purge_after": memory.purge_after,
        "version": memory.version,
        "embedding_model": memory.embedding_model,
    }


def _record(fields: dict[str, Any]) -> StoredMemory:
    return StoredMemory(**fields)


def create_embedding_index(owner_conninfo: str, model: str, dims: int) -> str:
    """Build the HNSW index of a new embedding model, CONCURRENTLY (writes go on meanwhile), as the schema
    owner; returns the DDL run. Idempotent: an existing index of that name is left alone."""
    with psycopg.connect(owner_conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT memory_embedding_index_sql(%s, %s, true)", (model, dims)).fetchone()
        assert row is not None
        ddl = str(row[0])
        conn.execute(sql.SQL(ddl))  # built by the SQL function from checked, quoted values
    return ddl
