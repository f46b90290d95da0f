"""ErasureService on fakes: who may erase, the order of the steps, receipts, and what a failure leaves."""

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID, uuid4

import pytest

from companion_memory.auth.principal import Principal
from companion_memory.domain.erasure import ErasureService, user_pseudonym
from companion_memory.errors import DependencyUnavailable, Forbidden, NotFound
from companion_memory.models.identity import AuditEvent
from companion_memory.ports import TenantDataStore
from tests.support.identity import InMemoryIdentityStore, ManualClock, active_companion


@dataclass
class Journal:
    """What every fake did, in order."""

    steps: list[str] = field(default_factory=list)


@dataclass
class FakeStore:
    name: str
    journal: Journal
    held: dict[tuple[UUID, str], int] = field(default_factory=dict)
    down: bool = False

    def erase_user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> dict[str, int]:
        self.journal.steps.append(f"{self.name}.erase_user")
        if self.down:
            raise DependencyUnavailable(f"{self.name} is down")
        return {"items": self.held.pop((companion_id, user_id), 0)}

    def erase_companion(self, owner_id: UUID, companion_id: UUID) -> dict[str, int]:
        self.journal.steps.append(f"{self.name}.erase_companion")
        if self.down:
            raise DependencyUnavailable(f"{self.name} is down")
        mine = [key for key in self.held if key[0] == companion_id]
        return {"items": sum(self.held.pop(key) for key in mine)}


@dataclass
class FakeLedger:
    journal: Journal
    retired: set[UUID] = field(default_factory=set)
    events: list[AuditEvent] = field(default_factory=list)

    def retire_companion(self, owner_id: UUID, companion_id: UUID, at: datetime, audit: AuditEvent) -> bool:
        self.journal.steps.append("retire")
        if companion_id in self.retired:
            return False
        self.retired.add(companion_id)
        self.events.append(audit)
        return True

    def record(self, audit: AuditEvent) -> None:
        self.journal.steps.append("record")
        self.events.append(audit)


@dataclass
class FakeShredder:
    journal: Journal

    def shred(self, companion_id: UUID) -> None:
        self.journal.steps.append("shred")


@dataclass
class World:
    service: ErasureService
    journal: Journal
    ledger: FakeLedger
    stores: list[FakeStore]
    owner: Principal
    companion_id: UUID


@pytest.fixture
def world() -> World:
    journal = Journal()
    owner_id, companion_id = uuid4(), uuid4()
    identity = InMemoryIdentityStore()
    identity.companions[companion_id] = active_companion(companion_id, owner_id)
    stores = [FakeStore(name, journal) for name in ("postgres", "redis", "dynamodb")]
    for store in stores:
        store.held = {(companion_id, "alice"): 3, (companion_id, "bob"): 2}
    ledger = FakeLedger(journal)
    typed: list[TenantDataStore] = list(stores)
    service = ErasureService(identity, ledger, typed, ManualClock(), FakeShredder(journal))
    owner = Principal(kind="owner", owner_id=owner_id, scopes=frozenset({"admin"}), key_id=uuid4())
    return World(service, journal, ledger, stores, owner, companion_id)


def test_erasing_a_user_empties_every_store_and_records_it_under_a_pseudonym(world: World) -> None:
    # When the owner erases alice
    receipt = world.service.erase_user(world.owner, world.companion_id, "alice")
    # Then each store reports its own count, bob is untouched, and the audit names a hash, not alice
    assert receipt.removed == {"postgres": {"items": 3}, "redis": {"items": 3}, "dynamodb": {"items": 3}}
    assert all(store.held == {(world.companion_id, "bob"): 2} for store in world.stores)
    (event,) = world.ledger.events
    assert (event.action, event.target) == ("user.erased", user_pseudonym(world.companion_id, "alice"))
    assert "alice" not in event.model_dump_json()
    # And the audit is written after the stores, so it never records an erasure that did not happen
    assert world.journal.steps[-1] == "record"


