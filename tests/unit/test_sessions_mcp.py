"""The session of an MCP request: what is read from the Lambda event, and what a failed write does."""

import base64
import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from companion_memory.domain.sessions import SessionService
from companion_memory.errors import (
    CompanionMemoryError,
    DependencyUnavailable,
    TooManySessions,
    ValidationFailed,
)
from companion_memory.mcp import sessions as mcp_sessions
from companion_memory.mcp.sessions import SessionHints, record_session, session_hints
from companion_memory.models.session import LiveSession, SessionRecord, SessionTouch, SessionVisit
from companion_memory.observability import metrics
from tests.unit.test_sessions_service import FakeClock, FakeSessionLedger, FakeSessionStore

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((ROOT / "events" / "mcp" / "url-initialize.json").read_text())
COMPANION = UUID("00000000-0000-4000-8000-000000000002")
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def event(
    body: object = None, headers: dict[str, str] | None = None, *, base64_body: bool = False
) -> dict[str, Any]:
    built: dict[str, Any] = copy.deepcopy(SAMPLE)
    built["headers"].update(headers or {})
    if body is not None:
        text = json.dumps(body)
        built["body"] = base64.b64encode(text.encode()).decode() if base64_body else text
        built["isBase64Encoded"] = base64_body
    return built


def tools_call(meta: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x", "_meta": meta}}


MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "agent-kit", "version": "3"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


class FailingStore:
    def __init__(self, error: CompanionMemoryError) -> None:
        self.error = error

    def touch(
        self, visit: SessionVisit, before_start: Callable[[SessionRecord | None], None] | None = None
    ) -> SessionTouch:
        raise self.error

    def live_sessions(self, companion_id: UUID, now: datetime) -> list[LiveSession]:
        raise self.error

    def count_live(self, companion_id: UUID, now: datetime, up_to: int) -> int:
        raise self.error

    def count_user_live(self, companion_id: UUID, user_id: str, now: datetime, up_to: int) -> int:
        raise self.error

    def expired(self, companion_id: UUID, now: datetime, limit: int) -> list[SessionRecord]:
        raise self.error

    def remove_expired(self, record: SessionRecord) -> bool:
        raise self.error


class RecordingLogger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, message: str, *, extra: dict[str, Any]) -> None:
        self.lines.append(("warning", message, extra))

    def error(self, message: str, *, extra: dict[str, Any]) -> None:
        self.lines.append(("error", message, extra))


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> RecordingLogger:
    recording = RecordingLogger()
    monkeypatch.setattr(mcp_sessions, "logger", recording)
    return recording


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def counted(name: str) -> float:
    entry = metrics.metric_set.get(name)
    return sum(entry["Value"]) if entry else 0


# --- what the event says ---------------------------------------------------------------------------------


def test_a_modern_request_gives_its_protocol_version_and_client_name_from_meta() -> None:
    hints = session_hints(event(tools_call(MODERN_META)))

    assert hints == SessionHints(protocol_version="2026-07-28", client_name="agent-kit", method="tools/call")


def test_a_legacy_initialize_gives_its_protocol_version_and_client_info() -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "clientInfo": {"name": "inspector"}, "capabilities": {}},
    }

    hints = session_hints(event(initialize))

    assert hints.protocol_version == "2025-11-25"
    assert hints.client_name == "inspector"


def test_the_protocol_version_header_wins_over_the_body() -> None:
    hints = session_hints(event(tools_call(MODERN_META), {"MCP-Protocol-Version": "2025-11-25"}))

    assert hints.protocol_version == "2025-11-25"


def test_the_legacy_session_id_header_is_read_whatever_its_case() -> None:
    hints = session_hints(event(tools_call({}), {"Mcp-Session-Id": "1868a90c"}))

    assert hints.mcp_session_id == "1868a90c"


def test_a_conversation_id_in_meta_wins_over_the_header() -> None:
    # Given a client whose connection names one conversation and whose request names another
    request = event(tools_call({"conversation_id": "per-request"}), {"X-Conversation-Id": "per-connection"})

    # Then the request's own id is the conversation
    assert session_hints(request).conversation == "per-request"


def test_the_conversation_header_is_used_when_meta_names_none() -> None:
    assert session_hints(event(tools_call({}), {"x-conversation-id": "chat-7"})).conversation == "chat-7"


def test_a_base64_body_is_read_like_a_plain_one() -> None:
    hints = session_hints(event(tools_call({"conversation_id": "b64"}), base64_body=True))

    assert hints.conversation == "b64"


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"params": "nope"}', '{"params": {"_meta": 5}}'])
def test_a_body_that_is_not_a_json_rpc_object_gives_no_hints(body: str) -> None:
    raw = event()
    raw["body"] = body

    assert session_hints(raw) == SessionHints()


def test_a_conversation_id_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        session_hints(event(tools_call({"conversation_id": 42})))


# --- recording --------------------------------------------------------------------------------------------


