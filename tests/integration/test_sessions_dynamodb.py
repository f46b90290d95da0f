"""Companion sessions against the local stack's DynamoDB (moto, the table made from template.yaml)."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from companion_memory.adapters import aws
from companion_memory.adapters.dynamodb_sessions import DynamoDbSessionStore, partition_key
from companion_memory.config import AwsSettings
from companion_memory.domain.sessions import SessionService
from companion_memory.errors import CompanionMemoryError, DependencyUnavailable
from companion_memory.mcp.sessions import record_session
from companion_memory.models.session import SessionKey
from tests.support.database import app_database
from tests.support.upkeep import companion_users, new_companion
from tests.unit.test_sessions_service import FakeSessionLedger

START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


class ManualClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@pytest.fixture(scope="module")
def settings(stack: object) -> AwsSettings:
    return AwsSettings()


@pytest.fixture(scope="module")
def client(settings: AwsSettings) -> Any:
    return aws.client("dynamodb", settings)


@pytest.fixture(scope="module")
def store(client: Any, settings: AwsSettings) -> DynamoDbSessionStore:
    return DynamoDbSessionStore(client, settings.sessions_table)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sessions(store: DynamoDbSessionStore, clock: ManualClock) -> SessionService:
    # The subject here is the DynamoDB store: the PostgreSQL ledger has tests of its own.
    return SessionService(store, FakeSessionLedger(), clock)


@pytest.fixture
def companion() -> UUID:
    # A companion of its own per test: the stack's table is shared by every test and session.
    return uuid4()


def test_a_first_touch_creates_the_session_and_the_next_extends_it(
    sessions: SessionService, clock: ManualClock, companion: UUID
) -> None:
    # Given a first request
    first = sessions.touch(companion, "alice", None, None, "2026-07-28", "agent-kit")

    # When the next comes 10 minutes later
    clock.at = START + timedelta(minutes=10)
    second = sessions.touch(companion, "alice", None, None, None, None)

    # Then the first started the session; the second counted and slid its expiry, and kept its labels
    assert first.started
    assert first.record.request_count == 1
    assert first.record.expires_at == START + timedelta(minutes=30)
    assert not second.started
    assert second.ended is None
    assert second.record.session_id == first.record.session_id
    assert second.record.request_count == 2
    assert second.record.created_at == START
    assert second.record.last_activity_at == START + timedelta(minutes=10)
    assert second.record.expires_at == START + timedelta(minutes=40)
    assert (second.record.protocol_version, second.record.client_name) == ("2026-07-28", "agent-kit")


def test_the_item_has_the_documented_shape(
    sessions: SessionService, client: Any, settings: AwsSettings, companion: UUID
) -> None:
    sessions.touch(companion, "alice", None, "trip", "2026-07-28", "agent-kit")

    item = client.get_item(
        TableName=settings.sessions_table,
        Key={"pk": {"S": f"COMPANION#{companion}#USER#alice"}, "sk": {"S": "SESSION#conversation:trip"}},
        ConsistentRead=True,
    )["Item"]

    # The TTL attribute and the index's keys are the types template.yaml declares
    assert item["expires_at"] == {"N": str(int((START + timedelta(minutes=30)).timestamp()))}
    assert item["companion_id"] == {"S": str(companion)}
    assert item["request_count"] == {"N": "1"}
    assert item["session_key"] == {"S": "conversation:trip"}
    assert item["created_at"] == item["last_activity_at"] == {"S": START.isoformat()}
    assert set(item) == {
        "pk", "sk", "companion_id", "user_id", "session_key", "session_id", "created_at",
        "last_activity_at", "expires_at", "request_count", "protocol_version", "client_name",
    }  # fmt: skip


def test_a_touch_after_expiry_starts_a_new_session_and_hands_back_the_old_one(
    sessions: SessionService, clock: ManualClock, companion: UUID
) -> None:
    # Given a session used twice, then left alone past its 30 minutes (TTL has not deleted it yet)
    sessions.touch(companion, "alice", None, None, "2025-11-25", "inspector")
    clock.at = START + timedelta(minutes=5)
    old = sessions.touch(companion, "alice", None, None, None, None).record

    # When the user comes back exactly when it expired
    clock.at = START + timedelta(minutes=35)
    touched = sessions.touch(companion, "alice", None, None, None, None)

    # Then a new incarnation starts from one, and the ended one comes back whole
    assert touched.started
    assert touched.record.session_id != old.session_id
    assert touched.record.request_count == 1
    assert touched.record.created_at == START + timedelta(minutes=35)
    assert touched.record.expires_at == START + timedelta(minutes=65)
    assert touched.record.client_name == "inspector"
    assert touched.ended == old

    # And the next touch continues the new incarnation
    clock.at = START + timedelta(minutes=36)
    again = sessions.touch(companion, "alice", None, None, None, None)
    assert again.record.session_id == touched.record.session_id
    assert again.record.request_count == 2


def test_a_legacy_session_id_is_the_key_and_apart_from_a_conversation_of_the_same_name(
    sessions: SessionService, companion: UUID
) -> None:
    legacy = sessions.touch(companion, "alice", "1868a90c", None, "2025-11-25", None)
    same_text = sessions.touch(companion, "alice", None, "1868a90c", "2025-11-25", None)
    legacy_again = sessions.touch(
        companion, "alice", "1868a90c", "ignored-when-a-session-id-is-sent", None, None
    )

    assert legacy.record.key == SessionKey(kind="mcp", value="1868a90c")
    assert same_text.started
    assert same_text.record.session_id != legacy.record.session_id
    assert legacy_again.record.session_id == legacy.record.session_id
    assert legacy_again.record.request_count == 2


def test_two_users_sending_the_same_session_id_never_share_a_record(
    sessions: SessionService, companion: UUID
) -> None:
    # Given alice's session / When bob sends her session id (guessed, or leaked)
    alice = sessions.touch(companion, "alice", "shared-id", None, None, None)
    bob = sessions.touch(companion, "bob", "shared-id", None, None, None)

    # Then bob gets a session of his own and alice's is untouched
    assert bob.started
    assert bob.record.session_id != alice.record.session_id
    assert sessions.touch(companion, "alice", "shared-id", None, None, None).record.request_count == 2


def test_user_ids_with_the_key_separator_stay_apart(sessions: SessionService, companion: UUID) -> None:
    # A user id is the companion backend's own text: '#' in it must not let one user's key meet another's
    plain = sessions.touch(companion, "a", None, "USER#b", None, None)
    tricky = sessions.touch(companion, "a#USER#b", None, None, None, None)

    assert tricky.started
    assert tricky.record.session_id != plain.record.session_id
    assert partition_key(companion, "a#USER#b") != partition_key(companion, "a")


def test_live_sessions_lists_only_the_companions_unexpired_sessions(
    sessions: SessionService, store: DynamoDbSessionStore, clock: ManualClock, companion: UUID
) -> None:
    # Given: alice's default session at 9:00, bob's at 9:20 (conversation "x"), carol's legacy one at 9:25,
    # and a session of another companion
    sessions.touch(companion, "alice", None, None, None, None)
    clock.at = START + timedelta(minutes=20)
    sessions.touch(companion, "bob", None, "x", None, None)
    clock.at = START + timedelta(minutes=25)
    sessions.touch(companion, "carol#1", "legacy-1", None, None, None)
    sessions.touch(uuid4(), "dave", None, None, None, None)

    # When asked at 9:45 (alice's expired at 9:30, though the item is still there)
    live = store.live_sessions(companion, START + timedelta(minutes=45))

    # Then bob's and carol's are live, with their keys and expiry read back from the index
    assert sorted((s.user_id, str(s.key), s.expires_at) for s in live) == [
        ("bob", "conversation:x", START + timedelta(minutes=50)),
        ("carol#1", "mcp:legacy-1", START + timedelta(minutes=55)),
    ]
    assert store.live_sessions(companion, START + timedelta(minutes=55)) == []


def test_live_sessions_reads_every_page(
    client: Any, settings: AwsSettings, sessions: SessionService, companion: UUID
) -> None:
    # Given more sessions than one small page holds
    for number in range(7):
        sessions.touch(companion, f"user-{number}", None, None, None, None)

    paged = DynamoDbSessionStore(PagingClient(client, page_size=3), settings.sessions_table)

    assert len(paged.live_sessions(companion, START)) == 7


class PagingClient:
    """The real client, with every Query limited to a few items so that paging is exercised."""

    def __init__(self, client: Any, page_size: int) -> None:
        self._client = client
        self._page_size = page_size
        self.exceptions = client.exceptions

    def query(self, **kwargs: Any) -> Any:
        return self._client.query(Limit=self._page_size, **kwargs)


def test_a_missing_table_is_a_refusal_not_an_outage(client: Any, companion: UUID) -> None:
    store = DynamoDbSessionStore(client, "no-such-table")

    with pytest.raises(CompanionMemoryError) as raised:
        SessionService(store, FakeSessionLedger(), ManualClock(START)).touch(
            companion, "alice", None, None, None, None
        )

    assert not raised.value.retryable
    assert raised.value.details == {"operation": "UpdateItem", "aws_code": "ResourceNotFoundException"}


@pytest.fixture
def unreachable_client(stack: object, monkeypatch: pytest.MonkeyPatch) -> Any:
    # A closed port on loopback: the connection is refused at once
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    return aws.client("dynamodb", AwsSettings(aws_timeout_s=0.5))


def test_an_unreachable_store_is_a_retryable_outage(unreachable_client: Any, companion: UUID) -> None:
    store = DynamoDbSessionStore(unreachable_client, "companion-memory-sessions")

    with pytest.raises(DependencyUnavailable) as raised:
        SessionService(store, FakeSessionLedger(), ManualClock(START)).touch(
            companion, "alice", None, None, None, None
        )

    assert raised.value.details["error"] == "EndpointConnectionError"


def test_record_session_writes_the_principals_session_from_a_lambda_event(
    stack: object, store: DynamoDbSessionStore
) -> None:
    # Given a companion in PostgreSQL and a function URL event of a legacy client carrying a session id
    with app_database() as database:
        companion = new_companion(database)
    event = {
        "headers": {"mcp-session-id": "abc-123", "mcp-protocol-version": "2025-11-25"},
        "body": '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"list_memories"}}',
        "isBase64Encoded": False,
    }

    # When recorded twice for the authenticated principal, through the wired service
    record_session(event, companion, "alice")
    record = record_session(event, companion, "alice")

    # Then the principal's session under the legacy id counts both, and the index shows it live
    assert record is not None
    assert (str(record.key), record.request_count, record.protocol_version) == (
        "mcp:abc-123",
        2,
        "2025-11-25",
    )
    live = store.live_sessions(companion, datetime.now(UTC))
    assert [(s.user_id, str(s.key)) for s in live] == [("alice", "mcp:abc-123")]
    # and the start is the user's first and last interaction with the companion
    with app_database() as database:
        user = companion_users(database, companion)["alice"]
    assert user["first_interaction_at"] == user["last_interaction_at"] == record.created_at


def test_record_session_does_not_fail_when_the_table_is_missing(client: Any, companion: UUID) -> None:
    service = SessionService(
        DynamoDbSessionStore(client, "no-such-table"), FakeSessionLedger(), ManualClock(START)
    )

    assert record_session({"headers": {}}, companion, "alice", service=service) is None
