"""Retrieval metrics over ranked memory ids.

A question may need several memories (multi-hop): recall@k is the share of its answer ids found in the
first k results, and the reciprocal rank is taken at the first answer found (0 when none is ranked).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def recall_at_k(ranked: Sequence[str], answers: Iterable[str], k: int) -> float:
    wanted = set(answers)
    if not wanted:
        raise ValueError("a question needs at least one answer id")
    if k < 1:
        raise ValueError("k must be at least 1")
    return len(wanted.intersection(ranked[:k])) / len(wanted)


def reciprocal_rank(ranked: Sequence[str], answers: Iterable[str]) -> float:
    wanted = set(answers)
    if not wanted:
        raise ValueError("a question needs at least one answer id")
    for position, memory_id in enumerate(ranked, start=1):
        if memory_id in wanted:
            return 1.0 / position
    return 0.0


@dataclass(frozen=True)
class Scores:
    questions: int
    recall_at_5: float
    recall_at_10: float
    mrr: float

    def row(self) -> str:
        return f"{self.recall_at_5:.3f} | {self.recall_at_10:.3f} | {self.mrr:.3f}"


def score(results: Iterable[tuple[Sequence[str], Sequence[str]]]) -> Scores:
    """Mean recall@5, recall@10 and MRR over (ranked ids, answer ids) pairs, one pair per question."""
    count = 0
    r5 = r10 = rr = 0.0
    for ranked, answers in results:
        count += 1
        r5 += recall_at_k(ranked, answers, 5)
        r10 += recall_at_k(ranked, answers, 10)
        rr += reciprocal_rank(ranked, answers)
    if count == 0:
        raise ValueError("no questions to score")
    return Scores(count, r5 / count, r10 / count, rr / count)
