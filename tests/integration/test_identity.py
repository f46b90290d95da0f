"""Identity on the real local stack: PostgreSQL under RLS as the app role, Secrets Manager (moto), gateway.

Time is injected (ManualClock) into the service and the authenticator, so "refused within the bound" is
shown by moving the clock, never by sleeping.
"""

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import errors

from companion_memory.adapters import aws
from companion_memory.adapters.postgres import Database
from companion_memory.adapters.postgres_companions import PostgresCompanionStore
from companion_memory.adapters.postgres_identity import PostgresIdentityStore
from companion_memory.adapters.signing_keys import SecretsManagerPublicKeys, SecretsManagerSigningKeys
from companion_memory.auth.authenticator import Authenticator
from companion_memory.auth.keyset import SigningKeySet
from companion_memory.auth.principal import Principal
from companion_memory.config import AwsSettings
from companion_memory.domain.companions import CompanionService
from companion_memory.domain.identity import IdentityService
from companion_memory.errors import Conflict, NotFound, Unauthorized
from companion_memory.models.identity import (
    ApiKey,
    ApiKeyCreate,
    Companion,
    CompanionCreate,
    IssuedApiKey,
    OwnerKeyCreate,
    TokenRequest,
    UserPermissions,
)
from companion_memory.models.tenancy import TenantScope
from tests.support.database import app_database
from tests.support.identity import InMemorySigningKeys, ManualClock

ISSUER = "https://memory.example"
AUDIENCE = f"{ISSUER}/mcp"
CACHE_S = 15.0


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[Database]:
    with app_database(pool_size=2) as db:
        yield db


@dataclass
class Tenant:
    store: PostgresIdentityStore
    clock: ManualClock
    service: IdentityService
    auth: Authenticator
    owner: Principal
    companion: Companion
    key: str
    key_id: uuid.UUID
    database: Database


@pytest.fixture
def tenant(database: Database) -> Tenant:
    # Given an owner, a companion and a companion key in PostgreSQL, and an authenticator caching 15 s
    store, clock, keys = PostgresIdentityStore(database), ManualClock(), InMemorySigningKeys()
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
    _, owner_key = service.create_owner(f"Org {uuid.uuid4()}")
    owner = auth.authenticate(owner_key)
    companion = service.create_companion(owner, CompanionCreate(name="Ava"))
    issued = service.create_api_key(owner, companion.id, ApiKeyCreate(name="backend"))
    return Tenant(store, clock, service, auth, owner, companion, issued.api_key, issued.id, database)


def _lifecycle(tenant: Tenant) -> CompanionService:
    """The owner's user routes (block, permissions) over the same database, on the tenant's clock."""
    return CompanionService(PostgresCompanionStore(tenant.database), tenant.store, tenant.clock)


@dataclass
class KeyUnderTest:
    """A companion key or an owner key, with the owner's calls that manage it."""

    key: str
    key_id: uuid.UUID
    revoke: Callable[[], ApiKey]
    rotate: Callable[[int], IssuedApiKey]
    listed: Callable[[], list[ApiKey]]


def _key(tenant: Tenant, kind: str) -> KeyUnderTest:
    service, owner = tenant.service, tenant.owner
    if kind == "companion":
        companion = tenant.companion.id
        return KeyUnderTest(
            tenant.key,
            tenant.key_id,
            lambda: service.revoke_api_key(owner, companion, tenant.key_id),
            lambda grace: service.rotate_api_key(owner, companion, tenant.key_id, grace),
            lambda: service.list_api_keys(owner, companion),
        )
    # A second owner key: the bootstrap key stays, so revoking this one is allowed
    second = service.create_owner_key(owner, OwnerKeyCreate(name="ci"))
    return KeyUnderTest(
        second.api_key,
        second.id,
        lambda: service.revoke_owner_key(owner, second.id),
        lambda grace: service.rotate_owner_key(owner, second.id, grace),
        lambda: service.list_owner_keys(owner),
    )


