"""Identity: owners, companions (what identity needs of them), companion users, API keys, user tokens.

Security events are written to the audit log in the same transaction as the change they record.
"""

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid4

from companion_memory.auth import api_keys, tokens
from companion_memory.auth.principal import Principal, require
from companion_memory.errors import Conflict, Forbidden, NotFound, ValidationFailed, companion_inactive
from companion_memory.models.companion_config import CompanionConfig
from companion_memory.models.identity import (
    COMPANION_KEY_SCOPES,
    ApiKey,
    ApiKeyCreate,
    AuditEvent,
    Companion,
    CompanionCreate,
    IssuedApiKey,
    Owner,
    OwnerKeyCreate,
    StoredApiKey,
    TokenRequest,
    TokenResponse,
)
from companion_memory.ports import Clock, IdentityStore, SigningKeyStore

# A 72-bit prefix collides about once in 10^10 keys; a few fresh draws make a collision a non-event.
_KEY_ATTEMPTS = 3
NO_SUCH_COMPANION = "No such companion"
LAST_OWNER_KEY = (
    "This is the organisation's last usable owner key: revoking it would lock the organisation out. "
    "Create (or rotate to) another owner key first"
)


class IdentityService:
    def __init__(
        self,
        store: IdentityStore,
        clock: Clock,
        signing_keys: SigningKeyStore | None = None,
        *,
        issuer: str = "",
        audience: str = "",
    ) -> None:
        self._store = store
        self._clock = clock
        self._signing_keys = signing_keys
        self._issuer = issuer
        self._audience = audience

    # --- owners ---------------------------------------------------------------------------------------------

    def create_owner(self, name: str) -> tuple[Owner, str]:
        """A new organisation and its first owner key (the bootstrap of the first admin credential)."""
        if not 0 < len(name.strip()) <= 200:
            raise ValidationFailed("An owner name is 1 to 200 characters")
        now = self._clock.now()
        owner = Owner(id=uuid4(), name=name.strip(), created_at=now)

        def insert(new: api_keys.NewKey, stored: StoredApiKey) -> str:
            audit = AuditEvent(
                owner_id=owner.id,
                actor="system:cli",
                action="owner.created",
                target=f"owner:{owner.id}",
                details={"key_id": str(stored.record.id), "prefix": new.prefix},
                at=now,
            )
            self._store.create_owner(owner, stored, audit)
            return new.plaintext

        key = _with_fresh_key(owner.id, None, [tokens.SCOPE_ADMIN], "bootstrap", now, None, insert)
        return owner, key

    # --- companions -----------------------------------------------------------------------------------------

    def create_companion(self, principal: Principal, request: CompanionCreate) -> Companion:
        require(principal, tokens.SCOPE_ADMIN)
        # Every field spelled out (defaults for the rest); anything malformed is refused now, by field.
        config = CompanionConfig.of(request.config or {}).stored()
        now = self._clock.now()
        companion = Companion(
            id=uuid4(),
            owner_id=principal.owner_id,
            name=request.name,
            config=config,
            isolation_level=request.isolation_level,
            status="active",
            version="1.0.0",
            created_at=now,
            updated_at=now,
        )
        self._store.create_companion(
            companion,
            audit_event(
                principal,
                "companion.created",
                companion.id,
                f"companion:{companion.id}",
                now,
                {"isolation_level": companion.isolation_level},
            ),
        )
        return companion

    def get_companion(self, principal: Principal, companion_id: UUID) -> Companion:
        """Owners read their companions; a companion's key reads its own. Anything else: not found."""
        if principal.kind == "owner":
            require(principal, tokens.SCOPE_ADMIN)
        elif principal.kind != "companion" or principal.companion_id != companion_id:
            raise NotFound(NO_SUCH_COMPANION)
        companion = self._store.get_companion(principal.owner_id, companion_id)
        if companion is None:
            raise NotFound(NO_SUCH_COMPANION)
        return companion

    # --- API keys -------------------------------------------------------------------------------------------
    # Companion keys (``ck_``, under /companions/{id}/api-keys) and the organisation's own owner keys
    # (``ok_``, under /owner/api-keys) share one lifecycle; ``companion_id`` None names the owner keys.

    def create_api_key(self, principal: Principal, companion_id: UUID, request: ApiKeyCreate) -> IssuedApiKey:
        companion = owned_companion(self._store, principal, companion_id)
        scopes = set(request.scopes)
        if not scopes <= COMPANION_KEY_SCOPES:
            raise ValidationFailed(
                "A companion key's scopes are memory scopes only",
                details={"allowed": sorted(COMPANION_KEY_SCOPES)},
            )
        now = self._clock.now()
        if request.expires_at is not None and request.expires_at <= now:
            raise ValidationFailed("expires_at must be in the future")
        return self._create_key(
            principal, companion.id, sorted(scopes), request.name, now, request.expires_at
        )

    def create_owner_key(self, principal: Principal, request: OwnerKeyCreate) -> IssuedApiKey:
        """Another admin key of the caller's own organisation (owner keys always carry exactly ``admin``)."""
        require(principal, tokens.SCOPE_ADMIN)
        now = self._clock.now()
        expires_at = (
            None
            if request.expires_in_seconds is None
            else now + timedelta(seconds=request.expires_in_seconds)
        )
        return self._create_key(principal, None, [tokens.SCOPE_ADMIN], request.name, now, expires_at)

    def list_api_keys(self, principal: Principal, companion_id: UUID) -> list[ApiKey]:
        companion = owned_companion(self._store, principal, companion_id)
        return self._store.list_api_keys(principal.owner_id, companion.id)

    def list_owner_keys(self, principal: Principal) -> list[ApiKey]:
        require(principal, tokens.SCOPE_ADMIN)
        return self._store.list_api_keys(principal.owner_id, None)

    def revoke_api_key(self, principal: Principal, companion_id: UUID, key_id: UUID) -> ApiKey:
        companion = owned_companion(self._store, principal, companion_id)
        return self._revoke_key(principal, companion.id, key_id)

    def revoke_owner_key(self, principal: Principal, key_id: UUID) -> ApiKey:
        """Refused (Conflict) when it is the organisation's last usable owner key: that would lock it out."""
        require(principal, tokens.SCOPE_ADMIN)
        return self._revoke_key(principal, None, key_id)

    def rotate_api_key(
        self, principal: Principal, companion_id: UUID, key_id: UUID, grace_seconds: int
    ) -> IssuedApiKey:
        """A new key with the old one's name, scopes and expiry; the old stays valid for ``grace_seconds``."""
        companion = owned_companion(self._store, principal, companion_id)
        return self._rotate_key(principal, companion.id, key_id, grace_seconds)

    def rotate_owner_key(self, principal: Principal, key_id: UUID, grace_seconds: int) -> IssuedApiKey:
        require(principal, tokens.SCOPE_ADMIN)
        return self._rotate_key(principal, None, key_id, grace_seconds)

    def _create_key(
        self,
        principal: Principal,
        companion_id: UUID | None,
        scopes: list[str],
        name: str,
        now: datetime,
        expires_at: datetime | None,
    ) -> IssuedApiKey:
        def insert(new: api_keys.NewKey, stored: StoredApiKey) -> IssuedApiKey:
            audit = audit_event(
                principal,
                "api_key.created",
                companion_id,
                f"api_key:{stored.record.id}",
                now,
                {"prefix": new.prefix, "scopes": scopes},
            )
            self._store.insert_api_key(stored, audit)
            return _issued(new, stored)

        return _with_fresh_key(principal.owner_id, companion_id, scopes, name, now, expires_at, insert)

    def _revoke_key(self, principal: Principal, companion_id: UUID | None, key_id: UUID) -> ApiKey:
        now = self._clock.now()
        revoked = self._store.revoke_api_key(
            principal.owner_id,
            companion_id,
            key_id,
            now,
            audit_event(principal, "api_key.revoked", companion_id, f"api_key:{key_id}", now, {}),
        )
        if revoked is None:
            raise NotFound("No such API key")
        return revoked

    def _rotate_key(
        self, principal: Principal, companion_id: UUID | None, key_id: UUID, grace_seconds: int
    ) -> IssuedApiKey:
        now = self._clock.now()
        old = next(
            (key for key in self._store.list_api_keys(principal.owner_id, companion_id) if key.id == key_id),
            None,
        )
        if old is None:
            raise NotFound("No such API key")
        grace_until = now + timedelta(seconds=grace_seconds)

        def insert(new: api_keys.NewKey, stored: StoredApiKey) -> IssuedApiKey | None:
            audit = audit_event(
                principal,
                "api_key.rotated",
                companion_id,
                f"api_key:{key_id}",
                now,
                {
                    "new_key_id": str(stored.record.id),
                    "prefix": new.prefix,
                    "grace_until": grace_until.isoformat(),
                },
            )
            rotated = self._store.rotate_api_key(
                principal.owner_id, companion_id, key_id, stored, grace_until, audit
            )
            if rotated is None:
                return None
            return _issued(new, stored).model_copy(
                update={"replaces": key_id, "old_key_valid_until": grace_until}
            )

        issued = _with_fresh_key(
            principal.owner_id, companion_id, old.scopes, old.name, now, old.expires_at, insert
        )
        if issued is None:
            raise Conflict("The key is revoked, expired or already rotated")
        return issued

    # --- users and tokens -----------------------------------------------------------------------------------

    def issue_user_token(self, principal: Principal, request: TokenRequest) -> TokenResponse:
        """A companion key exchanges itself for a short-lived token of one of its users."""
        if principal.kind != "companion" or principal.companion_id is None:
            raise Forbidden("Only a companion key can request user tokens")
        if self._signing_keys is None:
            raise RuntimeError("IdentityService built without signing keys cannot issue tokens")
        scopes = set(request.scopes) if request.scopes is not None else set(principal.scopes)
        if not scopes <= principal.scopes:
            raise Forbidden(
                "The requested scopes exceed the key's", details={"allowed": sorted(principal.scopes)}
            )
        if not scopes:
            raise ValidationFailed("A token needs at least one scope")
        now = self._clock.now()
        companion = self._store.get_companion(principal.owner_id, principal.companion_id)
        if companion is None:
            raise Forbidden("The companion is not active")
        if companion.status != "active":
            raise companion_inactive(companion.status)
        user = self._store.companion_user(principal.owner_id, companion.id, request.user_id)
        if user is not None and user.is_blocked:
            raise Forbidden("The user is blocked")
        token = tokens.issue(
            subject=request.user_id,
            companion_id=str(companion.id),
            owner_id=str(principal.owner_id),
            scopes=scopes,
            signing_key=self._signing_keys.load().signing_key(),
            issuer=self._issuer,
            audience=self._audience,
            ttl_seconds=request.ttl_seconds,
            now=now,
        )
        # The user is created on first use, and the issue is recorded, in one transaction.
        audit = audit_event(
            principal,
            "token.issued",
            companion.id,
            f"user:{request.user_id}",
            now,
            {"scopes": sorted(scopes), "ttl_seconds": request.ttl_seconds},
        )
        self._store.ensure_companion_user(principal.owner_id, companion.id, request.user_id, now, audit)
        return TokenResponse(
            access_token=token, expires_in=request.ttl_seconds, scope=" ".join(sorted(scopes))
        )

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        if self._signing_keys is None:
            raise RuntimeError("IdentityService built without signing keys has no JWKS")
        return self._signing_keys.load().jwks()


