"""Principals: the authorizer context round trip, Bearer parsing, the Authenticator and its status caches.

The caches are driven by an injected clock: a revoked key, a blocked user or a paused companion keeps working
only until its cache entry ages out (15 s), and is refused from then on. No sleeps.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from companion_memory.auth import api_keys
from companion_memory.auth.authenticator import TOUCH_INTERVAL, Authenticator, bearer_token
from companion_memory.auth.principal import Principal, principal_from_authorizer_context, require
from companion_memory.domain.identity import IdentityService
from companion_memory.errors import CompanionPaused, Forbidden, Unauthorized
from companion_memory.models.identity import (
    ApiKeyCreate,
    Companion,
    CompanionCreate,
    CompanionUser,
    TokenRequest,
)
from tests.support.identity import InMemoryIdentityStore, InMemorySigningKeys, ManualClock

ISSUER = "https://memory.example"
AUDIENCE = f"{ISSUER}/mcp"
CACHE_S = 15.0


@dataclass
class World:
    store: InMemoryIdentityStore
    clock: ManualClock
    keys: InMemorySigningKeys
    service: IdentityService
    auth: Authenticator
    owner: Principal
    owner_key: str
    companion: Companion
    companion_key: str
    companion_key_id: UUID

    def companion_principal(self) -> Principal:
        return self.auth.authenticate(self.companion_key)

    def block(self, user_id: str) -> None:
        """What the owner's block route leaves in the store (domain/companions.py set_blocked)."""
        self.store.users[(self.companion.id, user_id)] = CompanionUser(
            companion_id=self.companion.id, user_id=user_id, is_blocked=True
        )

    def user_token(self, user_id: str = "alice", scopes: list[str] | None = None) -> str:
        request = TokenRequest(user_id=user_id, scopes=scopes, ttl_seconds=600)
        return self.service.issue_user_token(self.companion_principal(), request).access_token


@pytest.fixture
def world() -> World:
    # Given an owner, its companion and a companion key, with an authenticator caching for 15 s
    store, clock, keys = InMemoryIdentityStore(), ManualClock(), InMemorySigningKeys()
    service = IdentityService(store, clock, keys, issuer=ISSUER, audience=AUDIENCE)
    auth = Authenticator(
        store,
        clock.now,
        lambda: keys.load().verification_keys(),
        issuer=ISSUER,
        audience=AUDIENCE,
        cache_s=CACHE_S,
        monotonic=clock.monotonic,
    )
    owner_record, owner_key = service.create_owner("Acme")
    owner = auth.authenticate(owner_key)
    companion = service.create_companion(owner, CompanionCreate(name="Ava"))
    issued = service.create_api_key(owner, companion.id, ApiKeyCreate(name="backend"))
    assert owner.owner_id == owner_record.id
    return World(store, clock, keys, service, auth, owner, owner_key, companion, issued.api_key, issued.id)


# --- the authorizer context ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "principal",
    [
        Principal(kind="owner", owner_id=uuid4(), scopes=frozenset({"admin"}), key_id=uuid4()),
        Principal(
            kind="companion",
            owner_id=uuid4(),
            companion_id=uuid4(),
            scopes=frozenset({"memories:read", "memories:write"}),
            key_id=uuid4(),
        ),
        Principal(
            kind="user",
            owner_id=uuid4(),
            companion_id=uuid4(),
            user_id="alice@example.com",
            scopes=frozenset({"memories:read"}),
            token_id="jti-1",
        ),
    ],
    ids=["owner", "companion", "user"],
)
def test_a_principal_survives_the_trip_through_the_authorizer_context(principal: Principal) -> None:
    # When the authorizer's context reaches a route as API Gateway passes it on
    context = principal.to_context()
    event = {"requestContext": {"authorizer": {"lambda": context}}}
    # Then the route reads back the same principal, and every context value is a flat string
    assert all(isinstance(value, str) for value in context.values())
    assert principal_from_authorizer_context(event) == principal


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"requestContext": {}},
        {"requestContext": {"authorizer": {}}},
        {"requestContext": {"authorizer": {"lambda": None}}},
        {"requestContext": {"authorizer": {"lambda": {"owner_id": str(uuid4())}}}},
        {"requestContext": {"authorizer": {"lambda": {"kind": "owner", "owner_id": "not-a-uuid"}}}},
        {"requestContext": {"authorizer": {"lambda": {"kind": "root", "owner_id": str(uuid4())}}}},
    ],
    ids=["no-context", "no-authorizer", "empty", "null", "no-kind", "bad-owner", "unknown-kind"],
)
def test_a_request_without_a_valid_authorizer_context_is_unauthorized(event: dict[str, Any]) -> None:
    with pytest.raises(Unauthorized):
        principal_from_authorizer_context(event)


