"""Recall ranking: pure functions from raw ranker scores and memory facts to a score in 0-1.

The shape follows what is known about conversational memories (DESIGN.md §3): each ranker's scores are
normalised over the candidate set and fused with a tuned weight (not reciprocal rank fusion, which lets a
weak ranker drag a strong one down on small candidate sets). The fused relevance is then weighed by
importance, recency and reinforcement; relevance multiplies the rest, so an irrelevant memory never
ranks on importance alone.
"""

import math
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[^\W_]+")
MAX_TERMS = 64

# A small English stop list for overlap checks only (keyword search uses the database's dictionary).
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "do",
        "does",
        "did",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "hers",
        "him",
        "his",
        "i",
        "i'm",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "ours",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "too",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "with",
        "you",
        "your",
        "yours",
    ]
)


@dataclass(frozen=True, slots=True)
class Weights:
    """How the parts combine. ``vector`` is the share of vector similarity in relevance (the keyword
    ranker gets the rest); the boosts share the multiplier with a base of 1 - their sum."""

    vector: float
    importance: float
    recency: float
    reinforcement: float

    def __post_init__(self) -> None:
        parts = (self.vector, self.importance, self.recency, self.reinforcement)
        if any(not 0 <= p <= 1 for p in parts):
            raise ValueError("every weight is in 0-1")
        if self.importance + self.recency + self.reinforcement > 1:
            raise ValueError("importance, recency and reinforcement weights sum to at most 1")

    @property
    def base(self) -> float:
        return 1.0 - self.importance - self.recency - self.reinforcement


def clamp01(value: float) -> float:
    return 0.0 if value <= 0 or math.isnan(value) else min(value, 1.0)


def normalise_vector(similarities: Sequence[float | None]) -> list[float]:
    """Min-max over the candidates that have a vector; one without gets 0. When every present value is
    the same, each gets 1 if it is positive (a lone match is the best match), else 0."""
    present = [s for s in similarities if s is not None]
    if not present:
        return [0.0] * len(similarities)
    low, high = min(present), max(present)
    span = high - low
    out = []
    for s in similarities:
        if s is None:
            out.append(0.0)
        elif span <= 1e-12:
            out.append(1.0 if s > 0 else 0.0)
        else:
            out.append(clamp01((s - low) / span))
    return out


def normalise_keyword(ranks: Sequence[float]) -> list[float]:
    """Divided by the best rank: no match stays 0, the best match is 1."""
    high = max(ranks, default=0.0)
    if high <= 0:
        return [0.0] * len(ranks)
    return [clamp01(r / high) for r in ranks]


def fuse(vector: float, keyword: float, vector_weight: float) -> float:
    return clamp01(vector_weight * vector + (1.0 - vector_weight) * keyword)


def importance_part(importance: float) -> float:
    return clamp01(importance / 10.0)


def recency_part(age_seconds: float, half_life_seconds: float) -> float:
    """Exponential decay: 1 now (or in the future), 1/2 after one half-life."""
    if age_seconds <= 0:
        return 1.0
    return clamp01(0.5 ** (age_seconds / half_life_seconds))


def reinforcement_part(count: int, saturation: int) -> float:
    """log(1 + n) scaled so that ``saturation`` repetitions (or more) count fully."""
    if count <= 0:
        return 0.0
    return clamp01(math.log1p(count) / math.log1p(saturation))


def final_score(
    relevance: float, importance: float, recency: float, reinforcement: float, w: Weights
) -> float:
    """relevance x (base + w_i·importance + w_r·recency + w_f·reinforcement): in 0-1 when the parts are,
    and non-decreasing in each part."""
    boost = w.base + w.importance * importance + w.recency * recency + w.reinforcement * reinforcement
    return clamp01(relevance * boost)


def lent_scores[K: Hashable](
    hit_scores: Mapping[K, float], neighbours: Iterable[tuple[K, K]], share: float
) -> dict[K, float]:
    """What neighbouring turns borrow: each (hit, neighbour) pair lends ``share`` x the hit's score, and a
    neighbour of several hits keeps the best loan. With ``share`` < 1 a loan is always below the hit that
    made it, so a neighbour can join the list but never pass the turn that brought it."""
    if not 0 <= share < 1:
        raise ValueError("the neighbour share is in [0, 1)")
    lent: dict[K, float] = {}
    for hit, neighbour in neighbours:
        if neighbour == hit or hit not in hit_scores:
            continue
        loan = clamp01(share * hit_scores[hit])
        if loan > lent.get(neighbour, 0.0):
            lent[neighbour] = loan
    return lent


def terms(text: str) -> list[str]:
    """The words of a query, lower-cased, once each, in order: the keyword ranker ORs them."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        seen.setdefault(word, None)
    return list(seen)[:MAX_TERMS]


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS}


def kept_share(old: set[str], new: set[str]) -> float:
    """How much of the old wording the new one keeps (1 when old is empty)."""
    return 1.0 if not old else len(old & new) / len(old)
