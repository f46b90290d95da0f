"""SessionService: which key a request's session gets, what is validated and what the store is asked."""

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from companion_memory.domain.sessions import SessionService
from companion_memory.errors import DependencyUnavailable, TooManySessions, ValidationFailed
from companion_memory.models.companion_config import Limits
from companion_memory.models.session import (
    LiveSession,
    SessionKey,
    SessionRecord,
    SessionTouch,
    SessionVisit,
)
from companion_memory.ports import SessionLedger, SessionStore

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
        self.visits: list[SessionVisit] = []  # the visits written (a refused start writes none)
        self.records: dict[tuple[UUID, str, str], SessionRecord] = {}
        self.asked_live_at: list[datetime] = []

    def touch(
        self, visit: SessionVisit, before_start: Callable[[SessionRecord | None], None] | None = None
    ) -> SessionTouch:
        slot = (visit.companion_id, visit.user_id, str(visit.key))
        old = self.records.get(slot)
        if (old is None or not old.is_live(visit.at)) and before_start is not None:
            before_start(old)
        self.visits.append(visit)
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

    def count_live(self, companion_id: UUID, now: datetime, up_to: int) -> int:
        live = [r for r in self.records.values() if r.companion_id == companion_id and r.is_live(now)]
        return min(up_to, len(live))

    def count_user_live(self, companion_id: UUID, user_id: str, now: datetime, up_to: int) -> int:
        live = [
            r
            for r in self.records.values()
            if r.companion_id == companion_id and r.user_id == user_id and r.is_live(now)
        ]
        return min(up_to, len(live))

    def expired(self, companion_id: UUID, now: datetime, limit: int) -> list[SessionRecord]:
        found = [r for r in self.records.values() if r.companion_id == companion_id and not r.is_live(now)]
        return found[:limit]

    def remove_expired(self, record: SessionRecord) -> bool:
        slot = (record.companion_id, record.user_id, str(record.key))
        current = self.records.get(slot)
        if current is None or (current.session_id, current.expires_at) != (
            record.session_id,
            record.expires_at,
        ):
            return False
        del self.records[slot]
        return True


class FakeSessionLedger:
    """session_log and companion_users in memory, with the adapter's exactly-once rule."""

    def __init__(self, limit: int = 1_000, per_user: int = 1_000) -> None:
        self.limit = limit
        self.per_user = per_user
        self.limits_read = 0
        self.fold_fails = False
        self.logged: dict[UUID, SessionRecord] = {}
        self.interactions: dict[tuple[UUID, str], int] = {}
        self.first: dict[tuple[UUID, str], datetime] = {}
        self.last: dict[tuple[UUID, str], datetime] = {}

    def session_limits(self, companion_id: UUID) -> Limits:
        self.limits_read += 1
        return Limits(max_concurrent_sessions=self.limit, max_sessions_per_user=self.per_user)

    def started(self, companion_id: UUID, user_id: str, at: datetime) -> None:
        self.first.setdefault((companion_id, user_id), at)
        self.last[(companion_id, user_id)] = max(at, self.last.get((companion_id, user_id), at))

    def fold(self, companion_id: UUID, sessions: Sequence[SessionRecord]) -> int:
        if self.fold_fails:
            raise DependencyUnavailable("The session ledger could not be written")
        folded = 0
        for record in sessions:
            if record.session_id in self.logged:
                continue
            self.logged[record.session_id] = record
            user = (companion_id, record.user_id)
            self.interactions[user] = self.interactions.get(user, 0) + record.request_count
            folded += 1
        return folded


@pytest.fixture
def store() -> FakeSessionStore:
    return FakeSessionStore()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def ledger() -> FakeSessionLedger:
    return FakeSessionLedger()


@pytest.fixture
def service(store: FakeSessionStore, ledger: FakeSessionLedger, clock: FakeClock) -> SessionService:
    typed: SessionStore = store  # the fakes must keep to the ports
    typed_ledger: SessionLedger = ledger
    return SessionService(typed, typed_ledger, clock)


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
    service = SessionService(store, FakeSessionLedger(), clock, new_id=lambda: minted)

    touched = touch(service)

    assert touched.record.session_id == minted


def test_live_sessions_are_asked_of_the_store_at_the_clocks_now(
    service: SessionService, store: FakeSessionStore, clock: FakeClock
) -> None:
    touch(service)
    clock.current = START + timedelta(minutes=31)

    assert service.live_sessions(COMPANION) == []
    assert store.asked_live_at == [START + timedelta(minutes=31)]


# --- the concurrent-session limit and relationship statistics ---------------------------------------------