@pytest.mark.parametrize(
    ("header", "credential"),
    [("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER   abc  ", "abc")],
)
def test_the_bearer_scheme_is_case_insensitive(header: str, credential: str) -> None:
    assert bearer_token(header) == credential


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "abc"])
def test_anything_but_one_bearer_credential_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        bearer_token(header)


def test_a_missing_scope_is_forbidden_and_names_the_scope() -> None:
    principal = Principal(kind="user", owner_id=uuid4(), scopes=frozenset({"memories:read"}))
    with pytest.raises(Forbidden) as raised:
        require(principal, "memories:write")
    assert raised.value.details == {"required_scope": "memories:write"}


# --- API keys through the authenticator ---------------------------------------------------------------------


def test_owner_and_companion_keys_authenticate_as_what_they_were_issued_for(world: World) -> None:
    principal = world.companion_principal()
    assert (principal.kind, principal.companion_id, principal.key_id) == (
        "companion",
        world.companion.id,
        world.companion_key_id,
    )
    assert "admin" not in principal.scopes
    assert world.owner.kind == "owner"
    assert world.owner.scopes == {"admin"}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),  # right prefix, wrong secret
        lambda key: "ok_" + key[3:],  # the companion key presented as an owner key
        lambda key: key[:3] + "Z" * 12 + key[15:],  # unknown prefix
        lambda key: key + "A",
    ],
    ids=["wrong-secret", "wrong-kind", "unknown-prefix", "too-long"],
)
def test_a_tampered_key_is_unauthorized(world: World, tamper: Any) -> None:
    with pytest.raises(Unauthorized):
        world.auth.authenticate(tamper(world.companion_key))


def test_a_hot_key_costs_one_store_read_per_cache_window(world: World) -> None:
    # Given a key read once
    world.companion_principal()
    reads = world.store.reads.get("key", 0)
    # When it authenticates a hundred times inside the window, and once after
    for _ in range(100):
        world.companion_principal()
    assert world.store.reads["key"] == reads
    world.clock.advance(CACHE_S)
    world.companion_principal()
    # Then the store was read once more, when the entry had aged out
    assert world.store.reads["key"] == reads + 1


def test_a_revoked_key_is_refused_once_its_cache_entry_ages_out(world: World) -> None:
    # Given a key that authenticated (and is cached)
    world.companion_principal()
    # When the owner revokes it
    world.service.revoke_api_key(world.owner, world.companion.id, world.companion_key_id)
    # Then it works at most until the cache entry is 15 s old, and never after
    world.clock.advance(CACHE_S - 0.5)
    world.companion_principal()
    world.clock.advance(0.5)
    with pytest.raises(Unauthorized):
        world.companion_principal()


def test_an_expired_key_is_refused_at_once_even_from_the_cache(world: World) -> None:
    # Given a key that expires in 5 s, cached
    expiring = world.service.create_api_key(
        world.owner,
        world.companion.id,
        ApiKeyCreate(expires_at=world.clock.now() + timedelta(seconds=5)),
    )
    world.auth.authenticate(expiring.api_key)
    # When its expiry passes (well within the cache window)
    world.clock.advance(5)
    # Then it is refused: expiry is checked against the clock, not the cache
    with pytest.raises(Unauthorized):
        world.auth.authenticate(expiring.api_key)


def test_a_rotated_key_works_beside_its_successor_until_the_grace_ends(world: World) -> None:
    # Given a key rotated with a 60 s grace
    rotated = world.service.rotate_api_key(world.owner, world.companion.id, world.companion_key_id, 60)
    assert rotated.old_key_valid_until == world.clock.now() + timedelta(seconds=60)
    # Then during the grace both keys authenticate as the same companion with the same scopes
    world.clock.advance(CACHE_S)  # the old key's cached record (no grace yet) has aged out
    old, new = world.companion_principal(), world.auth.authenticate(rotated.api_key)
    assert (old.companion_id, old.scopes) == (new.companion_id, new.scopes)
    # And when the grace ends, the old key is refused and the new one is not
    world.clock.advance(60 - CACHE_S)
    with pytest.raises(Unauthorized):
        world.companion_principal()
    assert world.auth.authenticate(rotated.api_key).key_id == rotated.id


def test_a_companion_key_of_a_paused_companion_is_refused_once_the_cache_ages_out(world: World) -> None:
    world.companion_principal()
    world.store.set_status(world.companion.id, "paused")
    world.clock.advance(CACHE_S - 0.5)
    world.companion_principal()
    world.clock.advance(0.5)
    # The credential is good: the refusal says why, with a stable code
    with pytest.raises(CompanionPaused) as refused:
        world.companion_principal()
    assert refused.value.code == "companion_paused"