class CompanionLookup(Protocol):
    """What deciding ownership needs of a store (``IdentityStore`` has it)."""

    def get_companion(self, owner_id: UUID, companion_id: UUID) -> Companion | None: ...


def owned_companion(lookup: CompanionLookup, principal: Principal, companion_id: UUID) -> Companion:
    """The companion an owner-only route acts on: the caller must be an owner key (kind ``owner``, scope
    ``admin``: 403 otherwise, whatever scopes a companion key or user token carries), and the companion one of
    its organisation's (another owner's reads exactly like a missing one: 404). Any status, deleted included:
    each route decides what a status allows."""
    require(principal, tokens.SCOPE_ADMIN)
    if principal.kind != "owner":
        raise Forbidden("Only an owner key can do this", details={"required": "owner_key"})
    companion = lookup.get_companion(principal.owner_id, companion_id)
    if companion is None:
        raise NotFound(NO_SUCH_COMPANION)
    return companion


def _with_fresh_key[T](
    owner_id: UUID,
    companion_id: UUID | None,
    scopes: list[str],
    name: str,
    now: datetime,
    expires_at: datetime | None,
    insert: Callable[[api_keys.NewKey, StoredApiKey], T],
) -> T:
    """``insert`` a freshly drawn key (owner key when ``companion_id`` is None), drawing again while the
    store answers Conflict (its prefix is taken); ``insert`` writes the key and its audit event at once."""
    kind: api_keys.KeyKind = "owner" if companion_id is None else "companion"
    for _ in range(_KEY_ATTEMPTS):
        new = api_keys.generate(kind)
        record = ApiKey(
            id=uuid4(),
            kind=kind,
            owner_id=owner_id,
            companion_id=companion_id,
            prefix=new.prefix,
            name=name,
            scopes=scopes,
            created_at=now,
            expires_at=expires_at,
        )
        try:
            return insert(new, StoredApiKey(record=record, hash=new.hash))
        except Conflict:
            continue
    raise Conflict("Could not draw a unique key; try again")


