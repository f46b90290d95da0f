"""The companion import file is checked whole before anything is written: each kind of bad line is named.
Export pages stay within their byte cap, their cursors within their companion; an import goes only into an
active companion, created with its claim or not at all."""

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from companion_memory.auth.principal import Principal
from companion_memory.domain.companion_transfer import CompanionTransfer
from companion_memory.domain.identity import IdentityService
from companion_memory.domain.memory import MemoryService
from companion_memory.domain.memory_import import MemoryImporter
from companion_memory.errors import Conflict, DependencyUnavailable, IllegalTransition, ValidationFailed
from companion_memory.models.companion_export import MAX_MEMORY_LINE_BYTES, ExportedMemory
from companion_memory.models.identity import AuditEvent, Companion
from companion_memory.models.memory import MAX_CONTENT_CHARS, MAX_METADATA_BYTES, NewMemory, Relation
from companion_memory.models.tenancy import TenantScope
from tests.support.clock import FakeClock
from tests.support.embedders import HashEmbedder
from tests.support.identity import InMemoryIdentityStore, active_companion
from tests.support.memory_store import InMemoryMemoryStore


class UntouchedKeys:
    """An import key store no malformed file may reach."""

    def claim(
        self, scope: TenantScope, keys: Sequence[str], now: datetime, stale_before: datetime
    ) -> tuple[set[str], dict[str, UUID | None]]:
        raise AssertionError("a malformed file reached the import keys")

    def complete(self, scope: TenantScope, memory_ids: dict[str, UUID]) -> None:
        raise AssertionError("a malformed file reached the import keys")

    def release(self, scope: TenantScope, keys: Sequence[str]) -> None:
        raise AssertionError("a malformed file reached the import keys")


class UntouchedTransfers:
    def users_page(self, owner_id: UUID, companion_id: UUID, after: str | None, limit: int) -> list[str]:
        return []

    def relations_page(
        self, owner_id: UUID, companion_id: UUID, user_id: str, after: UUID | None, limit: int
    ) -> list[Relation]:
        return []

    def imported(self, scope: TenantScope, keys: Sequence[str]) -> dict[str, UUID]:
        raise AssertionError("a malformed file reached the store")

    def archive(self, scope: TenantScope, memory_ids: Sequence[UUID], at: datetime) -> int:
        raise AssertionError("a malformed file reached the store")

    def import_target(self, owner_id: UUID, source_companion_id: UUID) -> Companion | None:
        raise AssertionError("a malformed file reached the store")

    def claim_target(
        self, owner_id: UUID, source_companion_id: UUID, now: datetime, stale_before: datetime
    ) -> bool:
        raise AssertionError("a malformed file reached the store")

    def create_target(
        self, companion: Companion, audit: AuditEvent, source_companion_id: UUID, claimed_at: datetime
    ) -> None:
        raise AssertionError("a malformed file reached the store")

    def release_target(self, owner_id: UUID, source_companion_id: UUID, claimed_at: datetime) -> None:
        raise AssertionError("a malformed file reached the store")


@dataclass
class MemoryTransfers(UntouchedTransfers):
    """The transfer store over the in-memory memory store, and an import mapping whose answers a test sets."""

    memories: InMemoryMemoryStore
    target: Companion | None = None
    claims: bool = True
    create_fails: type[Exception] | None = None
    released: list[datetime] = field(default_factory=list)

    def users_page(self, owner_id: UUID, companion_id: UUID, after: str | None, limit: int) -> list[str]:
        users = {m.user_id for m in self.memories.state.memories.values() if m.forgotten_at is None}
        return sorted(user for user in users if after is None or user > after)[:limit]

    def relations_page(
        self, owner_id: UUID, companion_id: UUID, user_id: str, after: UUID | None, limit: int
    ) -> list[Relation]:
        mine = self.memories.state.memories
        rows = sorted(
            (r for r in self.memories.state.relations.values() if mine[r.source_id].user_id == user_id),
            key=lambda r: str(r.id),
        )
        return [r for r in rows if after is None or str(r.id) > str(after)][:limit]

    def import_target(self, owner_id: UUID, source_companion_id: UUID) -> Companion | None:
        return self.target

    def claim_target(
        self, owner_id: UUID, source_companion_id: UUID, now: datetime, stale_before: datetime
    ) -> bool:
        return self.claims

    def create_target(
        self, companion: Companion, audit: AuditEvent, source_companion_id: UUID, claimed_at: datetime
    ) -> None:
        if self.create_fails is not None:
            raise self.create_fails("the claim was taken over, or the database failed")
        self.target = companion

    def release_target(self, owner_id: UUID, source_companion_id: UUID, claimed_at: datetime) -> None:
        self.released.append(claimed_at)


