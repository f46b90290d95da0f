"""The companion lifecycle on the real local stack: each request is a real-shaped HttpApi event, authorized by
the real Lambda authorizer (functions/authorizer) from a real key, then served by functions/companions against
PostgreSQL under row-level security as the application role.

Every tenant here is new, so the authorizer's 15 s status cache never holds an entry a test did not make.
"""

import base64
import copy
import importlib.util
import json
import os
import uuid
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import psycopg
import pytest

from companion_memory import wiring
from companion_memory.auth.principal import Principal
from companion_memory.errors import CompanionPaused, Forbidden, ValidationFailed
from companion_memory.models.companion_config import CompanionConfig
from companion_memory.models.identity import ApiKeyCreate, TokenRequest
from companion_memory.models.memory import NewMemory
from companion_memory.models.tenancy import TenantScope
from localdev.template import ROOT

pytestmark = pytest.mark.integration

API_EVENT = json.loads((ROOT / "events/companions/get.json").read_text())
AUTHORIZER_EVENT = json.loads((ROOT / "events/authorizer/request.json").read_text())
MCP_EVENT = json.loads((ROOT / "events/mcp/url-initialize.json").read_text())


@dataclass
class LambdaContext:
    function_name: str = "test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id: str = "test-request"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000  # a fresh invocation's (the delete route purges within what is left)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_app_under_test", ROOT / f"functions/{name}/app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Apps:
    authorizer: ModuleType
    companions: ModuleType

    def call(
        self,
        method: str,
        path: str,
        credential: str,
        body: object = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request as API Gateway makes it: the authorizer's answer, then the route with its context."""
        check = copy.deepcopy(AUTHORIZER_EVENT)
        check["headers"]["authorization"] = f"Bearer {credential}"
        check["identitySource"] = [f"Bearer {credential}"]
        answer = self.authorizer.lambda_handler(check, LambdaContext())
        assert answer["isAuthorized"] is True
        event = copy.deepcopy(API_EVENT)
        event["routeKey"] = "$default"
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["requestContext"]["http"]["method"] = method
        event["queryStringParameters"] = query or None
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
        event["headers"]["authorization"] = f"Bearer {credential}"
        event["headers"]["content-type"] = "application/json"
        if body is not None:
            event["body"] = json.dumps(body)
        event["requestContext"]["authorizer"] = {"lambda": answer["context"]}
        response = self.companions.app.resolve(event, LambdaContext())
        text = response.get("body") or ""
        return response["statusCode"], json.loads(text) if text else None


@pytest.fixture(scope="module")
def apps(stack: object) -> Apps:
    return Apps(authorizer=_load("authorizer"), companions=_load("companions"))


@dataclass
class Tenant:
    owner_id: uuid.UUID
    owner_key: str
    companion: dict[str, Any]

    @property
    def base(self) -> str:
        return f"/companions/{self.companion['id']}"


def _tenant(apps: Apps, config: dict[str, Any] | None = None) -> Tenant:
    owner, owner_key = wiring.identity_service().create_owner(f"Org {uuid.uuid4()}")
    status, companion = apps.call("POST", "/companions", owner_key, {"name": "Ava", "config": config or {}})
    assert status == 201, companion
    return Tenant(owner.id, owner_key, companion)


def _companion_key(tenant: Tenant) -> tuple[str, Principal]:
    """A companion key, and its principal made from the issued record (not by the authenticator, whose
    15 s status cache would then hold this companion's status before the test changes it)."""
    owner = Principal(kind="owner", owner_id=tenant.owner_id, scopes=frozenset({"admin"}))
    companion_id = uuid.UUID(tenant.companion["id"])
    issued = wiring.identity_service().create_api_key(owner, companion_id, ApiKeyCreate())
    principal = Principal(
        kind="companion",
        owner_id=tenant.owner_id,
        companion_id=companion_id,
        scopes=frozenset(issued.scopes),
        key_id=issued.id,
    )
    return issued.api_key, principal


def _user_token(backend: Principal, user_id: str) -> str:
    return wiring.identity_service().issue_user_token(backend, TokenRequest(user_id=user_id)).access_token


def _audit_actions(tenant: Tenant) -> list[str]:
    events = wiring.identity_store().audit_events(tenant.owner_id, uuid.UUID(tenant.companion["id"]))
    return [event.action for event in events]


# --- versions -----------------------------------------------------------------------------------------------


def test_a_new_companion_has_every_config_field_spelled_out_and_its_first_version_recorded(
    apps: Apps,
) -> None:
    # When a companion is created with only a rate limit
    tenant = _tenant(apps, {"limits": {"requests_per_minute": 7}})
    # Then its config is the full schema with defaults, at version 1.0.0, which its history holds
    assert tenant.companion["version"] == "1.0.0"
    expected = CompanionConfig.of({"limits": {"requests_per_minute": 7}}).stored()
    assert tenant.companion["config"] == expected
    status, history = apps.call("GET", f"{tenant.base}/versions", tenant.owner_key)
    assert status == 200
    assert [(v["version"], v["config"]) for v in history["versions"]] == [("1.0.0", expected)]


def test_updates_bump_by_the_rule_and_a_rollback_is_a_new_version_with_the_old_config(apps: Apps) -> None:
    tenant = _tenant(apps)
    original = tenant.companion["config"]
    # When the limits change (minor), then the personality (patch), then the name with an explicit major bump
    steps: list[tuple[dict[str, Any], str]] = [
        ({"config": {"limits": {"requests_per_minute": 30}}}, "1.1.0"),
        ({"config": {"personality": {"tone": "dry"}}}, "1.1.1"),
        ({"name": "Ava II", "bump": "major"}, "2.0.0"),
    ]
    version = "1.0.0"
    for change, expected in steps:
        status, body = apps.call(
            "PATCH", tenant.base, tenant.owner_key, {"expected_version": version, **change}
        )
        assert (status, body["version"]) == (200, expected), body
        version = expected
    assert body["name"] == "Ava II"
    assert body["config"]["limits"]["requests_per_minute"] == 30
    assert body["config"]["limits"]["interactions_per_day"] == original["limits"]["interactions_per_day"]
    # And it rolls back to 1.0.0
    status, rolled = apps.call(
        "POST",
        f"{tenant.base}/rollback",
        tenant.owner_key,
        {"to_version": "1.0.0", "expected_version": "2.0.0"},
    )
    # Then a new version (minor: the limits differ) holds 1.0.0's name and config, and history is intact
    assert status == 200, rolled
    assert (rolled["version"], rolled["name"], rolled["config"]) == ("2.1.0", "Ava", original)
    _, page = apps.call("GET", f"{tenant.base}/versions", tenant.owner_key, query={"limit": "3"})
    assert [v["version"] for v in page["versions"]] == ["2.1.0", "2.0.0", "1.1.1"]
    _, rest = apps.call(
        "GET",
        f"{tenant.base}/versions",
        tenant.owner_key,
        query={"limit": "3", "cursor": page["next_cursor"]},
    )
    assert [v["version"] for v in rest["versions"]] == ["1.1.0", "1.0.0"]
    assert rest["next_cursor"] is None
    status, old = apps.call("GET", f"{tenant.base}/versions/1.1.1", tenant.owner_key)
    assert (status, old["config"]["personality"]["tone"]) == (200, "dry")
    assert _audit_actions(tenant).count("companion.updated") == 3
    assert "companion.rolled_back" in _audit_actions(tenant)


def test_a_stale_update_is_409_with_the_current_version_and_changes_nothing(apps: Apps) -> None:
    tenant = _tenant(apps)
    apps.call("PATCH", tenant.base, tenant.owner_key, {"expected_version": "1.0.0", "name": "Bea"})
    # When a second writer still holds 1.0.0
    status, body = apps.call(
        "PATCH", tenant.base, tenant.owner_key, {"expected_version": "1.0.0", "name": "Cy"}
    )
    # Then it is told the current version, and the companion keeps the first writer's change
    assert status == 409
    assert body["error"]["details"]["current_version"] == "1.0.1"
    _, now = apps.call("GET", tenant.base, tenant.owner_key)
    assert (now["name"], now["version"]) == ("Bea", "1.0.1")


def test_an_update_that_changes_nothing_makes_no_version(apps: Apps) -> None:
    tenant = _tenant(apps)
    same = {"expected_version": "1.0.0", "name": "Ava", "config": {"personality": {"tone": "warm"}}}
    status, body = apps.call("PATCH", tenant.base, tenant.owner_key, same)
    assert (status, body["version"]) == (200, "1.0.0")
    _, history = apps.call("GET", f"{tenant.base}/versions", tenant.owner_key)
    assert len(history["versions"]) == 1
    assert "companion.updated" not in _audit_actions(tenant)


def test_an_invalid_config_is_400_naming_the_field_and_writes_nothing(apps: Apps) -> None:
    tenant = _tenant(apps)
    bad = {"expected_version": "1.0.0", "config": {"capabilities": {"memory_types": ["gossip"]}}}
    status, body = apps.call("PATCH", tenant.base, tenant.owner_key, bad)
    assert status == 400
    assert body["error"]["code"] == "validation_failed"
    assert body["error"]["details"]["problems"][0]["field"].startswith("config.capabilities.memory_types")
    _, now = apps.call("GET", tenant.base, tenant.owner_key)
    assert now["version"] == "1.0.0"


def test_the_database_refuses_a_config_change_that_keeps_the_version_and_any_rewrite_of_history(
    apps: Apps,
) -> None:
    tenant = _tenant(apps)
    database = wiring.database()
    # When the app role changes the config in place, or edits or deletes a recorded version
    with (
        pytest.raises(psycopg.errors.CheckViolation),
        database.transaction(TenantScope(owner_id=tenant.owner_id)) as conn,
    ):
        conn.execute("UPDATE companions SET config = '{}' WHERE id = %s", (tenant.companion["id"],))
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        database.transaction(TenantScope(owner_id=tenant.owner_id)) as conn,
    ):
        conn.execute("UPDATE companion_versions SET name = 'x'")
    # (deleting is for a deleted companion's history only: a live one's stays whole)
    with database.transaction(TenantScope(owner_id=tenant.owner_id)) as conn:
        conn.execute("DELETE FROM companion_versions WHERE companion_id = %s", (tenant.companion["id"],))
    _, history = apps.call("GET", f"{tenant.base}/versions", tenant.owner_key)
    assert [v["version"] for v in history["versions"]] == ["1.0.0"]
    # Then another owner's context sees none of the history either
    with database.transaction(TenantScope(owner_id=uuid.uuid4())) as conn:
        row = conn.execute(
            "SELECT count(*) FROM companion_versions WHERE companion_id = %s", (tenant.companion["id"],)
        ).fetchone()
    assert row is not None
    assert row[0] == 0