@pytest.mark.parametrize("kind", ["companion", "owner"])
def test_a_revoked_key_is_refused_within_the_cache_bound(tenant: Tenant, kind: str) -> None:
    # Given a key that authenticated (its record is now cached)
    key = _key(tenant, kind)
    assert tenant.auth.authenticate(key.key).key_id == key.key_id
    # When the owner revokes it
    key.revoke()
    # Then it keeps working no longer than the cache window
    tenant.clock.advance(CACHE_S - 1)
    tenant.auth.authenticate(key.key)
    tenant.clock.advance(1)
    with pytest.raises(Unauthorized):
        tenant.auth.authenticate(key.key)


@pytest.mark.parametrize("kind", ["companion", "owner"])
def test_a_rotated_key_is_valid_until_grace_until_then_refused(tenant: Tenant, kind: str) -> None:
    # When the key is rotated with a 120 s grace
    key = _key(tenant, kind)
    rotated = key.rotate(120)
    listed = {k.id: k for k in key.listed()}
    # Then the stored old key names its successor and the end of its grace
    assert listed[key.key_id].replaced_by == rotated.id
    assert listed[key.key_id].grace_until == rotated.old_key_valid_until
    assert listed[rotated.id].kind == kind
    # And both keys work during the grace, only the new one after it
    tenant.clock.advance(119)
    assert tenant.auth.authenticate(key.key).key_id == key.key_id
    assert tenant.auth.authenticate(rotated.api_key).key_id == rotated.id
    tenant.clock.advance(1)
    with pytest.raises(Unauthorized):
        tenant.auth.authenticate(key.key)
    assert tenant.auth.authenticate(rotated.api_key).key_id == rotated.id


def test_an_owner_key_revocation_waits_for_a_concurrent_one_and_then_refuses(
    tenant: Tenant, database: Database
) -> None:
    # Given an organisation with exactly two owner keys, and another request that has just revoked the
    # second one in a transaction not yet committed
    bootstrap = tenant.owner.key_id
    assert bootstrap is not None
    second = tenant.service.create_owner_key(tenant.owner, OwnerKeyCreate(name="ci")).id
    outcomes: list[str] = []

    def revoke_bootstrap() -> None:
        try:
            tenant.service.revoke_owner_key(tenant.owner, bootstrap)
            outcomes.append("revoked")
        except Conflict:
            outcomes.append("refused")

    worker = threading.Thread(target=revoke_bootstrap)
    with database.transaction(TenantScope(owner_id=tenant.owner.owner_id)) as conn:
        conn.execute("UPDATE api_keys SET revoked_at = %s WHERE id = %s", (tenant.clock.now(), second))
        # When the bootstrap key is revoked meanwhile (it must wait on the owner-key lock, not read past it)
        worker.start()
        _until(lambda: not worker.is_alive() or _lock_waiters() > 0)
    worker.join()
    # Then it sees the other revocation once that commits, and refuses: one usable owner key is left
    assert outcomes == ["refused"]
    usable = [k for k in tenant.service.list_owner_keys(tenant.owner) if k.valid_at(tenant.clock.now())]
    assert [k.id for k in usable] == [bootstrap]


def _lock_waiters() -> int:
    with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
    return 0 if row is None else int(row[0])


def _until(done: Callable[[], bool], attempts: int = 200) -> None:
    for _ in range(attempts):
        if done():
            return
        threading.Event().wait(0.05)
    raise AssertionError("the condition never held")


def test_an_owner_cannot_touch_another_owners_key_under_rls(tenant: Tenant) -> None:
    # Given a rival organisation with two owner keys
    rival_record, rival_key = tenant.service.create_owner(f"Rival {uuid.uuid4()}")
    rival = tenant.auth.authenticate(rival_key)
    theirs = tenant.service.create_owner_key(rival, OwnerKeyCreate())
    # When our owner revokes or rotates one of them, the answer is a missing key's
    for attempt in (
        lambda: tenant.service.revoke_owner_key(tenant.owner, theirs.id),
        lambda: tenant.service.rotate_owner_key(tenant.owner, theirs.id, 60),
    ):
        with pytest.raises(NotFound):
            attempt()
    # Then the rival's keys are untouched and ours list none of theirs
    assert all(k.revoked_at is None and k.replaced_by is None for k in tenant.service.list_owner_keys(rival))
    assert {k.owner_id for k in tenant.service.list_owner_keys(tenant.owner)} == {tenant.owner.owner_id}
    assert rival_record.id != tenant.owner.owner_id