OWNER = Principal(kind="owner", owner_id=uuid4(), scopes=frozenset({"admin"}), key_id=uuid4())
HEADER = {
    "kind": "header",
    "format": "companion-memory/companion-export",
    "format_version": 1,
    "exported_at": "2026-01-15T12:00:00+00:00",
    "source_companion_id": str(uuid4()),
    "companion": {"name": "Ava", "config": {}, "isolation_level": "standard", "version": "1.2.0"},
}
MEMORY_ID = str(uuid4())
MEMORY = {
    "kind": "memory",
    "user_id": "alice",
    "id": MEMORY_ID,
    "type": "fact",
    "content": "Alice keeps bees",
    "importance": 5,
    "occurred_at": "2025-06-01T08:00:00+00:00",
}


@pytest.fixture
def identity() -> InMemoryIdentityStore:
    return InMemoryIdentityStore()


@pytest.fixture
def transfer(identity: InMemoryIdentityStore) -> CompanionTransfer:
    clock = FakeClock()
    memory = MemoryService(InMemoryMemoryStore(), HashEmbedder(), clock)
    return CompanionTransfer(
        IdentityService(identity, clock),
        identity,
        memory,
        MemoryImporter(memory, UntouchedKeys(), clock),
        UntouchedTransfers(),
        clock,
        max_bytes=4096,
    )


def _file(*lines: object) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


