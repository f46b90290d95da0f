"""SessionService: which key a request's session gets, what is validated and what the store is asked."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from companion_memory.domain.sessions import SessionService
from companion_memory.errors import ValidationFailed
from companion_memory.models.session import (
    LiveSession,
    SessionKey,
    SessionRecord,
    SessionTouch,
    SessionVisit,
)
from companion_memory.ports import SessionStore

COMPANION = UUID("00000000-0000-4000-8000-000000000001")
START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


class FakeSessionStore:
    """In memory, with the adapter's rules: an expired record restarts under a new id and count 1."""

    def __init__(self) -> None:
        self.visits: list[SessionVisit] = []
        self.records: dict[tuple[UUID, str, str], SessionRecord] = {}
        self.asked_live_at: list[datetime] = []

    def touch(self, visit: SessionVisit) -> SessionTouch:
        self.visits.append(visit)
        slot = (visit.companion_id, visit.user_id, str(visit.key))
        old = self.records.get(slot)
        if old is not None and old.is_live(visit.at):
            record = old.model_copy(
                update={
                    "last_activity_at": visit.at,
                    "expires_at": visit.expires_at,
                    "request_count": old.request_count + 1,
                }
            )
            self.records[slot] = record
            return SessionTouch(record=record, started=False)
        record = SessionRecord(
            companion_id=visit.companion_id,
            user_id=visit.user_id,
            key=visit.key,
            session_id=visit.new_session_id,
            created_at=visit.at,
            last_activity_at=visit.at,
            expires_at=visit.expires_at,
            request_count=1,
            protocol_version=visit.protocol_version,
            client_name=visit.client_name,
        )
        self.records[slot] = record
        return SessionTouch(record=record, started=True, ended=old)

    def live_sessions(self, companion_id: UUID, now: datetime) -> list[LiveSession]:
        self.asked_live_at.append(now)
        return [
            LiveSession(user_id=record.user_id, key=record.key, expires_at=record.expires_at)
            for record in self.records.values()
            if record.companion_id == companion_id and record.is_live(now)
        ]


@pytest.fixture
def store() -> FakeSessionStore:
    return FakeSessionStore()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def service(store: FakeSessionStore, clock: FakeClock) -> SessionService:
    typed: SessionStore = store  # the fake must keep to the port
    return SessionService(typed, clock)


def touch(service: SessionService, **overrides: str | None) -> SessionTouch:
    arguments: dict[str, str | None] = {
        "mcp_session_id": None,
        "conversation": None,
        "protocol_version": "2026-07-28",
        "client_name": "unit",
    } | overrides
    return service.touch(COMPANION, "alice", **arguments)


def test_a_request_that_names_no_session_uses_the_default_conversation(
    service: SessionService, store: FakeSessionStore
) -> None:
    # Given no Mcp-Session-Id and no conversation id / When touched
    touch(service)

    # Then the session is the user's default conversation
    assert store.visits[0].key == SessionKey(kind="conversation", value="default")


def test_a_named_conversation_keys_its_own_session(service: SessionService, store: FakeSessionStore) -> None:
    touch(service, conversation="trip-planning")

    assert store.visits[0].key == SessionKey(kind="conversation", value="trip-planning")


def test_a_legacy_session_id_wins_over_a_conversation_id(
    service: SessionService, store: FakeSessionStore
) -> None:
    # Given a 2025-11-25 client that sends both / When touched
    touch(service, mcp_session_id="1868a90c-legacy", conversation="trip-planning")

    # Then the legacy id is the key, in its own kind (never confused with a conversation of that name)
    assert store.visits[0].key == SessionKey(kind="mcp", value="1868a90c-legacy")
    assert str(store.visits[0].key) == "mcp:1868a90c-legacy"


def test_the_visit_expires_thirty_minutes_after_the_clocks_now(
    service: SessionService, store: FakeSessionStore, clock: FakeClock
) -> None:
    # Given a clock 7 minutes later than the start / When touched
    clock.current = START + timedelta(minutes=7)
    touch(service)

    # Then the visit is at the clock's time and expires 30 minutes later
    assert store.visits[0].at == START + timedelta(minutes=7)
    assert store.visits[0].expires_at == START + timedelta(minutes=37)


def test_a_second_touch_extends_the_same_session_and_counts_it(
    service: SessionService, clock: FakeClock
) -> None:
    first = touch(service)
    clock.current = START + timedelta(minutes=20)

    second = touch(service)

    assert first.started
    assert not second.started
    assert second.record.session_id == first.record.session_id
    assert second.record.request_count == 2
    assert second.record.expires_at == START + timedelta(minutes=50)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mcp_session_id", ""),
        ("mcp_session_id", "has space"),
        ("mcp_session_id", "é-not-ascii"),
        ("mcp_session_id", "x" * 257),
        ("conversation", "tab\there"),
        ("conversation", "y" * 257),
    ],
)
def test_an_id_that_cannot_be_a_key_is_refused_and_nothing_is_written(
    service: SessionService, store: FakeSessionStore, field: str, value: str
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        touch(service, **{field: value})

    assert raised.value.code == "validation_failed"
    assert "visible ASCII" in raised.value.message
    assert store.visits == []


def test_an_empty_conversation_id_means_the_default_conversation(
    service: SessionService, store: FakeSessionStore
) -> None:
    touch(service, conversation="")

    assert store.visits[0].key.value == "default"


def test_a_session_needs_a_user(service: SessionService, store: FakeSessionStore) -> None:
    with pytest.raises(ValidationFailed):
        service.touch(COMPANION, "", None, None, None, None)

    assert store.visits == []


def test_client_labels_lose_control_characters_and_are_capped(
    service: SessionService, store: FakeSessionStore
) -> None:
    # Given labels a client controls, with a newline (log injection) and too many characters
    touch(service, client_name="evil\nclient" + "z" * 300, protocol_version="  \x00 ")

    # Then the name is printable and capped; a label with nothing printable is no label
    visit = store.visits[0]
    assert visit.client_name is not None
    assert visit.client_name.startswith("evilclient")
    assert len(visit.client_name) == 128
    assert visit.protocol_version is None


def test_a_new_session_gets_the_id_the_service_mints(store: FakeSessionStore, clock: FakeClock) -> None:
    minted = uuid4()
    service = SessionService(store, clock, new_id=lambda: minted)

    touched = touch(service)

    assert touched.record.session_id == minted


def test_live_sessions_are_asked_of_the_store_at_the_clocks_now(
    service: SessionService, store: FakeSessionStore, clock: FakeClock
) -> None:
    touch(service)
    clock.current = START + timedelta(minutes=31)

    assert service.live_sessions(COMPANION) == []
    assert store.asked_live_at == [START + timedelta(minutes=31)]
