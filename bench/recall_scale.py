"""Recall latency at scale: through MemoryService and as the raw SQL alone, side by side (docs/benchmarks.md,
"Recall at scale").

    .venv/bin/python bench/recall_scale.py [--state-dir .local/bench-scale] [--others 1000000]
        [--companion-wide 1000000] [--queries 200] [--down purge|keep|no]

What it measures:

- Per-user recall (exact: ``MemoryService.recall``, the tuned hybrid policy) for one user with 10², 10³ and
  10⁴ memories, in a table that also holds the memories of other users: of the same companion and of
  other companions (``--others`` in all).
- Companion-wide search (``MemoryService.search_companion``: the model's partial HNSW index, iterative scan)
  over one companion's ``--companion-wide`` memories.
- For each: the service (embedding of the query, pool checkout, transaction with the tenant context,
  candidate SQL, ranking, the access-statistics update, commit) and the store's own candidate method run on a
  plain psycopg connection (its statements, round trips and row decoding, in an open transaction that
  already carries the tenant context).

The benchmark measures retrieval, not a model: data and queries are random unit vectors (384 dimensions,
the local model's size) from a seeded generator, and the query "embedder" maps a query text to its seeded
vector in microseconds. Memory texts are eight words of a 2,000-word made-up vocabulary and queries carry
three of them, so the keyword half of the hybrid query finds candidates as it would on real text.

Loading: rows are generated in numpy and written with COPY (text for memories, binary for the vectors) as
the application role inside a companion-wide tenant context, so row-level security checks every row as in
production. The HNSW index of the bench model is built after the load, as the schema owner, with
``maintenance_work_mem`` high and one parallel worker (the leader works too: two processes on two cores);
its build time is measured. Exactness is checked: the service's per-user top 10 (vector weight 1, no
boosts) equals a numpy brute-force top 10 for a sample of queries; HNSW recall@10 of the companion-wide
search is measured against an exact top 10 computed in numpy while the data is generated.
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import numpy as np
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "common" / "python"))
sys.path.insert(0, str(ROOT))

from companion_memory.adapters.clock import SystemClock  # noqa: E402
from companion_memory.adapters.postgres import Database  # noqa: E402
from companion_memory.adapters.postgres_memory import PostgresMemoryStore, PostgresMemoryUnit  # noqa: E402
from companion_memory.config import PostgresSettings  # noqa: E402
from companion_memory.domain import ranking  # noqa: E402
from companion_memory.domain.memory import MemoryPolicy, MemoryService  # noqa: E402
from companion_memory.models.memory import MemoryCriteria, RecallQuery  # noqa: E402
from companion_memory.models.tenancy import ALL_USERS, TenantScope  # noqa: E402
from companion_memory.ports import CandidateQuery  # noqa: E402

DIMS = 384
MODEL = "bench:seeded-unit:384"
# With --no-index-other-companions the other companions' rows carry this model, which has no HNSW index:
# they stay in the tables (per-user recall reads past them) but out of the index build.
UNINDEXED_MODEL = "bench:seeded-unit-unindexed:384"
SIZES = (100, 1_000, 10_000)
PER_OTHER_USER = 100
OTHER_COMPANIONS = 2
CHUNK = 50_000
SEED = 20261125
VOCABULARY = 2_000
WORDS_PER_MEMORY = 8
EXACT_SAMPLE = 40  # queries per check (per-user exactness per size, HNSW recall@10)


CLUSTERS = 4_096
SPREAD = 0.6  # the norm of a vector's own random part, around its unit-length cluster centre


def _normalised(v: np.ndarray) -> np.ndarray:
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return v


CENTRES = _normalised(np.random.default_rng(SEED).standard_normal((CLUSTERS, DIMS), dtype=np.float32))


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit vectors around random cluster centres. Text embeddings have structure (topics); uniformly
    random 384-d vectors have none, every point is about as far from every other, and an approximate
    index finds their "nearest" neighbours little better than by chance, which says nothing about it."""
    centres = CENTRES[rng.integers(0, CLUSTERS, n)]
    noise = _normalised(rng.standard_normal((n, DIMS), dtype=np.float32)) * SPREAD
    return _normalised(centres + noise)


