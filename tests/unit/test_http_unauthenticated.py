"""401 for a bad credential on authorizer-guarded routes, answered by the shared REST resolver.

The authorizer admits a request whose credential it found bad with ``{"authenticated": "false"}`` (an HttpApi
simple response can only deny with 403); the resolver turns that into 401 before validation or route code.
"""

import copy
import json
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel, ConfigDict

from companion_memory.auth.context import UNAUTHENTICATED_CONTEXT
from companion_memory.auth.principal import Principal, principal_from_authorizer_context
from companion_memory.errors import Unauthorized
from companion_memory.http.resolver import WWW_AUTHENTICATE, build_resolver

ROOT = Path(__file__).resolve().parents[2]
BASE = json.loads((ROOT / "events" / "health" / "get.json").read_text())


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def app(calls: list[str]) -> Any:
    app = build_resolver()

    @app.post("/things")
    def create(request: Body) -> dict[str, str]:
        calls.append("create")
        return {"kind": principal_from_authorizer_context(app.current_event.raw_event).kind}

    @app.get("/public")
    def public() -> dict[str, str]:
        calls.append("public")
        return {"ok": "yes"}

    return app


def _event(
    method: str, path: str, body: object = None, context: dict[str, str] | None = None
) -> dict[str, Any]:
    event = copy.deepcopy(BASE)
    event["routeKey"] = f"{method} {path}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["routeKey"] = event["routeKey"]
    if body is not None:
        event["body"] = json.dumps(body)
        event["headers"]["content-type"] = "application/json"
    if context is not None:
        event["requestContext"]["authorizer"] = {"lambda": context}
    return event


def _is_401(answer: dict[str, Any]) -> None:
    assert answer["statusCode"] == 401, answer
    assert answer["headers"]["WWW-Authenticate"] == WWW_AUTHENTICATE
    assert json.loads(answer["body"])["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "body", [{"name": "x"}, {"nope": 1}, "not an object"], ids=["valid", "invalid", "str"]
)
def test_a_request_the_authorizer_found_unauthenticated_is_401_before_any_route_code(
    app: Any, calls: list[str], body: object
) -> None:
    # When a request arrives with the authorizer's "unauthenticated" context, whatever its body
    answer = app.resolve(_event("POST", "/things", body, UNAUTHENTICATED_CONTEXT), None)
    # Then it is 401 with the Bearer challenge, and no route ran
    _is_401(answer)
    assert calls == []


def test_an_authenticated_request_reaches_its_route(app: Any, calls: list[str]) -> None:
    principal = Principal(kind="owner", owner_id=uuid4(), scopes=frozenset({"admin"}), key_id=uuid4())
    answer = app.resolve(_event("POST", "/things", {"name": "x"}, principal.to_context()), None)
    assert answer["statusCode"] == 200, answer
    assert json.loads(answer["body"]) == {"kind": "owner"}


def test_a_route_without_the_authorizer_is_not_touched(app: Any, calls: list[str]) -> None:
    answer = app.resolve(_event("GET", "/public"), None)
    assert answer["statusCode"] == 200
    assert calls == ["public"]


def test_a_guarded_route_that_gets_no_authorizer_context_is_401_too(app: Any) -> None:
    # A template mistake (the route left without the authorizer) must fail closed.
    _is_401(app.resolve(_event("POST", "/things", {"name": "x"}), None))


def test_the_principal_accessor_refuses_the_unauthenticated_context_on_its_own() -> None:
    with pytest.raises(Unauthorized):
        principal_from_authorizer_context(_event("POST", "/things", None, UNAUTHENTICATED_CONTEXT))
