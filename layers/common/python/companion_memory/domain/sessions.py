"""Companion sessions: one record per conversation, 30-minute sliding expiry (DESIGN.md §7).

The key is the legacy ``Mcp-Session-Id`` when a client sends one (2025-11-25 stateful clients; our
server never issues one, but a client may carry one over from elsewhere), otherwise the conversation
the client names, otherwise ``default``. Keys live inside one (companion, user): they come from the
client and are never trusted to pick a record on their own.

Starting a session is checked against two limits of the companion's config: ``limits.max_sessions_per_user``
(one user cannot fill the companion's sessions with fresh conversation ids) and
``limits.max_concurrent_sessions``. Both are soft under concurrency: the live count is read, then the
session written, and the companion-wide count comes from an eventually consistent index, so N starts racing
at ``limit - 1`` live sessions can each see room and all succeed (at most ``limit - 1 + N``). The per-user
count reads the user's own partition and is not eventually consistent, but races the same way. The limits
are cached per sandbox for ``limits_cache_s`` (a changed limit applies within that time).
"""

import time
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID, uuid4

from pydantic import ValidationError

from companion_memory.caching import TtlCache
from companion_memory.errors import TooManySessions, ValidationFailed
from companion_memory.models.companion_config import Limits
from companion_memory.models.session import (
    DEFAULT_CONVERSATION,
    MAX_CLIENT_NAME_CHARS,
    MAX_KEY_CHARS,
    MAX_PROTOCOL_VERSION_CHARS,
    SESSION_TTL,
    KeyKind,
    LiveSession,
    SessionKey,
    SessionRecord,
    SessionTouch,
    SessionVisit,
)
from companion_memory.ports import Clock, SessionLedger, SessionStore


class SessionService:
    def __init__(
        self,
        store: SessionStore,
        ledger: SessionLedger,
        clock: Clock,
        *,
        ttl: timedelta = SESSION_TTL,
        new_id: Callable[[], UUID] = uuid4,
        limits_cache_s: float = 15.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._clock = clock
        self._ttl = ttl
        self._new_id = new_id
        self._limits: TtlCache[UUID, Limits] = TtlCache(limits_cache_s, monotonic)

    def touch(
        self,
        companion_id: UUID,
        user_id: str,
        mcp_session_id: str | None,
        conversation: str | None,
        protocol_version: str | None,
        client_name: str | None,
    ) -> SessionTouch:
        """Record one request of ``user_id`` to ``companion_id``: start its session or extend it.

        Raises ValidationFailed for a session or conversation id that cannot be a key (the caller sent
        it; nothing is written), TooManySessions when starting a session would pass the user's or the
        companion's limit (nothing is written), and DependencyUnavailable when a store cannot be reached.
        An expired incarnation a start replaces is folded into the ledger before it is overwritten.
        """
        if not user_id:
            raise ValidationFailed("A session needs a user")
        if mcp_session_id is not None:
            key = _key("mcp", mcp_session_id, "Mcp-Session-Id")
        else:
            key = _key("conversation", conversation or DEFAULT_CONVERSATION, "conversation id")
        now = self._clock.now()
        visit = SessionVisit(
            companion_id=companion_id,
            user_id=user_id,
            key=key,
            at=now,
            expires_at=now + self._ttl,
            new_session_id=self._new_id(),
            protocol_version=_informational(protocol_version, MAX_PROTOCOL_VERSION_CHARS),
            client_name=_informational(client_name, MAX_CLIENT_NAME_CHARS),
        )

        def admit(ended: SessionRecord | None) -> None:
            limits = self._limits.get_or_load(companion_id, lambda: self._ledger.session_limits(companion_id))
            per_user = limits.max_sessions_per_user
            if self._store.count_user_live(companion_id, user_id, now, up_to=per_user) >= per_user:
                raise TooManySessions(
                    "You have as many open conversations with this companion as its limit allows; "
                    "continue one, or start a new one after another has ended",
                    details={"max_sessions_per_user": per_user},
                )
            limit = limits.max_concurrent_sessions
            if self._store.count_live(companion_id, now, up_to=limit) >= limit:
                raise TooManySessions(
                    "The companion has as many open conversations as its limit allows; continue one, "
                    "or start a new one after another has ended",
                    details={"max_concurrent_sessions": limit},
                )
            if ended is not None:
                # Folded before the start overwrites it (exactly once through session_log): a failure
                # here leaves the old incarnation in place for the next request or the cleanup.
                self._ledger.fold(companion_id, [ended])

        touched = self._store.touch(visit, before_start=admit)
        if touched.started:
            self._ledger.started(companion_id, user_id, now)
        return touched

    def live_sessions(self, companion_id: UUID) -> list[LiveSession]:
        return self._store.live_sessions(companion_id, self._clock.now())


def _key(kind: KeyKind, value: str, what: str) -> SessionKey:
    try:
        return SessionKey(kind=kind, value=value)
    except ValidationError:
        raise ValidationFailed(
            f"The {what} must be 1 to {MAX_KEY_CHARS} visible ASCII characters",
            details={"field": what},
        ) from None


def _informational(value: str | None, limit: int) -> str | None:
    """Client-reported labels (protocol version, client name) are kept for people to read, never
    trusted: control characters go, the length is capped, and an empty label is no label."""
    if value is None:
        return None
    cleaned = "".join(ch for ch in value if ch.isprintable()).strip()[:limit]
    return cleaned or None