# --- status -------------------------------------------------------------------------------------------------


def test_pause_resume_and_archive_follow_the_allowed_moves_and_are_audited(apps: Apps) -> None:
    tenant = _tenant(apps)
    moves = [("pause", 200, "paused"), ("pause", 200, "paused"), ("resume", 200, "active")]
    moves += [("archive", 200, "archived")]
    for action, code, status_after in moves:
        status, body = apps.call("POST", f"{tenant.base}/{action}", tenant.owner_key)
        assert (status, body["status"]) == (code, status_after), (action, body)
    # An archived companion cannot come back, nor be changed
    for method, path, body in [
        ("POST", f"{tenant.base}/resume", None),
        ("POST", f"{tenant.base}/pause", None),
        ("PATCH", tenant.base, {"expected_version": "1.0.0", "name": "Zed"}),
        ("POST", f"{tenant.base}/rollback", {"to_version": "1.0.0", "expected_version": "1.0.0"}),
    ]:
        status, answer = apps.call(method, path, tenant.owner_key, body)
        assert status == 409, (method, path, answer)
        assert answer["error"]["code"] == "illegal_transition"
        assert answer["error"]["details"]["status"] == "archived"
    # The repeated pause changed nothing, so it was not audited twice
    actions = _audit_actions(tenant)
    assert [a for a in actions if a.startswith("companion.") and a != "companion.created"] == [
        "companion.paused",
        "companion.resumed",
        "companion.archived",
    ]


