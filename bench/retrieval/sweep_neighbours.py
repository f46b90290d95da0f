"""Neighbouring turns on the retrieval set: the tuning sweep by offline replay of the service, and the fair
protocol's picks (bench/retrieval/README.md, "Design note: neighbouring turns"; docs/benchmarks.md).

    .venv/bin/python bench/retrieval/sweep_neighbours.py --dataset v3|v2 [--state-dir DIR]

1. Stores the set through ``MemoryService.store_many`` (as run.py does) on the bench's own stack.
2. Asks the store's own candidate SQL (``PostgresMemoryUnit.candidates``, k 50) once per question and reads
   each user's live memories (``page``): the replay's features.
3. Checks the replay: for a few policies with neighbours on, every question's ranking from the replay must
   equal ``MemoryService.recall`` on PostgreSQL (its neighbour statement included), id for id.
4. Replays ``MemoryService``'s own ranking code (``_scored`` then ``_with_neighbours``, the neighbour
   statement answered in Python from the user's memories by the port's contract) over run.py's grid (12
   vector weights x 9 boosts rows) x (neighbours off, or share 0.5/0.7/0.8/0.9 x hits 1/3/5/10) on TUNE.
5. Each strategy's pick by the fair rule, reported on TUNE and TEST; and the default rule's (share, hits)
   at the MemoryPolicy weights. Confirm the picks through the service with run.py ``--policy``.
"""

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "layers" / "common" / "python"))
sys.path.insert(0, str(ROOT))

from bench.retrieval.dataset import LabelledQuestion, load_memories, load_questions  # noqa: E402
from bench.retrieval.metrics import Scores, score  # noqa: E402
from bench.retrieval.run import (  # noqa: E402
    BOOSTS,
    DATASETS,
    KINDS,
    NOW,
    VECTOR_WEIGHTS,
    FixedClock,
    Loaded,
    QueryCache,
    UntouchedStore,
    load,
    machine,
    objective,
    policy,
)
from companion_memory.adapters.embedders.local import LocalE5Embedder  # noqa: E402
from companion_memory.adapters.postgres import Database  # noqa: E402
from companion_memory.adapters.postgres_memory import PostgresMemoryStore  # noqa: E402
from companion_memory.config import PostgresSettings  # noqa: E402
from companion_memory.domain.memory import MemoryPolicy, MemoryService  # noqa: E402
from companion_memory.models.memory import Candidate, MemoryCriteria, RecallQuery, StoredMemory  # noqa: E402
from companion_memory.models.tenancy import TenantScope  # noqa: E402
from companion_memory.ports import CandidateQuery  # noqa: E402

SHARES = (0.5, 0.7, 0.8, 0.9)
HITS = (1, 3, 5, 10)
NEIGHBOURS = ((0.0, 3), *((share, hits) for share in SHARES for hits in HITS))  # (0, 3): off
Cell = tuple[float, tuple[float, float, float], tuple[float, int]]  # weight, boosts, (share, hits)


def _key(user: str, query: CandidateQuery) -> tuple[Any, ...]:
    c = query.criteria
    return (user, tuple(query.vector), c.types, c.since, c.until)


