"""IdentityService: keys (collision retry, scopes, rotation), user tokens, ownership, audit events."""

from datetime import timedelta
from uuid import uuid4

import pytest

from companion_memory.auth import tokens
from companion_memory.auth.principal import Principal, PrincipalKind
from companion_memory.domain.identity import IdentityService, owned_companion
from companion_memory.errors import Conflict, Forbidden, NotFound, ValidationFailed
from companion_memory.models.identity import (
    ApiKeyCreate,
    Companion,
    CompanionCreate,
    CompanionUser,
    IssuedApiKey,
    OwnerKeyCreate,
    TokenRequest,
)
from tests.support.identity import InMemoryIdentityStore, InMemorySigningKeys, ManualClock

ISSUER = "https://memory.example"
AUDIENCE = f"{ISSUER}/mcp"


@pytest.fixture
def store() -> InMemoryIdentityStore:
    return InMemoryIdentityStore()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def keys() -> InMemorySigningKeys:
    return InMemorySigningKeys()


@pytest.fixture
def service(store: InMemoryIdentityStore, clock: ManualClock, keys: InMemorySigningKeys) -> IdentityService:
    return IdentityService(store, clock, keys, issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
def owner(service: IdentityService) -> Principal:
    created, _ = service.create_owner("Acme")
    return Principal(kind="owner", owner_id=created.id, scopes=frozenset({"admin"}), key_id=uuid4())


@pytest.fixture
def companion(service: IdentityService, owner: Principal) -> Companion:
    return service.create_companion(owner, CompanionCreate(name="Ava"))


def _companion_key(companion: Companion, scopes: set[str]) -> Principal:
    return Principal(
        kind="companion",
        owner_id=companion.owner_id,
        companion_id=companion.id,
        scopes=frozenset(scopes),
        key_id=uuid4(),
    )


# --- companions ---------------------------------------------------------------------------------------------


def test_a_new_companions_default_limits_are_limits_the_rate_limiter_reads(
    service: IdentityService, owner: Principal
) -> None:
    from companion_memory.models.companion_config import CompanionConfig, Limits

    # When a companion is created without a config
    companion = service.create_companion(owner, CompanionCreate(name="Ava"))
    # Then every field is spelled out with its default, and the limits read back as the defaults
    assert companion.config == CompanionConfig().stored()
    assert Limits.of(companion.config) == Limits()


def test_a_companion_with_malformed_limits_is_refused_and_not_stored(
    service: IdentityService, owner: Principal, store: InMemoryIdentityStore
) -> None:
    before = dict(store.companions)
    with pytest.raises(ValidationFailed):
        service.create_companion(owner, CompanionCreate(name="Ava", config={"limits": {"per_fortnight": 3}}))
    assert store.companions == before


# --- prefix collisions --------------------------------------------------------------------------------------


def test_a_prefix_collision_draws_a_new_key_and_the_caller_never_notices(
    service: IdentityService, store: InMemoryIdentityStore, owner: Principal, companion: Companion
) -> None:
    # Given a store where the next two drawn prefixes are already taken
    store.collisions = 2
    # When a key is created
    issued = service.create_api_key(owner, companion.id, ApiKeyCreate())
    # Then the third draw is stored, with exactly one audit event for it
    assert issued.prefix in {k.record.prefix for k in store.keys.values()}
    created = [e for e in store.audit if e.action == "api_key.created"]
    assert [e.target for e in created] == [f"api_key:{issued.id}"]


def test_three_collisions_in_a_row_give_up_with_a_conflict_and_store_nothing(
    service: IdentityService, store: InMemoryIdentityStore, owner: Principal, companion: Companion
) -> None:
    before = dict(store.keys)
    store.collisions = 3
    with pytest.raises(Conflict):
        service.create_api_key(owner, companion.id, ApiKeyCreate())
    assert store.keys == before


def test_the_owner_bootstrap_retries_a_colliding_prefix_too(
    service: IdentityService, store: InMemoryIdentityStore
) -> None:
    store.collisions = 1
    created, key = service.create_owner("Collide Ltd")
    assert store.owners[created.id].name == "Collide Ltd"
    assert key.startswith("ok_")


# --- scopes -------------------------------------------------------------------------------------------------


def test_a_companion_key_cannot_carry_the_admin_scope(
    service: IdentityService, owner: Principal, companion: Companion
) -> None:
    with pytest.raises(ValidationFailed):
        service.create_api_key(owner, companion.id, ApiKeyCreate(scopes=["memories:read", "admin"]))


def test_only_an_admin_creates_keys_and_companions(service: IdentityService, companion: Companion) -> None:
    key = _companion_key(companion, {"memories:read", "memories:write"})
    with pytest.raises(Forbidden):
        service.create_api_key(key, companion.id, ApiKeyCreate())
    with pytest.raises(Forbidden):
        service.create_companion(key, CompanionCreate(name="Mallory"))


def test_a_token_gets_the_keys_scopes_when_it_asks_for_none(
    service: IdentityService, companion: Companion
) -> None:
    key = _companion_key(companion, {"memories:read", "memories:write"})
    answer = service.issue_user_token(key, TokenRequest(user_id="alice"))
    assert answer.scope == "memories:read memories:write"


@pytest.mark.parametrize(
    "asked", [["memories:delete"], ["memories:read", "memories:delete"], ["admin"]], ids=str
)
def test_a_token_never_gets_a_scope_its_key_lacks(
    service: IdentityService, companion: Companion, asked: list[str]
) -> None:
    key = _companion_key(companion, {"memories:read", "memories:write"})
    with pytest.raises(Forbidden) as raised:
        service.issue_user_token(key, TokenRequest(user_id="alice", scopes=asked))
    assert raised.value.details == {"allowed": ["memories:read", "memories:write"]}


def test_a_token_with_an_empty_scope_list_is_refused(service: IdentityService, companion: Companion) -> None:
    with pytest.raises(ValidationFailed):
        service.issue_user_token(
            _companion_key(companion, {"memories:read"}), TokenRequest(user_id="a", scopes=[])
        )


def test_only_a_companion_key_exchanges_for_user_tokens(
    service: IdentityService, owner: Principal, companion: Companion
) -> None:
    user = Principal(
        kind="user",
        owner_id=owner.owner_id,
        companion_id=companion.id,
        user_id="a",
        scopes=frozenset({"admin"}),
    )
    for principal in (owner, user):
        with pytest.raises(Forbidden):
            service.issue_user_token(principal, TokenRequest(user_id="alice"))


def test_an_issued_token_is_bound_to_its_user_companion_issuer_and_audience(
    service: IdentityService, keys: InMemorySigningKeys, clock: ManualClock, companion: Companion
) -> None:
    key = _companion_key(companion, {"memories:read"})
    answer = service.issue_user_token(key, TokenRequest(user_id="alice", ttl_seconds=120))
    claims = tokens.verify(
        answer.access_token,
        keys=keys.load().verification_keys(),
        issuer=ISSUER,
        audience=AUDIENCE,
        now=clock.now(),
        companion_id=str(companion.id),
    )
    assert (claims.subject, claims.owner_id, claims.scopes) == (
        "alice",
        str(companion.owner_id),
        {"memories:read"},
    )
    assert answer.expires_in == 120


# --- users: blocked, paused companion -----------------------------------------------------------------------


def test_a_blocked_user_gets_no_token(
    service: IdentityService, owner: Principal, companion: Companion, store: InMemoryIdentityStore
) -> None:
    store.users[(companion.id, "alice")] = CompanionUser(
        companion_id=companion.id, user_id="alice", is_blocked=True
    )
    with pytest.raises(Forbidden):
        service.issue_user_token(_companion_key(companion, {"memories:read"}), TokenRequest(user_id="alice"))
    assert not [e for e in store.audit if e.action == "token.issued"]


@pytest.mark.parametrize("status", ["paused", "archived", "deleted"])
def test_an_inactive_companion_issues_no_tokens(
    service: IdentityService, store: InMemoryIdentityStore, companion: Companion, status: str
) -> None:
    store.set_status(companion.id, status)
    with pytest.raises(Forbidden):
        service.issue_user_token(_companion_key(companion, {"memories:read"}), TokenRequest(user_id="alice"))


# --- ownership (one check for every owner-only route: domain.identity.owned_companion) ----------------------


@pytest.mark.parametrize("kind", ["companion", "user"])
def test_only_an_owner_key_passes_the_ownership_check_even_when_another_credential_carries_admin(
    store: InMemoryIdentityStore, owner: Principal, companion: Companion, kind: PrincipalKind
) -> None:
    # Given a principal of the companion's own organisation that is not an owner key, yet claims admin
    # (no issuer mints one today: the check must not depend on that staying true)
    forged = Principal(
        kind=kind,
        owner_id=owner.owner_id,
        companion_id=companion.id,
        user_id="u",
        scopes=frozenset({"admin"}),
    )
    # When it asks for the companion an owner-only route acts on, Then it is refused 403 and reads nothing
    before = store.reads.get("companion", 0)
    with pytest.raises(Forbidden) as refused:
        owned_companion(store, forged, companion.id)
    assert refused.value.details == {"required": "owner_key"}
    assert store.reads.get("companion", 0) == before
    # while the owner's key passes
    assert owned_companion(store, owner, companion.id) == companion


def test_the_ownership_check_answers_another_owners_companion_exactly_like_a_missing_one(
    service: IdentityService, store: InMemoryIdentityStore, companion: Companion
) -> None:
    rival_record, _ = service.create_owner("Rival")
    rival = Principal(kind="owner", owner_id=rival_record.id, scopes=frozenset({"admin"}), key_id=uuid4())
    with pytest.raises(NotFound) as theirs:
        owned_companion(store, rival, companion.id)
    with pytest.raises(NotFound) as missing:
        owned_companion(store, rival, uuid4())
    assert theirs.value.to_body() == missing.value.to_body()


# --- rotation and revocation --------------------------------------------------------------------------------


def test_rotation_keeps_name_scopes_and_expiry_and_sets_the_grace(
    service: IdentityService, owner: Principal, companion: Companion, clock: ManualClock
) -> None:
    expires = clock.now() + timedelta(days=30)
    old = service.create_api_key(
        owner, companion.id, ApiKeyCreate(name="backend", scopes=["memories:read"], expires_at=expires)
    )
    rotated = service.rotate_api_key(owner, companion.id, old.id, grace_seconds=300)
    assert (rotated.scopes, rotated.expires_at, rotated.replaces) == (["memories:read"], expires, old.id)
    assert rotated.old_key_valid_until == clock.now() + timedelta(seconds=300)
    assert rotated.api_key != old.api_key


def test_a_key_rotates_once(service: IdentityService, owner: Principal, companion: Companion) -> None:
    old = service.create_api_key(owner, companion.id, ApiKeyCreate())
    service.rotate_api_key(owner, companion.id, old.id, grace_seconds=60)
    with pytest.raises(Conflict):
        service.rotate_api_key(owner, companion.id, old.id, grace_seconds=60)


def test_a_revoked_key_cannot_be_rotated_back_to_life(
    service: IdentityService, owner: Principal, companion: Companion
) -> None:
    old = service.create_api_key(owner, companion.id, ApiKeyCreate())
    service.revoke_api_key(owner, companion.id, old.id)
    with pytest.raises(Conflict):
        service.rotate_api_key(owner, companion.id, old.id, grace_seconds=60)


def test_key_lifecycle_events_are_audited_without_secrets(
    service: IdentityService, owner: Principal, companion: Companion, store: InMemoryIdentityStore
) -> None:
    created = service.create_api_key(owner, companion.id, ApiKeyCreate())
    rotated = service.rotate_api_key(owner, companion.id, created.id, grace_seconds=60)
    service.revoke_api_key(owner, companion.id, rotated.id)
    service.issue_user_token(_companion_key(companion, {"memories:read"}), TokenRequest(user_id="dave"))
    actions = [e.action for e in store.audit_events(owner.owner_id, companion.id)]
    assert actions == [
        "companion.created",
        "api_key.created",
        "api_key.rotated",
        "api_key.revoked",
        "token.issued",
    ]
    assert created.api_key not in repr(store.audit)
    assert rotated.api_key not in repr(store.audit)


def test_revoking_a_key_of_another_companion_is_not_found(
    service: IdentityService, owner: Principal, companion: Companion
) -> None:
    other = service.create_companion(owner, CompanionCreate(name="Bea"))
    key = service.create_api_key(owner, other.id, ApiKeyCreate())
    with pytest.raises(NotFound):
        service.revoke_api_key(owner, companion.id, key.id)


# --- owner keys ---------------------------------------------------------------------------------------------


def _owner_key_principal(key: IssuedApiKey, owner: Principal) -> Principal:
    return Principal(kind="owner", owner_id=owner.owner_id, scopes=frozenset(key.scopes), key_id=key.id)


def test_an_owner_key_is_created_with_the_admin_scope_and_an_expiry_from_now(
    service: IdentityService, owner: Principal, clock: ManualClock, store: InMemoryIdentityStore
) -> None:
    # When the owner asks for another key that lives a day
    issued = service.create_owner_key(owner, OwnerKeyCreate(name="ci", expires_in_seconds=86_400))
    # Then it is an admin owner key of the same organisation, expiring a day from now, stored as a hash
    assert issued.api_key.startswith("ok_")
    assert (issued.scopes, issued.expires_at) == (["admin"], clock.now() + timedelta(days=1))
    record = store.keys[issued.id]
    assert (record.record.kind, record.record.owner_id, record.record.companion_id) == (
        "owner",
        owner.owner_id,
        None,
    )
    assert issued.api_key not in repr(store.keys)
    event = store.audit[-1]
    assert (event.action, event.target, event.companion_id) == (
        "api_key.created",
        f"api_key:{issued.id}",
        None,
    )


def test_the_owner_key_listing_shows_owner_keys_only(
    service: IdentityService, owner: Principal, companion: Companion
) -> None:
    # Given the bootstrap key, a second owner key and a companion key
    second = service.create_owner_key(owner, OwnerKeyCreate(name="ci"))
    service.create_api_key(owner, companion.id, ApiKeyCreate())
    # Then the owner keys are listed, and no companion key among them
    listed = service.list_owner_keys(owner)
    assert [key.name for key in listed] == ["bootstrap", "ci"]
    assert {key.kind for key in listed} == {"owner"}
    assert second.id in {key.id for key in listed}


def test_a_companion_key_manages_no_owner_keys(
    service: IdentityService, owner: Principal, companion: Companion
) -> None:
    key = _companion_key(companion, {"memories:read", "memories:write", "memories:delete"})
    bootstrap = service.list_owner_keys(owner)[0]
    for attempt in (
        lambda: service.create_owner_key(key, OwnerKeyCreate()),
        lambda: service.list_owner_keys(key),
        lambda: service.revoke_owner_key(key, bootstrap.id),
        lambda: service.rotate_owner_key(key, bootstrap.id, 60),
    ):
        with pytest.raises(Forbidden):
            attempt()


def test_the_last_usable_owner_key_cannot_be_revoked(
    service: IdentityService, owner: Principal, store: InMemoryIdentityStore
) -> None:
    # Given an organisation with only its bootstrap key
    bootstrap = service.list_owner_keys(owner)[0]
    # When the owner revokes it
    with pytest.raises(Conflict) as refused:
        service.revoke_owner_key(owner, bootstrap.id)
    # Then it is refused with a reason, the key still works and nothing is audited
    assert refused.value.details == {"reason": "last_owner_key"}
    assert "lock the organisation out" in refused.value.message
    assert store.keys[bootstrap.id].record.revoked_at is None
    assert not [e for e in store.audit if e.action == "api_key.revoked"]


def test_with_a_second_owner_key_the_first_can_be_revoked_and_then_the_second_cannot(
    service: IdentityService, owner: Principal, clock: ManualClock
) -> None:
    bootstrap = service.list_owner_keys(owner)[0]
    second = service.create_owner_key(owner, OwnerKeyCreate(name="ci"))
    revoked = service.revoke_owner_key(owner, bootstrap.id)
    assert revoked.revoked_at == clock.now()
    with pytest.raises(Conflict):
        service.revoke_owner_key(_owner_key_principal(second, owner), second.id)


def test_an_owner_key_rotated_away_does_not_count_as_the_one_left(
    service: IdentityService, owner: Principal
) -> None:
    # Given the bootstrap key rotated into a successor (the old one lives only through its grace)
    bootstrap = service.list_owner_keys(owner)[0]
    successor = service.rotate_owner_key(owner, bootstrap.id, grace_seconds=300)
    # Then the successor cannot be revoked (only the dying key would be left), the old one can
    with pytest.raises(Conflict):
        service.revoke_owner_key(owner, successor.id)
    service.revoke_owner_key(owner, bootstrap.id)


def test_an_expired_owner_key_does_not_count_as_the_one_left(
    service: IdentityService, owner: Principal, clock: ManualClock
) -> None:
    bootstrap = service.list_owner_keys(owner)[0]
    short = service.create_owner_key(owner, OwnerKeyCreate(expires_in_seconds=60))
    clock.advance(60)
    with pytest.raises(Conflict):
        service.revoke_owner_key(owner, bootstrap.id)
    # And the expired key itself may be revoked: it locks nobody out
    assert service.revoke_owner_key(owner, short.id).revoked_at == clock.now()


def test_an_owner_key_rotation_keeps_admin_and_expiry_and_sets_the_grace(
    service: IdentityService, owner: Principal, clock: ManualClock, store: InMemoryIdentityStore
) -> None:
    old = service.create_owner_key(owner, OwnerKeyCreate(name="ci", expires_in_seconds=3600))
    rotated = service.rotate_owner_key(owner, old.id, grace_seconds=120)
    assert rotated.api_key.startswith("ok_")
    assert (rotated.scopes, rotated.expires_at, rotated.replaces) == (["admin"], old.expires_at, old.id)
    assert rotated.old_key_valid_until == clock.now() + timedelta(seconds=120)
    assert store.keys[rotated.id].record.name == "ci"
    assert [e.action for e in store.audit_events(owner.owner_id)][-2:] == [
        "api_key.created",
        "api_key.rotated",
    ]
    with pytest.raises(Conflict):
        service.rotate_owner_key(owner, old.id, grace_seconds=120)


def test_another_owners_key_reads_as_a_missing_one(
    service: IdentityService, owner: Principal, store: InMemoryIdentityStore
) -> None:
    # Given a rival organisation with two owner keys (so revoking one would otherwise be allowed)
    rival_record, _ = service.create_owner("Rival")
    rival = Principal(kind="owner", owner_id=rival_record.id, scopes=frozenset({"admin"}), key_id=uuid4())
    theirs = service.create_owner_key(rival, OwnerKeyCreate())
    # When our owner tries to revoke or rotate it
    answers = []
    for attempt in (
        lambda key_id: service.revoke_owner_key(owner, key_id),
        lambda key_id: service.rotate_owner_key(owner, key_id, 60),
    ):
        with pytest.raises(NotFound) as found:
            attempt(theirs.id)
        with pytest.raises(NotFound) as missing:
            attempt(uuid4())
        answers.append((found.value.to_body(), missing.value.to_body()))
    # Then the answer is the missing key's, and the rival's key is untouched and unlisted for us
    assert all(theirs_body == missing_body for theirs_body, missing_body in answers)
    assert store.keys[theirs.id].record.revoked_at is None
    assert store.keys[theirs.id].record.replaced_by is None
    assert theirs.id not in {key.id for key in service.list_owner_keys(owner)}


def test_a_companion_key_id_is_not_an_owner_key(
    service: IdentityService, owner: Principal, companion: Companion
) -> None:
    service.create_owner_key(owner, OwnerKeyCreate())
    companion_key = service.create_api_key(owner, companion.id, ApiKeyCreate())
    with pytest.raises(NotFound):
        service.revoke_owner_key(owner, companion_key.id)


def test_a_user_token_cannot_read_its_companions_record(
    service: IdentityService, companion: Companion
) -> None:
    # Given an end user's token of the companion (its config is the owner's and the companion's business)
    user = Principal(
        kind="user",
        owner_id=companion.owner_id,
        companion_id=companion.id,
        user_id="alice",
        scopes=frozenset({"memories:read"}),
        token_id="t1",
    )
    # When it reads the companion, Then it is answered like a missing companion
    with pytest.raises(NotFound):
        service.get_companion(user, companion.id)
