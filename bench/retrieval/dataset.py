"""Load the labelled set from bench/retrieval/data."""

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class LabelledMemory:
    id: str
    user_id: str
    type: str
    content: str
    importance: int
    occurred_at: datetime
    metadata: dict[str, Any]


@dataclass(frozen=True)
class LabelledQuestion:
    id: str
    user_id: str
    kind: str
    question: str
    answer_ids: tuple[str, ...]
    distractor_ids: tuple[str, ...]
    since: datetime | None
    until: datetime | None
    split: str


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def load_memories(data_dir: Path = DATA_DIR) -> list[LabelledMemory]:
    rows = [json.loads(line) for line in (data_dir / "memories.jsonl").read_text().splitlines()]
    return [
        LabelledMemory(
            r["id"],
            r["user_id"],
            r["type"],
            r["content"],
            r["importance"],
            datetime.fromisoformat(r["occurred_at"]),
            r["metadata"],
        )
        for r in rows
    ]


def load_questions(data_dir: Path = DATA_DIR, split: str | None = None) -> list[LabelledQuestion]:
    rows = [json.loads(line) for line in (data_dir / "questions.jsonl").read_text().splitlines()]
    questions = [
        LabelledQuestion(
            r["id"],
            r["user_id"],
            r["kind"],
            r["question"],
            tuple(r["answer_ids"]),
            tuple(r["distractor_ids"]),
            _when(r["since"]),
            _when(r["until"]),
            r["split"],
        )
        for r in rows
    ]
    return [q for q in questions if split is None or q.split == split]