class ReplayUnit:
    """The features PostgreSQL gave, served back: candidates as cached, neighbours by the port's contract
    over the user's live memories, no access counting."""

    def __init__(self, replay: "Replay") -> None:
        self._replay = replay

    def candidates(self, user_id: str, query: CandidateQuery) -> list[Candidate]:
        return self._replay.candidates[_key(user_id, query)]

    def neighbours(
        self,
        user_id: str,
        anchors: Sequence[tuple[UUID, datetime]],
        criteria: MemoryCriteria,
        window: timedelta,
    ) -> list[tuple[UUID, StoredMemory]]:
        key = (user_id, tuple(anchors), criteria.types, criteria.since, criteria.until, window)
        if key not in self._replay.neighbours:
            self._replay.neighbours[key] = self._find(user_id, anchors, criteria, window)
        return self._replay.neighbours[key]

    def _find(
        self,
        user_id: str,
        anchors: Sequence[tuple[UUID, datetime]],
        criteria: MemoryCriteria,
        window: timedelta,
    ) -> list[tuple[UUID, StoredMemory]]:
        rows = [
            m
            for m in self._replay.memories[user_id]
            if (not criteria.types or m.type in criteria.types)
            and (criteria.since is None or m.occurred_at >= criteria.since)
            and (criteria.until is None or m.occurred_at < criteria.until)
        ]
        found = []
        for anchor, at in anchors:
            earlier = [
                m for m in rows if (m.occurred_at, m.id) < (at, anchor) and m.occurred_at >= at - window
            ]
            later = [m for m in rows if (m.occurred_at, m.id) > (at, anchor) and m.occurred_at <= at + window]
            found += [(anchor, m) for m in earlier[-1:] + later[:1]]
        return found

    def touch(self, memory_ids: Sequence[UUID], at: datetime) -> None:
        pass


class Replay:
    def __init__(self) -> None:
        self.candidates: dict[tuple[Any, ...], list[Candidate]] = {}
        self.memories: dict[str, list[StoredMemory]] = {}
        self.neighbours: dict[tuple[Any, ...], list[tuple[UUID, StoredMemory]]] = {}

    @contextmanager
    def unit(self, scope: TenantScope) -> Iterator[ReplayUnit]:
        yield ReplayUnit(self)

    def purge_forgotten(self, cutoff: datetime, max_rows: int) -> int:
        return 0


def features(
    store: PostgresMemoryStore, embedder: QueryCache, loaded: Loaded, questions: Sequence[LabelledQuestion]
) -> Replay:
    replay = Replay()
    probe = MemoryService(store, embedder, FixedClock(NOW))
    for user in sorted({q.user_id for q in questions}):
        with store.unit(TenantScope(companion_id=loaded.companion, user_id=user)) as unit:
            rows = unit.page(user, MemoryCriteria(now=NOW), None, 100_000)
        replay.memories[user] = sorted(rows, key=lambda m: (m.occurred_at, m.id))
    for q in questions:
        query = RecallQuery(query=q.question, limit=10, since=q.since, until=q.until)
        cq = probe._candidate_query(query, embedder.embed_query(q.question), NOW)
        with store.unit(TenantScope(companion_id=loaded.companion, user_id=q.user_id)) as unit:
            replay.candidates[_key(q.user_id, cq)] = unit.candidates(q.user_id, cq)
    return replay


def with_neighbours(base: MemoryPolicy, share: float, hits: int) -> MemoryPolicy:
    return replace(base, neighbour_share=share, neighbour_hits=hits)


def ranked(
    service: MemoryService, replay: Replay, loaded: Loaded, q: LabelledQuestion, embedder: QueryCache
) -> list[str]:
    """MemoryService.recall's ranking code over the replayed features, without building the response."""
    query = RecallQuery(query=q.question, limit=10, since=q.since, until=q.until)
    cq = service._candidate_query(query, embedder.embed_query(q.question), NOW)
    unit = ReplayUnit(replay)
    scored = service._scored(unit.candidates(q.user_id, cq), NOW, service.policy.vector_weight)
    scored = service._with_neighbours(unit, q.user_id, scored, cq.criteria, NOW)  # type: ignore[arg-type]
    return [str(memory.id) for s, _, memory in scored if s >= query.min_score][: query.limit]


def evaluate(
    p: MemoryPolicy,
    replay: Replay,
    loaded: Loaded,
    questions: Sequence[LabelledQuestion],
    embedder: QueryCache,
) -> dict[str, Scores]:
    service = MemoryService(replay, embedder, FixedClock(NOW), policy=p)  # type: ignore[arg-type]
    runs = []
    for q in questions:
        answers = sorted({str(loaded.stored_id[a]) for a in q.answer_ids})
        runs.append((q.kind, ranked(service, replay, loaded, q, embedder), answers))
    table = {"all": score((r, a) for _, r, a in runs)}
    for kind in KINDS:
        picked = [(r, a) for k, r, a in runs if k == kind]
        if picked:
            table[kind] = score(picked)
    return table