def test_a_new_conversation_past_the_companions_limit_is_refused_and_nothing_is_written(
    store: FakeSessionStore, ledger: FakeSessionLedger, clock: FakeClock
) -> None:
    # Given a companion allowing two live sessions, both taken
    ledger.limit = 2
    service = SessionService(store, ledger, clock)
    touch(service, conversation="one")
    service.touch(COMPANION, "bob", None, "two", None, None)

    # When a third conversation starts
    with pytest.raises(TooManySessions) as refused:
        touch(service, conversation="three")

    # Then it is refused with the limit named, and nothing was written
    assert refused.value.code == "too_many_sessions"
    assert refused.value.status == 429
    assert refused.value.details == {"max_concurrent_sessions": 2}
    assert [v.key.value for v in store.visits] == ["one", "two"]


def test_an_open_conversation_continues_when_the_companion_is_at_its_limit(
    store: FakeSessionStore, ledger: FakeSessionLedger, clock: FakeClock
) -> None:
    ledger.limit = 1
    service = SessionService(store, ledger, clock)
    touch(service, conversation="one")

    touched = touch(service, conversation="one")

    assert (touched.started, touched.record.request_count) == (False, 2)


def test_a_conversation_starts_again_once_another_has_expired(
    store: FakeSessionStore, ledger: FakeSessionLedger, clock: FakeClock
) -> None:
    # Given the only slot taken by a session that then idles past its expiry
    ledger.limit = 1
    service = SessionService(store, ledger, clock)
    touch(service, conversation="one")
    clock.current = START + timedelta(minutes=31)

    # When another conversation starts, it is admitted
    assert touch(service, conversation="two").started


def test_a_start_records_the_first_and_last_interaction(
    service: SessionService, ledger: FakeSessionLedger, clock: FakeClock
) -> None:
    touch(service)
    clock.current = START + timedelta(hours=2)
    touch(service)

    assert ledger.first[(COMPANION, "alice")] == START
    assert ledger.last[(COMPANION, "alice")] == START + timedelta(hours=2)


def test_the_expired_incarnation_a_restart_replaces_is_folded_once_with_its_requests(
    service: SessionService, ledger: FakeSessionLedger, clock: FakeClock
) -> None:
    # Given a session of three requests that expired
    for _ in range(3):
        touch(service)
    clock.current = START + timedelta(minutes=45)

    # When its key is used again
    touched = touch(service)

    # Then the old incarnation's three requests joined the user's interaction count, once
    assert touched.ended is not None
    assert ledger.logged.keys() == {touched.ended.session_id}
    assert ledger.interactions[(COMPANION, "alice")] == 3
    assert ledger.fold(COMPANION, [touched.ended]) == 0
    assert ledger.interactions[(COMPANION, "alice")] == 3


def test_a_restart_whose_fold_fails_leaves_the_expired_incarnation_in_place_for_a_retry(
    store: FakeSessionStore, ledger: FakeSessionLedger, clock: FakeClock
) -> None:
    # Given a session of two requests that expired, and a ledger that cannot be written just now
    service = SessionService(store, ledger, clock)
    first = touch(service)
    touch(service)
    clock.current = START + timedelta(minutes=45)
    ledger.fold_fails = True

    # When its key is used again, the start fails cleanly (retryable) and the old incarnation stays
    with pytest.raises(DependencyUnavailable):
        touch(service)
    [kept] = store.records.values()
    assert (kept.session_id, kept.request_count) == (first.record.session_id, 2)

    # and once the ledger is back, the retry folds its two requests before replacing it
    ledger.fold_fails = False
    touched = touch(service)
    assert touched.started
    assert ledger.interactions[(COMPANION, "alice")] == 2


def test_one_user_cannot_open_more_conversations_than_the_per_user_limit(
    store: FakeSessionStore, ledger: FakeSessionLedger, clock: FakeClock
) -> None:
    # Given a per-user limit of two and a companion with plenty of room
    ledger.per_user = 2
    service = SessionService(store, ledger, clock)
    touch(service, conversation="one")
    touch(service, conversation="two")

    # When the same user starts a third conversation, it is refused with the per-user limit named
    with pytest.raises(TooManySessions) as refused:
        touch(service, conversation="three")
    assert refused.value.details == {"max_sessions_per_user": 2}

    # while another user still starts one
    assert service.touch(COMPANION, "bob", None, "one", None, None).started


def test_the_limits_are_read_once_per_cache_period_not_per_start(
    store: FakeSessionStore, ledger: FakeSessionLedger, clock: FakeClock
) -> None:
    # Given a service caching limits for 15 s on a monotonic clock that does not move
    ticks = [100.0]
    service = SessionService(store, ledger, clock, monotonic=lambda: ticks[0])

    # When three conversations start, then the cache period passes and a fourth starts
    for name in ("one", "two", "three"):
        touch(service, conversation=name)
    ticks[0] += 16
    touch(service, conversation="four")

    # Then the ledger was asked twice
    assert ledger.limits_read == 2