def query_vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return unit_rows(np.random.default_rng(seed), 1)[0]


class SeededEmbedder:
    """A query text's vector is drawn from a generator seeded by the text: deterministic, microseconds."""

    @property
    def model_id(self) -> str:
        return MODEL

    @property
    def dimensions(self) -> int:
        return DIMS

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in query_vector(text)]


def vocabulary() -> np.ndarray:
    rng = np.random.default_rng(SEED)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = {"".join(rng.choice(letters, 7)) for _ in range(VOCABULARY * 2)}
    return np.array(sorted(words)[:VOCABULARY])


# --- data ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """Rows of one companion, generated from one seed: ``users`` user ids, ``per_user`` rows each."""

    companion: str
    users: list[str]
    per_user: int
    seed: int
    model: str = MODEL

    @property
    def rows(self) -> int:
        return len(self.users) * self.per_user


def plan(others: int, companion_wide: int, index_other_companions: bool) -> dict[str, Any]:
    target, rest = str(uuid4()), [str(uuid4()) for _ in range(OTHER_COMPANIONS)]
    # Each load draws its own rows (ids too): a second load into the same stack adds, never collides.
    run = int(np.random.default_rng().integers(1, 2**31))
    blocks = [Block(target, [f"t{size:07d}"], size, run + size) for size in SIZES]
    in_target = max(0, companion_wide - sum(SIZES))
    in_rest = max(0, others - in_target)
    seed = run + 100_000
    other_model = MODEL if index_other_companions else UNINDEXED_MODEL
    for companion, count, prefix, model in [(target, in_target, "u", MODEL)] + [
        (c, in_rest // OTHER_COMPANIONS, f"o{i}", other_model) for i, c in enumerate(rest)
    ]:
        users = count // PER_OTHER_USER
        for start in range(0, users, CHUNK // PER_OTHER_USER):
            ids = [
                f"{prefix}{n:0{8 - len(prefix)}d}"
                for n in range(start, min(users, start + CHUNK // PER_OTHER_USER))
            ]
            seed += 1
            blocks.append(Block(companion, ids, PER_OTHER_USER, seed, model))
    return {"target": target, "others": rest, "blocks": [b.__dict__ for b in blocks]}


def generate(block: Block, words: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(ids as n x 16 bytes, vectors, memory rows as COPY text lines)."""
    rng = np.random.default_rng(block.seed)
    n = block.rows
    ids = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    ids[:, 6] = (ids[:, 6] & 0x0F) | 0x40  # a version-4 UUID, as the service makes
    ids[:, 8] = (ids[:, 8] & 0x3F) | 0x80
    vectors = unit_rows(rng, n)
    picks = rng.integers(0, len(words), (n, WORDS_PER_MEMORY))
    seconds = rng.integers(0, 2 * 365 * 86_400, n)
    occurred = (np.datetime64("2024-11-25T00:00:00") + seconds.astype("timedelta64[s]")).astype(str)
    importance = rng.integers(1, 10, n)
    users = np.repeat(np.array(block.users), block.per_user)
    lines = []
    for i in range(n):
        memory_id = UUID(bytes=ids[i].tobytes())
        content = " ".join(words[picks[i]])
        when = occurred[i] + "+00"
        lines.append(
            f"{memory_id}\t{block.companion}\t{users[i]}\tfact\t{content}\t{importance[i]}\t{when}\t{when}\t"
            f"{when}\t{block.model}\n"
        )
    return ids, vectors, lines


def binary_embeddings(
    ids: np.ndarray, companion: str, users: np.ndarray, vectors: np.ndarray, model_id: str
) -> bytes:
    """The rows of COPY memory_embeddings (memory_id, companion_id, user_id, model, embedding) in
    PostgreSQL's binary format; the vector field is pgvector's: int16 dims, int16 0, float4 each."""
    n, user_len, model = len(ids), len(users[0]), model_id.encode()
    rows = np.zeros(
        n,
        dtype=np.dtype(
            [
                ("fields", ">i2"),
                ("l_id", ">i4"),
                ("id", "u1", (16,)),
                ("l_companion", ">i4"),
                ("companion", "u1", (16,)),
                ("l_user", ">i4"),
                ("user", f"S{user_len}"),
                ("l_model", ">i4"),
                ("model", f"S{len(model)}"),
                ("l_vector", ">i4"),
                ("dims", ">i2"),
                ("unused", ">i2"),
                ("vector", ">f4", (DIMS,)),
            ]
        ),
    )
    rows["fields"], rows["l_id"], rows["id"] = 5, 16, ids
    rows["l_companion"], rows["companion"] = 16, np.frombuffer(UUID(companion).bytes, dtype=np.uint8)
    rows["l_user"], rows["user"] = user_len, users.astype(f"S{user_len}")
    rows["l_model"], rows["model"] = len(model), model
    rows["l_vector"], rows["dims"], rows["vector"] = 4 + 4 * DIMS, DIMS, vectors
    return rows.tobytes()


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def load(env: dict[str, str], layout: dict[str, Any], queries: list[str]) -> dict[str, Any]:
    """COPY every block; returns the exact companion-wide top 10 of each sampled query."""
    database = Database(env["DATABASE_URL"], PostgresSettings(db_statement_timeout_ms=3_600_000))
    words = vocabulary()
    sample = np.stack([query_vector(q) for q in queries[:EXACT_SAMPLE]])
    best_sim = np.full((len(sample), 10), -2.0, dtype=np.float32)
    best_id = np.zeros((len(sample), 10), dtype=object)
    target = layout["target"]
    owner = uuid4()
    loaded = 0
    started = time.perf_counter()
    try:
        with database.transaction(TenantScope(owner_id=owner)) as conn:
            conn.execute("INSERT INTO owners (id, name) VALUES (%s, 'bench-scale')", (owner,))
            for companion in [target, *layout["others"]]:
                conn.execute(
                    "INSERT INTO companions (id, owner_id, name, isolation_level) "
                    "VALUES (%s, %s, 'bench', 'standard')",
                    (companion, owner),
                )
        for raw in layout["blocks"]:
            block = Block(**raw)
            ids, vectors, lines = generate(block, words)
            if block.companion == target:
                sims = sample @ vectors.T
                top = np.argpartition(-sims, min(10, sims.shape[1] - 1), axis=1)[:, :10]
                for q in range(len(sample)):
                    merged_sim = np.concatenate([best_sim[q], sims[q, top[q]]])
                    merged_id = np.concatenate(
                        [best_id[q], [str(UUID(bytes=ids[i].tobytes())) for i in top[q]]]
                    )
                    keep = np.argsort(-merged_sim)[:10]
                    best_sim[q], best_id[q] = merged_sim[keep], merged_id[keep]
            users = np.repeat(np.array(block.users), block.per_user)
            # COPY refuses a table under row-level security, so rows go through an unpoliced temporary
            # table, and INSERT ... SELECT moves them in with every row checked against the policies.
            scope = TenantScope(companion_id=UUID(block.companion), user_id=ALL_USERS)
            with database.transaction(scope) as conn, conn.cursor() as cur:
                cur.execute(
                    "CREATE TEMP TABLE stage_memories (id uuid, companion_id uuid, user_id text, type text, "
                    "content text, importance real, occurred_at timestamptz, created_at timestamptz, "
                    "updated_at timestamptz, embedding_model text) ON COMMIT DROP"
                )
                cur.execute(
                    "CREATE TEMP TABLE stage_embeddings (memory_id uuid, companion_id uuid, user_id text, "
                    "model text, embedding vector) ON COMMIT DROP"
                )
                with cur.copy("COPY stage_memories FROM STDIN") as copy:
                    copy.write("".join(lines))
                with cur.copy("COPY stage_embeddings FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(_COPY_HEADER)
                    copy.write(binary_embeddings(ids, block.companion, users, vectors, block.model))
                    copy.write(_COPY_TRAILER)
                cur.execute(
                    "INSERT INTO memories (id, companion_id, user_id, type, content, importance, "
                    "occurred_at, created_at, updated_at, embedding_model) SELECT * FROM stage_memories"
                )
                cur.execute(
                    "INSERT INTO memory_embeddings (memory_id, companion_id, user_id, model, embedding) "
                    "SELECT * FROM stage_embeddings"
                )
            loaded += block.rows
            print(f"  loaded {loaded:,} rows ({time.perf_counter() - started:.0f} s)", flush=True)
    finally:
        database.close()
    return {
        "load_s": round(time.perf_counter() - started, 1),
        "rows": loaded,
        "exact_companion_top10": [list(map(str, row)) for row in best_id],
    }


def build_index(env: dict[str, str], workers: int, memory: str) -> dict[str, Any]:
    with psycopg.connect(env["DATABASE_OWNER_URL"], autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) memories, memory_embeddings")
        vacuum_s = time.perf_counter() - started
        conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(memory)))
        conn.execute(sql.SQL("SET max_parallel_maintenance_workers = {}").format(sql.Literal(workers)))
        row = conn.execute("SELECT memory_embedding_index_sql(%s, %s)", (MODEL, DIMS)).fetchone()
        assert row is not None
        started = time.perf_counter()
        conn.execute(sql.SQL(row[0]))  # built by the migration's own function from checked values
        build_s = time.perf_counter() - started
    return {"vacuum_analyze_s": round(vacuum_s, 1), "hnsw_build_s": round(build_s, 1), "workers": workers}


# --- measurement -----------------------------------------------------------------------------------------


def store_sql_ms(
    conn: psycopg.Connection[Any], scope: TenantScope, call: Callable[[PostgresMemoryUnit], object]
) -> float:
    """The store's candidate statements alone: ``call`` runs the store's own method on a plain psycopg
    connection, inside a transaction that already carries the tenant context (set outside the timing).
    Milliseconds for the statements, their round trips and the decoding of the rows; no pool, no
    embedding, no ranking, no access update, no commit."""
    with conn.transaction():
        conn.execute(
            "SELECT set_config('app.companion_id', %s, true), set_config('app.user_id', %s, true)",
            (str(scope.companion_id), scope.user_id),
        )
        unit = PostgresMemoryUnit(conn, scope)
        t0 = time.perf_counter()
        call(unit)
        return (time.perf_counter() - t0) * 1000


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


@dataclass
class Timings:
    service: list[float]
    raw: list[float]

    def row(self) -> str:
        s, r = self.service, self.raw
        cells = [percentile(s, 50), percentile(s, 95), percentile(r, 50), percentile(r, 95)]
        return " | ".join(f"{c:.2f}" for c in cells)


def queries_for(label: str, count: int) -> list[str]:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(label.encode()).digest()[:4], "little"))
    words = vocabulary()
    return [f"{label} {i}: " + " ".join(words[rng.integers(0, len(words), 3)]) for i in range(count)]


def measure(
    env: dict[str, str], layout: dict[str, Any], count: int, warmup: int, exact_top10: list[list[str]]
) -> dict[str, Any]:
    database = Database(
        env["DATABASE_URL"], PostgresSettings(db_pool_max_size=2, db_statement_timeout_ms=60_000)
    )
    embedder = SeededEmbedder()
    tuned = MemoryPolicy()
    pure = replace(
        tuned, vector_weight=1.0, importance_weight=0.0, recency_weight=0.0, reinforcement_weight=0.0
    )
    service = MemoryService(PostgresMemoryStore(database), embedder, SystemClock(), policy=tuned)
    exact = MemoryService(PostgresMemoryStore(database), embedder, SystemClock(), policy=pure)
    target = UUID(layout["target"])
    out: dict[str, Any] = {"per_user": {}, "policy": {"vector_weight": tuned.vector_weight}}
    raw_conn = psycopg.connect(env["DATABASE_URL"])
    try:
        for size in SIZES:
            user = f"t{size:07d}"
            scope = TenantScope(companion_id=target, user_id=user)
            texts = queries_for(f"user {size}", warmup + count)
            timings = Timings([], [])
            # Service and SQL alternate query by query, so a busy moment of the machine weighs on both.
            for i, text in enumerate(texts):
                query = RecallQuery(query=text, limit=10)
                t0 = time.perf_counter()
                service.recall(scope, query)
                elapsed = (time.perf_counter() - t0) * 1000
                if i >= warmup:
                    timings.service.append(elapsed)
                candidate_query = CandidateQuery(
                    model=MODEL,
                    vector=embedder.embed_query(text),
                    terms=ranking.terms(text),
                    criteria=MemoryCriteria(now=SystemClock().now()),
                    k=max(tuned.candidate_k, 10),
                )
                elapsed = store_sql_ms(
                    raw_conn, scope, lambda u, q=candidate_query, who=user: u.candidates(who, q)
                )
                if i >= warmup:
                    timings.raw.append(elapsed)
            # Exactness: with the vector alone and no boosts the service's top 10 is the exact top 10.
            block = next(Block(**b) for b in layout["blocks"] if b["users"] == [user])
            ids, vectors, _ = generate(block, vocabulary())
            matches = 0
            for text in queries_for(f"exact user {size}", EXACT_SAMPLE):
                sims = vectors @ query_vector(text)
                want = [str(UUID(bytes=ids[j].tobytes())) for j in np.argsort(-sims)[:10]]
                got = [str(m.id) for m in exact.recall(scope, RecallQuery(query=text, limit=10)).memories]
                matches += got == want
            out["per_user"][size] = {
                "service_p50": percentile(timings.service, 50),
                "service_p95": percentile(timings.service, 95),
                "sql_p50": percentile(timings.raw, 50),
                "sql_p95": percentile(timings.raw, 95),
                "exact_matches": f"{matches}/{EXACT_SAMPLE}",
                "row": timings.row(),
            }
            print(f"user with {size:,}: {timings.row()} (exact top 10: {matches}/{EXACT_SAMPLE})", flush=True)

        wide = TenantScope(companion_id=target, user_id=ALL_USERS)
        texts = queries_for("companion", warmup + count)
        sample_texts = queries_for("exact", EXACT_SAMPLE)  # the load phase's exact top 10 are of these
        timings = Timings([], [])
        for i, text in enumerate(texts):
            t0 = time.perf_counter()
            service.search_companion(wide, RecallQuery(query=text, limit=10))
            if i >= warmup:
                timings.service.append((time.perf_counter() - t0) * 1000)
            candidate_query = CandidateQuery(
                model=MODEL,
                vector=embedder.embed_query(text),
                terms=[],
                criteria=MemoryCriteria(now=SystemClock().now()),
                k=max(tuned.hnsw_ef_search, 10),
            )
            elapsed = store_sql_ms(
                raw_conn, wide, lambda u, q=candidate_query: u.companion_candidates(q, tuned.hnsw_ef_search)
            )
            if i >= warmup:
                timings.raw.append(elapsed)
        found = 0
        for text, want in zip(sample_texts, exact_top10, strict=True):
            got = [
                str(m.id) for m in exact.search_companion(wide, RecallQuery(query=text, limit=10)).memories
            ]
            found += len(set(got) & set(want))
        out["companion"] = {
            "service_p50": percentile(timings.service, 50),
            "service_p95": percentile(timings.service, 95),
            "sql_p50": percentile(timings.raw, 50),
            "sql_p95": percentile(timings.raw, 95),
            "hnsw_recall_at_10": found / (10 * len(exact_top10)),
            "row": timings.row(),
        }
        print(
            f"companion-wide: {timings.row()} (HNSW recall@10 {found / (10 * len(exact_top10)):.3f})",
            flush=True,
        )
    finally:
        raw_conn.close()
        database.close()
    return out


def disk(env: dict[str, str]) -> dict[str, str]:
    with psycopg.connect(env["DATABASE_OWNER_URL"]) as conn:
        row = conn.execute(
            """
            SELECT pg_size_pretty(pg_database_size(current_database())),
                   pg_size_pretty(pg_total_relation_size('memories')),
                   pg_size_pretty(pg_total_relation_size('memory_embeddings')),
                   pg_size_pretty(pg_relation_size(
                       (SELECT indexrelid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                        WHERE c.relname = 'memory_embeddings_hnsw_' || left(md5(%s), 12) || '_' || %s)))
            """,
            (MODEL, DIMS),
        ).fetchone()
    assert row is not None
    return dict(zip(("database", "memories", "memory_embeddings", "hnsw_index"), row, strict=True))


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} CPUs, {model}, {memory:.0f} GiB RAM, {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--state-dir", default=str(ROOT / ".local" / "bench-scale"), help="the bench's own stack"
    )
    parser.add_argument("--others", type=int, default=1_000_000, help="memories of other users in the table")
    parser.add_argument(
        "--companion-wide", type=int, default=1_000_000, help="memories of the searched companion"
    )
    parser.add_argument("--queries", type=int, default=200, help="timed queries per size (after warm-up)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1, help="max_parallel_maintenance_workers for HNSW")
    parser.add_argument("--maintenance-work-mem", default="6GB")
    parser.add_argument(
        "--index-other-companions",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the other companions' vectors are of the indexed model (else of an unindexed one)",
    )
    parser.add_argument("--phase", choices=("all", "load", "measure"), default="all")
    parser.add_argument(
        "--down", choices=("purge", "keep", "no"), default="purge", help="stop the stack at the end"
    )
    args = parser.parse_args(argv)

    from localdev.stack import Stack

    stack = Stack(Path(args.state_dir))
    env = stack.up()
    state_file = stack.state_dir / "recall_scale.json"
    print(f"machine: {machine()}", flush=True)
    try:
        if args.phase in ("all", "load"):
            layout = plan(args.others, args.companion_wide, args.index_other_companions)
            result: dict[str, Any] = {"layout": layout}
            result["load"] = load(env, layout, queries_for("exact", EXACT_SAMPLE))
            print(f"loaded {result['load']['rows']:,} rows in {result['load']['load_s']} s", flush=True)
            result["index"] = build_index(env, args.workers, args.maintenance_work_mem)
            print(f"index: {result['index']}", flush=True)
            result["disk"] = disk(env)
            print(f"disk: {result['disk']}", flush=True)
            state_file.write_text(json.dumps(result))
        result = json.loads(state_file.read_text())
        if args.phase in ("all", "measure"):
            result["measure"] = measure(
                env, result["layout"], args.queries, args.warmup, result["load"]["exact_companion_top10"]
            )
            result["machine"] = machine()
            state_file.write_text(json.dumps(result))
            print(json.dumps({k: v for k, v in result.items() if k not in ("layout", "load")}, indent=1))
            print(json.dumps({k: v for k, v in result["load"].items() if k != "exact_companion_top10"}))
    finally:
        if args.down != "no":
            stack.down(purge=args.down == "purge")
    return 0


if __name__ == "__main__":
    sys.exit(main())