def _fig(s: Scores) -> str:
    return f"{s.recall_at_5:.3f} / {s.recall_at_10:.3f} / {s.mrr:.3f}"


def pick(grid: dict[Cell, float], cells: list[Cell]) -> Cell:
    """Highest tune objective; exact ties: neighbours off, smaller share, fewer hits, earlier boosts row,
    weight nearest 0.5 (README, design note)."""
    return min(
        cells,
        key=lambda c: (-grid[c], c[2][0], c[2][1] if c[2][0] > 0 else 0, BOOSTS.index(c[1]), abs(c[0] - 0.5)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--state-dir", default=str(ROOT / ".local" / "bench-stack"))
    parser.add_argument("--dataset", choices=tuple(DATASETS), default="v3")
    args = parser.parse_args(argv)
    data_dir = DATASETS[args.dataset]

    from localdev.stack import Stack

    started = time.perf_counter()
    env = Stack(Path(args.state_dir)).up()
    database = Database(
        env["DATABASE_URL"], PostgresSettings(db_pool_max_size=2, db_statement_timeout_ms=30_000)
    )
    embedder = QueryCache(LocalE5Embedder())
    clock = FixedClock(NOW)
    defaults = MemoryPolicy()
    try:
        loaded = load(
            MemoryService(PostgresMemoryStore(database), embedder, clock), database, load_memories(data_dir)
        )
        tune = load_questions(data_dir, split="tune")
        test = load_questions(data_dir, split="test")
        every = load_questions(data_dir)
        store = PostgresMemoryStore(database)
        replay = features(store, embedder, loaded, every)
        print(
            f"data set {args.dataset}: {len(loaded.stored_id)} memories, features of {len(every)} questions"
        )

        # The replay must be the service: the same ranking, id for id, for every question.
        checks = [
            with_neighbours(policy(defaults, 0.9, (0.2, 0.05, 0.05)), 0.8, 3),
            with_neighbours(policy(defaults, 1.0, (0.0, 0.0, 0.0)), 0.9, 10),
            with_neighbours(policy(defaults, 0.0, (0.1, 0.05, 0.05)), 0.5, 5),
            with_neighbours(policy(defaults, 0.8, (0.1, 0.05, 0.05)), 0.0, 3),
        ]
        untouched = UntouchedStore(store)
        for p in checks:
            real = MemoryService(untouched, embedder, clock, policy=p)  # type: ignore[arg-type]
            fake = MemoryService(replay, embedder, clock, policy=p)  # type: ignore[arg-type]
            differ = 0
            for q in every:
                scope = TenantScope(companion_id=loaded.companion, user_id=q.user_id)
                rq = RecallQuery(query=q.question, limit=10, since=q.since, until=q.until)
                a = [str(m.id) for m in real.recall(scope, rq).memories]
                differ += a != ranked(fake, replay, loaded, q, embedder)
            print(
                f"replay check w {p.vector_weight}, share {p.neighbour_share}, hits {p.neighbour_hits}: "
                f"{differ} of {len(every)} rankings differ from the service"
            )
            if differ:
                return 1

        t0 = time.perf_counter()
        grid: dict[Cell, float] = {}
        unit = ReplayUnit(replay)
        asked = []
        for q in tune:
            query = RecallQuery(query=q.question, limit=10, since=q.since, until=q.until)
            cq = MemoryService(replay, embedder, clock)._candidate_query(  # type: ignore[arg-type]
                query, embedder.embed_query(q.question), NOW
            )
            asked.append((q, cq, sorted({str(loaded.stored_id[a]) for a in q.answer_ids})))
        for boosts in BOOSTS:
            for vw in VECTOR_WEIGHTS:
                # The fused ranking does not depend on the neighbour settings: scored once per question.
                base = MemoryService(replay, embedder, clock, policy=policy(defaults, vw, boosts))  # type: ignore[arg-type]
                scored = [base._scored(unit.candidates(q.user_id, cq), NOW, vw) for q, cq, _ in asked]
                for nb in NEIGHBOURS:
                    p = with_neighbours(policy(defaults, vw, boosts), *nb)
                    service = MemoryService(replay, embedder, clock, policy=p)  # type: ignore[arg-type]
                    results = []
                    for (q, cq, answers), s in zip(asked, scored, strict=True):
                        lent = service._with_neighbours(unit, q.user_id, s, cq.criteria, NOW)  # type: ignore[arg-type]
                        results.append(([str(m.id) for _, _, m in lent][:10], answers))
                    grid[(vw, boosts, nb)] = objective(score(results))
        print(f"grid: {len(grid)} cells x {len(tune)} tune questions in {time.perf_counter() - t0:.0f} s")

        print("\nbest tune objective per vector weight, neighbours off vs on (best boosts and (share, hits))")
        print("| vector weight | off | on | (share, hits), boosts |")
        print("|---|---:|---:|---|")
        for vw in VECTOR_WEIGHTS:
            off = pick(grid, [c for c in grid if c[0] == vw and c[2][0] == 0])
            on = pick(grid, [c for c in grid if c[0] == vw and c[2][0] > 0])
            print(f"| {vw} | {grid[off]:.3f} | {grid[on]:.3f} | {on[2]}, {on[1]} |")

        strategies: dict[str, list[Cell]] = {
            "keyword-only": [c for c in grid if c[0] == 0.0],
            "vector-only": [c for c in grid if c[0] == 1.0],
            "hybrid": [c for c in grid if 0 < c[0] < 1],
        }
        rows: list[tuple[str, Cell]] = []
        for name, cells in strategies.items():
            rows.append((f"{name} + neighbours (fair pick)", pick(grid, cells)))
            rows.append(
                (f"{name}, neighbours off (fair pick)", pick(grid, [c for c in cells if c[2][0] == 0]))
            )
        engine = (
            defaults.vector_weight,
            (defaults.importance_weight, defaults.recency_weight, defaults.reinforcement_weight),
        )
        at_defaults = pick(grid, [c for c in grid if (c[0], c[1]) == engine])
        print(
            f"\ndefault rule: at the MemoryPolicy weights {engine} the best neighbours cell is "
            f"{at_defaults[2]} "
            f"(tune {grid[at_defaults]:.5f}; off {grid[(engine[0], engine[1], NEIGHBOURS[0])]:.5f})"
        )
        rows.append(("hybrid at the MemoryPolicy weights, default rule", at_defaults))
        print(
            "\n| strategy | cell (w; boosts; (share, hits)) | tune R@5 / R@10 / MRR | test R@5 / R@10 / MRR |"
        )
        print("|---|---|---|---|")
        per_kind = []
        for name, cell in rows:
            p = with_neighbours(policy(defaults, cell[0], cell[1]), *cell[2])
            t, s = evaluate(p, replay, loaded, tune, embedder), evaluate(p, replay, loaded, test, embedder)
            print(f"| {name} | {cell[0]}; {cell[1]}; {cell[2]} | {_fig(t['all'])} | {_fig(s['all'])} |")
            per_kind.append((name, s))
        print("\nTEST per kind, R@10 / MRR (questions)")
        for name, s in per_kind:
            kinds = ", ".join(
                f"{k} {s[k].recall_at_10:.3f} / {s[k].mrr:.3f} ({s[k].questions})" for k in KINDS if k in s
            )
            print(f"{name}: {kinds}")
        print(f"\nmachine: {machine()}; total {time.perf_counter() - started:.0f} s")
    finally:
        database.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
