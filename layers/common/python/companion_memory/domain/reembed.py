"""Re-embedding: give every memory a vector of a new embedding model, in the background, without downtime.

Vectors of several models coexist per memory (``memory_embeddings`` is keyed by memory and model), and
recall reads only the configured model's vectors. So a model change is additive: the new model's vectors
are written beside the old ones while the service keeps recalling with the old model, and the switch is a
configuration change once every memory has both.

The procedure (README, "Changing the embedding model"):

1. ``companion-memory embedding-index --model <new model_id> --dims <n>``: the new model's HNSW index for
   companion-wide search, built CONCURRENTLY (writes go on).
2. ``companion-memory reembed --provider <new>`` until it reports ``remaining: 0``. The service keeps
   serving with the old model; memories stored meanwhile get the old model's vector only, and the next
   run picks them up. Forgotten memories are included, so a restore brings a memory back with its vectors.
3. Deploy with the new ``EMBEDDING_PROVIDER`` (and model settings): recall and stores use the new model.
4. ``companion-memory reembed --provider <new>`` once more, for memories stored between the last run of
   (2) and the deploy of (3) (or edited then). Until it has run, those memories alone are found by keyword:
   recall reads vectors of the configured model and they have none yet. Run it right after the deploy and
   the window is the deploy plus one run (seconds to minutes).
5. Later, optionally: drop the old model's HNSW index (``DROP INDEX CONCURRENTLY``, SQL in the README).
   Its vectors are harmless (recall never reads them; an edit deletes them); removing them in bulk needs a
   narrow delete policy and is not built yet.

A run is resumable and idempotent: it looks for memories that lack the target model's vector, so a run
that stopped half-way (or a second run) simply finds less to do, and a run with nothing to do writes
nothing. Two concurrent runs never claim the same memory and never insert a vector twice.

Embedding calls happen while a batch's claim is held (the claim is what keeps a second run off those
memories), but a claim locks no memory row: the app's reads and writes never wait for a model.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from companion_memory.errors import CompanionMemoryError, ValidationFailed
from companion_memory.observability import logger
from companion_memory.ports import Clock, ContentCipher, Embedder, PendingEmbedding, ReembedStore


@dataclass(frozen=True, slots=True)
class ReembedReport:
    """What a run did. ``remaining`` counts the memories still without a vector of ``model`` when the run
    ended (sealed ones it could not open included): 0 means the model can serve every memory."""

    model: str
    embedded: int
    skipped_sealed: int
    skipped_unreadable: int
    skipped_invalid: int
    changed_meanwhile: int
    batches: int
    remaining: int
    remaining_sealed: int
    dry_run: bool
    started_at: datetime
    finished_at: datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "embedded": self.embedded,
            "skipped_sealed": self.skipped_sealed,
            "skipped_unreadable": self.skipped_unreadable,
            "skipped_invalid": self.skipped_invalid,
            "changed_meanwhile": self.changed_meanwhile,
            "batches": self.batches,
            "remaining": self.remaining,
            "remaining_sealed": self.remaining_sealed,
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
        }


@dataclass
class _Tally:
    embedded: int = 0
    skipped_sealed: int = 0
    skipped_unreadable: int = 0
    skipped_invalid: int = 0
    changed_meanwhile: int = 0
    batches: int = 0


class Reembedder:
    """Adds the target embedder's vectors to every memory that lacks them, one claimed batch at a time."""

    def __init__(
        self,
        store: ReembedStore,
        embedder: Embedder,
        clock: Clock,
        *,
        cipher: ContentCipher | None = None,
        companion_id: UUID | None = None,
    ) -> None:
        """``companion_id`` limits the runs to one companion's memories (a large tenant first, or a test's
        own); by default they cover every tenant."""
        self._store = store
        self._embedder = embedder
        self._clock = clock
        self._cipher = cipher
        self._companion_id = companion_id

    @property
    def model(self) -> str:
        return self._embedder.model_id

    def run(self, batch_size: int = 256, max_batches: int | None = None) -> ReembedReport:
        """Embed batches until no memory is left to claim (or ``max_batches`` have run). Memories skipped
        (sealed without a cipher, unreadable, refused by the model, changed meanwhile) stay pending for a
        later run; this run goes past them, so it always ends."""
        if not 1 <= batch_size <= 2048:
            raise ValidationFailed("the batch size must be between 1 and 2048")
        if max_batches is not None and max_batches < 1:
            raise ValidationFailed("max_batches must be at least 1")
        started = self._clock.now()
        tally = _Tally()
        after: UUID | None = None
        while max_batches is None or tally.batches < max_batches:
            with self._store.claim(self.model, after, batch_size, self._companion_id) as batch:
                if batch.scanned_to is None:
                    break
                # Keyset on the id, so skipped memories are passed over rather than claimed forever.
                after = batch.scanned_to
                pending = list(batch.pending)
                texts = self._texts(pending, tally)
                vectors = self._vectors(texts, tally)
                inserted = batch.insert(self.model, vectors) if vectors else 0
            tally.batches += 1
            tally.embedded += inserted
            tally.changed_meanwhile += len(vectors) - inserted
            logger.info(
                "re-embedded a batch",
                extra={
                    "model": self.model,
                    "claimed": len(pending),
                    "embedded": inserted,
                    "batch": tally.batches,
                },
            )
        left = self._store.pending(self.model, self._companion_id)
        return ReembedReport(
            model=self.model,
            embedded=tally.embedded,
            skipped_sealed=tally.skipped_sealed,
            skipped_unreadable=tally.skipped_unreadable,
            skipped_invalid=tally.skipped_invalid,
            changed_meanwhile=tally.changed_meanwhile,
            batches=tally.batches,
            remaining=left.total,
            remaining_sealed=left.sealed,
            dry_run=False,
            started_at=started,
            finished_at=self._clock.now(),
        )

    def count(self) -> ReembedReport:
        """The dry run: how many memories lack the target model's vector; writes and embeds nothing."""
        started = self._clock.now()
        left = self._store.pending(self.model, self._companion_id)
        return ReembedReport(
            model=self.model,
            embedded=0,
            skipped_sealed=0,
            skipped_unreadable=0,
            skipped_invalid=0,
            changed_meanwhile=0,
            batches=0,
            remaining=left.total,
            remaining_sealed=left.sealed,
            dry_run=True,
            started_at=started,
            finished_at=self._clock.now(),
        )

    def _texts(
        self, pending: Sequence[PendingEmbedding], tally: _Tally
    ) -> list[tuple[PendingEmbedding, str]]:
        texts: list[tuple[PendingEmbedding, str]] = []
        for item in pending:
            if item.sealed is None:
                assert item.content is not None  # the schema holds exactly one of the two
                texts.append((item, item.content))
                continue
            if self._cipher is None:
                tally.skipped_sealed += 1
                continue
            try:
                texts.append((item, _sealed_content(self._cipher, item)))
            except CompanionMemoryError as error:
                if error.retryable:
                    raise  # the key service is down: stop here; a later run resumes
                # Shredded (companion deleted) or failing authentication: no run will ever read it.
                self._unreadable(item, error.code, tally)
            except (ValueError, KeyError, TypeError):
                self._unreadable(item, "malformed_payload", tally)
        return texts

    def _unreadable(self, item: PendingEmbedding, code: str, tally: _Tally) -> None:
        logger.warning(
            "sealed memory cannot be opened for re-embedding",
            extra={"memory_id": str(item.memory_id), "code": code},
        )
        tally.skipped_unreadable += 1

    def _vectors(
        self, texts: list[tuple[PendingEmbedding, str]], tally: _Tally
    ) -> list[tuple[PendingEmbedding, list[float]]]:
        if not texts:
            return []
        try:
            vectors = self._checked([text for _, text in texts])
            return [(item, vector) for (item, _), vector in zip(texts, vectors, strict=True)]
        except ValidationFailed:
            pass
        # The model refused some text of the batch: one text at a time, so one memory the new model cannot
        # embed does not hold back every other memory of its batch.
        embedded: list[tuple[PendingEmbedding, list[float]]] = []
        for item, text in texts:
            try:
                embedded.append((item, self._checked([text])[0]))
            except ValidationFailed:
                logger.warning(
                    "the embedding model refused a memory's text", extra={"memory_id": str(item.memory_id)}
                )
                tally.skipped_invalid += 1
        return embedded

    def _checked(self, texts: list[str]) -> list[list[float]]:
        vectors = self._embedder.embed_documents(texts)
        if len(vectors) != len(texts) or any(len(v) != self._embedder.dimensions for v in vectors):
            raise CompanionMemoryError("the embedder returned vectors of the wrong number or size")
        return vectors


def _sealed_content(cipher: ContentCipher, item: PendingEmbedding) -> str:
    """The content of a sealed memory: the JSON {"content", "summary"} that MemoryService seals. Only the
    content is embedded, as when the memory was stored."""
    assert item.sealed is not None
    payload = json.loads(cipher.open(item.companion_id, item.user_id, item.memory_id, item.sealed))
    return str(payload["content"])
