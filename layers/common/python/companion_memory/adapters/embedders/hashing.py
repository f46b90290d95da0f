"""Deterministic hashing embedder: signed feature hashing of word uni- and bigrams, L2-normalised.

For unit tests (and only for them): it needs no model and no network, and texts that share words get
similar vectors, which is enough to exercise ranking code. It knows no meaning: configuration selects
it only when EMBEDDING_PROVIDER=hash is set explicitly.
"""

import hashlib
import math
import re
from collections.abc import Sequence
from itertools import pairwise

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


class HashingEmbedder:
    def __init__(self, dimensions: int = 256) -> None:
        if dimensions < 8:
            raise ValueError("dimensions must be at least 8")
        self._dimensions = dimensions

    @property
    def model_id(self) -> str:
        return f"hash:words-1-2:{self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._embed(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)

    def _embed(self, text: str) -> list[float]:
        words = [w.casefold() for w in _WORD.findall(text)]
        features = words + [f"{a} {b}" for a, b in pairwise(words)]
        vector = [0.0] * self._dimensions
        for feature in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self._dimensions
            # The sign bit spreads collisions around zero instead of piling them up.
            vector[index] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vector))
        if norm == 0.0:
            return vector
        return [v / norm for v in vector]