@pytest.mark.parametrize(
    ("body", "line", "says"),
    [
        (_file(MEMORY), 1, "expected a line of kind 'header'"),
        (_file(HEADER | {"format_version": 2}), 1, "format_version"),
        (_file(HEADER, MEMORY, '{"kind": "memory", "content": '), 3, "not JSON"),
        (_file(HEADER, MEMORY | {"kind": "vector"}), 2, "expected a line of kind 'memory' or 'relation'"),
        (_file(HEADER, HEADER), 2, "expected a line of kind 'memory' or 'relation'"),
        (_file(HEADER, MEMORY, MEMORY | {"content": "again"}), 3, "already on line 2"),
        (_file(HEADER, MEMORY | {"embedding": [0.1, 0.2]}), 2, "embedding"),
        (_file(HEADER, MEMORY | {"user_id": "*"}), 2, "user_id"),
        (
            _file(HEADER, MEMORY, MEMORY | {"id": str(uuid4()), "metadata": {"note": "a\u0000b"}}),
            3,
            "NUL",
        ),
        (
            _file(
                HEADER,
                {
                    "kind": "relation",
                    "user_id": "alice",
                    "source_id": MEMORY_ID,
                    "target_id": MEMORY_ID,
                    "type": "follows",
                },
            ),
            2,
            "itself",
        ),
    ],
    ids=[
        "no header",
        "future format",
        "broken JSON",
        "unknown kind",
        "second header",
        "duplicate id",
        "a vector",
        "a wildcard user",
        "unstorable metadata",
        "self relation",
    ],
)
def test_a_malformed_line_is_named_and_nothing_is_written(
    transfer: CompanionTransfer, identity: InMemoryIdentityStore, body: bytes, line: int, says: str
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        transfer.import_file(OWNER, body)
    assert raised.value.args[0].startswith(f"line {line}: ")
    assert says in raised.value.args[0]
    assert raised.value.details["errors"][0]["line"] == line
    assert identity.companions == {}


def test_an_oversized_or_empty_file_is_refused_before_it_is_read(transfer: CompanionTransfer) -> None:
    with pytest.raises(ValidationFailed, match="at most 4096 bytes"):
        transfer.import_file(OWNER, _file(HEADER, MEMORY | {"content": "x" * 5000}))
    with pytest.raises(ValidationFailed, match="empty"):
        transfer.import_file(OWNER, b"\n \n")


def test_a_tampered_export_cursor_is_refused(
    transfer: CompanionTransfer, identity: InMemoryIdentityStore
) -> None:
    companion = active_companion(uuid4(), OWNER.owner_id)
    identity.companions[companion.id] = companion
    for cursor in ["not-base64!", "eyJ1IjogMX0", "W10"]:
        with pytest.raises(ValidationFailed, match="cursor"):
            transfer.export_page(OWNER, companion.id, 10, cursor)


def test_an_export_of_a_companion_without_memories_is_its_header_alone(
    transfer: CompanionTransfer, identity: InMemoryIdentityStore
) -> None:
    companion = active_companion(uuid4(), OWNER.owner_id, {"limits": {"requests_per_minute": 5}})
    identity.companions[companion.id] = companion
    page = transfer.export_page(OWNER, companion.id, 10, None)
    assert page.next_cursor is None
    (header,) = [json.loads(line) for line in page.lines]
    assert header["companion"]["config"] == {"limits": {"requests_per_minute": 5}}
    assert datetime.fromisoformat(header["exported_at"]) == datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


# --- export pages within their byte cap ---------------------------------------------------------------------


def test_no_exported_memory_line_outgrows_the_size_a_page_reserves_for_one() -> None:
    # Given the largest memory a user can store: every character a control character (JSON's longest
    # escape), metadata at its limit, the longest user id
    metadata = {"pad": "\u00e9" * ((MAX_METADATA_BYTES - 20) // 6)}
    assert len(json.dumps(metadata, separators=(",", ":")).encode()) <= MAX_METADATA_BYTES
    line = ExportedMemory(
        user_id="\u0001" * 200,
        id=uuid4(),
        type="experience",
        content="\u0001" * MAX_CONTENT_CHARS,
        summary="\u0001" * 500,
        metadata=metadata,
        importance=9.5,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        expires_at=datetime(2027, 1, 1, tzinfo=UTC),
        archived=True,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    # Then its JSON line fits in what a page reserves for one memory
    assert len(line.model_dump_json().encode()) + 1 <= MAX_MEMORY_LINE_BYTES


@dataclass
class Seeded:
    transfer: CompanionTransfer
    companion: Companion
    memory_ids: set[UUID]
    relation_ids: set[UUID]


def _seeded(identity: InMemoryIdentityStore, page_bytes: int) -> Seeded:
    """Two users with 12 large memories each (10,000 two-byte characters, 16 KB of metadata), each memory
    related to the next with 16 KB of metadata too."""
    clock = FakeClock()
    companion = active_companion(uuid4(), OWNER.owner_id)
    identity.companions[companion.id] = companion
    store = InMemoryMemoryStore({companion.id: "standard"})
    memory = MemoryService(store, HashEmbedder(), clock)
    memory_ids: set[UUID] = set()
    relation_ids: set[UUID] = set()
    for user in ("alice", "bob"):
        scope = TenantScope(owner_id=OWNER.owner_id, companion_id=companion.id, user_id=user)
        stored = memory.store_many(
            scope,
            [
                NewMemory(
                    content=f"{n} " + "\u00e9" * (MAX_CONTENT_CHARS - 3), metadata={"pad": "m" * 16_000}
                )
                for n in range(12)
            ],
            verbatim=True,
        )
        ids = [result.memory.id for result in stored]
        memory_ids.update(ids)
        for source, target in itertools.pairwise(ids):
            relation_ids.add(memory.link(scope, source, target, "related_to", {"pad": "r" * 16_000}).id)
    transfers = MemoryTransfers(store)
    transfer = CompanionTransfer(
        IdentityService(identity, clock),
        identity,
        memory,
        MemoryImporter(memory, UntouchedKeys(), clock),
        transfers,
        clock,
        page_bytes=page_bytes,
    )
    return Seeded(transfer, companion, memory_ids, relation_ids)


def test_an_export_page_never_outgrows_its_byte_cap_and_every_line_comes_exactly_once(
    identity: InMemoryIdentityStore,
) -> None:
    # Given 24 memories of about 36 KB each and 22 relations of 16 KB, and pages capped at 300,000 bytes
    seeded = _seeded(identity, page_bytes=300_000)
    # When the owner exports at 1,000 memories a page (the count alone would put everything on one page)
    pages, cursor = [], None
    while True:
        page = seeded.transfer.export_page(OWNER, seeded.companion.id, 1_000, cursor)
        pages.append(page.lines)
        cursor = page.next_cursor
        if cursor is None:
            break
        assert len(pages) < 100, "the export never ends"
    # Then no page passes the cap, each starts with the header, and every memory and relation comes once
    assert len(pages) > 2
    assert all(sum(len(line.encode()) + 1 for line in lines) <= 300_000 for lines in pages)
    assert all(json.loads(lines[0])["kind"] == "header" for lines in pages)
    items = [json.loads(line) for lines in pages for line in lines[1:]]
    memories = [UUID(item["id"]) for item in items if item["kind"] == "memory"]
    relations = [item for item in items if item["kind"] == "relation"]
    assert sorted(memories) == sorted(seeded.memory_ids)
    assert len(relations) == len(seeded.relation_ids) == 22
    # And a user's relations come after all of that user's memories
    for number, item in enumerate(items):
        if item["kind"] == "relation":
            assert all(
                later["kind"] != "memory" or later["user_id"] != item["user_id"] for later in items[number:]
            )


def test_an_export_cursor_works_only_for_the_companion_it_came_from(identity: InMemoryIdentityStore) -> None:
    # Given a cursor from one companion's export, and another companion of the same owner
    seeded = _seeded(identity, page_bytes=300_000)
    cursor = seeded.transfer.export_page(OWNER, seeded.companion.id, 5, None).next_cursor
    assert cursor is not None
    other = active_companion(uuid4(), OWNER.owner_id)
    identity.companions[other.id] = other
    # When it is sent for the other companion, Then it is refused as a cursor that export never gave
    with pytest.raises(ValidationFailed, match="cursor"):
        seeded.transfer.export_page(OWNER, other.id, 5, cursor)


# --- the import's target ------------------------------------------------------------------------------------


def _importing(
    identity: InMemoryIdentityStore, transfers_of: type[MemoryTransfers] = MemoryTransfers
) -> tuple[CompanionTransfer, MemoryTransfers, InMemoryMemoryStore]:
    clock = FakeClock()
    store = InMemoryMemoryStore()
    memory = MemoryService(store, HashEmbedder(), clock)
    transfers = transfers_of(store)
    transfer = CompanionTransfer(
        IdentityService(identity, clock),
        identity,
        memory,
        MemoryImporter(memory, UntouchedKeys(), clock),
        transfers,
        clock,
    )
    return transfer, transfers, store


@pytest.mark.parametrize("status", ["paused", "archived"])
def test_an_import_into_a_companion_that_is_not_active_is_refused_and_writes_nothing(
    identity: InMemoryIdentityStore, status: str
) -> None:
    # Given the companion an earlier import of this source created, since paused or archived
    transfer, transfers, store = _importing(identity)
    transfers.target = active_companion(uuid4(), OWNER.owner_id).model_copy(update={"status": status})
    # When the export is imported again
    with pytest.raises(IllegalTransition) as raised:
        transfer.import_file(OWNER, _file(HEADER, MEMORY))
    # Then it is refused naming the status, and nothing is stored
    assert raised.value.details == {"status": status, "action": "import"}
    assert store.state.memories == {}


@pytest.mark.parametrize(("failure", "released"), [(Conflict, False), (DependencyUnavailable, True)])
def test_a_companion_that_could_not_be_created_with_its_claim_leaves_nothing(
    identity: InMemoryIdentityStore, failure: type[Exception], released: bool
) -> None:
    # Given an import whose claim is taken over before its companion is created (Conflict), or whose
    # database fails then (the companion and the claim's completion are one transaction: neither happens)
    transfer, transfers, store = _importing(identity)
    transfers.create_fails = failure
    # When it runs
    with pytest.raises(failure):
        transfer.import_file(OWNER, _file(HEADER, MEMORY))
    # Then no memory is stored; a claim that is still ours is released at once, one taken over is not ours
    assert store.state.memories == {}
    assert bool(transfers.released) is released
