"""The companion import file is checked whole before anything is written: each kind of bad line is named."""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from companion_memory.auth.principal import Principal
from companion_memory.domain.companion_transfer import CompanionTransfer
from companion_memory.domain.identity import IdentityService
from companion_memory.domain.memory import MemoryService
from companion_memory.domain.memory_import import MemoryImporter
from companion_memory.errors import ValidationFailed
from companion_memory.models.memory import Relation
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

    def relations(self, owner_id: UUID, companion_id: UUID, user_id: str) -> list[Relation]:
        return []

    def imported(self, scope: TenantScope, keys: Sequence[str]) -> dict[str, UUID]:
        raise AssertionError("a malformed file reached the store")

    def import_target(self, owner_id: UUID, source_companion_id: UUID) -> UUID | None:
        raise AssertionError("a malformed file reached the store")

    def claim_target(
        self, owner_id: UUID, source_companion_id: UUID, now: datetime, stale_before: datetime
    ) -> bool:
        raise AssertionError("a malformed file reached the store")

    def release_target(self, owner_id: UUID, source_companion_id: UUID) -> None:
        raise AssertionError("a malformed file reached the store")

    def complete_target(self, owner_id: UUID, source_companion_id: UUID, companion_id: UUID) -> None:
        raise AssertionError("a malformed file reached the store")


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