def test_a_blocked_users_existing_token_is_refused_by_the_principal_check(tenant: Tenant) -> None:
    # Given a user token that authenticates
    token = tenant.service.issue_user_token(
        tenant.auth.authenticate(tenant.key), TokenRequest(user_id="alice")
    ).access_token
    assert tenant.auth.authenticate(token).user_id == "alice"
    # When the owner blocks the user
    _lifecycle(tenant).set_permissions(
        tenant.owner, tenant.companion.id, "alice", UserPermissions(is_blocked=True)
    )
    # Then the token is refused once the cached user status has aged out
    tenant.clock.advance(CACHE_S)
    with pytest.raises(Unauthorized):
        tenant.auth.authenticate(token)


def test_a_blocked_user_gets_no_token_from_the_api(stack: Any, database: Database) -> None:
    # Given a companion key issued through the service the functions use, and a blocked user
    from companion_memory import wiring

    service = wiring.identity_service()
    _, owner_key = service.create_owner(f"Org {uuid.uuid4()}")
    owner = wiring.authenticator().authenticate(owner_key)
    companion = service.create_companion(owner, CompanionCreate(name="Ava"))
    key = service.create_api_key(owner, companion.id, ApiKeyCreate()).api_key
    wiring.companion_service().set_permissions(
        owner, companion.id, "mallory", UserPermissions(is_blocked=True)
    )
    with httpx.Client(base_url=stack.env["API_URL"], timeout=30) as api:
        # When the companion's backend asks for a token for the blocked user, and for another user
        blocked = api.post(
            "/auth/token", json={"user_id": "mallory"}, headers={"authorization": f"Bearer {key}"}
        )
        allowed = api.post(
            "/auth/token", json={"user_id": "alice"}, headers={"authorization": f"Bearer {key}"}
        )
    # Then only the other user gets one
    assert blocked.status_code == 403, blocked.text
    assert blocked.json()["error"]["code"] == "forbidden"
    assert "access_token" not in blocked.text
    assert allowed.status_code == 200, allowed.text


def test_security_events_are_written_to_the_audit_log(tenant: Tenant) -> None:
    # When a key is created, rotated and revoked, a token issued and a permission changed
    # (a second apart: the log is read in time order)
    tenant.clock.advance(1)
    created = tenant.service.create_api_key(tenant.owner, tenant.companion.id, ApiKeyCreate())
    tenant.clock.advance(1)
    rotated = tenant.service.rotate_api_key(tenant.owner, tenant.companion.id, created.id, 60)
    tenant.clock.advance(1)
    tenant.service.revoke_api_key(tenant.owner, tenant.companion.id, rotated.id)
    tenant.clock.advance(1)
    tenant.service.issue_user_token(tenant.auth.authenticate(tenant.key), TokenRequest(user_id="bob"))
    tenant.clock.advance(1)
    _lifecycle(tenant).set_permissions(
        tenant.owner, tenant.companion.id, "bob", UserPermissions(can_delete=False)
    )
    # Then each is in the audit log, with who did it and to what, and no key in any row
    events = tenant.store.audit_events(tenant.owner.owner_id, tenant.companion.id)
    seen = [(e.action, e.target) for e in events]
    assert seen[-5:] == [
        ("api_key.created", f"api_key:{created.id}"),
        ("api_key.rotated", f"api_key:{created.id}"),
        ("api_key.revoked", f"api_key:{rotated.id}"),
        ("token.issued", "user:bob"),
        ("permission.changed", "user:bob"),
    ]
    assert events[-2].actor == f"companion_key:{tenant.key_id}"
    assert events[-1].actor == tenant.owner.actor
    stored = json.dumps([e.model_dump(mode="json") for e in events])
    for secret in (tenant.key, created.api_key, rotated.api_key):
        assert secret[15:] not in stored


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'nobody'", "DELETE FROM audit_log"])
def test_the_app_role_cannot_rewrite_or_erase_the_audit_log(
    tenant: Tenant, database: Database, statement: str
) -> None:
    with (
        pytest.raises(errors.InsufficientPrivilege),
        database.transaction(TenantScope(owner_id=tenant.owner.owner_id)) as conn,
    ):
        conn.execute(statement)
    assert tenant.store.audit_events(tenant.owner.owner_id)  # still there