def test_a_paused_companions_keys_and_tokens_are_refused_with_companion_paused_on_rest_and_mcp(
    apps: Apps,
) -> None:
    # Given a companion key and a user token issued while the companion was active (neither used yet)
    tenant = _tenant(apps)
    key, backend = _companion_key(tenant)
    token = _user_token(backend, "alice")
    # When the owner pauses it
    status, _ = apps.call("POST", f"{tenant.base}/pause", tenant.owner_key)
    assert status == 200
    # Then the companion key is refused on REST with the reason's code
    status, body = apps.call("GET", tenant.base, key)
    assert (status, body["error"]["code"]) == (403, "companion_paused")
    # And over MCP, the user token is refused with the same code
    mcp = _load("mcp")
    event = copy.deepcopy(MCP_EVENT)
    event["headers"]["authorization"] = f"Bearer {token}"
    answer = mcp.handler(event, LambdaContext())
    assert answer["statusCode"] == 403
    assert json.loads(answer["body"])["error"]["code"] == "companion_paused"
    # And no new user token is issued for it
    with pytest.raises(CompanionPaused):
        _user_token(backend, "bob")


# --- listing ------------------------------------------------------------------------------------------------


def test_companions_are_listed_in_pages_by_status_and_a_tampered_cursor_is_a_clear_400(apps: Apps) -> None:
    tenant = _tenant(apps)
    for name in ("B", "C", "D"):
        apps.call("POST", "/companions", tenant.owner_key, {"name": name})
    apps.call("POST", f"{tenant.base}/pause", tenant.owner_key)
    # When the owner lists two at a time
    _, first = apps.call("GET", "/companions", tenant.owner_key, query={"limit": "2"})
    _, second = apps.call(
        "GET", "/companions", tenant.owner_key, query={"limit": "2", "cursor": first["next_cursor"]}
    )
    # Then the pages hold all four, newest first, once each
    names = [c["name"] for c in first["companions"] + second["companions"]]
    assert names == ["D", "C", "B", "Ava"]
    assert second["next_cursor"] is None
    _, paused = apps.call("GET", "/companions", tenant.owner_key, query={"status": "paused"})
    assert [c["name"] for c in paused["companions"]] == ["Ava"]
    # And a cursor edited, borrowed by another filter or by another owner is refused, not misread
    body, _, digest = first["next_cursor"].partition(".")
    forged_key = json.dumps({"c": "2000-01-01T00:00:00+00:00", "i": str(uuid.uuid4())}).encode()
    forged = base64.urlsafe_b64encode(forged_key).decode().rstrip("=") + "." + digest
    other = _tenant(apps)
    for query, credential in [
        ({"cursor": forged}, tenant.owner_key),
        ({"cursor": body}, tenant.owner_key),
        ({"cursor": first["next_cursor"], "status": "active"}, tenant.owner_key),
        ({"cursor": first["next_cursor"]}, other.owner_key),
    ]:
        status, answer = apps.call("GET", "/companions", credential, query=query)
        assert status == 400, query
        assert answer["error"]["details"]["reason"] == "invalid_cursor"


