"""The memory service against an in-memory store and a deterministic hash embedder."""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from companion_memory.domain.memory import MemoryPolicy, MemoryService
from companion_memory.errors import (
    CompanionMemoryError,
    Conflict,
    DependencyUnavailable,
    NotFound,
    ValidationFailed,
)
from companion_memory.models.memory import (
    ListFilter,
    MemoryChanges,
    MemoryType,
    NewMemory,
    RecallQuery,
)
from companion_memory.models.tenancy import ALL_USERS, TenantScope
from tests.support.cipher import FakeCipher
from tests.support.clock import FakeClock
from tests.support.embedders import HashEmbedder, cosine
from tests.support.memory_store import InMemoryMemoryStore


@dataclass
class Env:
    service: MemoryService
    store: InMemoryMemoryStore
    embedder: HashEmbedder
    clock: FakeClock
    cipher: FakeCipher
    companion: UUID

    def scope(self, user: str = "alice") -> TenantScope:
        return TenantScope(companion_id=self.companion, user_id=user)

    def store_text(self, content: str, user: str = "alice", **fields: Any) -> Any:
        return self.service.store(self.scope(user), NewMemory(content=content, **fields)).memory


def _env(isolation: str = "standard", policy: MemoryPolicy | None = None, with_cipher: bool = True) -> Env:
    companion = uuid4()
    store = InMemoryMemoryStore({companion: isolation})
    embedder, clock, cipher = HashEmbedder(), FakeClock(), FakeCipher()
    service = MemoryService(store, embedder, clock, cipher=cipher if with_cipher else None, policy=policy)
    return Env(service, store, embedder, clock, cipher, companion)


@pytest.fixture
def env() -> Env:
    return _env()


# --- store: defaults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type", "importance"),
    [("instruction", 8.0), ("preference", 6.0), ("fact", 5.0), ("experience", 4.0), ("reflection", 3.0)],
)
def test_importance_defaults_by_type(env: Env, type: MemoryType, importance: float) -> None:
    # Given no importance, When stored, Then the type's default applies
    assert env.store_text("the user plays chess on sundays", type=type).importance == importance


def test_an_explicit_importance_wins_over_the_default(env: Env) -> None:
    assert env.store_text("plays chess", type="fact", importance=9.5).importance == 9.5


def test_occurred_at_defaults_to_now_and_a_given_past_is_kept(env: Env) -> None:
    past = datetime(2019, 5, 1, 8, 30, tzinfo=UTC)
    assert env.store_text("moved to Lisbon").occurred_at == env.clock.now()
    assert env.store_text("graduated from school", occurred_at=past).occurred_at == past


@pytest.mark.parametrize(
    ("type", "importance", "lifetime_days"),
    [
        ("instruction", 0.0, None),
        ("preference", 1.0, None),
        ("fact", 5.0, None),
        ("fact", 2.0, 365),
        ("experience", 8.0, None),
        ("experience", 5.0, 365),
        ("experience", 2.0, 90),
        ("reflection", 7.0, None),
        ("reflection", 3.0, 180),
    ],
)
def test_expiry_defaults_by_type_and_importance(
    env: Env, type: MemoryType, importance: float, lifetime_days: int | None
) -> None:
    # Given an old event imported today, When stored, Then its lifetime counts from today, not from then
    memory = env.store_text(
        "went hiking", type=type, importance=importance, occurred_at=datetime(2020, 1, 1, tzinfo=UTC)
    )
    expected = None if lifetime_days is None else env.clock.now() + timedelta(days=lifetime_days)
    assert memory.expires_at == expected


def test_an_explicit_expiry_wins_even_for_instructions(env: Env) -> None:
    until = env.clock.now() + timedelta(hours=2)
    assert env.store_text("speak French today", type="instruction", expires_at=until).expires_at == until


