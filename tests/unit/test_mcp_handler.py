"""The MCP request path (authenticate, record the session, serve) on Lambda events, warm, with fakes."""

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from companion_memory.config import McpSettings
from companion_memory.domain.memory import MemoryService
from companion_memory.domain.memory_access import MemoryAccess
from companion_memory.domain.sessions import SessionService
from companion_memory.errors import DependencyUnavailable, Unauthorized
from companion_memory.mcp.access import MCP_SCOPES, McpServices
from companion_memory.mcp.handler import McpHandler
from companion_memory.mcp.lambda_bridge import AsgiLambdaBridge
from companion_memory.mcp.server import McpHttpApp
from companion_memory.models.session import LiveSession, SessionRecord, SessionTouch, SessionVisit
from tests.support.clock import FakeClock
from tests.support.embedders import HashEmbedder
from tests.support.identity import InMemoryIdentityStore, active_companion
from tests.support.memory_store import InMemoryMemoryStore
from tests.unit.test_sessions_service import FakeSessionLedger

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((ROOT / "events" / "mcp" / "url-initialize.json").read_text())
METADATA_URL = "https://api.example/.well-known/oauth-protected-resource/mcp"
OWNER, COMPANION = uuid4(), uuid4()
NOW = datetime(2026, 5, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FakePrincipal:
    kind: str
    owner_id: UUID
    companion_id: UUID | None
    user_id: str | None
    scopes: frozenset[str]


class Tokens:
    """Stands in for the Authenticator: a few known bearer values; like it, refuses a blocked user's token
    with 401; an outage on demand."""

    def __init__(self) -> None:
        self.down = False
        self.known = {
            "alice-token": FakePrincipal("user", OWNER, COMPANION, "alice", frozenset(MCP_SCOPES)),
            "ck_companion": FakePrincipal("companion", OWNER, COMPANION, None, frozenset(MCP_SCOPES)),
        }
        self.blocked = {"blocked-token"}

    def authenticate_bearer(self, header: str | None) -> FakePrincipal:
        if self.down:
            raise DependencyUnavailable("the identity store is unreachable")
        credential = (header or "").removeprefix("Bearer ")
        if credential not in self.known or credential in self.blocked:
            raise Unauthorized("invalid credential")
        return self.known[credential]


def _identity() -> InMemoryIdentityStore:
    identity = InMemoryIdentityStore()
    identity.companions[COMPANION] = active_companion(COMPANION, OWNER)
    return identity


class Sessions:
    def __init__(self) -> None:
        self.visits: list[SessionVisit] = []

    def touch(
        self, visit: SessionVisit, before_start: Callable[[SessionRecord | None], None] | None = None
    ) -> SessionTouch:
        if before_start is not None:
            before_start(None)
        self.visits.append(visit)
        record = SessionRecord(
            companion_id=visit.companion_id,
            user_id=visit.user_id,
            key=visit.key,
            session_id=visit.new_session_id,
            created_at=visit.at,
            last_activity_at=visit.at,
            expires_at=visit.expires_at,
            request_count=1,
        )
        return SessionTouch(record=record, started=True)

    def live_sessions(self, companion_id: UUID, now: datetime) -> list[LiveSession]:
        return []

    def count_live(self, companion_id: UUID, now: datetime, up_to: int) -> int:
        return 0

    def count_user_live(self, companion_id: UUID, user_id: str, now: datetime, up_to: int) -> int:
        return 0

    def expired(self, companion_id: UUID, now: datetime, limit: int) -> list[SessionRecord]:
        return []

    def remove_expired(self, record: SessionRecord) -> bool:
        return False


class Guard:
    def admit(self, companion_id: UUID, user_id: str, config: Mapping[str, Any]) -> None:
        return None


class Context:
    def get_remaining_time_in_millis(self) -> int:
        return 15_000


@dataclass
class Rig:
    handler: McpHandler
    tokens: Tokens
    sessions: Sessions

    def __call__(
        self,
        body: object = None,
        token: str | None = "alice-token",  # noqa: S107 - a fake bearer value
        query: str = "",
        **headers: str,
    ) -> dict[str, Any]:
        event = copy.deepcopy(SAMPLE)
        event["rawQueryString"] = query
        if query:
            event["queryStringParameters"] = dict(part.split("=", 1) for part in query.split("&"))
        event["headers"]["host"] = event["requestContext"]["domainName"]
        if token is not None:
            event["headers"]["authorization"] = f"Bearer {token}"
        event["headers"].update(headers)
        event["body"] = json.dumps(body if body is not None else json.loads(SAMPLE["body"]))
        result: dict[str, Any] = self.handler(event, Context())  # type: ignore[arg-type]
        return result


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    tokens, sessions = Tokens(), Sessions()
    services = McpServices(
        authenticator=tokens,
        access=MemoryAccess(_identity(), Guard(), cache_s=0, monotonic=lambda: 0.0),
        memory=MemoryService(InMemoryMemoryStore({COMPANION: "standard"}), HashEmbedder(), FakeClock(NOW)),
        sessions=SessionService(sessions, FakeSessionLedger(), FakeClock(NOW)),
    )
    app = McpHttpApp(McpSettings(), lambda: services)
    bridge = AsgiLambdaBridge(app.asgi)
    yield Rig(McpHandler(app, bridge, lambda: services, lambda: METADATA_URL), tokens, sessions)
    bridge.close()


def tools_call(name: str, arguments: dict[str, Any], request_id: int = 2) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


def test_three_authenticated_invocations_in_a_row_store_and_recall(rig: Rig) -> None:
    # Given a warm handler: initialize, store, recall are three invocations of one process
    assert rig()["statusCode"] == 200
    stored = rig(tools_call("store_memory", {"content": "Alice collects vinyl records"}))
    recalled = rig(tools_call("recall_memories", {"query": "vinyl"}, 3))
    # Then each is served, and the recall finds what the store kept
    assert stored["statusCode"] == recalled["statusCode"] == 200
    memories = json.loads(recalled["body"])["result"]["structuredContent"]["memories"]
    assert memories[0]["content"] == "Alice collects vinyl records"


def test_each_authenticated_tool_call_records_the_callers_session(rig: Rig) -> None:
    before = len(rig.sessions.visits)
    rig(tools_call("recall_memories", {"query": "vinyl"}))
    visit = rig.sessions.visits[before]
    assert (visit.companion_id, visit.user_id) == (COMPANION, "alice")


@pytest.mark.parametrize(
    "body",
    [
        None,  # the sample initialize
        {"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ],
    ids=["initialize", "tools/list", "notification"],
)
def test_requests_that_do_not_use_the_companion_start_or_extend_no_session(rig: Rig, body: object) -> None:
    # Given requests a client sends while connecting or listing / When served
    before = len(rig.sessions.visits)
    response = rig(body)

    # Then they are answered without touching a session (no DynamoDB write, no session slot)
    assert response["statusCode"] in (200, 202)
    assert len(rig.sessions.visits) == before


def test_a_request_without_a_token_gets_401_with_the_resource_metadata_challenge(rig: Rig) -> None:
    before = len(rig.sessions.visits)
    response = rig(token=None)
    assert response["statusCode"] == 401
    challenge = response["headers"]["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{METADATA_URL}"' in challenge
    assert "error=" not in challenge  # RFC 6750 §3.1: no error code when no credential was sent
    assert json.loads(response["body"])["error"]["code"] == "unauthorized"
    assert len(rig.sessions.visits) == before


@pytest.mark.parametrize("token", ["forged", "blocked-token", "ck_companion"])
def test_a_bad_token_a_blocked_user_or_a_companion_key_gets_401_invalid_token(rig: Rig, token: str) -> None:
    response = rig(token=token)
    assert response["statusCode"] == 401
    assert 'error="invalid_token"' in response["headers"]["www-authenticate"]


def test_a_token_in_the_query_string_is_ignored(rig: Rig) -> None:
    response = rig(token=None, query="access_token=alice-token&token=alice-token")
    assert response["statusCode"] == 401


def test_an_identity_store_outage_is_a_retryable_503_not_a_401(rig: Rig) -> None:
    rig.tokens.down = True
    try:
        response = rig()
    finally:
        rig.tokens.down = False
    assert response["statusCode"] == 503
    assert json.loads(response["body"])["error"]["retryable"] is True


def test_a_host_aws_did_not_route_by_is_refused_even_with_a_token(rig: Rig) -> None:
    assert rig(host="attacker.example")["statusCode"] == 421
