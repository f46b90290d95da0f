"""Re-embedding under a new model: the Reembedder against the in-memory stores and two hash embedders of
different dimensions (model A, the one memories were stored with; model B, the one being rolled out)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest

from companion_memory.domain.memory import MemoryService
from companion_memory.domain.reembed import Reembedder
from companion_memory.errors import ContentShredded, DependencyUnavailable, ValidationFailed
from companion_memory.models.memory import MemoryChanges, NewMemory, RecallQuery
from companion_memory.models.tenancy import TenantScope
from tests.support.cipher import FakeCipher
from tests.support.clock import FakeClock
from tests.support.embedders import HashEmbedder
from tests.support.memory_store import InMemoryMemoryStore
from tests.support.reembed_store import InMemoryReembedStore

TEXTS = [
    "drinks green tea every morning",
    "has a sister called Maria in Porto",
    "is learning to play the cello",
    "works night shifts at the hospital",
    "went to a jazz concert on friday",
]


@dataclass
class World:
    memories: InMemoryMemoryStore
    store: InMemoryReembedStore
    old: HashEmbedder
    new: HashEmbedder
    clock: FakeClock
    cipher: FakeCipher
    companion: UUID

    def scope(self, user: str = "alice") -> TenantScope:
        return TenantScope(companion_id=self.companion, user_id=user)

    def service(self, embedder: HashEmbedder) -> MemoryService:
        return MemoryService(self.memories, embedder, self.clock, cipher=self.cipher)

    def seed(self, texts: Sequence[str] = TEXTS, user: str = "alice") -> list[UUID]:
        results = self.service(self.old).store_many(self.scope(user), [NewMemory(content=t) for t in texts])
        return [r.memory.id for r in results]

    def vectors(self, model: str) -> dict[UUID, list[float]]:
        return {mid: v for (mid, m), v in self.memories.state.embeddings.items() if m == model}

    def reembedder(
        self, cipher: FakeCipher | None = None, embedder: HashEmbedder | None = None
    ) -> Reembedder:
        return Reembedder(self.store, embedder or self.new, self.clock, cipher=cipher)


def _world(isolation: str = "standard") -> World:
    companion = uuid4()
    memories = InMemoryMemoryStore({companion: isolation})
    old = HashEmbedder(16, model_id="test:model-a:16")
    new = HashEmbedder(24, model_id="test:model-b:24")
    return World(memories, InMemoryReembedStore(memories), old, new, FakeClock(), FakeCipher(), companion)


@pytest.fixture
def world() -> World:
    return _world()


def test_every_memory_ends_with_vectors_of_both_models_and_the_old_ones_are_untouched(world: World) -> None:
    # Given memories of two users stored with model A
    ids = world.seed() + world.seed(["likes hiking in the alps"], user="bob")
    before = world.vectors(world.old.model_id)
    # When re-embedded with model B
    report = world.reembedder().run(batch_size=256)
    # Then each memory has a model-B vector of B's size and of its own text; model A's are as they were
    new = world.vectors(world.new.model_id)
    assert set(new) == set(ids)
    assert all(len(v) == 24 for v in new.values())
    assert new[ids[0]] == world.new.vector(TEXTS[0])
    assert world.vectors(world.old.model_id) == before
    assert (report.embedded, report.remaining, report.skipped_sealed) == (len(ids), 0, 0)
    assert report.model == "test:model-b:24"


def test_a_second_run_finds_nothing_to_do_and_embeds_nothing(world: World) -> None:
    world.seed()
    world.reembedder().run()
    world.new.document_calls.clear()
    # When run again
    report = world.reembedder().run()
    # Then nothing is embedded or written
    assert (report.embedded, report.batches, report.remaining) == (0, 0, 0)
    assert world.new.document_calls == []


def test_memories_are_embedded_in_batches_with_one_embedding_call_per_batch(world: World) -> None:
    world.seed()
    report = world.reembedder().run(batch_size=2)
    assert [len(call) for call in world.new.document_calls] == [2, 2, 1]
    assert report.batches == 3
    assert report.embedded == 5


def test_a_run_stopped_after_max_batches_reports_what_is_left_and_the_next_run_resumes(world: World) -> None:
    world.seed()
    first = world.reembedder().run(batch_size=2, max_batches=1)
    assert (first.embedded, first.remaining) == (2, 3)
    second = world.reembedder().run(batch_size=2)
    assert (second.embedded, second.remaining) == (3, 0)
    # Each memory was embedded once in all
    assert sum(len(call) for call in world.new.document_calls) == 5


def test_forgotten_memories_are_re_embedded_so_a_restore_finds_its_vector(world: World) -> None:
    # Given a forgotten memory (within its grace period)
    memory_id = world.seed(["plays the violin"])[0]
    world.service(world.old).forget(world.scope(), memory_id, expected_version=1)
    # When re-embedded
    world.reembedder().run()
    # Then it has the new model's vector
    assert memory_id in world.vectors(world.new.model_id)


def test_a_memory_stored_meanwhile_with_the_old_model_is_picked_up_by_the_next_run(world: World) -> None:
    world.seed()
    world.reembedder().run()
    # Given a memory stored after the run, while the service still uses model A
    late = world.seed(["adopted a puppy named Biscuit"])[0]
    assert world.reembedder().count().remaining == 1
    # When run again, Then only that memory is embedded
    report = world.reembedder().run()
    assert (report.embedded, report.remaining) == (1, 0)
    assert late in world.vectors(world.new.model_id)


def test_the_dry_run_counts_and_neither_embeds_nor_writes(world: World) -> None:
    world.seed()
    report = world.reembedder().count()
    assert (report.dry_run, report.remaining, report.embedded) == (True, 5, 0)
    assert world.new.document_calls == []
    assert world.vectors(world.new.model_id) == {}


def test_recall_with_the_new_model_uses_vectors_after_the_switch(world: World) -> None:
    # Given memories stored with model A and re-embedded with model B
    ids = world.seed()
    world.reembedder().run()
    # When a service configured with model B recalls
    result = world.service(world.new).recall(world.scope(), RecallQuery(query="cello lessons"))
    # Then memories are found by vector, not by keyword alone
    top = result.memories[0]
    assert top.id == ids[2]
    assert top.score_parts.vector > 0


def test_sealed_memories_are_skipped_and_reported_without_a_cipher() -> None:
    world = _world(isolation="strict")
    world.seed(["keeps a diary in French", "is allergic to peanuts"])
    # When run without a cipher
    report = world.reembedder(cipher=None).run()
    # Then they are skipped, reported, and still pending; nothing was embedded
    assert (report.embedded, report.skipped_sealed) == (0, 2)
    assert (report.remaining, report.remaining_sealed) == (2, 2)
    assert world.new.document_calls == []


def test_sealed_memories_are_opened_with_the_cipher_and_embedded_from_their_plaintext() -> None:
    world = _world(isolation="strict")
    ids = world.seed(["keeps a diary in French"])
    report = world.reembedder(cipher=world.cipher).run()
    assert (report.embedded, report.skipped_sealed, report.remaining) == (1, 0, 0)
    assert world.vectors(world.new.model_id)[ids[0]] == world.new.vector("keeps a diary in French")


class _ShreddingCipher(FakeCipher):
    """Refuses one companion's content as a deleted (crypto-shredded) companion's would be refused."""

    def __init__(self, shredded: UUID, failure: Exception | None = None) -> None:
        super().__init__()
        self._shredded = shredded
        self._failure = failure or ContentShredded("the companion was deleted")

    def open(self, companion_id: UUID, user_id: str, memory_id: UUID, sealed: bytes) -> str:
        if companion_id == self._shredded:
            raise self._failure
        return super().open(companion_id, user_id, memory_id, sealed)


def test_a_sealed_memory_that_can_no_longer_be_opened_is_skipped_and_the_rest_embedded() -> None:
    world = _world(isolation="strict")
    world.seed(["keeps a diary in French"])
    shredded = uuid4()
    world.memories.companions[shredded] = "strict"
    service = world.service(world.old)
    service.store(TenantScope(companion_id=shredded, user_id="zoe"), NewMemory(content="speaks Basque"))
    report = world.reembedder(cipher=_ShreddingCipher(shredded)).run()
    assert (report.embedded, report.skipped_unreadable, report.remaining) == (1, 1, 1)


def test_a_key_service_outage_stops_the_run_and_writes_nothing_of_that_batch() -> None:
    world = _world(isolation="strict")
    world.seed(["keeps a diary in French"])
    cipher = _ShreddingCipher(world.companion, DependencyUnavailable("the key service is unavailable"))
    with pytest.raises(DependencyUnavailable):
        world.reembedder(cipher=cipher).run()
    assert world.vectors(world.new.model_id) == {}
    assert world.store.held == set()  # the claim ended with the failed batch


class _PickyEmbedder(HashEmbedder):
    """Refuses any text containing a word, as a provider refuses text it cannot embed."""

    def __init__(self, refused: str) -> None:
        super().__init__(24, model_id="test:model-b:24")
        self._refused = refused

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if any(self._refused in text for text in texts):
            raise ValidationFailed("the embedding service rejected the text")
        return super().embed_documents(texts)


def test_a_text_the_new_model_refuses_is_skipped_and_its_batch_mates_are_embedded(world: World) -> None:
    ids = world.seed()
    report = world.reembedder(embedder=_PickyEmbedder("cello")).run()
    assert (report.embedded, report.skipped_invalid, report.remaining) == (4, 1, 1)
    assert ids[2] not in world.vectors("test:model-b:24")


class _MeddlingEmbedder(HashEmbedder):
    """Runs ``meanwhile`` during its first embedding call: what another process does while a batch embeds."""

    def __init__(self, meanwhile: Callable[[], None]) -> None:
        super().__init__(24, model_id="test:model-b:24")
        self._meanwhile: Callable[[], None] | None = meanwhile

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
        return super().embed_documents(texts)


def test_a_memory_edited_while_its_batch_embeds_gets_no_stale_vector(world: World) -> None:
    # Given a memory whose content is edited while the re-embedding batch holding it is being embedded
    memory_id = world.seed(["plays the violin"])[0]

    def edit() -> None:
        world.service(world.old).update(
            world.scope(), memory_id, MemoryChanges(expected_version=1, content="plays the viola")
        )

    report = world.reembedder(embedder=_MeddlingEmbedder(edit)).run()
    # Then the vector of the old text is not written: the memory stays pending for the next run
    assert (report.embedded, report.changed_meanwhile, report.remaining) == (0, 1, 1)
    world.reembedder().run()
    assert world.vectors(world.new.model_id)[memory_id] == world.new.vector("plays the viola")


def test_a_concurrent_run_skips_the_memories_another_run_holds(world: World) -> None:
    # Given a second run starting while the first one embeds its first batch
    world.seed()
    inner: list[int] = []

    def second_run() -> None:
        inner.append(world.reembedder().run(batch_size=2).embedded)

    outer = world.reembedder(embedder=_MeddlingEmbedder(second_run)).run(batch_size=2)
    # Then between them every memory is embedded exactly once
    assert outer.embedded + inner[0] == 5
    assert len(world.vectors(world.new.model_id)) == 5


@pytest.mark.parametrize(("batch_size", "max_batches"), [(0, None), (2049, None), (10, 0)])
def test_batch_limits_out_of_range_are_refused(
    world: World, batch_size: int, max_batches: int | None
) -> None:
    with pytest.raises(ValidationFailed):
        world.reembedder().run(batch_size=batch_size, max_batches=max_batches)


def test_a_run_limited_to_one_companion_leaves_the_others_pending(world: World) -> None:
    # Given memories of two companions
    world.seed()
    other = uuid4()
    world.memories.companions[other] = "standard"
    world.service(world.old).store(TenantScope(companion_id=other, user_id="zoe"), NewMemory(content="sings"))
    # When the run is limited to the first companion
    report = Reembedder(world.store, world.new, world.clock, companion_id=world.companion).run()
    # Then only its memories are embedded, and what is left is counted within the companion
    assert (report.embedded, report.remaining) == (5, 0)
    assert world.reembedder().count().remaining == 1
