"""The local gateway over real sockets (fixture template): authorizer, concurrency, errors, keep-alive."""

import http.client
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from localdev.gateway import Bound, running

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).parent.parent / "fixtures" / "gateway" / "template.yaml"


@pytest.fixture(scope="module")
def gateway() -> Iterator[Bound]:
    with running(FIXTURE) as bound:
        yield bound


@pytest.fixture
def client(gateway: Bound) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.api_url, timeout=30) as client:
        yield client


def test_routes_and_function_urls_listen_on_loopback_ports_in_template_order(gateway: Bound) -> None:
    assert list(gateway.function_urls) == ["EchoFunction", "SecondUrlFunction"]
    for url in (gateway.api_url, *gateway.function_urls.values()):
        assert urlsplit(url).hostname == "127.0.0.1"


def test_an_allowed_request_reaches_the_route_with_the_authorizer_context(client: httpx.Client) -> None:
    response = client.get("/private/notes", headers={"Authorization": "Bearer allow-e2e"})
    assert response.status_code == 200
    assert response.json()["event"]["requestContext"]["authorizer"]["lambda"]["token"] == "allow-e2e"


def test_a_denied_request_is_403(client: httpx.Client) -> None:
    response = client.get("/private/notes", headers={"Authorization": "Bearer deny"})
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}


def test_a_request_without_identity_is_401(client: httpx.Client) -> None:
    response = client.get("/private/notes")
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_the_authorizer_answer_is_cached_per_token(client: httpx.Client) -> None:
    def invocation(token: str) -> int:
        response = client.get("/private/x", headers={"Authorization": f"Bearer {token}"})
        return int(response.json()["event"]["requestContext"]["authorizer"]["lambda"]["invocation"])

    first = invocation("allow-cache")
    assert invocation("allow-cache") == first
    assert invocation("allow-other") > first


def test_two_requests_are_served_concurrently(gateway: Bound) -> None:
    # Given a handler that returns only once two requests wait on the same barrier (10 s timeout)
    results: list[int] = []

    def call() -> None:
        results.append(httpx.get(f"{gateway.api_url}/barrier", timeout=30).status_code)

    # When two clients call it at the same time
    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then both succeed, which a gateway serving one request at a time cannot do (the barrier would break)
    assert results == [200, 200]


def test_an_unknown_route_is_404(client: httpx.Client) -> None:
    response = client.get("/does/not/exist")
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_a_handler_exception_is_500_without_the_traceback(client: httpx.Client) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert "secret" not in response.text
    assert "Traceback" not in response.text


def test_binary_bodies_and_cookies_round_trip(client: httpx.Client) -> None:
    response = client.post(
        "/private/binary",
        content=b"\x00\x01",
        headers={"Authorization": "Bearer allow", "Content-Type": "image/png"},
    )
    assert response.status_code == 201
    assert response.content == b"\x00\x01\x02\xff"
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_connections_are_kept_alive_between_requests(gateway: Bound) -> None:
    url = urlsplit(gateway.api_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        connection.request("GET", "/public/1")
        first = connection.getresponse()
        first.read()
        sock = connection.sock
        connection.request("GET", "/public/2")
        second = connection.getresponse()
        second.read()
        # The second request went over the same socket: the server kept the connection open.
        assert (first.status, second.status) == (200, 200)
        assert sock is not None
        assert connection.sock is sock
        assert first.getheader("connection") != "close"
    finally:
        connection.close()


def test_a_function_url_serves_the_function_with_url_events(gateway: Bound) -> None:
    response = httpx.post(f"{gateway.function_urls['SecondUrlFunction']}/mcp?x=1", json={"a": 1}, timeout=30)
    event = response.json()["event"]
    assert event["routeKey"] == "$default"
    assert event["body"] == '{"a":1}'
    assert event["queryStringParameters"] == {"x": "1"}


def test_the_command_line_serves_until_terminated() -> None:
    # Given the gateway started as `make up` starts it, on free ports
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localdev.gateway",
            "--api-port",
            "0",
            "--url-port",
            "0",
            "--template",
            str(FIXTURE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        urls = dict(part.split("=", 1) for part in banner.split(":", 1)[1].split())
        # When a route is called, Then it answers
        response = httpx.get(f"{urls['api']}/public/7", timeout=30)
        assert response.status_code == 200
        assert json.loads(response.text)["event"]["pathParameters"] == {"item": "7"}
    finally:
        process.terminate()
        process.wait(timeout=15)
