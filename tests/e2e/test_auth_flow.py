"""The operator contract of DESIGN.md §4 through the local gateway, and HTTP attacks on the identity edge."""

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from companion_memory import cli
from localdev.stack import Running


@pytest.fixture(scope="module")
def api(stack: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.env["API_URL"], timeout=30) as client:
        yield client


def _owner(capsys: pytest.CaptureFixture[str], name: str) -> dict[str, Any]:
    assert cli.main(["owner", "create", "--name", name]) == 0
    created: dict[str, Any] = json.loads(capsys.readouterr().out)
    return created


def _bearer(credential: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"}


@pytest.fixture(scope="module")
def tenant(api: httpx.Client, stack: Running) -> dict[str, Any]:
    # Given an owner (bootstrapped by the CLI), a companion and a companion key
    owner, api_key = _bootstrap_owner("Acme")
    companion = api.post("/companions", json={"name": "Ava"}, headers=_bearer(api_key))
    assert companion.status_code == 201, companion.text
    key = api.post(
        f"/companions/{companion.json()['id']}/api-keys", json={"name": "backend"}, headers=_bearer(api_key)
    )
    assert key.status_code == 201, key.text
    return {"owner": owner, "owner_key": api_key, "companion": companion.json(), "key": key.json()}


def _bootstrap_owner(name: str) -> tuple[str, str]:
    from companion_memory import wiring

    owner, api_key = wiring.identity_service().create_owner(name)
    return str(owner.id), api_key


def test_the_cli_bootstraps_an_owner_key(stack: Running, capsys: pytest.CaptureFixture[str]) -> None:
    created = _owner(capsys, "Bootstrap Ltd")
    assert set(created) == {"owner_id", "api_key"}
    assert created["api_key"].startswith("ok_")


def test_a_companion_key_exchanges_for_a_user_token_that_verifies(
    api: httpx.Client, tenant: dict[str, Any]
) -> None:
    from companion_memory import wiring

    # When the companion's backend asks for a token for one of its users
    answer = api.post(
        "/auth/token",
        json={"user_id": "alice", "scopes": ["memories:read"], "ttl_seconds": 600},
        headers=_bearer(tenant["key"]["api_key"]),
    )
    # Then it gets a short-lived bearer token bound to that user and companion
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    principal = wiring.authenticator().authenticate(body["access_token"])
    assert (principal.kind, principal.user_id, str(principal.companion_id)) == (
        "user",
        "alice",
        tenant["companion"]["id"],
    )
    assert principal.scopes == {"memories:read"}


def test_the_owner_lists_keys_without_secrets(api: httpx.Client, tenant: dict[str, Any]) -> None:
    listed = api.get(
        f"/companions/{tenant['companion']['id']}/api-keys", headers=_bearer(tenant["owner_key"])
    )
    assert listed.status_code == 200
    assert tenant["key"]["api_key"] not in listed.text
    assert [key["prefix"] for key in listed.json()["api_keys"]] == [tenant["key"]["prefix"]]


def test_jwks_and_protected_resource_metadata_are_public(api: httpx.Client, stack: Running) -> None:
    jwks = api.get("/.well-known/jwks.json").json()
    assert jwks["keys"]
    assert all("d" not in key for key in jwks["keys"])
    metadata = api.get("/.well-known/oauth-protected-resource").json()
    assert metadata["resource"] == stack.env["API_URL"] + "/mcp"
    assert metadata["bearer_methods_supported"] == ["header"]


def test_the_owner_blocks_a_user_and_the_user_gets_no_more_tokens(
    api: httpx.Client, tenant: dict[str, Any]
) -> None:
    from uuid import UUID

    from companion_memory import wiring

    companion, owner = tenant["companion"]["id"], _bearer(tenant["owner_key"])
    # When the owner blocks a user and takes away its delete permission
    answer = api.put(
        f"/companions/{companion}/users/zoe/permissions",
        json={"is_blocked": True, "can_delete": False},
        headers=owner,
    )
    # Then the record says so, reads back the same, and the change is audited
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "companion_id": companion,
        "user_id": "zoe",
        "can_read": True,
        "can_write": True,
        "can_delete": False,
        "is_blocked": True,
    }
    read_back = api.get(f"/companions/{companion}/users/zoe", headers=owner).json()
    assert {name: read_back[name] for name in answer.json()} == answer.json()
    audit = wiring.identity_store().audit_events(UUID(tenant["owner"]), UUID(companion))
    assert (audit[-1].action, audit[-1].target) == ("permission.changed", "user:zoe")
    # And the companion's backend can no longer get a token for that user
    refused = api.post("/auth/token", json={"user_id": "zoe"}, headers=_bearer(tenant["key"]["api_key"]))
    assert refused.status_code == 403


