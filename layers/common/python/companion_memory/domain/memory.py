"""The memory service: store, recall, get, update, forget, restore, list, link, companion-wide search.

Every operation runs in one tenant scope; the store's row-level security makes rows of any other scope
invisible, so "not found" never says whether an id exists elsewhere. Embedding calls happen outside any
database transaction (a slow model never holds row locks) and only where a vector is needed: store and
update-with-new-content embed the documents once, recall embeds the query once; get, list, forget,
restore and link never embed.
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid4

from companion_memory.domain import ranking
from companion_memory.domain.limits import StorageUsage, check_storage
from companion_memory.errors import CompanionMemoryError, Conflict, NotFound, ValidationFailed
from companion_memory.models.companion_config import CompanionConfig, Limits
from companion_memory.models.memory import (
    MAX_METADATA_BYTES,
    Candidate,
    ForgetResult,
    HistoryChange,
    HistoryEntry,
    ListFilter,
    Memory,
    MemoryChanges,
    MemoryCriteria,
    MemoryPage,
    MemoryType,
    NewMemory,
    RecalledMemory,
    RecallQuery,
    RecallResult,
    Relation,
    RelationType,
    ScoreParts,
    StoredMemory,
    StoreResult,
)
from companion_memory.models.tenancy import ALL_USERS, TenantScope
from companion_memory.ports import (
    CandidateQuery,
    Clock,
    ContentCipher,
    Embedder,
    MemoryStore,
    MemoryUnit,
    UserStorage,
)

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class MemoryPolicy:
    """Every tunable of the memory service; the retrieval benchmark tunes the ranking weights.

    Defaults, and why:
    - importance by type: an instruction ("always answer in French") steers every conversation (8);
      a preference shapes many (6); a fact is the common case (5); an experience is one event (4); a
      reflection is the companion's own inference, the least certain (3).
    - expiry (counted from when it is stored, so an import of old memories is not born expired):
      instructions and preferences never expire (the user changes them explicitly); facts expire only
      when unimportant (importance < 3: a year); experiences expire after 90 days below importance 4,
      after a year below 7, never at 7 or more; reflections after 180 days below 6.
    - near-duplicates (same user, same type, by cosine similarity): at or above ``reinforce_threshold``
      a memory that adds no new words reinforces the existing one; at or above ``update_threshold`` a
      memory that keeps at least ``update_min_kept`` (default: all) of the existing wording's content
      words and adds at least one gives the existing memory its new wording (more detail, same
      subject); anything else is new. Dropping a word means another fact ("Paris" -> "Rome", "note 5"
      -> "note 21"), and merging two facts would lose one, so the default keeps them apart.
      The thresholds suit normalised sentence embedders; the benchmark sets them per model.
    - ranking: relevance = vector_weight x vector + (1 - vector_weight) x keyword (each normalised over
      the candidates); score = relevance x (base + importance_weight x importance/10 + recency_weight x
      0.5^(age/half-life) + reinforcement_weight x log-scaled reinforcement), base = 1 - the three weights.
    """

    importance_by_type: dict[MemoryType, float] = field(
        default_factory=lambda: {
            "instruction": 8.0,
            "preference": 6.0,
            "fact": 5.0,
            "experience": 4.0,
            "reflection": 3.0,
        }
    )
    reinforce_threshold: float = 0.92
    update_threshold: float = 0.80
    update_min_kept: float = 1.0
    dedupe_candidates: int = 3
    reinforce_importance_step: float = 0.1
    # Tuned on bench/retrieval's tune split through this service (bench/retrieval/run.py; docs/benchmarks.md,
    # "Retrieval quality"): the hybrid weight and boosts it picks; were 0.5 / 0.15 / 0.15 / 0.05. Recency 0.05
    # (was 0.15): both sets' tune grids (v2 extracted facts, v3 conversation turns) prefer it; v3 ties 0.8 and
    # 0.9 and, with one importance for every turn, cannot weigh importance, so those stay v2's picks.
    vector_weight: float = 0.9
    importance_weight: float = 0.2
    recency_weight: float = 0.05
    reinforcement_weight: float = 0.05
    recency_half_life: timedelta = timedelta(days=30)
    reinforcement_saturation: int = 10
    # Neighbouring turns (bench/retrieval/README.md, "Design note: neighbouring turns"): each of the first
    # ``neighbour_hits`` of the ranking lends ``neighbour_share`` x its score to the user's adjacent memory
    # on each side in time (within ``neighbour_window``), so the answer next to the turn that matched can
    # join the list, always below its hit. 0 switches it off (no extra statement), and off is the default:
    # on both retrieval sets it changed no test figure and moved the v3 tune objective by less than one
    # question (docs/benchmarks.md, "Neighbouring turns"), not worth a statement on every recall.
    neighbour_share: float = 0.0
    neighbour_hits: int = 3
    neighbour_window: timedelta = timedelta(minutes=10)
    candidate_k: int = 50
    hnsw_ef_search: int = 100
    forget_grace: timedelta = timedelta(days=30)
    max_batch: int = 256
    purge_batch: int = 10_000

    def __post_init__(self) -> None:
        if not 0 < self.update_threshold <= self.reinforce_threshold <= 1:
            raise ValueError("0 < update_threshold <= reinforce_threshold <= 1")
        self.weights()  # validates the weights
        if not 0 <= self.neighbour_share < 1:
            raise ValueError("neighbour_share is in [0, 1): a neighbour never outranks its hit")
        if self.neighbour_hits < 1 or self.neighbour_window <= timedelta(0):
            raise ValueError("neighbour_hits is at least 1 and neighbour_window is positive")

    def weights(self, vector_weight: float | None = None) -> ranking.Weights:
        return ranking.Weights(
            vector=self.vector_weight if vector_weight is None else vector_weight,
            importance=self.importance_weight,
            recency=self.recency_weight,
            reinforcement=self.reinforcement_weight,
        )

    def default_importance(self, type: MemoryType) -> float:
        return self.importance_by_type[type]

    def default_lifetime(self, type: MemoryType, importance: float) -> timedelta | None:
        match type:
            case "instruction" | "preference":
                return None
            case "fact":
                return None if importance >= 3 else 365 * _DAY
            case "experience":
                if importance >= 7:
                    return None
                return 365 * _DAY if importance >= 4 else 90 * _DAY
            case "reflection":
                return None if importance >= 6 else 180 * _DAY

    def dedupe(self, similarity: float, existing: str, new: str) -> Literal["reinforced", "updated"] | None:
        old_words, new_words = ranking.content_words(existing), ranking.content_words(new)
        adds_detail = bool(new_words - old_words)
        if similarity >= self.reinforce_threshold and not adds_detail:
            return "reinforced"
        kept = ranking.kept_share(old_words, new_words)
        if similarity >= self.update_threshold and adds_detail and kept >= self.update_min_kept:
            return "updated"
        return None


@dataclass(frozen=True, slots=True)
class _Plain:
    content: str
    summary: str | None


class MemoryService:
    def __init__(
        self,
        store: MemoryStore,
        embedder: Embedder,
        clock: Clock,
        *,
        cipher: ContentCipher | None = None,
        policy: MemoryPolicy | None = None,
        new_id: Callable[[], UUID] = uuid4,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._clock = clock
        self._cipher = cipher
        self._policy = policy or MemoryPolicy()
        self._new_id = new_id

    @property
    def policy(self) -> MemoryPolicy:
        return self._policy

    # --- store ---------------------------------------------------------------------------------------------

    def store(self, scope: TenantScope, new: NewMemory) -> StoreResult:
        return self.store_many(scope, [new])[0]

    def store_many(
        self, scope: TenantScope, items: Sequence[NewMemory], *, verbatim: bool = False
    ) -> list[StoreResult]:
        """Store in order, in one transaction, with one batched embedding call; each item is compared with
        the user's memories including those stored earlier in the same batch. ``verbatim`` (a companion
        import restoring its export) stores each item as a new memory exactly as given: no near-duplicate
        merge, and no expiry stays no expiry."""
        user = _user_of(scope)
        if not items:
            return []
        if len(items) > self._policy.max_batch:
            raise ValidationFailed(f"at most {self._policy.max_batch} memories per batch")
        vectors = self._embed_documents([item.content for item in items])
        now = self._clock.now()
        with self._store.unit(scope) as unit:
            sealing = self._sealing(unit)
            storage = unit.lock_usage(user)
            _require_allowed_types(storage.companion_config, items)
            quota = _Quota(storage)
            return [
                self._store_one(unit, scope, user, item, vector, now, sealing, quota, verbatim)
                for item, vector in zip(items, vectors, strict=True)
            ]

    def _store_one(
        self,
        unit: MemoryUnit,
        scope: TenantScope,
        user: str,
        item: NewMemory,
        vector: list[float],
        now: datetime,
        sealing: bool,
        quota: "_Quota",
        verbatim: bool,
    ) -> StoreResult:
        model = self._embedder.model_id
        same_type = MemoryCriteria(now=now, types=(item.type,))
        candidates = self._policy.dedupe_candidates
        nearest = () if verbatim else unit.nearest(user, same_type, model, vector, candidates)
        for existing, similarity in nearest:
            similarity = ranking.clamp01(similarity)
            outcome = self._policy.dedupe(similarity, self._open(existing).content, item.content)
            if outcome is None:
                continue
            if outcome == "reinforced":
                merged = self._reinforced(existing, item, now)
            else:
                merged = self._reworded(existing, item, now, model, sealing)
                quota.take(0, stored_bytes(merged) - stored_bytes(existing))
            if not unit.save(merged, expected_version=existing.version):
                raise Conflict("the memory changed while this one was being stored; store it again")
            if outcome == "updated":
                unit.put_embedding(merged, model, vector)
            unit.add_history(self._history(merged, outcome, user, now))
            return StoreResult(
                memory=self._to_memory(merged),
                outcome=outcome,
                duplicate_of=existing.id,
                similarity=similarity,
            )

        importance = (
            item.importance if item.importance is not None else self._policy.default_importance(item.type)
        )
        lifetime = None if verbatim else self._policy.default_lifetime(item.type, importance)
        memory_id = self._new_id()
        record = StoredMemory(
            id=memory_id,
            companion_id=_companion_of(scope),
            user_id=user,
            type=item.type,
            content=None,
            sealed=None,
            summary=None,
            metadata=item.metadata,
            importance=importance,
            confidence=1.0,
            occurred_at=item.occurred_at or now,
            created_at=now,
            updated_at=now,
            accessed_at=None,
            access_count=0,
            reinforcement_count=0,
            expires_at=item.expires_at or (now + lifetime if lifetime is not None else None),
            archived_at=None,
            forgotten_at=None,
            purge_after=None,
            version=1,
            embedding_model=model,
        )
        record = self._with_text(record, _Plain(item.content, item.summary), sealing)
        quota.take(1, stored_bytes(record))
        unit.insert(record)
        unit.put_embedding(record, model, vector)
        unit.add_history(self._history(record, "created", user, now))
        return StoreResult(memory=self._to_memory(record), outcome="created")

    def _reinforced(self, existing: StoredMemory, item: NewMemory, now: datetime) -> StoredMemory:
        importance = max(existing.importance, item.importance or 0.0)
        importance = min(10.0, importance + (10.0 - importance) * self._policy.reinforce_importance_step)
        return replace(
            existing,
            importance=importance,
            reinforcement_count=existing.reinforcement_count + 1,
            accessed_at=now,
            updated_at=now,
            version=existing.version + 1,
        )

    def _reworded(
        self, existing: StoredMemory, item: NewMemory, now: datetime, model: str, sealing: bool
    ) -> StoredMemory:
        old = self._open(existing)
        importance = max(existing.importance, item.importance or 0.0)
        merged = replace(
            existing,
            metadata={**existing.metadata, **item.metadata},
            importance=importance,
            occurred_at=item.occurred_at or existing.occurred_at,
            expires_at=item.expires_at or existing.expires_at,
            reinforcement_count=existing.reinforcement_count + 1,
            updated_at=now,
            version=existing.version + 1,
            embedding_model=model,
        )
        return self._with_text(merged, _Plain(item.content, item.summary or old.summary), sealing)

    # --- recall --------------------------------------------------------------------------------------------

    def recall(self, scope: TenantScope, query: RecallQuery) -> RecallResult:
        """Exact hybrid recall over one user's live memories; returned memories count an access."""
        user = _user_of(scope)
        vector = self._embed_query(query.query)
        now = self._clock.now()
        candidates_query = self._candidate_query(query, vector, now)
        with self._store.unit(scope) as unit:
            candidates = unit.candidates(user, candidates_query)
            scored = self._scored(candidates, now, self._policy.vector_weight)
            scored = self._with_neighbours(unit, user, scored, candidates_query.criteria, now)
            chosen = self._chosen(scored, query)
            # The ranking reads the memories as they were; the access count rises for the next recall.
            unit.touch([memory.id for memory in chosen], now)
        return RecallResult(query=query.query, memories=chosen)

    def search_companion(self, scope: TenantScope, query: RecallQuery) -> RecallResult:
        """Approximate vector search over every user of the companion (the model's HNSW index, iterative
        scan); no keyword ranker, so relevance is the vector part alone. Not counted as an access: it is
        an operator's or backend's look, not the user's companion remembering."""
        if scope.companion_id is None or scope.user_id != ALL_USERS:
            raise ValidationFailed("companion-wide search needs a companion scope over all users")
        vector = self._embed_query(query.query)
        now = self._clock.now()
        with self._store.unit(scope) as unit:
            candidates = unit.companion_candidates(
                self._candidate_query(query, vector, now), max(self._policy.hnsw_ef_search, query.limit)
            )
            chosen = self._rank(candidates, query, now, vector_weight=1.0)
        return RecallResult(query=query.query, memories=chosen)

    def _candidate_query(self, query: RecallQuery, vector: list[float], now: datetime) -> CandidateQuery:
        return CandidateQuery(
            model=self._embedder.model_id,
            vector=vector,
            terms=ranking.terms(query.query),
            criteria=MemoryCriteria(now=now, types=query.types, since=query.since, until=query.until),
            k=max(self._policy.candidate_k, query.limit),
        )

    def _rank(
        self, candidates: Sequence[Candidate], query: RecallQuery, now: datetime, vector_weight: float
    ) -> list[RecalledMemory]:
        return self._chosen(self._scored(candidates, now, vector_weight), query)

    def _scored(
        self, candidates: Sequence[Candidate], now: datetime, vector_weight: float
    ) -> list[tuple[float, ScoreParts, StoredMemory]]:
        """Every candidate with its score and parts, best first."""
        policy = self._policy
        weights = policy.weights(vector_weight)
        vectors = ranking.normalise_vector([c.vector_similarity for c in candidates])
        keywords = ranking.normalise_keyword([c.keyword_rank for c in candidates])
        scored: list[tuple[float, ScoreParts, StoredMemory]] = []
        for candidate, vector, keyword in zip(candidates, vectors, keywords, strict=True):
            memory = candidate.memory
            parts = self._parts(memory, vector, keyword, weights, now)
            score = ranking.final_score(
                parts.relevance, parts.importance, parts.recency, parts.reinforcement, weights
            )
            scored.append((score, parts, memory))
        return _best_first(scored)

    def _parts(
        self, memory: StoredMemory, vector: float, keyword: float, weights: ranking.Weights, now: datetime
    ) -> ScoreParts:
        last_seen = max(memory.occurred_at, memory.accessed_at or memory.occurred_at)
        return ScoreParts(
            vector=vector,
            keyword=keyword,
            relevance=ranking.fuse(vector, keyword, weights.vector),
            importance=ranking.importance_part(memory.importance),
            recency=ranking.recency_part(
                (now - last_seen).total_seconds(), self._policy.recency_half_life.total_seconds()
            ),
            reinforcement=ranking.reinforcement_part(
                memory.reinforcement_count, self._policy.reinforcement_saturation
            ),
        )

    def _with_neighbours(
        self,
        unit: MemoryUnit,
        user: str,
        scored: list[tuple[float, ScoreParts, StoredMemory]],
        criteria: MemoryCriteria,
        now: datetime,
    ) -> list[tuple[float, ScoreParts, StoredMemory]]:
        """Neighbouring turns: the first ``neighbour_hits`` lend a share of their score to the user's
        adjacent memories in time (one statement), which keep the better of their own score and the loan.
        Loans come from direct hits only (one step), and a loan is below the hit that made it."""
        policy = self._policy
        hits = [(score, memory) for score, _, memory in scored[: policy.neighbour_hits] if score > 0]
        if policy.neighbour_share <= 0 or not hits:
            return scored
        found = unit.neighbours(
            user, [(memory.id, memory.occurred_at) for _, memory in hits], criteria, policy.neighbour_window
        )
        if not found:
            return scored
        lent = ranking.lent_scores(
            {memory.id: score for score, memory in hits},
            ((hit, neighbour.id) for hit, neighbour in found),
            policy.neighbour_share,
        )
        records = {neighbour.id: neighbour for _, neighbour in found}
        out: list[tuple[float, ScoreParts, StoredMemory]] = []
        for score, parts, memory in scored:
            out.append((max(score, lent.pop(memory.id, 0.0)), parts, memory))
        # Neighbours that were not candidates: their own parts say the query did not reach them (no
        # vector or keyword share); their score is the loan.
        weights = policy.weights()
        for memory_id, loan in lent.items():
            memory = records[memory_id]
            out.append((loan, self._parts(memory, 0.0, 0.0, weights, now), memory))
        return _best_first(out)

    def _chosen(
        self, scored: list[tuple[float, ScoreParts, StoredMemory]], query: RecallQuery
    ) -> list[RecalledMemory]:
        return [
            RecalledMemory(**self._to_memory(memory).model_dump(), score=score, score_parts=parts)
            for score, parts, memory in [s for s in scored if s[0] >= query.min_score][: query.limit]
        ]

    # --- get, update, forget, restore ----------------------------------------------------------------------

    def get(self, scope: TenantScope, memory_id: UUID) -> Memory:
        _user_of(scope)
        with self._store.unit(scope) as unit:
            return self._to_memory(_visible(unit, memory_id))

    def update(self, scope: TenantScope, memory_id: UUID, changes: MemoryChanges) -> Memory:
        """Apply ``changes`` if the memory is still at ``changes.expected_version``. New content is
        embedded between two transactions (never while holding one); the version check makes that safe."""
        user = _user_of(scope)
        vector: list[float] | None = None
        if changes.content is not None:
            with self._store.unit(scope) as unit:
                current = _visible(unit, memory_id)
                _check_version(current, changes.expected_version)
                content_changes = changes.content != self._open(current).content
            if content_changes:
                vector = self._embed_documents([changes.content])[0]
        now = self._clock.now()
        with self._store.unit(scope) as unit:
            current = _visible(unit, memory_id)
            _check_version(current, changes.expected_version)
            updated = self._changed(current, changes, now, vector, self._sealing(unit))
            if updated is None:
                return self._to_memory(current)
            growth = stored_bytes(updated) - stored_bytes(current)
            if growth > 0:
                _Quota(unit.lock_usage(user)).take(0, growth)
            if not unit.save(updated, expected_version=current.version):
                raise _lost_race(unit, memory_id)
            if vector is not None:
                unit.put_embedding(updated, self._embedder.model_id, vector)
            unit.add_history(self._history(updated, "updated", user, now))
            return self._to_memory(updated)

    def _changed(
        self,
        current: StoredMemory,
        changes: MemoryChanges,
        now: datetime,
        vector: list[float] | None,
        sealing: bool,
    ) -> StoredMemory | None:
        fields: dict[str, Any] = {}
        for name in ("type", "importance", "metadata", "occurred_at", "expires_at"):
            value = getattr(changes, name)
            if value is not None and value != getattr(current, name):
                fields[name] = value
        plain = self._open(current)
        new_plain = _Plain(
            changes.content if changes.content is not None else plain.content,
            changes.summary if changes.summary is not None else plain.summary,
        )
        if not fields and new_plain == plain:
            return None
        updated = replace(current, **fields, updated_at=now, version=current.version + 1)
        if vector is not None:
            updated = replace(updated, embedding_model=self._embedder.model_id)
        if new_plain != plain:
            # A strict companion's memory stays sealed, and a standard one stays plain, whatever
            # the companion's level is today: re-sealing is the job of a migration, not of an edit.
            updated = self._with_text(updated, new_plain, sealing=current.sealed is not None or sealing)
        return updated

    def forget(self, scope: TenantScope, memory_id: UUID, expected_version: int) -> ForgetResult:
        """Soft delete: gone from every read at once, deleted for good after the grace period."""
        user = _user_of(scope)
        now = self._clock.now()
        with self._store.unit(scope) as unit:
            current = _visible(unit, memory_id)
            _check_version(current, expected_version)
            forgotten = replace(
                current,
                forgotten_at=now,
                purge_after=now + self._policy.forget_grace,
                updated_at=now,
                version=current.version + 1,
            )
            if not unit.save(forgotten, expected_version=expected_version):
                raise _lost_race(unit, memory_id)
            unit.add_history(self._history(forgotten, "forgotten", user, now))
        assert forgotten.forgotten_at is not None
        assert forgotten.purge_after is not None
        return ForgetResult(
            id=memory_id, forgotten_at=forgotten.forgotten_at, purge_after=forgotten.purge_after
        )

    def restore(self, scope: TenantScope, memory_id: UUID, expected_version: int) -> Memory:
        """Undo a forget during its grace period."""
        user = _user_of(scope)
        now = self._clock.now()
        with self._store.unit(scope) as unit:
            current = unit.get(memory_id, include_forgotten=True)
            if current is None or current.forgotten_at is None:
                raise NotFound("no forgotten memory with this id")
            _check_version(current, expected_version)
            # A forgotten memory freed its quota: coming back, it takes it again.
            _Quota(unit.lock_usage(user)).take(1, stored_bytes(current))
            restored = replace(
                current, forgotten_at=None, purge_after=None, updated_at=now, version=current.version + 1
            )
            if not unit.save(restored, expected_version=expected_version):
                raise _lost_race(unit, memory_id)
            unit.add_history(self._history(restored, "restored", user, now))
            return self._to_memory(restored)

    def purge_forgotten(self, now: datetime) -> int:
        """Delete for good the forgotten memories (all tenants) whose grace period ended by ``now``; the
        upkeep schedule calls it until it returns less than a batch."""
        return self._store.purge_forgotten(now, self._policy.purge_batch)

    # --- list, link ----------------------------------------------------------------------------------------

    def link(
        self,
        scope: TenantScope,
        source_id: UUID,
        target_id: UUID,
        type: RelationType,
        metadata: dict[str, Any] | None = None,
    ) -> Relation:
        """Relate two of the scope's memories. Linking again with the same type replaces the metadata."""
        _user_of(scope)
        if source_id == target_id:
            raise ValidationFailed("a memory cannot be related to itself")
        metadata = metadata or {}
        if len(json.dumps(metadata, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
            raise ValidationFailed(f"metadata must serialise to at most {MAX_METADATA_BYTES} bytes")
        with self._store.unit(scope) as unit:
            source, target = unit.get(source_id), unit.get(target_id)
            if source is None or target is None:
                raise NotFound("memory not found")
            return unit.link(self._new_id(), source, target, type, metadata, self._clock.now())

    # --- helpers -------------------------------------------------------------------------------------------

    def _embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = self._embedder.embed_documents(texts)
        if len(vectors) != len(texts) or any(len(v) != self._embedder.dimensions for v in vectors):
            raise CompanionMemoryError("the embedder returned vectors of the wrong number or size")
        return vectors

    def _embed_query(self, text: str) -> list[float]:
        vector = self._embedder.embed_query(text)
        if len(vector) != self._embedder.dimensions:
            raise CompanionMemoryError("the embedder returned a vector of the wrong size")
        return vector

    def _sealing(self, unit: MemoryUnit) -> bool:
        level = unit.isolation_level()
        if level is None:
            raise NotFound("companion not found")
        if level == "strict" and self._cipher is None:
            raise CompanionMemoryError("this companion's content must be sealed, and no cipher is configured")
        return level == "strict"

    def _with_text(self, record: StoredMemory, plain: _Plain, sealing: bool) -> StoredMemory:
        if not sealing:
            return replace(record, content=plain.content, summary=plain.summary, sealed=None)
        assert self._cipher is not None
        payload = json.dumps({"content": plain.content, "summary": plain.summary}, ensure_ascii=False)
        sealed = self._cipher.seal(record.companion_id, record.user_id, record.id, payload)
        return replace(record, content=None, summary=None, sealed=sealed)

    def _open(self, record: StoredMemory) -> _Plain:
        if record.sealed is None:
            assert record.content is not None
            return _Plain(record.content, record.summary)
        if self._cipher is None:
            raise CompanionMemoryError("this memory is sealed, and no cipher is configured")
        payload = json.loads(self._cipher.open(record.companion_id, record.user_id, record.id, record.sealed))
        return _Plain(payload["content"], payload["summary"])

    def _to_memory(self, record: StoredMemory) -> Memory:
        plain = self._open(record)
        return Memory(
            id=record.id,
            companion_id=record.companion_id,
            user_id=record.user_id,
            type=record.type,
            content=plain.content,
            summary=plain.summary,
            metadata=record.metadata,
            importance=record.importance,
            confidence=record.confidence,
            occurred_at=record.occurred_at,
            created_at=record.created_at,
            updated_at=record.updated_at,
            accessed_at=record.accessed_at,
            access_count=record.access_count,
            reinforcement_count=record.reinforcement_count,
            expires_at=record.expires_at,
            archived=record.archived_at is not None,
            version=record.version,
            embedding_model=record.embedding_model,
        )

    def _history(self, record: StoredMemory, change: HistoryChange, actor: str, at: datetime) -> HistoryEntry:
        return HistoryEntry(
            memory_id=record.id,
            companion_id=record.companion_id,
            user_id=record.user_id,
            version=record.version,
            change=change,
            snapshot=snapshot(record),
            actor=actor,
            at=at,
        )

    # Last in the class: from here on, ``list`` in this namespace is this method, not the builtin.
    def list(self, scope: TenantScope, filter: ListFilter) -> MemoryPage:
        """Newest first (by creation, then id): a stable order, so pages neither skip nor repeat while
        memories are added or changed. The cursor is bound to the filter it was made with."""
        user = _user_of(scope)
        fingerprint = _filter_fingerprint(filter)
        after = _decode_cursor(filter.cursor, fingerprint) if filter.cursor else None
        criteria = MemoryCriteria(
            now=self._clock.now(),
            types=filter.types,
            since=filter.since,
            until=filter.until,
            include_archived=filter.include_archived,
        )
        with self._store.unit(scope) as unit:
            rows = unit.page(user, criteria, after, filter.limit + 1)
        items = [self._to_memory(row) for row in rows[: filter.limit]]
        next_cursor = None
        if len(rows) > filter.limit:
            last = rows[filter.limit - 1]
            next_cursor = _encode_cursor(last.created_at, last.id, fingerprint)
        return MemoryPage(items=items, next_cursor=next_cursor)


def snapshot(record: StoredMemory) -> dict[str, Any]:
    """A memory's state for the history: no vector, and sealed content only as its ciphertext."""

    def when(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    text: dict[str, Any] = (
        {"content_sealed": base64.b64encode(record.sealed).decode()}
        if record.sealed is not None
        else {"content": record.content, "summary": record.summary}
    )
    return {
        "type": record.type,
        **text,
        "metadata": record.metadata,
        "importance": record.importance,
        "confidence": record.confidence,
        "occurred_at": when(record.occurred_at),
        "expires_at": when(record.expires_at),
        "archived_at": when(record.archived_at),
        "forgotten_at": when(record.forgotten_at),
        "purge_after": when(record.purge_after),
        "reinforcement_count": record.reinforcement_count,
        "version": record.version,
        "embedding_model": record.embedding_model,
    }


def stored_bytes(record: StoredMemory) -> int:
    """What a memory's content takes against the storage quota: its UTF-8 octets, or a sealed envelope's
    (migrations/0007's memory_stored_bytes, which keeps the counters, says the same)."""
    if record.content is not None:
        return len(record.content.encode())
    return len(record.sealed or b"")


class _Quota:
    """A user's storage as one transaction changes it: each write is checked before it is made, against
    counters locked for the transaction (``MemoryUnit.lock_usage``)."""

    def __init__(self, storage: UserStorage) -> None:
        self._limits = Limits.of(storage.companion_config)
        self._usage = StorageUsage(memories=storage.memories, content_bytes=storage.content_bytes)

    def take(self, memories: int, content_bytes: int) -> None:
        check_storage(self._limits, self._usage, memories, content_bytes)
        self._usage = StorageUsage(
            memories=self._usage.memories + memories,
            content_bytes=self._usage.content_bytes + content_bytes,
        )


def _require_allowed_types(config: dict[str, Any], items: Sequence[NewMemory]) -> None:
    """The companion keeps only the memory types its config's ``capabilities.memory_types`` lists."""
    capabilities = CompanionConfig.of({"capabilities": config.get("capabilities", {})}).capabilities
    refused = sorted({item.type for item in items} - set(capabilities.memory_types))
    if refused:
        raise ValidationFailed(
            f"this companion does not keep memories of type {', '.join(refused)}",
            details={"reason": "memory_type_not_allowed", "allowed": list(capabilities.memory_types)},
        )


def _best_first(
    scored: list[tuple[float, ScoreParts, StoredMemory]],
) -> list[tuple[float, ScoreParts, StoredMemory]]:
    # Ties (same score) go to the more recent memory, then the id, so the order is stable.
    return sorted(scored, key=lambda s: (-s[0], -s[2].occurred_at.timestamp(), str(s[2].id)))


def _user_of(scope: TenantScope) -> str:
    if scope.companion_id is None or not scope.user_id or scope.user_id == ALL_USERS:
        raise ValidationFailed("a memory operation needs one companion and one of its users")
    return scope.user_id


def _companion_of(scope: TenantScope) -> UUID:
    assert scope.companion_id is not None
    return scope.companion_id


def _visible(unit: MemoryUnit, memory_id: UUID) -> StoredMemory:
    found = unit.get(memory_id)
    if found is None:
        raise NotFound("memory not found")
    return found


def _check_version(current: StoredMemory, expected: int) -> None:
    if current.version != expected:
        raise Conflict(
            f"the memory is at version {current.version}, not {expected}",
            details={"current_version": current.version},
        )


def _lost_race(unit: MemoryUnit, memory_id: UUID) -> Conflict:
    """Another transaction changed the memory between our read and our write."""
    now = unit.get(memory_id, include_forgotten=True)
    details = {"current_version": now.version} if now is not None else {}
    return Conflict("the memory changed meanwhile; read it again", details=details)


# --- cursors: base64url(JSON) of the last row's sort key and the filter's fingerprint ------------------


def _filter_fingerprint(filter: ListFilter) -> str:
    key = filter.model_dump(mode="json", include={"types", "since", "until", "include_archived"})
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _encode_cursor(created_at: datetime, memory_id: UUID, fingerprint: str) -> str:
    body = json.dumps(
        {"c": created_at.isoformat(), "i": str(memory_id), "f": fingerprint}, separators=(",", ":")
    )
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, fingerprint: str) -> tuple[datetime, UUID]:
    invalid = ValidationFailed(
        "invalid cursor: pass next_cursor from the previous page, with the same filters"
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
        if not isinstance(body, dict) or set(body) != {"c", "i", "f"} or body["f"] != fingerprint:
            raise invalid
        created_at = datetime.fromisoformat(body["c"])
        if created_at.tzinfo is None:
            raise invalid
        return created_at, UUID(body["i"])
    except (binascii.Error, ValueError, TypeError, AttributeError) as error:
        raise invalid from error
