"""The MCP conformance suite (`@modelcontextprotocol/conformance`, installed by `make node-tools`) against
the local gateway's function URL.

The suite sends no Authorization header and our /mcp requires a user token, so it talks to a small
reverse proxy on 127.0.0.1 that adds `Authorization: Bearer <token>` (a real user token from the
operator flow) and forwards everything else. The proxy is a transparent alias of the upstream: its own
`host:port` (in Host and Origin) becomes the upstream's, any other Host or Origin is forwarded verbatim,
so the MCP server's DNS-rebinding check judges what a client really sent. Nothing in the server is
switched off for this test. Expected failures (the suite's own fixture tools, prompts and resources,
and capabilities a stateless buffered Lambda does not offer) are listed, each with its reason, in
conformance-baseline.yml; the suite exits non-zero for any other failure and for a stale entry.
Results: docs/mcp-conformance.md.
"""

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from localdev.stack import Running
from tests.e2e.conftest import Tenant

NODE_BIN = Path(__file__).resolve().parents[2] / "tools" / "node" / "node_modules" / ".bin"
BASELINE = Path(__file__).with_name("conformance-baseline.yml")
# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the proxy recomputes for its own hop.
_NOT_FORWARDED = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "authorization",
}


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while size := int(handler.rfile.readline().split(b";")[0], 16):
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        handler.rfile.readline()  # the empty line after the last chunk
        return b"".join(chunks)
    return handler.rfile.read(int(handler.headers.get("content-length") or 0))


def _authorizing_proxy(upstream: str, token: str) -> tuple[ThreadingHTTPServer, str]:
    """Start the header-injecting proxy in a thread; return it and its base URL."""
    target = urlsplit(upstream)
    client = httpx.Client(base_url=f"{target.scheme}://{target.netloc}", timeout=60)

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            headers = {
                name: value for name, value in self.headers.items() if name.lower() not in _NOT_FORWARDED
            }
            for name in ("host", "origin"):
                # Only the proxy's own name is translated; a foreign Host or Origin arrives as sent.
                for key in [key for key in headers if key.lower() == name]:
                    headers[key] = headers[key].replace(own_netloc, target.netloc)
            headers["Authorization"] = f"Bearer {token}"
            answer = client.request(self.command, self.path, headers=headers, content=_read_body(self))
            self.send_response_only(answer.status_code)
            for name, value in answer.headers.multi_items():
                if name.lower() not in _NOT_FORWARDED:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = do_HEAD = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass  # the suite's own report says what happened; request lines would only add noise

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    server.daemon_threads = True
    own_netloc = f"127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, name="conformance-proxy", daemon=True).start()
    return server, f"http://{own_netloc}"


@pytest.fixture
def authorized_mcp_url(
    stack: Running, new_tenant: Callable[[str], Tenant], user_token: Callable[..., str]
) -> Iterator[str]:
    token = user_token(new_tenant("Conformance"), "conformance-user")
    server, base = _authorizing_proxy(stack.env["MCP_URL"], token)
    try:
        yield f"{base}{urlsplit(stack.env['MCP_URL']).path}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_conformance_suite_passes_except_for_the_baselined_scenarios(
    authorized_mcp_url: str, tmp_path: Path
) -> None:
    executable = shutil.which("conformance", path=str(NODE_BIN))
    assert executable, "the MCP conformance suite is missing: run `make node-tools`"
    # The suite's shebang runs `node` from PATH: Node 22 from tools/node, not the machine's.
    env = {**os.environ, "PATH": f"{NODE_BIN}:{os.environ['PATH']}"}

    # When every scenario of the suite runs through the proxy with the baseline
    run = subprocess.run(
        [
            executable,
            "server",
            "--suite",
            "all",  # the active scenarios and the pending ones (both pinned with the suite's version)
            "--url",
            authorized_mcp_url,
            "--expected-failures",
            str(BASELINE),
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        env=env,
        check=False,
    )

    # Then no scenario fails unexpectedly and no baseline entry is stale
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    assert "Running all suite" in run.stdout
