"""An in-memory ReembedStore over the InMemoryMemoryStore's rows, for unit tests of the Reembedder.

It keeps the Postgres store's contract: claims take memories by id after the cursor, forgotten ones
included, skip those another claim holds, and last until the block ends (a raise releases them and
writes nothing); an insert adds a vector only if the memory is still at the version read and has none of
that model, and never changes another vector.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from uuid import UUID

from companion_memory.models.memory import StoredMemory
from companion_memory.ports import PendingCount, PendingEmbedding
from tests.support.memory_store import InMemoryMemoryStore


class InMemoryReembedBatch:
    def __init__(self, store: InMemoryMemoryStore, pending: list[PendingEmbedding]) -> None:
        self._store = store
        self._pending = pending
        self.staged: dict[tuple[UUID, str], list[float]] = {}

    @property
    def pending(self) -> Sequence[PendingEmbedding]:
        return self._pending

    @property
    def scanned_to(self) -> UUID | None:
        return max((item.memory_id for item in self._pending), default=None)

    def insert(self, model: str, vectors: Sequence[tuple[PendingEmbedding, Sequence[float]]]) -> int:
        added = 0
        for item, vector in vectors:
            memory = self._store.state.memories.get(item.memory_id)
            key = (item.memory_id, model)
            if memory is None or memory.version != item.version:
                continue
            if key in self._store.state.embeddings or key in self.staged:
                continue
            self.staged[key] = list(vector)
            added += 1
        return added


class InMemoryReembedStore:
    def __init__(self, memories: InMemoryMemoryStore) -> None:
        self._memories = memories
        self.held: set[UUID] = set()
        self.claims: list[int] = []

    def _lacking(self, model: str, companion_id: UUID | None) -> list[StoredMemory]:
        state = self._memories.state
        return sorted(
            (
                m
                for m in state.memories.values()
                if (m.id, model) not in state.embeddings and companion_id in (None, m.companion_id)
            ),
            key=lambda m: m.id,
        )

    @contextmanager
    def claim(
        self, model: str, after: UUID | None, limit: int, companion_id: UUID | None = None
    ) -> Iterator[InMemoryReembedBatch]:
        lacking = self._lacking(model, companion_id)
        chosen = [m for m in lacking if (after is None or m.id > after) and m.id not in self.held][:limit]
        pending = [
            PendingEmbedding(m.id, m.companion_id, m.user_id, m.version, m.content, m.sealed) for m in chosen
        ]
        self.claims.append(len(pending))
        ids = {m.id for m in chosen}
        self.held |= ids
        batch = InMemoryReembedBatch(self._memories, pending)
        try:
            yield batch
            self._memories.state.embeddings.update(batch.staged)
        finally:
            self.held -= ids

    def pending(self, model: str, companion_id: UUID | None = None) -> PendingCount:
        lacking = self._lacking(model, companion_id)
        return PendingCount(total=len(lacking), sealed=sum(1 for m in lacking if m.sealed is not None))
