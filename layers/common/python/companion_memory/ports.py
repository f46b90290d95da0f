"""Ports: what the domain needs from the outside world, as Protocols.

Adapters in ``adapters/`` implement them; unit tests use fakes that implement the same Protocols,
so a type checker notices when a fake drifts.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID


class Clock(Protocol):
    def now(self) -> datetime: ...


class DependencyProbe(Protocol):
    """A cheap reachability check of one backing service; raises when it is not reachable."""

    name: str

    def check(self) -> None: ...


class Embedder(Protocol):
    """Turns text into vectors. Documents and queries are separate calls because some models
    (E5, for one) embed them with different prefixes. Calls are batched by the caller."""

    @property
    def model_id(self) -> str:
        """Stable name of the model and its settings, recorded with every stored vector."""
        ...

    @property
    def dimensions(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class ContentCipher(Protocol):
    """Seals the content of strict companions' memories (AES-256-GCM under a per-companion data key).

    The additional data binds a ciphertext to its companion, user and memory: moved anywhere else
    it no longer opens.
    """

    def seal(self, companion_id: UUID, user_id: str, memory_id: UUID, plaintext: str) -> bytes: ...

    def open(self, companion_id: UUID, user_id: str, memory_id: UUID, sealed: bytes) -> str: ...
