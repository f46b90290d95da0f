"""Local stand-in for API Gateway (HttpApi) and Lambda function URLs, driven by template.yaml.

    python -m localdev.gateway --api-port 3000 --url-port 3001 [--template template.yaml] [--host 127.0.0.1]

Every HttpApi route of the template is served on the API port (stage ``$default``, paths at the root);
each function URL gets its own port (``--url-port``, then the next ones, in template order). Requests
become the payload 2.0 events AWS sends, the Lambda authorizer runs where a route has one, and handlers run
in this process, in a thread pool (concurrent requests are served concurrently) with a Lambda context.

Differences from AWS worth knowing: all functions share one process, so concurrent requests share module
state (on Lambda each concurrent request gets its own execution environment); a handler that exceeds its
timeout is answered with a 500 but its thread cannot be stopped; AWS_IAM function URLs are not signed-checked.
"""

import argparse
import asyncio
import logging
import os
import socket
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from localdev import events
from localdev.authorizer import AuthorizerCache, InvalidAuthorizerResponse, decide, identity_values
from localdev.events import HttpRequest, HttpResponse, error_response, map_response
from localdev.lambda_runtime import DEFAULT_REGION, HandlerLoader, invoke
from localdev.template import TEMPLATE, Authorizer, Function, Template, load

log = logging.getLogger("localdev.gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Handler threads: enough for MCP clients' parallel calls; Lambda's per-account default is 1,000.
MAX_CONCURRENCY = 32
# Connections stay open between requests (httpx and MCP clients pool them). API Gateway keeps idle ones longer
# than uvicorn's 5 s default; a server closing a pooled connection races the client's next request.
KEEP_ALIVE_SECONDS = 75
INTERNAL_ERROR = "Internal Server Error"


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


@dataclass
class Gateway:
    """The ASGI application behind every port; the local port a request arrived on picks the site."""

    template: Template
    api_port: int
    url_ports: dict[int, Function]  # port -> the function whose URL it serves
    region: str = field(default_factory=lambda: os.environ.get("AWS_REGION", DEFAULT_REGION))
    loader: HandlerLoader = field(default_factory=HandlerLoader)
    cache: AuthorizerCache = field(default_factory=AuthorizerCache)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(MAX_CONCURRENCY, thread_name_prefix="lambda")
    )

    def __post_init__(self) -> None:
        # One HttpApi resource per template today; its id and domain are stable across restarts.
        apis = self.template.resources_of_type("AWS::Serverless::HttpApi")
        self.api_id = events.stable_id(next(iter(apis), "ServerlessHttpApi"), 10)
        for route in self.template.routes:
            if route.auth and route.auth.payload_format != "2.0":
                raise ValueError(f"authorizer {route.auth.name}: only payload format 2.0 runs locally")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan work, and API Gateway speaks no websockets on HttpApi
        port = scope["server"][1]
        function = self.url_ports.get(port)
        limit = events.URL_PAYLOAD_LIMIT if function else events.API_PAYLOAD_LIMIT
        try:
            request = await _read_request(scope, receive, limit)
        except _Disconnected:
            return  # the client left before sending its body: nothing to invoke, nobody to answer
        except _TooLarge:
            response = error_response(413, "Request Entity Too Large")
        else:
            if function is not None:
                response = await self._function_url(function, request)
            else:
                response = await self._http_api(request)
        await _send(send, response)

    async def _http_api(self, request: HttpRequest) -> HttpResponse:
        match = events.match_route(self.template.routes, request.method, request.raw_path)
        if match is None:
            return error_response(404, "Not Found")
        event = events.http_api_event(request, match, api_id=self.api_id, region=self.region)
        if match.route.auth is not None:
            denied = await self._authorize(match.route.auth, event, request)
            if denied is not None:
                return denied
        return await self._call(self.template.functions[match.route.function], event)

    async def _authorize(
        self, authorizer: Authorizer, event: dict[str, Any], request: HttpRequest
    ) -> HttpResponse | None:
        """Run the route's authorizer; None when the request may proceed (the event then carries the
        authorizer's context), else API Gateway's answer."""
        identity = identity_values(authorizer, event)
        if identity is None:
            return error_response(401, "Unauthorized")
        stage = events.DEFAULT_STAGE
        arn = events.route_arn(self.region, self.api_id, stage, request.method, request.raw_path)
        answer = self.cache.get(authorizer, identity)
        cached = answer is not None
        if not cached:
            function = self.template.functions[authorizer.function]
            try:
                answer = await self._run(function, events.authorizer_event(event, arn, identity))
            except Exception:
                log.error("authorizer %s failed\n%s", authorizer.name, traceback.format_exc())
                return error_response(500, INTERNAL_ERROR)
        try:
            decision = decide(authorizer, answer, arn)
        except InvalidAuthorizerResponse as error:
            log.error("authorizer %s answered an invalid response: %s", authorizer.name, error)
            return error_response(500, INTERNAL_ERROR)
        if not cached:
            self.cache.put(authorizer, identity, answer)
        if not decision.allowed:
            return error_response(403, "Forbidden")
        event["requestContext"]["authorizer"] = {"lambda": decision.context}
        return None

    async def _function_url(self, function: Function, request: HttpRequest) -> HttpResponse:
        url_id = events.stable_id(f"url:{function.logical_id}", 32)
        event = events.function_url_event(request, url_id=url_id, region=self.region)
        return await self._call(function, event)

    async def _call(self, function: Function, event: dict[str, Any]) -> HttpResponse:
        """Invoke a route's function and map its answer; every failure is a bare 500, the trace is logged."""
        try:
            return map_response(await self._run(function, event))
        except Exception:
            log.error("%s failed\n%s", function.logical_id, traceback.format_exc())
            return error_response(500, INTERNAL_ERROR)

    async def _run(self, function: Function, event: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self.executor, invoke, self.loader, function, event, self.region)
        try:
            return await asyncio.wait_for(call, timeout=function.timeout)
        except TimeoutError:
            # Lambda would stop the function here; a thread cannot be stopped, so it runs on unanswered.
            raise TimeoutError(f"Task timed out after {function.timeout} seconds") from None


