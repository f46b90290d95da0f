"""A deterministic embedder for tests: feature hashing of words, no model, no network.

Texts with the same words get the same vector, texts sharing words get similar ones, so near-duplicate
detection and ranking can be tested with known similarities.
"""

import hashlib
import math
import re
from collections.abc import Sequence

_WORD = re.compile(r"[^\W_]+")


class HashEmbedder:
    def __init__(self, dimensions: int = 256, model_id: str | None = None) -> None:
        self._dimensions = dimensions
        self._model_id = model_id or f"test:hash-words-{dimensions}"
        self.document_calls: list[list[str]] = []
        self.query_calls: list[str] = []

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.document_calls.append(list(texts))
        return [self.vector(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        self.query_calls.append(text)
        return self.vector(text)

    def vector(self, text: str) -> list[float]:
        values = [0.0] * self._dimensions
        for word in _WORD.findall(text.lower()):
            digest = hashlib.sha256(word.encode()).digest()
            index = int.from_bytes(digest[:4], "big") % self._dimensions
            values[index] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in values))
        if norm == 0:
            # No words: a fixed unit vector rather than zeros (cosine distance to zero is undefined).
            values[0] = 1.0
            return values
        return [v / norm for v in values]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return 0.0 if norm == 0 else dot / norm
