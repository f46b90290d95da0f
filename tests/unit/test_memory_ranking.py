"""The pure ranking functions: bounds and monotonicity as properties, and the exact values they promise."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from companion_memory.domain import ranking
from companion_memory.domain.ranking import Weights

unit = st.floats(min_value=0, max_value=1, allow_nan=False)
weights = st.builds(
    lambda v, parts: Weights(v, *parts),
    unit,
    st.tuples(unit, unit, unit).filter(lambda p: sum(p) <= 1),
)


@given(relevance=unit, importance=unit, recency=unit, reinforcement=unit, w=weights)
def test_the_final_score_is_always_in_0_1(
    relevance: float, importance: float, recency: float, reinforcement: float, w: Weights
) -> None:
    assert 0 <= ranking.final_score(relevance, importance, recency, reinforcement, w) <= 1


@given(parts=st.lists(unit, min_size=4, max_size=4), which=st.integers(0, 3), bump=unit, w=weights)
def test_the_final_score_never_falls_when_one_part_rises(
    parts: list[float], which: int, bump: float, w: Weights
) -> None:
    higher = list(parts)
    higher[which] = min(1.0, parts[which] + bump)
    before = ranking.final_score(parts[0], parts[1], parts[2], parts[3], w)
    after = ranking.final_score(higher[0], higher[1], higher[2], higher[3], w)
    assert after >= before - 1e-12


@given(vector=unit, keyword=unit, weight=unit, bump=unit)
def test_fusion_is_in_0_1_and_monotone_in_both_rankers(
    vector: float, keyword: float, weight: float, bump: float
) -> None:
    fused = ranking.fuse(vector, keyword, weight)
    assert 0 <= fused <= 1
    assert ranking.fuse(min(1.0, vector + bump), keyword, weight) >= fused - 1e-12
    assert ranking.fuse(vector, min(1.0, keyword + bump), weight) >= fused - 1e-12


@given(st.lists(st.one_of(st.none(), st.floats(min_value=-1, max_value=1, allow_nan=False)), max_size=30))
def test_vector_normalisation_maps_into_0_1_and_keeps_the_order(similarities: list[float | None]) -> None:
    normalised = ranking.normalise_vector(similarities)
    assert len(normalised) == len(similarities)
    assert all(0 <= n <= 1 for n in normalised)
    present = [(s, n) for s, n in zip(similarities, normalised, strict=True) if s is not None]
    for s1, n1 in present:
        for s2, n2 in present:
            if s1 < s2:
                assert n1 <= n2
    # Differences below 1e-12 are ties (float noise), not a ranking
    if present and max(s for s, _ in present) - min(s for s, _ in present) > 1e-12:
        assert max(n for _, n in present) == 1.0
        assert min(n for _, n in present) == 0.0


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=30))
def test_keyword_normalisation_keeps_no_match_at_0_and_the_best_at_1(ranks: list[float]) -> None:
    normalised = ranking.normalise_keyword(ranks)
    assert all(0 <= n <= 1 for n in normalised)
    for rank, n in zip(ranks, normalised, strict=True):
        if rank == 0:
            assert n == 0
        if max(ranks) > 0 and rank == max(ranks):
            assert n == 1.0


@given(
    age=st.floats(min_value=0, max_value=1e10, allow_nan=False), more=st.floats(min_value=0, max_value=1e10)
)
def test_recency_is_in_0_1_and_decays_with_age(age: float, more: float) -> None:
    half_life = 30 * 86400.0
    assert 0 <= ranking.recency_part(age, half_life) <= 1
    assert ranking.recency_part(age + more, half_life) <= ranking.recency_part(age, half_life)


@given(count=st.integers(min_value=0, max_value=10**6), saturation=st.integers(min_value=1, max_value=1000))
def test_reinforcement_is_in_0_1_and_grows_with_repetition(count: int, saturation: int) -> None:
    part = ranking.reinforcement_part(count, saturation)
    assert 0 <= part <= 1
    assert ranking.reinforcement_part(count + 1, saturation) >= part


def test_the_documented_values() -> None:
    day = 86400.0
    assert ranking.recency_part(30 * day, 30 * day) == pytest.approx(0.5)
    assert ranking.recency_part(-5, 30 * day) == 1.0  # a future date counts as now
    assert ranking.reinforcement_part(10, 10) == 1.0
    assert ranking.reinforcement_part(1, 10) == pytest.approx(math.log(2) / math.log(11))
    assert ranking.importance_part(6) == pytest.approx(0.6)
    assert ranking.normalise_vector([0.3]) == [1.0]  # a lone match is the best match
    assert ranking.normalise_vector([None, 0.2, 0.6]) == [0.0, 0.0, 1.0]
    w = Weights(vector=0.5, importance=0.2, recency=0.2, reinforcement=0.1)
    assert ranking.final_score(1.0, 0, 0, 0, w) == pytest.approx(0.5)
    assert ranking.final_score(0.0, 1, 1, 1, w) == 0.0  # importance alone never ranks a memory


def test_query_terms_are_words_once_each_in_order() -> None:
    assert ranking.terms("What's Alice's FAVOURITE tea? tea_time: 2024!") == [
        "what",
        "s",
        "alice",
        "favourite",
        "tea",
        "time",
        "2024",
    ]


def test_weights_outside_their_range_are_refused() -> None:
    with pytest.raises(ValueError, match="0-1"):
        Weights(vector=1.5, importance=0, recency=0, reinforcement=0)
