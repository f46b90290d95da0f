"""Identity on the wire and in the domain: owners, companions, companion users, API keys, audit events."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from companion_memory.auth.grants import ALL_SCOPES, MAX_TTL_S, MIN_TTL_S

DEFAULT_TTL_S = 3600

CompanionStatus = Literal["active", "paused", "archived", "deleted"]
IsolationLevel = Literal["standard", "strict"]

COMPANION_KEY_SCOPES: frozenset[str] = ALL_SCOPES - {"admin"}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


def _known_scopes(scopes: list[str]) -> list[str]:
    unknown = set(scopes) - ALL_SCOPES
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}; known: {sorted(ALL_SCOPES)}")
    return sorted(set(scopes))


class Owner(_Frozen):
    id: UUID
    name: str
    created_at: datetime


class Companion(_Frozen):
    id: UUID
    owner_id: UUID
    name: str
    config: dict[str, Any]
    isolation_level: IsolationLevel
    status: CompanionStatus
    version: str
    created_at: datetime
    updated_at: datetime


class CompanionUser(_Frozen):
    companion_id: UUID
    user_id: str
    can_read: bool = True
    can_write: bool = True
    can_delete: bool = True
    is_blocked: bool = False


class UserPermissions(_Frozen):
    """A change of a user's permissions: the fields given are set, the others stay."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    can_read: bool | None = None
    can_write: bool | None = None
    can_delete: bool | None = None
    is_blocked: bool | None = None


class ApiKey(_Frozen):
    """A key's record (never the key): what listings show and what authentication reads."""

    id: UUID
    kind: Literal["owner", "companion"]
    owner_id: UUID
    companion_id: UUID | None
    prefix: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    replaced_by: UUID | None = None
    grace_until: datetime | None = None

    def valid_at(self, now: datetime) -> bool:
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        if self.expires_at is not None and self.expires_at <= now:
            return False
        return self.grace_until is None or now < self.grace_until


class StoredApiKey(_Frozen):
    record: ApiKey
    hash: bytes = Field(repr=False)


class AuditEvent(_Frozen):
    owner_id: UUID
    companion_id: UUID | None = None
    actor: str
    action: str
    target: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    at: datetime


# --- wire ------------------------------------------------------------------------------------------


class CompanionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    config: dict[str, Any] | None = Field(
        default=None,
        description="models.companion_config.CompanionConfig: personality, limits, capabilities, retention, "
        "auto_pause; every field left out takes its default",
    )
    isolation_level: IsolationLevel = "standard"


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    scopes: list[str] = Field(default_factory=lambda: sorted(COMPANION_KEY_SCOPES))
    expires_at: datetime | None = Field(
        default=None, description="ISO 8601 with a timezone; none = no expiry"
    )

    _scopes = field_validator("scopes")(_known_scopes)


class OwnerKeyCreate(BaseModel):
    """Another owner key (scope ``admin``) of the caller's organisation."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    expires_in_seconds: int | None = Field(
        default=None, ge=60, le=10 * 366 * 24 * 3600, description="Lifetime from now; none = no expiry"
    )


class ApiKeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(default=3600, ge=0, le=7 * 24 * 3600)


class IssuedApiKey(_Frozen):
    """The answer that carries a key: shown once."""

    api_key: str = Field(repr=False)
    id: UUID
    prefix: str
    scopes: list[str]
    expires_at: datetime | None
    replaces: UUID | None = None
    old_key_valid_until: datetime | None = None


class ApiKeyList(_Frozen):
    api_keys: list[ApiKey]


# A companion user's id, wherever one comes in (a token request, a REST path, an import line): no whitespace,
# not starting with "*" (the companion-wide scope), and no "{" or "}" (Redis keys hash-tag the id:
# adapters/redis_erasure.py).
USER_ID_PATTERN = r"^[^*\s{}][^\s{}]*$"


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=200, pattern=USER_ID_PATTERN)
    scopes: list[str] | None = Field(default=None, description="Default: every scope of the key")
    ttl_seconds: int = Field(default=DEFAULT_TTL_S, ge=MIN_TTL_S, le=MAX_TTL_S)

    _scopes = field_validator("scopes")(lambda scopes: None if scopes is None else _known_scopes(scopes))


class TokenResponse(_Frozen):
    access_token: str = Field(repr=False)
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the OAuth token type, not a secret)
    expires_in: int
    scope: str
