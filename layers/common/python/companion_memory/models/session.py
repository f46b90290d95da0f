"""Companion sessions: our own record of one conversation between a companion and one of its users.

MCP sessions are not these: protocol 2026-07-28 has none and our server never issues an
``Mcp-Session-Id``. A companion session is keyed by the legacy ``Mcp-Session-Id`` when a client
sends one, otherwise by the conversation the client names (or ``default``), always inside one
(companion, user): a client-chosen key never reaches another user's record.
"""

from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SESSION_TTL = timedelta(minutes=30)
DEFAULT_CONVERSATION = "default"
# Visible ASCII (0x21-0x7E), the charset MCP allows for session ids; conversation ids share it so
# every key is printable in logs and fits a DynamoDB sort key many times over.
KEY_PATTERN = r"^[\x21-\x7E]+$"
MAX_KEY_CHARS = 256
MAX_PROTOCOL_VERSION_CHARS = 32
MAX_CLIENT_NAME_CHARS = 128

KeyKind = Literal["mcp", "conversation"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SessionKey(_Frozen):
    """What identifies a session inside one (companion, user). The kind keeps a legacy session id
    and a conversation id of the same text apart."""

    kind: KeyKind
    value: str = Field(min_length=1, max_length=MAX_KEY_CHARS, pattern=KEY_PATTERN)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> "SessionKey":
        kind, _, value = text.partition(":")
        if kind not in ("mcp", "conversation"):
            raise ValueError(f"not a session key: {text[:40]!r}")
        return cls(kind=kind, value=value)


class SessionVisit(_Frozen):
    """One request's touch of a session, as the domain asks the store to record it."""

    companion_id: UUID
    user_id: str = Field(min_length=1)
    key: SessionKey
    at: AwareDatetime
    expires_at: AwareDatetime
    # The id a session started by this visit gets; ignored when the visit continues a live session.
    new_session_id: UUID
    protocol_version: str | None = None
    client_name: str | None = None


class SessionRecord(_Frozen):
    """One incarnation of a session. ``session_id`` changes when an expired session restarts under
    the same key, so later bookkeeping (statistics folded once per session) has a stable handle."""

    companion_id: UUID
    user_id: str
    key: SessionKey
    session_id: UUID
    created_at: AwareDatetime
    last_activity_at: AwareDatetime
    expires_at: AwareDatetime
    request_count: int = Field(ge=1)
    protocol_version: str | None = None
    client_name: str | None = None

    def is_live(self, now: datetime) -> bool:
        return self.expires_at > now


class SessionTouch(_Frozen):
    """What a touch did: the record as it now stands, whether this touch started it, and the expired
    incarnation it replaced under the same key (its statistics, for whoever folds them)."""

    record: SessionRecord
    started: bool
    ended: SessionRecord | None = None


class LiveSession(_Frozen):
    """A companion's live session as its index sees it (keys and expiry only)."""

    user_id: str
    key: SessionKey
    expires_at: AwareDatetime