def test_the_app_role_cannot_truncate_the_audit_log_or_delete_keys(
    tenant: Tenant, database: Database
) -> None:
    for statement in ("TRUNCATE audit_log", "DELETE FROM api_keys"):
        with (
            pytest.raises(errors.InsufficientPrivilege),
            database.transaction(TenantScope(owner_id=tenant.owner.owner_id)) as conn,
        ):
            conn.execute(statement)


# --- row-level security on api_keys and audit_log ----------------------------------------------------------


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - fixed table names
    assert row is not None
    return int(row[0])


def test_without_context_keys_and_audit_rows_are_invisible(tenant: Tenant, database: Database) -> None:
    with database.transaction() as conn:
        assert (_count(conn, "api_keys"), _count(conn, "audit_log")) == (0, 0)


def test_the_prefix_context_shows_exactly_that_key_and_nothing_else(
    tenant: Tenant, database: Database
) -> None:
    # Given another tenant's keys beside ours
    other = tenant.service.create_api_key(tenant.owner, tenant.companion.id, ApiKeyCreate())
    prefix = tenant.key[3:15]
    # When a transaction knows only a prefix (the authentication lookup)
    with database.transaction() as conn:
        conn.execute("SELECT set_config('app.api_key_prefix', %s, true)", (prefix,))
        rows = conn.execute("SELECT prefix FROM api_keys").fetchall()
        audit = _count(conn, "audit_log")
        # Then it sees that one row, no audit rows, and cannot change the row it sees
        changed = conn.execute("UPDATE api_keys SET revoked_at = now() WHERE prefix = %s", (prefix,))
    assert rows == [(prefix,)]
    assert other.prefix != prefix
    assert audit == 0
    assert changed.rowcount == 0


def test_an_owner_sees_only_its_own_keys_and_audit_rows(tenant: Tenant, database: Database) -> None:
    rival_owner, _ = tenant.service.create_owner(f"Rival {uuid.uuid4()}")
    with database.transaction(TenantScope(owner_id=rival_owner.id)) as conn:
        owners = {row[0] for row in conn.execute("SELECT owner_id FROM api_keys").fetchall()}
        audited = {row[0] for row in conn.execute("SELECT owner_id FROM audit_log").fetchall()}
    assert owners == audited == {rival_owner.id}


def test_an_owner_cannot_insert_a_key_or_an_audit_row_for_another(tenant: Tenant, database: Database) -> None:
    rival_owner, _ = tenant.service.create_owner(f"Rival {uuid.uuid4()}")
    with (
        pytest.raises(errors.InsufficientPrivilege, match="row-level security"),
        database.transaction(TenantScope(owner_id=rival_owner.id)) as conn,
    ):
        conn.execute(
            "INSERT INTO audit_log (owner_id, actor, action) VALUES (%s, 'x', 'forged.entry')",
            (tenant.owner.owner_id,),
        )


# --- the JWT signing key set in Secrets Manager -------------------------------------------------------------


def _fresh_secret() -> str:
    client = aws.client("secretsmanager", AwsSettings())
    created = client.create_secret(Name=f"test/signing-keys-{uuid.uuid4()}", SecretString="{}")
    return str(created["ARN"])


def _secret_json(secret: str) -> Any:
    client = aws.client("secretsmanager", AwsSettings())
    return json.loads(client.get_secret_value(SecretId=secret)["SecretString"])


def _issuer(private: str, public: str, clock: ManualClock | None = None) -> SecretsManagerSigningKeys:
    return SecretsManagerSigningKeys(
        aws.client("secretsmanager", AwsSettings()),
        private,
        public_secret_id=public,
        cache_s=300,
        monotonic=(clock or ManualClock()).monotonic,
    )


