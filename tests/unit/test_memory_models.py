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
