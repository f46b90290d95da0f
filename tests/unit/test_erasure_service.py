"""ErasureService on fakes: who may erase, the order of the steps, receipts, and what a failure leaves."""

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID, uuid4

import pytest

from companion_memory.auth.principal import Principal
from companion_memory.domain.erasure import ErasureService, user_pseudonym
from companion_memory.errors import DependencyUnavailable, Forbidden, NotFound
from companion_memory.models.erasure import Budget, StorePurge
from companion_memory.models.identity import AuditEvent
from companion_memory.ports import ErasureLedger, KeyShredder, TenantDataStore
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

    def erase_companion(self, owner_id: UUID, companion_id: UUID, budget: Budget | None = None) -> StorePurge:
        """One item a batch, the budget checked before each, as the real stores do."""
        self.journal.steps.append(f"{self.name}.erase_companion")
        if self.down:
            raise DependencyUnavailable(f"{self.name} is down")
        removed = 0
        for key in [key for key in self.held if key[0] == companion_id]:
            while self.held[key]:
                if budget is not None and budget.spent():
                    return StorePurge({"items": removed}, finished=False)
                self.held[key] -= 1
                removed += 1
            del self.held[key]
        return StorePurge({"items": removed}, finished=True)


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
    typed_ledger: ErasureLedger = ledger
    shredder: KeyShredder = FakeShredder(journal)
    service = ErasureService(identity, typed_ledger, typed, ManualClock(), shredder)
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
    assert receipt.purge == "complete"
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


def test_an_erasure_cut_short_by_an_outage_is_audited_with_what_went_and_what_to_retry(world: World) -> None:
    # Given DynamoDB down
    world.stores[2].down = True
    # When the owner erases alice
    with pytest.raises(DependencyUnavailable) as raised:
        world.service.erase_user(world.owner, world.companion_id, "alice")
    # Then the answer names the store to retry, and the audit log says the erasure is incomplete: what the
    # other stores removed and which store still holds alice's data, under her pseudonym only
    assert raised.value.details == {"unavailable": ["dynamodb"]}
    (event,) = world.ledger.events
    assert (event.action, event.target) == (
        "user.erasure_incomplete",
        user_pseudonym(world.companion_id, "alice"),
    )
    assert event.details == {
        "removed": {"postgres": {"items": 3}, "redis": {"items": 3}},
        "unavailable": ["dynamodb"],
    }
    assert "alice" not in event.model_dump_json()


def test_a_delete_out_of_time_answers_pending_and_the_stores_finish_when_called_again(world: World) -> None:
    # Given a budget that runs out after four batches
    checks = iter([10.0] * 4 + [0.0] * 100)
    budget = Budget(remaining=lambda: next(checks))
    # When the owner deletes the companion within it
    receipt = world.service.delete_companion(world.owner, world.companion_id, budget)
    # Then the tombstone and shredding happened, the purge is pending, and the receipt says what went
    assert (receipt.shredded, receipt.purge) == (True, "pending")
    assert receipt.removed == {"postgres": {"items": 4}, "redis": {"items": 0}, "dynamodb": {"items": 0}}
    # And each store called again (the cleanup sweep's way) finishes the purge, resuming where it stopped
    for store in world.stores:
        assert store.erase_companion(world.owner.owner_id, world.companion_id, None).finished
        assert store.held == {}
    # And a delete with time to spare answers complete
    assert world.service.delete_companion(world.owner, world.companion_id, None).purge == "complete"


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


class ThrottledDynamoDb:
    """A DynamoDB client whose BatchWriteItem hands back every item as unprocessed ``refusals`` times."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.batches = 0

    def query(self, **_: object) -> dict[str, object]:
        item = {"pk": {"S": "COMPANION#c#USER#u"}, "sk": {"S": "SESSION#1"}}
        return {"Items": [item]}

    def batch_write_item(self, RequestItems: dict[str, list[object]]) -> dict[str, object]:
        self.batches += 1
        if self.batches <= self.refusals:
            return {"UnprocessedItems": RequestItems}
        return {"UnprocessedItems": {}}


@pytest.mark.parametrize(("refusals", "succeeds"), [(3, True), (10, False)])
def test_dynamodb_deletes_it_refused_are_resent_after_a_growing_bounded_pause(
    refusals: int, succeeds: bool
) -> None:
    from companion_memory.adapters.dynamodb_erasure import DynamoDbErasure

    # Given a table that throttles the deletes a few times, or keeps throttling them
    client = ThrottledDynamoDb(refusals)
    pauses: list[float] = []
    store = DynamoDbErasure(client, "sessions", sleep=pauses.append, jitter=lambda top: top)  # type: ignore[arg-type]
    # When a user's items are erased
    if succeeds:
        assert store.erase_user(uuid4(), uuid4(), "u") == {"sessions": 1}
    else:
        with pytest.raises(DependencyUnavailable):
            store.erase_user(uuid4(), uuid4(), "u")
    # Then each resend waited longer than the last (before jitter), never more than a second, and the
    # attempts are bounded
    assert pauses == sorted(pauses)
    assert all(0 < pause <= 1.0 for pause in pauses)
    assert len(pauses) == min(refusals, 4)
    assert client.batches == min(refusals + 1, 5)
