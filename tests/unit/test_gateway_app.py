"""The gateway's ASGI application, driven without sockets, on the fixture template."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localdev.authorizer import AuthorizerCache
from localdev.events import API_PAYLOAD_LIMIT
from localdev.gateway import Gateway
from localdev.template import load

FIXTURE = Path(__file__).parent.parent / "fixtures" / "gateway" / "template.yaml"
API_PORT, URL_PORT = 3000, 3001


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gateway(clock: FakeClock) -> Iterator[Gateway]:
    template = load(FIXTURE)
    app = Gateway(
        template,
        api_port=API_PORT,
        url_ports={URL_PORT: template.functions["EchoFunction"]},
        cache=AuthorizerCache(clock),
    )
    yield app
    app.executor.shutdown(wait=True)


def request(
    app: Gateway,
    method: str,
    path: str,
    *,
    port: int = API_PORT,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "method": method,
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "server": ("127.0.0.1", port),
        "client": ("127.0.0.1", 50000),
        "http_version": "1.1",
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(app(scope, receive, send))
    start, payload = sent
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, payload["body"]


def echoed(body: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(body)
    return answer


def test_a_public_route_gets_its_event_and_a_lambda_context(gateway: Gateway) -> None:
    status, headers, body = request(gateway, "GET", "/public/42?x=1")
    assert status == 200
    assert headers["content-length"] == str(len(body))
    answer = echoed(body)
    assert answer["event"]["routeKey"] == "GET /public/{item}"
    assert answer["event"]["pathParameters"] == {"item": "42"}
    assert "authorizer" not in answer["event"]["requestContext"]
    assert answer["context"]["function_name"] == "EchoFunction"
    assert answer["context"]["memory_limit_in_mb"] == 256
    assert 0 < answer["context"]["remaining_ms"] <= 20_000


def test_warm_invocations_reuse_the_module(gateway: Gateway) -> None:
    first = echoed(request(gateway, "GET", "/public/1")[2])["invocations"]
    second = echoed(request(gateway, "GET", "/public/1")[2])["invocations"]
    assert second == first + 1


def test_an_unknown_route_is_api_gateways_404(gateway: Gateway) -> None:
    assert request(gateway, "GET", "/nowhere")[::2] == (404, b'{"message":"Not Found"}')


def test_a_handler_exception_is_a_bare_500(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    status, _, body = request(gateway, "GET", "/boom")
    assert (status, body) == (500, b'{"message":"Internal Server Error"}')
    assert "secret detail" in caplog.text  # the trace goes to the gateway's log


def test_a_body_over_the_limit_is_refused_with_413(gateway: Gateway) -> None:
    status, _, _ = request(gateway, "POST", "/things", body=b"x" * (API_PAYLOAD_LIMIT + 1))
    assert status == 413


def test_a_declared_method_wins_over_any(gateway: Gateway) -> None:
    assert echoed(request(gateway, "POST", "/things")[2])["event"]["routeKey"] == "POST /things"
    assert echoed(request(gateway, "PUT", "/things")[2])["event"]["routeKey"] == "ANY /things"


def test_the_function_url_port_sends_function_url_events(gateway: Gateway) -> None:
    event = echoed(request(gateway, "POST", "/mcp", port=URL_PORT, body=b"{}")[2])["event"]
    assert event["routeKey"] == "$default"
    assert event["requestContext"]["domainName"].endswith(".lambda-url.us-east-1.on.aws")


def test_a_request_without_the_identity_source_is_401_without_invoking(gateway: Gateway) -> None:
    assert request(gateway, "GET", "/private/x")[::2] == (401, b'{"message":"Unauthorized"}')
    assert "AuthorizerFunction" not in gateway.loader._modules  # never loaded, so never invoked


def test_a_denied_request_is_403(gateway: Gateway) -> None:
    status, _, body = request(gateway, "GET", "/private/x", headers={"Authorization": "Bearer deny"})
    assert (status, body) == (403, b'{"message":"Forbidden"}')


@pytest.mark.parametrize("token", ["boom", "invalid"])
def test_a_failing_or_invalid_authorizer_is_500(gateway: Gateway, token: str) -> None:
    status, _, body = request(gateway, "GET", "/private/x", headers={"Authorization": f"Bearer {token}"})
    assert (status, body) == (500, b'{"message":"Internal Server Error"}')


def test_an_allowed_request_carries_the_authorizer_context(gateway: Gateway) -> None:
    event = echoed(request(gateway, "GET", "/private/a/b", headers={"Authorization": "Bearer allow-1"})[2])[
        "event"
    ]
    context = event["requestContext"]["authorizer"]["lambda"]
    assert context["token"] == "allow-1"
    assert context["routeArn"].endswith("/$default/GET/private/a/b")
    assert event["pathParameters"] == {"proxy": "a/b"}


def test_the_answer_is_cached_for_the_ttl_per_identity(gateway: Gateway, clock: FakeClock) -> None:
    def invocation(token: str) -> int:
        status, _, body = request(gateway, "GET", "/private/x", headers={"Authorization": f"Bearer {token}"})
        assert status == 200
        return int(echoed(body)["event"]["requestContext"]["authorizer"]["lambda"]["invocation"])

    first = invocation("allow-a")
    assert invocation("allow-a") == first  # cached
    assert invocation("allow-b") == first + 1  # another identity, another call
    clock.now += 300
    assert invocation("allow-a") == first + 2  # expired


def test_a_zero_ttl_authorizer_runs_on_every_request(gateway: Gateway) -> None:
    def invocation() -> int:
        body = request(gateway, "GET", "/uncached", headers={"Authorization": "Bearer allow"})[2]
        return int(echoed(body)["event"]["requestContext"]["authorizer"]["lambda"]["invocation"])

    assert invocation() + 1 == invocation()