# --- tenancy ------------------------------------------------------------------------------------------------

ROUTES: list[tuple[str, str, object]] = [
    ("GET", "", None),
    ("PATCH", "", {"expected_version": "1.0.0", "name": "Mallory"}),
    ("GET", "/versions", None),
    ("GET", "/versions/1.0.0", None),
    ("POST", "/rollback", {"to_version": "1.0.0", "expected_version": "1.0.0"}),
    ("POST", "/pause", None),
    ("POST", "/resume", None),
    ("POST", "/archive", None),
    ("GET", "/users", None),
    ("GET", "/users/alice", None),
    ("PUT", "/users/alice/preferences", {"preferences": {"x": 1}}),
    ("POST", "/users/alice/block", None),
    ("POST", "/users/alice/unblock", None),
    ("PUT", "/users/alice/permissions", {"can_delete": False}),
]


def test_another_owners_companion_is_404_on_every_route_and_nothing_changes(apps: Apps) -> None:
    victim, attacker = _tenant(apps), _tenant(apps)
    for method, suffix, body in ROUTES:
        status, answer = apps.call(method, victim.base + suffix, attacker.owner_key, body)
        assert (status, answer["error"]["code"]) == (404, "not_found"), (method, suffix, answer)
    _, now = apps.call("GET", victim.base, victim.owner_key)
    assert (now["status"], now["version"], now["name"]) == ("active", "1.0.0", "Ava")
    assert _audit_actions(victim) == ["companion.created"]


