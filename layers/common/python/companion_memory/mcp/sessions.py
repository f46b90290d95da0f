"""The companion session of an MCP request, read from its Lambda event and recorded after authentication.

Only a request that uses the companion starts or extends its session: a JSON-RPC ``tools/call``,
``resources/read`` or ``prompts/get``. ``initialize``, the listings, pings and notifications touch no
session (they cost no DynamoDB write, and a client cannot hold session slots open with them).

Where each part comes from (first found wins):

- legacy session id: the ``Mcp-Session-Id`` header (2025-11-25 clients that keep one);
- conversation: ``params._meta.conversation_id`` (per request, so one client can serve many
  conversations), else the ``X-Conversation-Id`` header (set once on a client's HTTP connection),
  else ``default``;
- protocol version: the ``MCP-Protocol-Version`` header, else ``params._meta``'s
  ``io.modelcontextprotocol/protocolVersion`` (2026-07-28), else ``params.protocolVersion``
  (``initialize``);
- client name: ``params._meta``'s ``io.modelcontextprotocol/clientInfo.name``, else
  ``params.clientInfo.name`` (``initialize``).

A session record that cannot be written never fails the request it describes: memory operations
matter more than bookkeeping. The failure is logged (warning when retryable, error when it looks
like configuration) and counted in the ``SessionWriteFailed`` metric. A malformed session or
conversation id is the caller's mistake and raises ValidationFailed before anything is written; a new
conversation past the companion's ``limits.max_concurrent_sessions`` raises TooManySessions (429
``too_many_sessions``): that limit is the point of counting sessions, so it is not bookkeeping to skip.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from aws_lambda_powertools.metrics import MetricUnit

from companion_memory import wiring
from companion_memory.domain.sessions import SessionService
from companion_memory.errors import CompanionMemoryError, TooManySessions, ValidationFailed
from companion_memory.models.session import SessionRecord
from companion_memory.observability import logger, metrics

CONVERSATION_META_KEY = "conversation_id"
CONVERSATION_HEADER = "x-conversation-id"
SESSION_ID_HEADER = "mcp-session-id"
PROTOCOL_VERSION_HEADER = "mcp-protocol-version"
_META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
_META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
# The JSON-RPC methods that start or extend a companion session.
SESSION_METHODS = frozenset({"tools/call", "resources/read", "prompts/get"})


@dataclass(frozen=True, slots=True)
class SessionHints:
    """What a request says about its session; None where it says nothing."""

    mcp_session_id: str | None = None
    conversation: str | None = None
    protocol_version: str | None = None
    client_name: str | None = None
    # The JSON-RPC method of the request; None when the body is not a JSON-RPC object.
    method: str | None = None


def session_hints(event: dict[str, Any]) -> SessionHints:
    """Read the session parts of a function URL or HttpApi (payload 2.0) event.

    A body that is not a JSON-RPC object gives no hints: the MCP server answers it with its own error.
    """
    headers = {str(name).lower(): value for name, value in (event.get("headers") or {}).items()}
    message = _message(event)
    found_params = message.get("params")
    params: dict[str, Any] = found_params if isinstance(found_params, dict) else {}
    method = message.get("method")
    found = params.get("_meta")
    meta: dict[str, Any] = found if isinstance(found, dict) else {}
    conversation = meta.get(CONVERSATION_META_KEY, headers.get(CONVERSATION_HEADER))
    if conversation is not None and not isinstance(conversation, str):
        raise ValidationFailed(
            "The conversation id must be a string", details={"field": f"_meta.{CONVERSATION_META_KEY}"}
        )
    return SessionHints(
        mcp_session_id=headers.get(SESSION_ID_HEADER),
        conversation=conversation,
        protocol_version=_first_string(
            headers.get(PROTOCOL_VERSION_HEADER),
            meta.get(_META_PROTOCOL_VERSION),
            params.get("protocolVersion"),
        ),
        client_name=_first_string(_name(meta.get(_META_CLIENT_INFO)), _name(params.get("clientInfo"))),
        method=method if isinstance(method, str) else None,
    )


def record_session(
    event: dict[str, Any],
    principal_companion_id: UUID,
    principal_user_id: str,
    *,
    service: SessionService | None = None,
) -> SessionRecord | None:
    """Create or extend the authenticated principal's session for this request, if its method uses the
    companion (``SESSION_METHODS``).

    Returns the record, or None when the request touches no session or the record could not be written
    (logged and counted, never raised). Raises ValidationFailed for a malformed session or conversation
    id, TooManySessions for a new conversation past the user's or the companion's limit.
    """
    hints = session_hints(event)
    if hints.method not in SESSION_METHODS:
        return None
    sessions = service or wiring.session_service()
    try:
        touched = sessions.touch(
            principal_companion_id,
            principal_user_id,
            hints.mcp_session_id,
            hints.conversation,
            hints.protocol_version,
            hints.client_name,
        )
    except (ValidationFailed, TooManySessions):
        raise
    except CompanionMemoryError as error:
        # The key is left out on purpose: a legacy session id is a bearer of the client's session.
        log = logger.warning if error.retryable else logger.error
        log(
            "Session record not written; the request goes on",
            extra={"error_code": error.code, "error_details": error.details},
        )
        metrics.add_metric(name="SessionWriteFailed", unit=MetricUnit.Count, value=1)
        return None
    if touched.started:
        metrics.add_metric(name="SessionStarted", unit=MetricUnit.Count, value=1)
    return touched.record


def _message(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON-RPC message of the body; {} for a body that is not one JSON object."""
    body = event.get("body")
    if not body:
        return {}
    try:
        text = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body
        message = json.loads(text)
    except (binascii.Error, ValueError):
        return {}
    return message if isinstance(message, dict) else {}


def _name(info: object) -> object:
    return info.get("name") if isinstance(info, dict) else None


def _first_string(*candidates: object) -> str | None:
    return next((value for value in candidates if isinstance(value, str)), None)
