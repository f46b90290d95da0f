"""An in-memory MemoryStore for unit tests of the memory service.

It keeps the contract the Postgres store keeps: a unit sees only its scope's rows (companion, and user
unless '*'), writes commit when the unit ends and vanish when it raises, saves are compare-and-set on
the version, candidates are the union of vector top-k (exact cosine) and keyword top-k (any term), and
sealed content is never searched by keyword.
"""

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from companion_memory.domain.memory import stored_bytes
from companion_memory.models.memory import (
    Candidate,
    HistoryEntry,
    MemoryCriteria,
    Relation,
    RelationType,
    StoredMemory,
)
from companion_memory.models.tenancy import ALL_USERS, TenantScope
from companion_memory.ports import CandidateQuery, UserStorage
from tests.support.embedders import cosine

_WORD = re.compile(r"[^\W_]+")


@dataclass
class _State:
    memories: dict[UUID, StoredMemory] = field(default_factory=dict)
    embeddings: dict[tuple[UUID, str], list[float]] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    relations: dict[tuple[UUID, UUID, str], Relation] = field(default_factory=dict)

    def copy(self) -> "_State":
        return _State(dict(self.memories), dict(self.embeddings), list(self.history), dict(self.relations))


class InMemoryMemoryStore:
    def __init__(
        self, companions: dict[UUID, str] | None = None, configs: dict[UUID, dict[str, Any]] | None = None
    ) -> None:
        self.companions: dict[UUID, str] = dict(companions or {})  # id -> isolation level
        self.configs: dict[UUID, dict[str, Any]] = dict(configs or {})  # id -> config (its limits)
        self.state = _State()
        self.touched: list[list[UUID]] = []
        self.ef_search: list[int] = []
        self.neighbour_calls: list[list[tuple[UUID, datetime]]] = []

    @contextmanager
    def unit(self, scope: TenantScope) -> Iterator["InMemoryUnit"]:
        working = self.state.copy()
        yield InMemoryUnit(self, working, scope)
        self.state = working

    def purge_forgotten(self, cutoff: datetime, max_rows: int) -> int:
        doomed = sorted(
            (
                m
                for m in self.state.memories.values()
                if m.purge_after is not None and m.purge_after <= cutoff
            ),
            key=lambda m: m.purge_after or cutoff,
        )[:max_rows]
        gone = {m.id for m in doomed}
        state = self.state
        state.memories = {k: v for k, v in state.memories.items() if k not in gone}
        state.embeddings = {k: v for k, v in state.embeddings.items() if k[0] not in gone}
        state.history = [h for h in state.history if h.memory_id not in gone]
        state.relations = {
            k: v for k, v in state.relations.items() if v.source_id not in gone and v.target_id not in gone
        }
        return len(gone)