def test_a_first_request_records_a_new_session_and_counts_it_started(log: RecordingLogger) -> None:
    service = SessionService(FakeSessionStore(), FakeSessionLedger(), FakeClock(NOW))

    record = record_session(event(tools_call(MODERN_META)), COMPANION, "alice", service=service)

    assert record is not None
    assert (record.companion_id, record.user_id, str(record.key)) == (
        COMPANION,
        "alice",
        "conversation:default",
    )
    assert (record.protocol_version, record.client_name) == ("2026-07-28", "agent-kit")
    assert counted("SessionStarted") == 1
    assert log.lines == []


@pytest.mark.parametrize(
    "method", ["initialize", "tools/list", "resources/list", "ping", "notifications/initialized"]
)
def test_a_request_that_does_not_use_the_companion_records_no_session(
    log: RecordingLogger, method: str
) -> None:
    # Given a store that would record anything it is asked to
    store = FakeSessionStore()
    service = SessionService(store, FakeSessionLedger(), FakeClock(NOW))

    # When a connecting or listing request arrives (a fresh conversation id each time)
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"_meta": {"conversation_id": method}}}
    record = record_session(event(message), COMPANION, "alice", service=service)

    # Then no session is started or extended
    assert record is None
    assert store.visits == []
    assert counted("SessionStarted") == 0


@pytest.mark.parametrize("method", ["tools/call", "resources/read", "prompts/get"])
def test_a_request_that_uses_the_companion_records_its_session(log: RecordingLogger, method: str) -> None:
    store = FakeSessionStore()
    service = SessionService(store, FakeSessionLedger(), FakeClock(NOW))

    record = record_session(
        event({"jsonrpc": "2.0", "id": 1, "method": method}), COMPANION, "alice", service=service
    )

    assert record is not None
    assert len(store.visits) == 1


def test_a_continued_session_is_not_counted_as_started_again(log: RecordingLogger) -> None:
    service = SessionService(FakeSessionStore(), FakeSessionLedger(), FakeClock(NOW))
    record_session(event(tools_call(MODERN_META)), COMPANION, "alice", service=service)

    record = record_session(event(tools_call(MODERN_META)), COMPANION, "alice", service=service)

    assert record is not None
    assert record.request_count == 2
    assert counted("SessionStarted") == 1


def test_an_unreachable_session_store_is_logged_and_counted_but_does_not_fail_the_request(
    log: RecordingLogger,
) -> None:
    # Given a store that is throttled
    outage = DependencyUnavailable("The session store is busy", details={"aws_code": "ThrottlingException"})
    service = SessionService(FailingStore(outage), FakeSessionLedger(), FakeClock(NOW))

    # When a request is recorded
    record = record_session(
        event(tools_call(MODERN_META), {"Mcp-Session-Id": "secret-ish"}), COMPANION, "alice", service=service
    )

    # Then nothing is raised, a warning names the error code (and not the session id), and it is counted
    assert record is None
    assert [(level, extra["error_code"]) for level, _, extra in log.lines] == [
        ("warning", "dependency_unavailable")
    ]
    assert "secret-ish" not in repr(log.lines)
    assert counted("SessionWriteFailed") == 1


def test_a_store_that_refuses_for_good_is_logged_as_an_error_but_does_not_fail_the_request(
    log: RecordingLogger,
) -> None:
    # Given a store that refuses (a missing table or permission: configuration, not load)
    refusal = CompanionMemoryError(
        "The session store refused the request", details={"aws_code": "AccessDeniedException"}
    )
    service = SessionService(FailingStore(refusal), FakeSessionLedger(), FakeClock(NOW))

    record = record_session(event(tools_call(MODERN_META)), COMPANION, "alice", service=service)

    assert record is None
    assert [level for level, _, _ in log.lines] == ["error"]
    assert counted("SessionWriteFailed") == 1


def test_a_malformed_session_id_fails_the_request_with_a_validation_error(log: RecordingLogger) -> None:
    store = FakeSessionStore()
    service = SessionService(store, FakeSessionLedger(), FakeClock(NOW))

    with pytest.raises(ValidationFailed):
        record_session(
            event(tools_call({}), {"Mcp-Session-Id": "two words"}), COMPANION, "alice", service=service
        )

    assert store.visits == []
    assert counted("SessionWriteFailed") == 0


def test_a_new_conversation_past_the_limit_fails_the_request_with_too_many_sessions(
    log: RecordingLogger,
) -> None:
    # Given a companion allowing one conversation, already open
    service = SessionService(FakeSessionStore(), FakeSessionLedger(limit=1), FakeClock(NOW))
    record_session(event(tools_call({"conversation_id": "first"})), COMPANION, "alice", service=service)

    # When another conversation starts, the limit is the request's answer (not a logged write failure)
    with pytest.raises(TooManySessions):
        record_session(event(tools_call({"conversation_id": "second"})), COMPANION, "bob", service=service)

    assert counted("SessionWriteFailed") == 0
