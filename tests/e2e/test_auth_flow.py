"""The operator contract of DESIGN.md §4 through the local gateway, and HTTP attacks on the identity edge."""

import json
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
    assert api.get(f"/companions/{companion}/users/zoe", headers=owner).json() == answer.json()
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