def test_metadata_round_trips_verbatim(env: Env) -> None:
    # Given nested objects, unicode, numbers of every kind, booleans, nulls and lists
    metadata = {
        "source": "import",
        "nested": {"deep": {"list": [1, 2.5, -3e-7, True, None, "ü"], "empty": {}}},
        "unicode": "日本語 — ça va? 🍵",
        "big": 12345678901234567,
        "zero": 0,
        "float": 0.1,
    }
    # When stored and read back
    stored = env.store_text("likes matcha", metadata=metadata)
    fetched = env.service.get(env.scope(), stored.id)
    # Then it is the same JSON value, key for key
    assert fetched.metadata == metadata
    assert json.dumps(fetched.metadata, sort_keys=True) == json.dumps(metadata, sort_keys=True)


def test_a_batch_is_embedded_in_one_call_and_never_as_a_query(env: Env) -> None:
    items = [NewMemory(content=text) for text in ("owns a cat", "works as a nurse", "hates mornings")]
    results = env.service.store_many(env.scope(), items)
    assert [r.outcome for r in results] == ["created"] * 3
    assert env.embedder.document_calls == [["owns a cat", "works as a nurse", "hates mornings"]]
    assert env.embedder.query_calls == []


def test_a_batch_over_the_limit_is_rejected_before_anything_is_embedded_or_written() -> None:
    env = _env(policy=MemoryPolicy(max_batch=2))
    with pytest.raises(ValidationFailed, match="at most 2"):
        env.service.store_many(env.scope(), [NewMemory(content=f"item {i}") for i in range(3)])
    assert env.embedder.document_calls == []
    assert env.store.state.memories == {}


def test_an_empty_batch_embeds_nothing(env: Env) -> None:
    assert env.service.store_many(env.scope(), []) == []
    assert env.embedder.document_calls == []


class _DownEmbedder(HashEmbedder):
    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        raise DependencyUnavailable("embedding model unreachable")


def test_an_embedder_outage_is_retryable_and_writes_nothing() -> None:
    # Given an embedder that cannot be reached
    companion = uuid4()
    store = InMemoryMemoryStore({companion: "standard"})
    service = MemoryService(store, _DownEmbedder(), FakeClock())
    # When storing, Then the caller gets a retryable error and no half-written memory exists
    with pytest.raises(DependencyUnavailable) as raised:
        service.store(TenantScope(companion_id=companion, user_id="alice"), NewMemory(content="x"))
    assert raised.value.retryable
    assert store.state.memories == {}
    assert store.state.history == []


def test_an_embedder_returning_vectors_of_the_wrong_size_is_refused(env: Env) -> None:
    class Short(HashEmbedder):
        def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
            return [[1.0, 0.0] for _ in texts]

    service = MemoryService(env.store, Short(), env.clock)
    with pytest.raises(CompanionMemoryError, match="wrong number or size"):
        service.store(env.scope(), NewMemory(content="x"))
    assert env.store.state.memories == {}


# --- store: near-duplicates ----------------------------------------------------------------------------


def test_storing_the_same_memory_again_reinforces_it(env: Env) -> None:
    # Given a stored preference
    first = env.store_text("loves green tea in the morning", type="preference")
    env.clock.advance(timedelta(days=1))
    # When the same words are stored again
    result = env.service.store(
        env.scope(), NewMemory(content="Loves green tea, in the morning!", type="preference")
    )
    # Then the existing memory is strengthened instead of copied
    assert result.outcome == "reinforced"
    assert result.duplicate_of == first.id
    assert result.similarity == pytest.approx(1.0)
    memory = result.memory
    assert (memory.id, memory.version, memory.reinforcement_count) == (first.id, 2, 1)
    assert memory.importance == pytest.approx(6.0 + (10 - 6.0) * 0.1)
    assert memory.accessed_at == env.clock.now()
    assert memory.content == "loves green tea in the morning"
    assert len(env.store.state.memories) == 1
    with env.store.unit(env.scope()) as unit:
        assert [h.change for h in unit.history(first.id)] == ["created", "reinforced"]