def test_last_use_is_recorded_at_most_once_per_interval(world: World) -> None:
    # When a key is used continuously for just over one interval
    start = len(world.store.touches)
    for _ in range(int(TOUCH_INTERVAL.total_seconds() // 10) + 1):
        world.companion_principal()
        world.clock.advance(10)
    # Then last_used_at was written twice: at the first use and once the interval had passed
    assert len(world.store.touches) - start == 2


def test_a_failing_last_use_write_never_fails_the_request(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("database gone")

    monkeypatch.setattr(world.store, "touch_api_key", broken)
    assert world.companion_principal().kind == "companion"


# --- user tokens --------------------------------------------------------------------------------------------


def test_a_user_token_authenticates_as_its_user_with_its_scopes(world: World) -> None:
    principal = world.auth.authenticate(world.user_token("alice", ["memories:read"]))
    assert (principal.kind, principal.user_id, principal.companion_id) == (
        "user",
        "alice",
        world.companion.id,
    )
    assert principal.scopes == {"memories:read"}
    assert principal.actor == "user:alice"


def test_a_user_token_presented_to_another_companion_is_refused(world: World) -> None:
    with pytest.raises(Unauthorized):
        world.auth.verify_user_token(world.user_token(), companion_id=uuid4())


def test_a_blocked_users_token_is_refused_once_the_cache_ages_out(world: World) -> None:
    # Given a user whose token works (its status is now cached)
    token = world.user_token("alice")
    world.auth.authenticate(token)
    # When the owner blocks the user
    world.block("alice")
    # Then the token is refused within the cache window
    world.clock.advance(CACHE_S - 0.5)
    world.auth.authenticate(token)
    world.clock.advance(0.5)
    with pytest.raises(Unauthorized):
        world.auth.authenticate(token)


def test_an_erased_users_token_is_refused_and_a_token_issued_after_the_erasure_works(world: World) -> None:
    # Given a token of alice issued at 12:00:00.000, not yet used
    token = world.user_token("alice")
    # When alice is erased half a second later (the erasure records when; her relationship row goes)
    world.clock.advance(0.5)
    world.store.record_erasure(world.owner.owner_id, world.companion.id, "alice", world.clock.now())
    # Then the old token is refused like any invalid credential, and so is one issued in the same second
    # (iat has whole seconds: it may predate the erasure)
    with pytest.raises(Unauthorized):
        world.auth.authenticate(token)
    same_second = world.user_token("alice")
    world.clock.advance(CACHE_S)
    with pytest.raises(Unauthorized):
        world.auth.authenticate(same_second)
    # and a token issued after the erasure (the companion starting afresh with alice) works, as do others'
    fresh = world.user_token("alice")
    assert world.auth.authenticate(fresh).user_id == "alice"
    assert world.auth.authenticate(world.user_token("bob")).user_id == "bob"


def test_an_erasure_reaches_a_warm_sandbox_once_the_cache_ages_out(world: World) -> None:
    # Given alice's token in use (no erasure cached for her)
    token = world.user_token("alice")
    world.auth.authenticate(token)
    reads = world.store.reads["erasure"]
    # When she is erased
    world.clock.advance(1)
    world.store.record_erasure(world.owner.owner_id, world.companion.id, "alice", world.clock.now())
    # Then the token works until the cached answer ages out (one read per window), then never again
    world.clock.advance(CACHE_S - 1.5)
    world.auth.authenticate(token)
    assert world.store.reads["erasure"] == reads
    world.clock.advance(0.5)
    with pytest.raises(Unauthorized):
        world.auth.authenticate(token)


def test_a_paused_companions_user_tokens_are_refused_once_the_cache_ages_out(world: World) -> None:
    token = world.user_token("bob")
    world.auth.authenticate(token)
    world.store.set_status(world.companion.id, "paused")
    world.clock.advance(CACHE_S - 0.5)
    world.auth.authenticate(token)
    world.clock.advance(0.5)
    with pytest.raises(CompanionPaused):
        world.auth.authenticate(token)


def test_a_deleted_companions_user_tokens_are_refused(world: World) -> None:
    token = world.user_token("bob")
    del world.store.companions[world.companion.id]
    world.clock.advance(CACHE_S)
    with pytest.raises(Unauthorized):
        world.auth.authenticate(token)


def test_a_flood_of_unknown_keys_does_not_flush_the_real_keys_from_the_cache(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a companion key in the cache, and lookups counted from here on
    world.companion_principal()
    lookups: list[str] = []
    real_lookup = world.store.api_key_by_prefix

    def counted(prefix: str) -> object:
        lookups.append(prefix)
        return real_lookup(prefix)

    monkeypatch.setattr(world.store, "api_key_by_prefix", counted)
    # When an attacker presents more well-formed unknown keys than the cache holds
    for _ in range(10_001):
        with pytest.raises(Unauthorized):
            world.auth.authenticate(api_keys.generate("companion").plaintext)
    # Then the real key is still answered from the cache, without a lookup
    real_prefix = api_keys.parse(world.companion_key).prefix  # type: ignore[union-attr]
    world.companion_principal()
    assert real_prefix not in lookups
