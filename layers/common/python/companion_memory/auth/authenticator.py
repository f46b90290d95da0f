"""Authentication: a bearer credential (owner key, companion key or user token) to its ``Principal``.

``Authenticator.authenticate_bearer`` is shared by the HttpApi Lambda authorizer and the MCP function. A hot
principal costs no database read: key records, the companion's status and the user's block and erasure are
cached in process for ``cache_s`` (15 s by default), which bounds how long a revoked key, a blocked or erased
user or a paused companion keeps working in one sandbox, and how long a resumed one stays refused (the
authorizer's result cache adds its own TTL at the API; see docs/security.md). A good credential of a paused,
archived or deleted companion is refused with the reason's stable code (``companion_paused``...:
errors.CompanionInactive). What a principal may touch is decided by ``domain/memory_access.py`` (REST and
MCP alike): cross-tenant requests are answered 404 "not found", exactly like a missing resource.
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from companion_memory.auth import api_keys, tokens
from companion_memory.auth.context import INVALID_CREDENTIAL, MISSING_CREDENTIAL
from companion_memory.auth.principal import Principal
from companion_memory.auth.tokens import InvalidToken
from companion_memory.caching import TtlCache
from companion_memory.errors import Unauthorized, companion_inactive
from companion_memory.models.identity import Companion, CompanionUser, StoredApiKey
from companion_memory.observability import logger
from companion_memory.ports import IdentityStore

# last_used_at is written at most this often per key (and per sandbox): never a write per request.
TOUCH_INTERVAL = timedelta(minutes=5)


def bearer_token(header: str | None) -> str:
    """The credential of an ``Authorization: Bearer <credential>`` header (scheme case-insensitive)."""
    if not header:
        raise Unauthorized(MISSING_CREDENTIAL)
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or " " in credential:
        raise Unauthorized(INVALID_CREDENTIAL)
    return credential


class Authenticator:
    def __init__(
        self,
        store: IdentityStore,
        now: Callable[[], datetime],
        verification_keys: Callable[[], tokens.VerificationKeys],
        *,
        issuer: str,
        audience: str,
        cache_s: float = 15.0,
        monotonic: Callable[[], float],
    ) -> None:
        self._store = store
        self._now = now
        self._verification_keys = verification_keys
        self._issuer = issuer
        self._audience = audience
        self._keys: TtlCache[str, StoredApiKey | None] = TtlCache(cache_s, monotonic)
        self._companions: TtlCache[tuple[UUID, UUID], Companion | None] = TtlCache(cache_s, monotonic)
        self._users: TtlCache[tuple[UUID, str], CompanionUser | None] = TtlCache(cache_s, monotonic)
        self._erasures: TtlCache[tuple[UUID, str], datetime | None] = TtlCache(cache_s, monotonic)
        # Keys whose use was recorded within the last interval (bounded like the caches above).
        self._touched: TtlCache[UUID, bool] = TtlCache(TOUCH_INTERVAL.total_seconds(), monotonic)

    def authenticate_bearer(self, header: str | None) -> Principal:
        return self.authenticate(bearer_token(header))

    def authenticate(self, credential: str) -> Principal:
        if api_keys.looks_like_key(credential):
            return self._api_key(credential)
        return self.verify_user_token(credential)

    def verify_user_token(self, token: str, companion_id: UUID | None = None) -> Principal:
        try:
            claims = tokens.verify(
                token,
                keys=self._verification_keys(),
                issuer=self._issuer,
                audience=self._audience,
                now=self._now(),
                companion_id=None if companion_id is None else str(companion_id),
            )
            owner_id = UUID(claims.owner_id or "")
            token_companion = UUID(claims.companion_id)
        except InvalidToken as error:
            logger.info("token rejected", extra={"reason": error.reason})
            raise Unauthorized(INVALID_CREDENTIAL) from error
        except ValueError as error:
            raise Unauthorized(INVALID_CREDENTIAL) from error
        self._require_active(owner_id, token_companion)
        user = self._cached_user(owner_id, token_companion, claims.subject)
        if user is not None and user.is_blocked:
            raise Unauthorized(INVALID_CREDENTIAL)
        # A token issued at or before its user's erasure died with the user (the companion may start afresh
        # with that id: a token issued later works). iat has whole seconds, so a token of the erasure's own
        # second is refused too: it may predate the erasure.
        erased_at = self._cached_erasure(owner_id, token_companion, claims.subject)
        if erased_at is not None and claims.issued_at <= erased_at:
            raise Unauthorized(INVALID_CREDENTIAL)
        return Principal(
            kind="user",
            owner_id=owner_id,
            companion_id=token_companion,
            user_id=claims.subject,
            scopes=claims.scopes,
            token_id=claims.token_id,
        )

    def _api_key(self, credential: str) -> Principal:
        presented = api_keys.parse(credential)
        if presented is None:
            raise Unauthorized(INVALID_CREDENTIAL)
        found, stored = self._keys.get(presented.prefix)
        if not found:
            stored = self._store.api_key_by_prefix(presented.prefix)
            # Misses are not cached: a flood of random prefixes would otherwise fill the map and flush
            # the real keys from it (a repeated bad key is already cached by the HttpApi authorizer).
            if stored is not None:
                self._keys.put(presented.prefix, stored)
        now = self._now()
        if not api_keys.matches(presented, None if stored is None else stored.hash):
            raise Unauthorized(INVALID_CREDENTIAL)
        assert stored is not None  # matches() is False without a stored hash
        record = stored.record
        if record.kind != presented.kind or not record.valid_at(now):
            raise Unauthorized(INVALID_CREDENTIAL)
        if record.companion_id is not None:
            self._require_active(record.owner_id, record.companion_id)
        self._touch(record.owner_id, record.id, now)
        return Principal(
            kind=record.kind,
            owner_id=record.owner_id,
            companion_id=record.companion_id,
            scopes=frozenset(record.scopes),
            key_id=record.id,
        )

    def _require_active(self, owner_id: UUID, companion_id: UUID) -> None:
        found, companion = self._companions.get((owner_id, companion_id))
        if not found:
            companion = self._store.get_companion(owner_id, companion_id)
            self._companions.put((owner_id, companion_id), companion)
        if companion is None:
            raise Unauthorized(INVALID_CREDENTIAL)
        if companion.status != "active":
            # The credential is good: say why it is refused (companion_paused, ...), REST and MCP alike.
            raise companion_inactive(companion.status)

    def _cached_user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> CompanionUser | None:
        found, user = self._users.get((companion_id, user_id))
        if not found:
            user = self._store.companion_user(owner_id, companion_id, user_id)
            self._users.put((companion_id, user_id), user)
        return user

    def _cached_erasure(self, owner_id: UUID, companion_id: UUID, user_id: str) -> datetime | None:
        found, erased_at = self._erasures.get((companion_id, user_id))
        if not found:
            erased_at = self._store.erased_at(owner_id, companion_id, user_id)
            self._erasures.put((companion_id, user_id), erased_at)
        return erased_at

    def _touch(self, owner_id: UUID, key_id: UUID, now: datetime) -> None:
        recorded, _ = self._touched.get(key_id)
        if recorded:
            return
        self._touched.put(key_id, True)
        try:
            self._store.touch_api_key(owner_id, key_id, now, now - TOUCH_INTERVAL)
        except Exception:  # bookkeeping must never fail an authenticated request
            logger.warning("could not record key use", extra={"key_id": str(key_id)})
