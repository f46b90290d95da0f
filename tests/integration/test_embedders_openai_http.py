"""The OpenAI-compatible embedder against a real HTTP server on 127.0.0.1 (real sockets, real timeouts).

The server is a tiny `/v1/embeddings` stand-in run in a thread; its behaviour per request is scripted.
"""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from companion_memory.adapters.embedders.openai_compatible import OpenAICompatibleEmbedder
from companion_memory.errors import DependencyUnavailable, ValidationFailed


class Script:
    def __init__(self) -> None:
        self.answers: list[str] = []  # "ok", "429", "500", "400", "slow"
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.release = threading.Event()


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.requests.append(body)
            script.headers.append(dict(self.headers))
            answer = script.answers.pop(0) if script.answers else "ok"
            if answer == "slow":
                script.release.wait(timeout=5)  # longer than the client's timeout
                answer = "ok"
            if answer != "ok":
                self._send(int(answer), {"error": {"message": "scripted"}})
                return
            data = [{"index": i, "embedding": [float(len(t)), 1.0, 0.0]} for i, t in enumerate(body["input"])]
            self._send(200, {"object": "list", "data": data, "model": body["model"]})

        def _send(self, status: int, payload: object) -> None:
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    finally:
        script.release.set()
        httpd.shutdown()
        httpd.server_close()


def embedder(base_url: str, **options: Any) -> OpenAICompatibleEmbedder:
    settings: dict[str, Any] = {
        "model": "e5-small",
        "dimensions": 3,
        "api_key": "sk-local",
        "backoff_s": 0.01,
    }
    return OpenAICompatibleEmbedder(base_url=base_url, **(settings | options))


def test_batches_reach_the_server_with_the_key_and_come_back_in_order(server: tuple[str, Script]) -> None:
    base_url, script = server

    vectors = embedder(base_url, max_batch_items=2).embed_documents(["a", "bb", "ccc"])

    assert [v[0] for v in vectors] == [1.0, 2.0, 3.0]
    assert [r["input"] for r in script.requests] == [["a", "bb"], ["ccc"]]
    assert script.headers[0]["Authorization"] == "Bearer sk-local"


def test_throttling_and_server_errors_are_retried_until_the_server_recovers(
    server: tuple[str, Script],
) -> None:
    base_url, script = server
    script.answers = ["429", "502"]

    assert embedder(base_url).embed_query("hello") == [5.0, 1.0, 0.0]
    assert len(script.requests) == 3


def test_a_server_that_stays_down_gives_a_retryable_error(server: tuple[str, Script]) -> None:
    base_url, script = server
    script.answers = ["503"] * 3

    with pytest.raises(DependencyUnavailable):
        embedder(base_url, max_retries=2).embed_query("hello")
    assert len(script.requests) == 3


def test_a_slow_server_times_out_into_a_retryable_error(server: tuple[str, Script]) -> None:
    base_url, script = server
    script.answers = ["slow"]

    with pytest.raises(DependencyUnavailable):
        embedder(base_url, timeout_s=0.2, max_retries=0).embed_query("hello")


def test_a_rejected_input_is_a_validation_error_without_retries(server: tuple[str, Script]) -> None:
    base_url, script = server
    script.answers = ["400"]

    with pytest.raises(ValidationFailed):
        embedder(base_url).embed_query("hello")
    assert len(script.requests) == 1


def test_nothing_listening_is_a_retryable_error() -> None:
    # Port 9 (discard) on loopback: nothing listens there on this machine kind, so the connect is refused.
    with pytest.raises(DependencyUnavailable):
        embedder("http://127.0.0.1:9/v1", max_retries=1).embed_query("hello")