def test_permissions_take_only_the_four_flags(api: httpx.Client, tenant: dict[str, Any]) -> None:
    path = f"/companions/{tenant['companion']['id']}/users/zoe/permissions"
    owner = _bearer(tenant["owner_key"])
    assert api.put(path, json={"is_admin": True}, headers=owner).status_code == 400
    assert api.put(path, json={}, headers=owner).status_code == 400


# --- attacks ---------------------------------------------------------------------------------------------
# Each HTTP attack case is recorded in the suite's security case count (tests/conftest.py).
SUITE = "HTTP attacks (REST edge)"


def _refused(
    security_cases: Any, answer: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    outcome = f"refused {status}" if answer.status_code == status else f"UNEXPECTED {answer.status_code}"
    security_cases(SUITE, outcome)
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    if code is not None:
        assert body["error"]["code"] == code
    return body


def test_no_credential_is_401(api: httpx.Client, tenant: dict[str, Any], security_cases: Any) -> None:
    _refused(security_cases, api.post("/companions", json={"name": "x"}), 401)
    _refused(security_cases, api.post("/auth/token", json={"user_id": "alice"}), 401)


BAD_CREDENTIALS = {
    "forged-companion-key": "ck_" + "A" * 55,
    "forged-owner-key": "ok_" + "A" * 55,
    "not-a-key-or-token": "hello",
    "unsigned-jwt": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.",
}


@pytest.mark.parametrize("credential", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
def test_a_bad_credential_is_401_with_a_bearer_challenge_everywhere(
    api: httpx.Client, tenant: dict[str, Any], credential: str, security_cases: Any
) -> None:
    # The token exchange authenticates itself; authorizer-guarded routes get the authorizer's
    # "unauthenticated" answer turned into 401 by the shared resolver (an invalid body changes nothing).
    companion = tenant["companion"]["id"]
    answers = [
        api.post("/auth/token", json={"user_id": "a"}, headers=_bearer(credential)),
        api.post("/companions", json={"name": "x"}, headers=_bearer(credential)),
        api.post("/companions", json={"unknown": 1}, headers=_bearer(credential)),
        api.get(f"/companions/{companion}", headers=_bearer(credential)),
        api.get(f"/companions/{companion}/api-keys", headers=_bearer(credential)),
        api.get("/owner/api-keys", headers=_bearer(credential)),
        api.post("/owner/api-keys", json={}, headers=_bearer(credential)),
    ]
    bodies = []
    for answer in answers:
        bodies.append(_refused(security_cases, answer, 401, "unauthorized"))
        assert answer.headers["www-authenticate"] == 'Bearer realm="companion-memory"'
    # And none says more for an existing companion than for any other request
    assert all(body == bodies[1] for body in bodies[1:])


def test_a_credential_without_the_scope_is_403(
    api: httpx.Client, tenant: dict[str, Any], security_cases: Any
) -> None:
    # A companion key (no admin scope) may not create companions or keys
    key = _bearer(tenant["key"]["api_key"])
    companion = tenant["companion"]["id"]
    _refused(security_cases, api.post("/companions", json={"name": "x"}, headers=key), 403, "forbidden")
    _refused(
        security_cases, api.post(f"/companions/{companion}/api-keys", json={}, headers=key), 403, "forbidden"
    )
    permissions = f"/companions/{companion}/users/alice/permissions"
    _refused(security_cases, api.put(permissions, json={"is_blocked": False}, headers=key), 403, "forbidden")
    # Nor see or mint the organisation's owner keys
    _refused(security_cases, api.get("/owner/api-keys", headers=key), 403, "forbidden")
    _refused(security_cases, api.post("/owner/api-keys", json={}, headers=key), 403, "forbidden")


def test_a_token_cannot_ask_for_more_scopes_than_its_key(
    api: httpx.Client, tenant: dict[str, Any], security_cases: Any
) -> None:
    answer = api.post(
        "/auth/token", json={"user_id": "eve", "scopes": ["admin"]}, headers=_bearer(tenant["key"]["api_key"])
    )
    _refused(security_cases, answer, 403, "forbidden")


def test_another_tenants_companion_reads_as_missing(
    api: httpx.Client, tenant: dict[str, Any], security_cases: Any
) -> None:
    _, other_key = _bootstrap_owner("Rival")
    mine, missing = tenant["companion"]["id"], "00000000-0000-4000-8000-000000000000"
    key_id = tenant["key"]["id"]
    for path, method in [
        ("/companions/{}", "GET"),
        ("/companions/{}/api-keys", "GET"),
        ("/companions/{}/api-keys", "POST"),
        (f"/companions/{{}}/api-keys/{key_id}/revoke", "POST"),
        (f"/companions/{{}}/api-keys/{key_id}/rotate", "POST"),
        ("/companions/{}/users/alice", "GET"),
        ("/companions/{}/users/alice/permissions", "PUT"),
    ]:
        body = {"is_blocked": True} if method == "PUT" else {} if method == "POST" else None
        theirs = api.request(method, path.format(mine), json=body, headers=_bearer(other_key))
        absent = api.request(method, path.format(missing), json=body, headers=_bearer(other_key))
        assert _refused(security_cases, theirs, 404) == _refused(security_cases, absent, 404)
    # And the key survived the rival's attempts
    listed = api.get(f"/companions/{mine}/api-keys", headers=_bearer(tenant["owner_key"])).json()
    assert [k["revoked_at"] for k in listed["api_keys"] if k["id"] == key_id] == [None]


def test_a_token_in_the_query_string_is_never_read(
    api: httpx.Client, tenant: dict[str, Any], security_cases: Any
) -> None:
    answer = api.post("/companions", params={"access_token": tenant["owner_key"]}, json={"name": "x"})
    _refused(security_cases, answer, 401)


# --- owner keys ------------------------------------------------------------------------------------------


def _owner_keys(api: httpx.Client, owner_key: str) -> dict[str, dict[str, Any]]:
    listed = api.get("/owner/api-keys", headers=_bearer(owner_key))
    assert listed.status_code == 200, listed.text
    return {key["name"]: key for key in listed.json()["api_keys"]}


def _authorization_bound_s() -> float:
    """How long a revoked key may keep working at the API: the authorizer's result cache (ReauthorizeEvery,
    as the local gateway reads it from template.yaml) plus the authorizer function's own key cache."""
    from companion_memory.config import IdentitySettings
    from localdev.template import default

    ttl = max(
        route.auth.ttl_seconds for route in default().routes if route.path == "/owner/api-keys" and route.auth
    )
    cache_s = IdentitySettings.model_fields["auth_cache_s"].default
    return float(ttl) + float(cache_s)


def test_a_second_owner_key_works_and_revoking_the_first_locks_it_out_within_the_bound(
    api: httpx.Client, stack: Running, security_cases: Any
) -> None:
    from uuid import UUID

    from companion_memory import wiring

    # Given an organisation with its bootstrap key, used once (its authorization is now cached)
    owner, first = _bootstrap_owner("Key Ring Ltd")
    first_id = _owner_keys(api, first)["bootstrap"]["id"]
    # When it creates a second owner key
    created = api.post(
        "/owner/api-keys", json={"name": "ci", "expires_in_seconds": 3600}, headers=_bearer(first)
    )
    # Then the key is shown once, not cached by anyone, and works
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    second = created.json()
    assert second["api_key"].startswith("ok_")
    assert second["scopes"] == ["admin"]
    listed = api.get("/owner/api-keys", headers=_bearer(second["api_key"]))
    assert listed.status_code == 200
    assert second["api_key"] not in listed.text
    assert first not in listed.text
    assert sorted(key["name"] for key in listed.json()["api_keys"]) == ["bootstrap", "ci"]
    # When the second key revokes the first
    revoked = api.post(f"/owner/api-keys/{first_id}/revoke", headers=_bearer(second["api_key"]))
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    # Then the first key is refused once the caches that admitted it have aged out (polled, never slept
    # through: the bound is the ceiling, not the expectation)
    deadline = time.monotonic() + _authorization_bound_s() + 5
    answer = api.get("/owner/api-keys", headers=_bearer(first))
    while answer.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        answer = api.get("/owner/api-keys", headers=_bearer(first))
    _refused(security_cases, answer, 401, "unauthorized")
    # And the second key still works, and both changes are audited by who made them
    assert api.get("/owner/api-keys", headers=_bearer(second["api_key"])).status_code == 200
    audit = [(e.action, e.target) for e in wiring.identity_store().audit_events(UUID(owner))]
    assert audit[-2:] == [
        ("api_key.created", f"api_key:{second['id']}"),
        ("api_key.revoked", f"api_key:{first_id}"),
    ]


def test_the_last_owner_key_cannot_be_revoked(api: httpx.Client, stack: Running, security_cases: Any) -> None:
    # Given an organisation whose only owner key is its bootstrap key
    _, only = _bootstrap_owner("Solo Ltd")
    only_id = _owner_keys(api, only)["bootstrap"]["id"]
    # When it tries to revoke itself
    answer = api.post(f"/owner/api-keys/{only_id}/revoke", headers=_bearer(only))
    # Then the API refuses, says why, and the key still works
    body = _refused(security_cases, answer, 409, "conflict")
    assert "lock the organisation out" in body["error"]["message"]
    assert _owner_keys(api, only)["bootstrap"]["revoked_at"] is None


def test_an_owner_key_rotates_with_both_keys_working_through_the_grace(
    api: httpx.Client, stack: Running
) -> None:
    # Given an organisation's bootstrap key
    _, old = _bootstrap_owner("Rotate Ltd")
    old_id = _owner_keys(api, old)["bootstrap"]["id"]
    # When it is rotated with a ten-minute grace
    answer = api.post(f"/owner/api-keys/{old_id}/rotate", json={"grace_seconds": 600}, headers=_bearer(old))
    # Then the successor is an admin key (shown once), and both keys list the same record of the rotation
    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    rotated = answer.json()
    assert (rotated["replaces"], rotated["scopes"]) == (old_id, ["admin"])
    for key in (rotated["api_key"], old):
        listed = api.get("/owner/api-keys", headers=_bearer(key))
        assert listed.status_code == 200, listed.text
        by_id = {k["id"]: k for k in listed.json()["api_keys"]}
        assert set(by_id) == {old_id, rotated["id"]}
        assert by_id[old_id]["replaced_by"] == rotated["id"]
        assert by_id[old_id]["grace_until"] is not None


def test_another_owners_key_id_reads_as_missing(
    api: httpx.Client, stack: Running, security_cases: Any
) -> None:
    # Given our organisation with two owner keys (so a revocation would not be refused as the last one)
    _, ours = _bootstrap_owner("Victim Ltd")
    created = api.post("/owner/api-keys", json={"name": "ci"}, headers=_bearer(ours))
    assert created.status_code == 201, created.text
    target, missing = created.json()["id"], "00000000-0000-4000-8000-000000000000"
    # When a rival owner revokes or rotates it, or lists its keys
    _, rival = _bootstrap_owner("Rival Keys")
    for action in ("revoke", "rotate"):
        theirs = api.post(f"/owner/api-keys/{target}/{action}", json={}, headers=_bearer(rival))
        absent = api.post(f"/owner/api-keys/{missing}/{action}", json={}, headers=_bearer(rival))
        # Then the answer is exactly a missing key's
        assert _refused(security_cases, theirs, 404) == _refused(security_cases, absent, 404)
    assert target not in api.get("/owner/api-keys", headers=_bearer(rival)).text
    # And our key is untouched
    ci = _owner_keys(api, ours)["ci"]
    assert (ci["revoked_at"], ci["replaced_by"]) == (None, None)
