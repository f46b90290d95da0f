"""REST helpers for e2e tests: a tenant bootstrapped through the real surfaces (owner key as the CLI makes
it -> companion -> companion key) and user tokens from POST /auth/token."""

from typing import Any

import httpx


def bearer(credential: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"}


# Generous limits: these suites send far more than a person would in a minute.
TEST_LIMITS = {"limits": {"requests_per_minute": 100_000, "interactions_per_day": 10_000_000}}


def make_tenant(api: httpx.Client, name: str, **limits: int) -> dict[str, Any]:
    """An owner (bootstrapped as the CLI does), a companion (``limits`` over the generous test ones), and
    its companion key."""
    from companion_memory import wiring

    owner, owner_key = wiring.identity_service().create_owner(name)
    config = {"limits": {**TEST_LIMITS["limits"], **limits}}
    companion = api.post(
        "/companions", json={"name": f"{name} companion", "config": config}, headers=bearer(owner_key)
    )
    assert companion.status_code == 201, companion.text
    key = api.post(
        f"/companions/{companion.json()['id']}/api-keys", json={"name": "backend"}, headers=bearer(owner_key)
    )
    assert key.status_code == 201, key.text
    return {
        "owner_id": str(owner.id),
        "owner_key": owner_key,
        "companion_id": companion.json()["id"],
        "key": key.json()["api_key"],
    }


def user_token(
    api: httpx.Client, tenant: dict[str, Any], user_id: str, scopes: list[str] | None = None
) -> str:
    answer = api.post(
        "/auth/token",
        json={"user_id": user_id, "scopes": scopes or ["memories:read", "memories:write", "memories:delete"]},
        headers=bearer(tenant["key"]),
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def memories(tenant: dict[str, Any], user_id: str) -> str:
    return f"/companions/{tenant['companion_id']}/users/{user_id}/memories"