def test_a_similar_memory_that_adds_detail_gives_the_existing_one_its_wording(env: Env) -> None:
    first = env.store_text("loves green tea in the morning", metadata={"a": 1})
    detailed = "loves green tea with honey in the morning"
    similarity = cosine(env.embedder.vector(first.content), env.embedder.vector(detailed))
    policy = env.service.policy
    assert policy.update_threshold <= similarity < policy.reinforce_threshold  # the band under test
    # When the more detailed wording is stored
    result = env.service.store(env.scope(), NewMemory(content=detailed, metadata={"b": 2}))
    # Then the existing memory takes it (new version, new vector), and reports how similar they were
    assert result.outcome == "updated"
    assert result.similarity == pytest.approx(similarity)
    assert (result.memory.id, result.memory.version, result.memory.content) == (first.id, 2, detailed)
    assert result.memory.metadata == {"a": 1, "b": 2}
    assert env.store.state.embeddings[(first.id, env.embedder.model_id)] == env.embedder.vector(detailed)
    with env.store.unit(env.scope()) as unit:
        assert [h.change for h in unit.history(first.id)] == ["created", "updated"]


def test_a_different_statement_about_the_same_subject_is_a_new_memory(env: Env) -> None:
    env.store_text("loves green tea in the morning")
    result = env.service.store(env.scope(), NewMemory(content="hates black coffee at night"))
    assert result.outcome == "created"
    assert result.duplicate_of is None
    assert len(env.store.state.memories) == 2


def test_a_similar_statement_that_swaps_a_detail_is_a_new_memory(env: Env) -> None:
    # Given "Paris" (similarity 0.8 by shared words), When "Rome" is stored, Then both are kept:
    # the new wording drops a word of the old one, so it is another fact, not more detail
    paris = env.store_text("went to Paris for tea", type="experience")
    result = env.service.store(env.scope(), NewMemory(content="went to Rome for tea", type="experience"))
    assert result.outcome == "created"
    assert env.service.get(env.scope(), paris.id).content == "went to Paris for tea"


def test_a_duplicate_of_another_type_or_another_user_is_a_new_memory(env: Env) -> None:
    env.store_text("plays the piano", type="fact")
    assert (
        env.service.store(env.scope(), NewMemory(content="plays the piano", type="preference")).outcome
        == "created"
    )
    assert (
        env.service.store(env.scope("bob"), NewMemory(content="plays the piano", type="fact")).outcome
        == "created"
    )


def test_dedupe_thresholds_come_from_the_policy() -> None:
    # Given a policy that only merges exact vectors
    env = _env(policy=MemoryPolicy(reinforce_threshold=1.0, update_threshold=0.999))
    env.store_text("loves green tea in the morning")
    # When a more detailed wording (similarity about 0.88) is stored, Then it is new
    result = env.service.store(env.scope(), NewMemory(content="loves green tea with honey in the morning"))
    assert result.outcome == "created"


def test_duplicates_inside_one_batch_are_merged_in_order(env: Env) -> None:
    results = env.service.store_many(env.scope(), [NewMemory(content="owns a red bike")] * 2)
    assert [r.outcome for r in results] == ["created", "reinforced"]
    assert results[1].duplicate_of == results[0].memory.id


# --- scope ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("user", [None, ALL_USERS])
def test_user_operations_need_one_concrete_user(env: Env, user: str | None) -> None:
    scope = TenantScope(companion_id=env.companion, user_id=user)
    calls: list[Callable[[], object]] = [
        lambda: env.service.store(scope, NewMemory(content="x")),
        lambda: env.service.recall(scope, RecallQuery(query="x")),
        lambda: env.service.get(scope, uuid4()),
        lambda: env.service.list(scope, ListFilter()),
        lambda: env.service.forget(scope, uuid4(), 1),
        lambda: env.service.link(scope, uuid4(), uuid4(), "follows"),
    ]
    for call in calls:
        with pytest.raises(ValidationFailed, match="one companion and one of its users"):
            call()
    assert env.embedder.document_calls == []
    assert env.embedder.query_calls == []


def test_companion_search_needs_the_all_users_scope(env: Env) -> None:
    with pytest.raises(ValidationFailed, match="all users"):
        env.service.search_companion(env.scope(), RecallQuery(query="tea"))


def test_storing_for_an_invisible_companion_is_not_found() -> None:
    env = _env()
    scope = TenantScope(companion_id=uuid4(), user_id="alice")
    with pytest.raises(NotFound, match="companion"):
        env.service.store(scope, NewMemory(content="x"))