def test_a_companion_key_and_a_user_token_cannot_manage_the_lifecycle(apps: Apps) -> None:
    tenant = _tenant(apps)
    key, backend = _companion_key(tenant)
    token = _user_token(backend, "alice")
    for credential in (key, token):
        status, _ = apps.call("GET", "/companions", credential)
        assert status == 403
        for method, suffix, body in ROUTES[1:]:  # a companion key may read its own record (GET)
            status, answer = apps.call(method, tenant.base + suffix, credential, body)
            assert status in (403, 404), (method, suffix, answer)
    _, now = apps.call("GET", tenant.base, tenant.owner_key)
    assert (now["status"], now["version"]) == ("active", "1.0.0")


# --- users --------------------------------------------------------------------------------------------------


def test_a_companions_users_are_listed_read_with_their_relationship_and_given_preferences(apps: Apps) -> None:
    tenant = _tenant(apps)
    _, backend = _companion_key(tenant)
    for user in ("carol", "alice", "bob"):
        _user_token(backend, user)
    # When the owner lists users two at a time
    _, first = apps.call("GET", f"{tenant.base}/users", tenant.owner_key, query={"limit": "2"})
    _, second = apps.call(
        "GET", f"{tenant.base}/users", tenant.owner_key, query={"limit": "2", "cursor": first["next_cursor"]}
    )
    assert [u["user_id"] for u in first["users"] + second["users"]] == ["alice", "bob", "carol"]
    # And sets alice's preferences
    prefs = {"language": "fr", "topics": ["jazz"]}
    status, alice = apps.call(
        "PUT", f"{tenant.base}/users/alice/preferences", tenant.owner_key, {"preferences": prefs}
    )
    assert (status, alice["preferences"]) == (200, prefs)
    # Then reading her shows them beside her permissions and relationship statistics
    status, alice = apps.call("GET", f"{tenant.base}/users/alice", tenant.owner_key)
    assert status == 200
    assert alice["preferences"] == prefs
    assert (alice["can_read"], alice["is_blocked"], alice["memory_count"]) == (True, False, 0)
    assert "interaction_count" in alice
    # And preferences over 16 KiB are refused and change nothing
    big = {"notes": "x" * (16 * 1024)}
    status, answer = apps.call(
        "PUT", f"{tenant.base}/users/alice/preferences", tenant.owner_key, {"preferences": big}
    )
    assert (status, answer["error"]["code"]) == (400, "validation_failed")
    _, alice = apps.call("GET", f"{tenant.base}/users/alice", tenant.owner_key)
    assert alice["preferences"] == prefs
    assert "user.preferences_changed" in _audit_actions(tenant)