def _verifier(public: str, clock: ManualClock) -> SecretsManagerPublicKeys:
    return SecretsManagerPublicKeys(
        aws.client("secretsmanager", AwsSettings()), public, cache_s=300, monotonic=clock.monotonic
    )


def test_two_first_users_racing_end_up_with_one_key_set(stack: Any) -> None:
    # Given empty key secrets and two sandboxes, each with its own client
    private, public = _fresh_secret(), _fresh_secret()
    stores = [_issuer(private, public) for _ in range(2)]
    results: list[SigningKeySet] = []
    start = threading.Barrier(2)

    def first_use(store: SecretsManagerSigningKeys) -> None:
        start.wait()
        results.append(store.load())

    # When both need a key at the same moment
    threads = [threading.Thread(target=first_use, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Then both use the same set, it is the one stored, and its public half is the one published
    stored = SigningKeySet.from_json(json.dumps(_secret_json(private)))
    assert len(results) == 2
    assert {result.signing_key().kid for result in results} == {stored.signing_key().kid}
    assert _secret_json(public) == stored.jwks()


def test_verifiers_read_only_public_keys_and_verify_what_the_issuer_signs(stack: Any) -> None:
    # Given an issuer that generated its keys, and a verifier that reads only the public secret
    private, public = _fresh_secret(), _fresh_secret()
    issuer, clock = _issuer(private, public), ManualClock()
    key_set = issuer.load()
    verifier = _verifier(public, clock)
    # Then the published document holds no private member, and it verifies the issuer's current key
    assert all("d" not in jwk for jwk in _secret_json(public)["keys"])
    assert verifier.load().kids == key_set.verification_keys().kids
    assert key_set.signing_key().kid in verifier.load().kids


def test_a_rotation_is_published_with_the_old_key_still_verifying(stack: Any) -> None:
    private, public = _fresh_secret(), _fresh_secret()
    issuer = _issuer(private, public)
    before = issuer.load()
    after = issuer.rotate()
    published = {jwk["kid"] for jwk in _secret_json(public)["keys"]}
    assert before.next is not None
    assert after.next is not None
    assert after.signing_key().kid == before.next.kid
    assert published == {before.signing_key().kid, before.next.kid, after.next.kid}


def test_a_lost_publish_is_repaired_by_the_next_issuer_load_and_a_newer_set_is_never_rolled_back(
    stack: Any,
) -> None:
    # Given keys whose public half was never published (the publish after the write failed)
    private, public = _fresh_secret(), _fresh_secret()
    clock = ManualClock()
    stale = _issuer(private, public, clock)
    old = stale.load()
    client = aws.client("secretsmanager", AwsSettings())
    client.put_secret_value(SecretId=public, SecretString="{}")
    # When an issuer's cache runs out and it loads again
    clock.advance(300)
    stale.load()
    # Then the public set is published again
    assert {jwk["kid"] for jwk in _secret_json(public)["keys"]} == set(old.verification_keys().kids)
    # And when another sandbox rotates, a stale sandbox's reload does not write its older set back
    newer = _issuer(private, public).rotate()
    stale_view = SigningKeySet(current=old.current, next=old.next)
    assert stale_view.verification_keys().kids <= newer.verification_keys().kids
    clock.advance(300)
    stale.load()
    assert {jwk["kid"] for jwk in _secret_json(public)["keys"]} == set(newer.verification_keys().kids)


def test_an_empty_public_set_is_read_again_soon_and_a_full_one_is_cached(stack: Any) -> None:
    # Given a verifier that started before any key existed
    private, public = _fresh_secret(), _fresh_secret()
    clock = ManualClock()
    verifier = _verifier(public, clock)
    assert len(verifier.load()) == 0
    # When the issuer generates the keys
    _issuer(private, public).load()
    # Then the verifier sees them within seconds, not after the full cache time
    clock.advance(5)
    assert len(verifier.load()) == 2
    # And once it has keys it keeps them for the cache time (a rotation reaches it within that)
    client = aws.client("secretsmanager", AwsSettings())
    client.put_secret_value(SecretId=public, SecretString="{}")
    clock.advance(299)
    assert len(verifier.load()) == 2