# --- recall --------------------------------------------------------------------------------------------


def test_recall_ranks_the_matching_memory_first_and_explains_the_score(env: Env) -> None:
    env.store_text("works as a nurse at the city hospital")
    tea = env.store_text("drinks green tea every morning", type="preference")
    env.store_text("has a sister called Maria")
    result = env.service.recall(env.scope(), RecallQuery(query="what tea does she drink?"))
    top = result.memories[0]
    assert top.id == tea.id
    assert top.score_parts.keyword == 1.0
    assert top.score_parts.vector == 1.0
    assert top.score_parts.importance == pytest.approx(0.6)
    assert top.score_parts.recency == 1.0
    assert [m.score for m in result.memories] == sorted((m.score for m in result.memories), reverse=True)
    assert all(0 <= m.score <= 1 for m in result.memories)


def test_recall_embeds_the_query_once_and_no_document(env: Env) -> None:
    env.store_text("owns a cat")
    calls_before = list(env.embedder.document_calls)
    env.service.recall(env.scope(), RecallQuery(query="pets"))
    assert env.embedder.query_calls == ["pets"]
    assert env.embedder.document_calls == calls_before


def test_recall_filters_by_type_and_time(env: Env) -> None:
    old = datetime(2024, 1, 1, tzinfo=UTC)
    env.store_text("went to Paris for tea", type="experience", occurred_at=old)
    recent = env.store_text("went to Rome for tea", type="experience")
    env.store_text("prefers tea to coffee", type="preference")
    by_type = env.service.recall(env.scope(), RecallQuery(query="tea", types=("experience",)))
    assert {m.type for m in by_type.memories} == {"experience"}
    since = env.service.recall(
        env.scope(), RecallQuery(query="tea", types=("experience",), since=old + timedelta(1))
    )
    assert [m.id for m in since.memories] == [recent.id]
    until = env.service.recall(env.scope(), RecallQuery(query="tea", until=old + timedelta(1)))
    assert [m.content for m in until.memories] == ["went to Paris for tea"]


def test_recall_leaves_out_forgotten_archived_and_expired_memories(env: Env) -> None:
    forgotten = env.store_text("tea one")
    archived = env.store_text("tea two")
    env.store_text("tea three", expires_at=env.clock.now() + timedelta(hours=1))
    kept = env.store_text("tea four")
    env.service.forget(env.scope(), forgotten.id, 1)
    record = env.store.state.memories[archived.id]
    env.store.state.memories[archived.id] = replace(record, archived_at=env.clock.now())
    env.clock.advance(timedelta(hours=2))
    result = env.service.recall(env.scope(), RecallQuery(query="tea"))
    assert [m.id for m in result.memories] == [kept.id]


def test_min_score_and_limit_apply_after_ranking(env: Env) -> None:
    for text in ("tea at dawn", "tea with milk", "tea and biscuits", "a yellow bicycle"):
        env.store_text(text)
    everything = env.service.recall(env.scope(), RecallQuery(query="tea"))
    assert len(everything.memories) == 4
    threshold = everything.memories[1].score
    above = env.service.recall(env.scope(), RecallQuery(query="tea", min_score=threshold))
    assert [m.id for m in above.memories] == [m.id for m in everything.memories if m.score >= threshold]
    limited = env.service.recall(env.scope(), RecallQuery(query="tea", limit=2))
    assert [m.id for m in limited.memories] == [m.id for m in everything.memories[:2]]


def test_recall_counts_an_access_for_the_returned_memories_only(env: Env) -> None:
    tea = env.store_text("tea at dawn")
    env.store_text("a yellow bicycle")
    env.clock.advance(timedelta(minutes=5))
    result = env.service.recall(env.scope(), RecallQuery(query="tea", limit=1))
    assert [m.id for m in result.memories] == [tea.id]
    assert env.store.touched == [[tea.id]]
    after = env.service.get(env.scope(), tea.id)
    assert (after.access_count, after.accessed_at) == (1, env.clock.now())


def test_importance_orders_equally_relevant_memories(env: Env) -> None:
    env.store_text("swims in the lake", type="fact")
    preference = env.store_text("swims in the lake", type="preference")
    result = env.service.recall(env.scope(), RecallQuery(query="swims lake"))
    assert result.memories[0].id == preference.id
    assert result.memories[0].score > result.memories[1].score