def _issued(new: api_keys.NewKey, stored: StoredApiKey) -> IssuedApiKey:
    return IssuedApiKey(
        api_key=new.plaintext,
        id=stored.record.id,
        prefix=new.prefix,
        scopes=stored.record.scopes,
        expires_at=stored.record.expires_at,
    )


def refuse_owner_lockout(owner_keys: Iterable[ApiKey], key_id: UUID, at: datetime) -> None:
    """Raise Conflict when revoking ``key_id`` would leave the organisation no usable owner key.

    Usable: valid at ``at`` and not rotated away (a rotated key dies at the end of its grace; its successor
    counts instead). Stores call this on the owner keys they hold locked, so two revocations at once cannot
    each leave the other as the last key. Revoking a key that is no longer valid is never refused.
    """
    keys = list(owner_keys)
    target = next((key for key in keys if key.id == key_id), None)
    if target is None or not target.valid_at(at):
        return
    if not any(key.id != key_id and key.replaced_by is None and key.valid_at(at) for key in keys):
        raise Conflict(LAST_OWNER_KEY, details={"reason": "last_owner_key"})


def audit_event(
    principal: Principal,
    action: str,
    companion_id: UUID | None,
    target: str,
    at: datetime,
    details: dict[str, Any],
) -> AuditEvent:
    """What ``principal`` did (``action`` on ``target``), for the audit log."""
    return AuditEvent(
        owner_id=principal.owner_id,
        companion_id=companion_id,
        actor=principal.actor,
        action=action,
        target=target,
        details=details,
        at=at,
    )
