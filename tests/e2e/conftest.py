"""Shared e2e fixtures: tenants built through the operator contract (CLI owner, REST companion and key,
POST /auth/token), and user tokens for the MCP endpoint."""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from companion_memory import cli
from localdev.stack import Running

ALL_MEMORY_SCOPES = ["memories:read", "memories:write", "memories:delete"]


@dataclass(frozen=True)
class Tenant:
    owner_key: str
    companion_id: str
    companion_key: str


def _bearer(credential: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"}


@pytest.fixture(scope="session")
def api_client(stack: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.env["API_URL"], timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def new_tenant(api_client: httpx.Client, stack: Running) -> Callable[[str], Tenant]:
    """An owner (bootstrapped by the CLI), one companion and one companion key, per call."""

    def make(name: str) -> Tenant:
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["owner", "create", "--name", name]) == 0
        owner_key = json.loads(out.getvalue())["api_key"]
        companion = api_client.post(
            "/companions", json={"name": f"{name} companion"}, headers=_bearer(owner_key)
        )
        assert companion.status_code == 201, companion.text
        companion_id = companion.json()["id"]
        key = api_client.post(
            f"/companions/{companion_id}/api-keys", json={"name": "backend"}, headers=_bearer(owner_key)
        )
        assert key.status_code == 201, key.text
        return Tenant(owner_key, companion_id, key.json()["api_key"])

    return make


@pytest.fixture(scope="session")
def user_token(api_client: httpx.Client) -> Callable[..., str]:
    """A user JWT from POST /auth/token, as a companion's backend gets one for its user."""

    def issue(tenant: Tenant, user_id: str, scopes: list[str] | None = None) -> str:
        answer = api_client.post(
            "/auth/token",
            json={"user_id": user_id, "scopes": scopes or ALL_MEMORY_SCOPES, "ttl_seconds": 900},
            headers=_bearer(tenant.companion_key),
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    return issue


@pytest.fixture(scope="session")
def tenant_a(new_tenant: Callable[[str], Tenant]) -> Tenant:
    return new_tenant("Tenant A")


@pytest.fixture(scope="session")
def alice_token(user_token: Callable[..., str], tenant_a: Tenant) -> str:
    return user_token(tenant_a, "alice")