def test_the_pseudonym_is_the_sha256_of_companion_and_user_the_database_computes_too() -> None:
    companion = UUID("4b0f6a52-93d4-4c1e-9a2b-6f1d0c7e8a35")
    expected = hashlib.sha256(b"4b0f6a52-93d4-4c1e-9a2b-6f1d0c7e8a35:alice").hexdigest()
    assert user_pseudonym(companion, "alice") == f"user_sha256:{expected}"
    # The same user of another companion gets another pseudonym: logs of two companions cannot be joined
    assert user_pseudonym(uuid4(), "alice") != user_pseudonym(companion, "alice")


def test_erasing_again_answers_zeros(world: World) -> None:
    world.service.erase_user(world.owner, world.companion_id, "alice")
    again = world.service.erase_user(world.owner, world.companion_id, "alice")
    assert again.removed == {name: {"items": 0} for name in ("postgres", "redis", "dynamodb")}


def test_deleting_a_companion_retires_and_shreds_before_any_store_is_purged(world: World) -> None:
    receipt = world.service.delete_companion(world.owner, world.companion_id)
    assert world.journal.steps == [
        "retire",
        "shred",
        "postgres.erase_companion",
        "redis.erase_companion",
        "dynamodb.erase_companion",
    ]
    assert (receipt.status, receipt.shredded) == ("deleted", True)
    assert receipt.removed["redis"] == {"items": 5}
    assert [event.action for event in world.ledger.events] == ["companion.deleted"]


def test_a_delete_stopped_by_an_outage_is_finished_by_the_next_one(world: World) -> None:
    # Given Redis down during the first delete: the other stores are purged all the same, and the error
    # names the one to try again
    world.stores[1].down = True
    with pytest.raises(DependencyUnavailable) as raised:
        world.service.delete_companion(world.owner, world.companion_id)
    assert raised.value.details == {"unavailable": ["redis"]}
    assert (world.stores[0].held, world.stores[2].held) == ({}, {})
    # When the delete is sent again with Redis back
    world.stores[1].down = False
    retry = world.service.delete_companion(world.owner, world.companion_id)
    # Then the tombstone is not made twice, and what Redis still held goes now
    assert retry.shredded is False
    assert retry.removed == {"postgres": {"items": 0}, "redis": {"items": 5}, "dynamodb": {"items": 0}}
    assert len(world.ledger.events) == 1


@pytest.mark.parametrize("who", ["other owner", "companion key", "user token"])
def test_only_the_companions_owner_may_erase_or_delete(world: World, who: str) -> None:
    principal = {
        "other owner": Principal(kind="owner", owner_id=uuid4(), scopes=frozenset({"admin"})),
        "companion key": Principal(
            kind="companion",
            owner_id=world.owner.owner_id,
            companion_id=world.companion_id,
            scopes=frozenset({"memories:read", "memories:write", "memories:delete"}),
        ),
        "user token": Principal(
            kind="user",
            owner_id=world.owner.owner_id,
            companion_id=world.companion_id,
            user_id="alice",
            scopes=frozenset({"memories:delete"}),
        ),
    }[who]
    expected = NotFound if who == "other owner" else Forbidden
    with pytest.raises(expected):
        world.service.erase_user(principal, world.companion_id, "alice")
    with pytest.raises(expected):
        world.service.delete_companion(principal, world.companion_id)
    # And nothing was touched
    assert world.journal.steps == []


def test_a_forged_companion_id_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        world.service.delete_companion(world.owner, uuid4())
    assert world.journal.steps == []


def test_two_stores_may_not_share_a_name() -> None:
    journal = Journal()
    with pytest.raises(ValueError, match="share a name"):
        ErasureService(
            InMemoryIdentityStore(),
            FakeLedger(journal),
            [FakeStore("redis", journal), FakeStore("redis", journal)],
            ManualClock(),
        )