def test_a_blocked_user_gets_no_token_until_unblocked(apps: Apps) -> None:
    tenant = _tenant(apps)
    _, backend = _companion_key(tenant)
    status, bob = apps.call("POST", f"{tenant.base}/users/bob/block", tenant.owner_key)
    assert (status, bob["is_blocked"]) == (200, True)
    with pytest.raises(Forbidden, match="blocked"):
        _user_token(backend, "bob")
    status, bob = apps.call("POST", f"{tenant.base}/users/bob/unblock", tenant.owner_key)
    assert (status, bob["is_blocked"]) == (200, False)
    assert _user_token(backend, "bob")
    assert [a for a in _audit_actions(tenant) if a.startswith("user.")] == ["user.blocked", "user.unblocked"]


# --- capabilities -------------------------------------------------------------------------------------------


def test_a_memory_of_a_type_the_companion_does_not_keep_is_refused_and_not_stored(apps: Apps) -> None:
    # Given a companion that keeps facts only
    tenant = _tenant(apps, {"capabilities": {"memory_types": ["fact"]}})
    scope = TenantScope(
        owner_id=tenant.owner_id, companion_id=uuid.UUID(tenant.companion["id"]), user_id="alice"
    )
    service = wiring.memory_service()
    # When a preference is stored
    with pytest.raises(ValidationFailed) as refused:
        service.store(scope, NewMemory(content="Alice likes jazz", type="preference"))
    # Then it is refused, naming what is allowed, and a fact is still kept
    assert refused.value.details == {"reason": "memory_type_not_allowed", "allowed": ["fact"]}
    assert service.store(scope, NewMemory(content="Alice lives in Lyon", type="fact")).outcome == "created"


def test_a_deleted_companion_cannot_be_resumed_paused_or_changed(apps: Apps) -> None:
    # Given a companion its owner deleted (the erasure's route: a tombstone with status deleted)
    tenant = _tenant(apps)
    status, _ = apps.call("DELETE", tenant.base, tenant.owner_key)
    assert status == 200
    # Then no lifecycle move brings it back, each refused with the same stable code
    for method, suffix, body in [
        ("POST", "/resume", None),
        ("POST", "/pause", None),
        ("POST", "/archive", None),
        ("PUT", "/users/alice/preferences", {"preferences": {}}),
        ("PUT", "/users/alice/permissions", {"is_blocked": True}),
    ]:
        status, answer = apps.call(method, tenant.base + suffix, tenant.owner_key, body)
        assert (status, answer["error"]["code"]) == (409, "illegal_transition"), (suffix, answer)
        assert answer["error"]["details"]["status"] == "deleted"
    # and no user row came back to life behind the purge
    status, page = apps.call("GET", tenant.base + "/users", tenant.owner_key)
    assert (status, page["users"]) == (200, [])


def test_a_rollback_to_a_config_stored_under_an_older_schema_restores_it_through_todays_schema(
    apps: Apps,
) -> None:
    # Given a companion with a limit changed, and an old version whose config predates today's schema (an
    # empty object: every field it now has was added later), as the database owner would find it
    tenant = _tenant(apps, {"limits": {"requests_per_minute": 77}})
    companion_id = uuid.UUID(tenant.companion["id"])
    with psycopg.connect(os.environ["DATABASE_OWNER_URL"], connect_timeout=5) as conn:
        conn.execute("ALTER TABLE companion_versions NO FORCE ROW LEVEL SECURITY")
        conn.execute(
            "INSERT INTO companion_versions (companion_id, owner_id, version, name, config, created_at)"
            " VALUES (%s, %s, '0.9.0', 'Ava', '{}', now())",
            (companion_id, tenant.owner_id),
        )
        conn.execute("ALTER TABLE companion_versions FORCE ROW LEVEL SECURITY")
    # When the owner rolls back to it
    status, rolled = apps.call(
        "POST",
        f"{tenant.base}/rollback",
        tenant.owner_key,
        {"to_version": "0.9.0", "expected_version": "1.0.0"},
    )
    # Then the restored config is today's defaults with every field spelled out, not the bare old object
    assert status == 200, rolled
    assert rolled["config"] == CompanionConfig.of({}).stored()
    assert rolled["config"]["limits"]["requests_per_minute"] != 77