def test_recency_decays_with_the_half_life(env: Env) -> None:
    half_life = env.service.policy.recency_half_life
    env.store_text("swims in the lake", type="fact", importance=5, occurred_at=env.clock.now() - half_life)
    recent = env.store_text("swims in the lake", type="experience", importance=5)
    result = env.service.recall(env.scope(), RecallQuery(query="swims lake"))
    assert result.memories[0].id == recent.id
    assert result.memories[1].score_parts.recency == pytest.approx(0.5)


def test_recall_for_a_user_without_memories_is_empty(env: Env) -> None:
    assert env.service.recall(env.scope(), RecallQuery(query="anything at all")).memories == []


def test_a_user_never_recalls_another_users_memories(env: Env) -> None:
    env.store_text("tea lover", user="bob")
    assert env.service.recall(env.scope("alice"), RecallQuery(query="tea lover")).memories == []


def test_companion_search_covers_every_user_by_vector_only(env: Env) -> None:
    alice = env.store_text("plays chess in the park", user="alice")
    bob = env.store_text("plays chess online", user="bob")
    env.store_text("collects stamps", user="carol")
    scope = TenantScope(companion_id=env.companion, user_id=ALL_USERS)
    result = env.service.search_companion(scope, RecallQuery(query="plays chess", limit=2))
    assert {m.id for m in result.memories} == {alice.id, bob.id}
    assert all(m.score_parts.keyword == 0 for m in result.memories)
    assert env.store.ef_search == [env.service.policy.hnsw_ef_search]
    assert env.store.touched == []


# --- get, update, forget, restore ----------------------------------------------------------------------


def test_get_of_an_unknown_id_and_of_another_users_memory_look_the_same(env: Env) -> None:
    bobs = env.store_text("secret", user="bob")
    with pytest.raises(NotFound) as unknown:
        env.service.get(env.scope(), uuid4())
    with pytest.raises(NotFound) as foreign:
        env.service.get(env.scope(), bobs.id)
    assert unknown.value.message == foreign.value.message


def test_get_list_forget_and_link_never_embed(env: Env) -> None:
    a, b = env.store_text("one"), env.store_text("two different")
    calls = len(env.embedder.document_calls)
    env.service.get(env.scope(), a.id)
    env.service.list(env.scope(), ListFilter())
    env.service.link(env.scope(), a.id, b.id, "follows")
    env.service.forget(env.scope(), a.id, 1)
    assert len(env.embedder.document_calls) == calls
    assert env.embedder.query_calls == []


def test_update_with_a_stale_version_is_a_conflict_that_names_the_current_version(env: Env) -> None:
    memory = env.store_text("likes jazz")
    env.service.update(env.scope(), memory.id, MemoryChanges(expected_version=1, importance=7))
    with pytest.raises(Conflict) as conflict:
        env.service.update(env.scope(), memory.id, MemoryChanges(expected_version=1, importance=9))
    assert conflict.value.details == {"current_version": 2}
    assert env.service.get(env.scope(), memory.id).importance == 7


def test_update_of_content_re_embeds_once_and_keeps_history(env: Env) -> None:
    memory = env.store_text("likes jazz")
    updated = env.service.update(
        env.scope(), memory.id, MemoryChanges(expected_version=1, content="likes bebop")
    )
    assert (updated.content, updated.version) == ("likes bebop", 2)
    assert env.embedder.document_calls[-1] == ["likes bebop"]
    assert env.store.state.embeddings[(memory.id, env.embedder.model_id)] == env.embedder.vector(
        "likes bebop"
    )
    with env.store.unit(env.scope()) as unit:
        history = unit.history(memory.id)
    assert [(h.change, h.version, h.snapshot["content"]) for h in history] == [
        ("created", 1, "likes jazz"),
        ("updated", 2, "likes bebop"),
    ]