class InMemoryUnit:
    def __init__(self, store: InMemoryMemoryStore, state: _State, scope: TenantScope) -> None:
        self._store = store
        self._state = state
        self._scope = scope

    def _visible(self, memory: StoredMemory) -> bool:
        user = self._scope.user_id
        return memory.companion_id == self._scope.companion_id and user in (ALL_USERS, memory.user_id)

    def _live(self, memory: StoredMemory, criteria: MemoryCriteria) -> bool:
        return (
            self._visible(memory)
            and memory.forgotten_at is None
            and (memory.expires_at is None or memory.expires_at > criteria.now)
            and (criteria.include_archived or memory.archived_at is None)
            and (not criteria.types or memory.type in criteria.types)
            and (criteria.since is None or memory.occurred_at >= criteria.since)
            and (criteria.until is None or memory.occurred_at < criteria.until)
        )

    def isolation_level(self) -> str | None:
        if self._scope.companion_id is None:
            return None
        return self._store.companions.get(self._scope.companion_id)

    def lock_usage(self, user_id: str) -> UserStorage:
        # Counted, where PostgreSQL keeps counters: the same numbers (migrations/0007), one writer at a time.
        assert self._scope.companion_id is not None
        live = [
            m
            for m in self._state.memories.values()
            if m.companion_id == self._scope.companion_id and m.user_id == user_id and m.forgotten_at is None
        ]
        return UserStorage(
            memories=len(live),
            content_bytes=sum(stored_bytes(m) for m in live),
            companion_config=self._store.configs.get(self._scope.companion_id, {}),
        )

    def get(self, memory_id: UUID, *, include_forgotten: bool = False) -> StoredMemory | None:
        found = self._state.memories.get(memory_id)
        if found is None or not self._visible(found):
            return None
        if found.forgotten_at is not None and not include_forgotten:
            return None
        return found

    def insert(self, memory: StoredMemory) -> None:
        if not self._visible(memory):
            raise PermissionError("row-level security: not in scope")
        if memory.id in self._state.memories:
            raise KeyError(f"duplicate id {memory.id}")
        self._state.memories[memory.id] = memory

    def save(self, memory: StoredMemory, *, expected_version: int) -> bool:
        current = self.get(memory.id, include_forgotten=True)
        if current is None or current.version != expected_version:
            return False
        self._state.memories[memory.id] = replace(memory, access_count=current.access_count)
        return True

    def put_embedding(self, memory: StoredMemory, model: str, vector: Sequence[float]) -> None:
        for key in [k for k in self._state.embeddings if k[0] == memory.id and k[1] != model]:
            del self._state.embeddings[key]
        self._state.embeddings[(memory.id, model)] = list(vector)

    def add_history(self, entry: HistoryEntry) -> None:
        self._state.history.append(entry)

    def history(self, memory_id: UUID) -> list[HistoryEntry]:
        return sorted((h for h in self._state.history if h.memory_id == memory_id), key=lambda h: h.version)

    def nearest(
        self, user_id: str, criteria: MemoryCriteria, model: str, vector: Sequence[float], limit: int
    ) -> list[tuple[StoredMemory, float]]:
        scored = [
            (m, cosine(self._state.embeddings[(m.id, model)], vector))
            for m in self._state.memories.values()
            if m.user_id == user_id and self._live(m, criteria) and (m.id, model) in self._state.embeddings
        ]
        scored.sort(key=lambda s: (-s[1], str(s[0].id)))
        return scored[:limit]

    def _keyword_rank(self, memory: StoredMemory, terms: Sequence[str]) -> float:
        if memory.content is None or not terms:
            return 0.0  # sealed content is not searchable
        words = _WORD.findall(f"{memory.content} {memory.summary or ''}".lower())
        hits = sum(words.count(t) for t in terms)
        return 0.0 if hits == 0 else hits / (1.0 + math.log1p(len(words)))

    def _candidates(self, pool: list[StoredMemory], query: CandidateQuery) -> list[Candidate]:
        with_vector = [m for m in pool if (m.id, query.model) in self._state.embeddings]
        by_vector = sorted(
            with_vector,
            key=lambda m: (-cosine(self._state.embeddings[(m.id, query.model)], query.vector), str(m.id)),
        )[: query.k]
        matching = [m for m in pool if self._keyword_rank(m, query.terms) > 0]
        by_keyword = sorted(matching, key=lambda m: (-self._keyword_rank(m, query.terms), str(m.id)))[
            : query.k
        ]
        union = {m.id: m for m in by_vector + by_keyword}
        return [
            Candidate(
                memory=m,
                vector_similarity=(
                    cosine(self._state.embeddings[(m.id, query.model)], query.vector)
                    if (m.id, query.model) in self._state.embeddings
                    else None
                ),
                keyword_rank=self._keyword_rank(m, query.terms),
            )
            for m in union.values()
        ]

    def candidates(self, user_id: str, query: CandidateQuery) -> list[Candidate]:
        pool = [
            m for m in self._state.memories.values() if m.user_id == user_id and self._live(m, query.criteria)
        ]
        return self._candidates(pool, query)

    def companion_candidates(self, query: CandidateQuery, ef_search: int) -> list[Candidate]:
        self._store.ef_search.append(ef_search)
        pool = [m for m in self._state.memories.values() if self._live(m, query.criteria)]
        return [replace(c, keyword_rank=0.0) for c in self._candidates(pool, replace(query, terms=()))]

    def neighbours(
        self,
        user_id: str,
        anchors: Sequence[tuple[UUID, datetime]],
        criteria: MemoryCriteria,
        window: timedelta,
    ) -> list[tuple[UUID, StoredMemory]]:
        self._store.neighbour_calls.append(list(anchors))
        rows = [m for m in self._state.memories.values() if m.user_id == user_id and self._live(m, criteria)]
        rows.sort(key=lambda m: (m.occurred_at, m.id))
        found = []
        for anchor, at in anchors:
            earlier = [
                m for m in rows if (m.occurred_at, m.id) < (at, anchor) and m.occurred_at >= at - window
            ]
            later = [m for m in rows if (m.occurred_at, m.id) > (at, anchor) and m.occurred_at <= at + window]
            found += [(anchor, m) for m in (earlier[-1:] + later[:1])]
        return found

    def touch(self, memory_ids: Sequence[UUID], at: datetime) -> None:
        self._store.touched.append(list(memory_ids))
        for memory_id in memory_ids:
            current = self._state.memories[memory_id]
            self._state.memories[memory_id] = replace(
                current, access_count=current.access_count + 1, accessed_at=max(current.accessed_at or at, at)
            )

    def page(
        self, user_id: str, criteria: MemoryCriteria, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[StoredMemory]:
        rows = [m for m in self._state.memories.values() if m.user_id == user_id and self._live(m, criteria)]
        rows.sort(key=lambda m: (m.created_at, m.id.int), reverse=True)
        if after is not None:
            rows = [m for m in rows if (m.created_at, m.id.int) < (after[0], after[1].int)]
        return rows[:limit]

    def link(
        self,
        relation_id: UUID,
        source: StoredMemory,
        target: StoredMemory,
        type: RelationType,
        metadata: dict[str, Any],
        at: datetime,
    ) -> Relation:
        key = (source.id, target.id, type)
        existing = self._state.relations.get(key)
        relation = Relation(
            id=existing.id if existing else relation_id,
            source_id=source.id,
            target_id=target.id,
            type=type,
            metadata=metadata,
            created_at=existing.created_at if existing else at,
        )
        self._state.relations[key] = relation
        return relation