async def _read_request(scope: Scope, receive: Receive, limit: int) -> HttpRequest:
    headers = tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"])
    declared = next((value for name, value in headers if name.lower() == "content-length"), None)
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge  # refuse before reading, as API Gateway does
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    client = scope.get("client") or ("127.0.0.1", 0)
    return HttpRequest(
        method=scope["method"],
        raw_path=scope.get("raw_path", scope["path"].encode()).decode("latin-1"),
        raw_query=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        body=b"".join(chunks),
        source_ip=client[0],
        protocol=f"HTTP/{scope.get('http_version', '1.1')}",
    )


async def _send(send: Send, response: HttpResponse) -> None:
    # The server frames the body: a handler's own length or transfer-encoding header would contradict it.
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers
        if name.lower() not in ("content-length", "transfer-encoding", "connection")
    ]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


# ------------------------------------------------------------------------------------------ serving


@dataclass
class Bound:
    """A gateway with its sockets bound: the URLs it serves, and the uvicorn server to run."""

    gateway: Gateway
    sockets: list[socket.socket]
    server: uvicorn.Server
    api_url: str
    function_urls: dict[str, str]  # logical id -> base URL


def bind(template_path: Path, host: str, api_port: int, url_port: int) -> Bound:
    """Bind the API port and one port per function URL (``url_port``, ``url_port + 1``...; 0 = any free)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the local gateway binds loopback only")  # it runs unauthenticated developer code
    template = load(template_path)
    url_functions = [function for function in template.functions.values() if function.function_url]
    sockets = [socket.create_server((host, api_port))]
    try:
        for index, _ in enumerate(url_functions):
            sockets.append(socket.create_server((host, url_port + index if url_port else 0)))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    ports = [sock.getsockname()[1] for sock in sockets]
    for function in url_functions:
        if function.function_url_auth_type == "AWS_IAM":
            log.warning("%s: AWS_IAM function URL served without SigV4 checks", function.logical_id)
    gateway = Gateway(template, api_port=ports[0], url_ports=dict(zip(ports[1:], url_functions, strict=True)))
    config = uvicorn.Config(
        gateway,
        lifespan="off",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=5,
        log_level="info",
    )
    display = f"[{host}]" if ":" in host else host
    return Bound(
        gateway=gateway,
        sockets=sockets,
        server=uvicorn.Server(config),
        api_url=f"http://{display}:{ports[0]}",
        function_urls={
            fn.logical_id: f"http://{display}:{port}"
            for fn, port in zip(url_functions, ports[1:], strict=True)
        },
    )


@contextmanager
def running(
    template_path: Path, host: str = "127.0.0.1", api_port: int = 0, url_port: int = 0
) -> Iterator[Bound]:
    """Serve in a background thread (tests, tools); stops and releases the ports on exit."""
    bound = bind(template_path, host, api_port, url_port)
    thread = threading.Thread(target=bound.server.run, kwargs={"sockets": bound.sockets}, daemon=True)
    thread.start()
    try:
        while not bound.server.started:
            if not thread.is_alive():
                raise RuntimeError("the local gateway did not start")
            threading.Event().wait(0.01)
        yield bound
    finally:
        bound.server.should_exit = True
        thread.join(timeout=10)
        bound.gateway.executor.shutdown(wait=False, cancel_futures=True)
        for sock in bound.sockets:
            sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--api-port", type=int, required=True, help="HttpApi port (0: any free port)")
    parser.add_argument("--url-port", type=int, required=True, help="first function URL port (0: any free)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="SAM template (template.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    bound = bind(args.template, args.host, args.api_port, args.url_port)
    # One line a supervisor (make up, tests) can read to learn the ports actually bound.
    urls = " ".join(f"{name}={url}" for name, url in bound.function_urls.items())
    print(f"local gateway: api={bound.api_url} {urls}".rstrip(), flush=True)
    bound.server.run(sockets=bound.sockets)
    bound.gateway.executor.shutdown(wait=False, cancel_futures=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
