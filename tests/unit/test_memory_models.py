"""Memory models refuse what PostgreSQL cannot store, whichever surface (REST or MCP) they come from."""

import pytest
from pydantic import ValidationError

from companion_memory.models.memory import MemoryChanges, NewMemory, RecallQuery


@pytest.mark.parametrize(
    "build",
    [
        lambda: NewMemory(content="nul \x00 inside"),
        lambda: NewMemory(content="ok", metadata={"k\x00": 1}),
        lambda: NewMemory(content="ok", metadata={"nested": ["\ud800"]}),
        lambda: MemoryChanges(expected_version=1, summary="\x00"),
        lambda: RecallQuery(query="lone \udfff surrogate"),
    ],
)
def test_text_postgres_cannot_hold_is_a_validation_error(build: object) -> None:
    with pytest.raises(ValidationError):
        build()  # type: ignore[operator]


def test_ordinary_unicode_is_kept() -> None:
    memory = NewMemory(content="Zoë likes 寿司 🍣", metadata={"emoji": "🍣", "n": [1, 2.5, None]})
    assert memory.content == "Zoë likes 寿司 🍣"


@pytest.mark.parametrize("tiny", [5e-324, 2.2250738585e-313, 1e-40])
def test_importance_is_kept_to_three_decimals_so_denormals_cannot_underflow_the_column(tiny: float) -> None:
    assert NewMemory(content="x", importance=tiny).importance == 0.0
    assert MemoryChanges(expected_version=1, importance=tiny).importance == 0.0
    assert NewMemory(content="x", importance=7.25).importance == 7.25


@pytest.mark.parametrize("number", [float("inf"), float("-inf"), float("nan")])
def test_metadata_numbers_must_be_finite(number: float) -> None:
    with pytest.raises(ValidationError):
        NewMemory(content="x", metadata={"n": [number]})


def test_instants_are_kept_in_utc_whatever_offset_the_caller_wrote() -> None:
    memory = NewMemory(
        content="x", occurred_at="2025-03-01T10:00:00+02:00", expires_at="2026-01-01T00:00:00-05:00"
    )
    assert memory.occurred_at is not None
    assert memory.occurred_at.isoformat() == "2025-03-01T08:00:00+00:00"
    assert memory.expires_at is not None
    assert memory.expires_at.isoformat() == "2026-01-01T05:00:00+00:00"