def test_update_without_new_content_does_not_embed(env: Env) -> None:
    memory = env.store_text("likes jazz")
    calls = len(env.embedder.document_calls)
    changed = env.service.update(
        env.scope(),
        memory.id,
        MemoryChanges(expected_version=1, importance=2, metadata={"k": [1]}, type="preference"),
    )
    assert (changed.importance, changed.metadata, changed.type, changed.version) == (
        2,
        {"k": [1]},
        "preference",
        2,
    )
    assert len(env.embedder.document_calls) == calls


def test_an_update_that_changes_nothing_keeps_the_version(env: Env) -> None:
    memory = env.store_text("likes jazz")
    same = env.service.update(env.scope(), memory.id, MemoryChanges(expected_version=1, content="likes jazz"))
    assert same.version == 1
    assert len(env.embedder.document_calls) == 1


def test_forget_hides_the_memory_and_purge_deletes_it_after_the_grace_period(env: Env) -> None:
    memory = env.store_text("old address")
    result = env.service.forget(env.scope(), memory.id, 1)
    assert result.purge_after == env.clock.now() + env.service.policy.forget_grace
    with pytest.raises(NotFound):
        env.service.get(env.scope(), memory.id)
    assert env.service.list(env.scope(), ListFilter()).items == []
    # Before the grace period ends nothing is purged
    assert env.service.purge_forgotten(result.purge_after - timedelta(seconds=1)) == 0
    assert memory.id in env.store.state.memories
    # After it, the memory and its vectors and history are gone for good
    assert env.service.purge_forgotten(result.purge_after) == 1
    assert memory.id not in env.store.state.memories
    assert not any(key[0] == memory.id for key in env.store.state.embeddings)


def test_forget_with_a_stale_version_is_a_conflict(env: Env) -> None:
    memory = env.store_text("old address")
    with pytest.raises(Conflict):
        env.service.forget(env.scope(), memory.id, 7)
    assert env.service.get(env.scope(), memory.id).version == 1


def test_restore_brings_a_forgotten_memory_back_within_the_grace_period(env: Env) -> None:
    memory = env.store_text("old address")
    env.service.forget(env.scope(), memory.id, 1)
    restored = env.service.restore(env.scope(), memory.id, 2)
    assert restored.version == 3
    assert env.service.get(env.scope(), memory.id).content == "old address"
    with env.store.unit(env.scope()) as unit:
        assert [h.change for h in unit.history(memory.id)] == ["created", "forgotten", "restored"]
    with pytest.raises(NotFound):
        env.service.restore(env.scope(), memory.id, 3)


# --- list ----------------------------------------------------------------------------------------------


def test_pages_cover_every_memory_once_newest_first(env: Env) -> None:
    ids = []
    for i in range(7):
        ids.append(env.store_text(f"memory number {i} about topic{i}").id)
        if i % 3 == 0:
            env.clock.advance(timedelta(seconds=1))  # some share a creation time: the id breaks the tie
    seen: list[UUID] = []
    cursor: str | None = None
    while True:
        page = env.service.list(env.scope(), ListFilter(limit=3, cursor=cursor))
        seen.extend(m.id for m in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(ids)
    assert len(seen) == 7
    created = [env.store.state.memories[i].created_at for i in seen]
    assert created == sorted(created, reverse=True)


def test_list_filters_by_type(env: Env) -> None:
    env.store_text("a fact here", type="fact")
    pref = env.store_text("a preference here", type="preference")
    assert [m.id for m in env.service.list(env.scope(), ListFilter(types=("preference",))).items] == [pref.id]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!!",
        "eyJ4IjoxfQ",  # {"x":1}
        "bnVsbA",  # null
        "W10",  # []
        "eyJjIjoiMjAyNi0wMS0xNVQxMjowMDowMCIsImkiOiJ4IiwiZiI6IngifQ",  # naive time, bad id, wrong filter
    ],
)
def test_a_garbage_cursor_is_a_validation_error(env: Env, cursor: str) -> None:
    with pytest.raises(ValidationFailed, match="invalid cursor"):
        env.service.list(env.scope(), ListFilter(cursor=cursor))


def test_a_cursor_only_works_with_the_filter_it_was_made_with(env: Env) -> None:
    for i in range(3):
        env.store_text(f"note {i} on subject{i}", type="fact")
    cursor = env.service.list(env.scope(), ListFilter(limit=1)).next_cursor
    assert cursor is not None
    with pytest.raises(ValidationFailed, match="invalid cursor"):
        env.service.list(env.scope(), ListFilter(limit=1, cursor=cursor, types=("fact",)))


# --- link ----------------------------------------------------------------------------------------------


def test_link_relates_two_memories_and_linking_again_replaces_the_metadata(env: Env) -> None:
    a, b = env.store_text("met Sam"), env.store_text("Sam moved to Oslo")
    first = env.service.link(env.scope(), a.id, b.id, "follows", {"note": 1})
    again = env.service.link(env.scope(), a.id, b.id, "follows", {"note": 2})
    assert (again.id, again.metadata, again.source_id, again.target_id) == (first.id, {"note": 2}, a.id, b.id)


def test_link_to_another_users_memory_is_not_found_like_an_unknown_id(env: Env) -> None:
    mine, bobs = env.store_text("mine"), env.store_text("his", user="bob")
    with pytest.raises(NotFound) as foreign:
        env.service.link(env.scope(), mine.id, bobs.id, "references")
    with pytest.raises(NotFound) as unknown:
        env.service.link(env.scope(), mine.id, uuid4(), "references")
    assert foreign.value.message == unknown.value.message
    assert env.store.state.relations == {}


def test_a_memory_cannot_be_linked_to_itself(env: Env) -> None:
    memory = env.store_text("alone")
    with pytest.raises(ValidationFailed):
        env.service.link(env.scope(), memory.id, memory.id, "follows")


# --- strict companions: sealed content -----------------------------------------------------------------


def test_a_strict_companion_keeps_content_only_sealed() -> None:
    env = _env(isolation="strict")
    memory = env.store_text("allergic to peanuts", summary="peanut allergy")
    record = env.store.state.memories[memory.id]
    assert record.content is None
    assert record.summary is None
    assert record.sealed is not None
    assert b"peanut" not in record.sealed
    # Reads open it
    fetched = env.service.get(env.scope(), memory.id)
    assert (fetched.content, fetched.summary) == ("allergic to peanuts", "peanut allergy")
    # History holds the ciphertext, never the plaintext
    with env.store.unit(env.scope()) as unit:
        snapshot = unit.history(memory.id)[0].snapshot
    assert "content" not in snapshot
    assert "summary" not in snapshot
    assert "content_sealed" in snapshot
    assert "peanut" not in json.dumps(snapshot)


def test_sealed_memories_are_recalled_by_vector_only() -> None:
    env = _env(isolation="strict")
    env.store_text("allergic to peanuts")
    result = env.service.recall(env.scope(), RecallQuery(query="peanuts allergy"))
    assert result.memories[0].content == "allergic to peanuts"
    assert result.memories[0].score_parts.keyword == 0.0
    assert result.memories[0].score_parts.vector == 1.0


def test_sealed_content_is_resealed_on_update_and_dedupe_compares_plaintext() -> None:
    env = _env(isolation="strict")
    memory = env.store_text("allergic to peanuts")
    assert env.service.store(env.scope(), NewMemory(content="allergic to peanuts")).outcome == "reinforced"
    updated = env.service.update(
        env.scope(), memory.id, MemoryChanges(expected_version=2, content="allergic to cashews")
    )
    assert updated.content == "allergic to cashews"
    assert b"cashews" not in (env.store.state.memories[memory.id].sealed or b"")


def test_a_strict_companion_without_a_cipher_stores_nothing() -> None:
    env = _env(isolation="strict", with_cipher=False)
    with pytest.raises(CompanionMemoryError, match="no cipher"):
        env.service.store(env.scope(), NewMemory(content="allergic to peanuts"))
    assert env.store.state.memories == {}


def test_policy_rejects_inconsistent_settings() -> None:
    with pytest.raises(ValueError, match="threshold"):
        MemoryPolicy(reinforce_threshold=0.7, update_threshold=0.8)
    with pytest.raises(ValueError, match="sum"):
        MemoryPolicy(importance_weight=0.5, recency_weight=0.5, reinforcement_weight=0.1)
