"""Serve an ASGI app (the MCP SDK's) from Lambda HTTP events (function URL or HttpApi, payload 2.0).

Mangum translates events to ASGI scopes and responses back, but its adapter enters the app's
lifespan on every call, and the SDK's session manager may start only once per process: the second
(warm) invocation would fail. So the app runs on one private event loop thread whose lifespan is
entered once; each invocation hands its request cycle to that loop. This also keeps the handler
safe when several threads call it (the local gateway does).
"""

import asyncio
import json
import threading
from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES
from mangum.handlers import HTTPGateway
from mangum.protocols import HTTPCycle
from mangum.types import LambdaConfig
from mangum.types import LambdaContext as MangumContext
from starlette.applications import Starlette

_STARTUP_TIMEOUT_S = 10
# Leave Lambda time to return our own error instead of being killed mid-request.
_DEADLINE_MARGIN_MS = 500


class AsgiLambdaBridge:
    def __init__(self, app: Starlette, *, allowed_methods: frozenset[str] = frozenset({"POST"})) -> None:
        self._app = app
        self._allowed_methods = allowed_methods
        self._config = LambdaConfig(
            api_gateway_base_path="/", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES], exclude_headers=[]
        )
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        threading.Thread(target=self._loop.run_forever, name="asgi-bridge", daemon=True).start()
        started = threading.Event()
        self._lifespan = asyncio.run_coroutine_threadsafe(self._run_lifespan(started), self._loop)
        if not started.wait(_STARTUP_TIMEOUT_S):
            raise RuntimeError("the ASGI app did not start")

    async def _run_lifespan(self, started: threading.Event) -> None:
        self._stopping = asyncio.Event()
        async with self._app.router.lifespan_context(self._app):
            started.set()
            await self._stopping.wait()

    def handle(
        self, event: dict[str, Any], context: LambdaContext, scope_extras: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run one request; ``scope_extras`` are added to its ASGI scope (per request, so per thread)."""
        method = event["requestContext"]["http"]["method"]
        if method not in self._allowed_methods:
            # A GET would open an endless SSE stream, which a buffered Lambda can never finish.
            return json_response(
                405,
                {"error": {"code": "method_not_allowed", "message": f"{method} is not supported"}},
                {"allow": ", ".join(sorted(self._allowed_methods))},
            )
        gateway = HTTPGateway(event, cast(MangumContext, context), self._config)
        cycle = HTTPCycle({**gateway.scope, **(scope_extras or {})}, gateway.body)
        budget_s = max(context.get_remaining_time_in_millis() - _DEADLINE_MARGIN_MS, 1_000) / 1000
        future = asyncio.run_coroutine_threadsafe(cycle.run(self._app), self._loop)
        try:
            future.result(timeout=budget_s)
        except TimeoutError:
            future.cancel()
            return json_response(
                504, {"error": {"code": "timeout", "message": "The request took too long", "retryable": True}}
            )
        return gateway({"status": cycle.status, "headers": cycle.headers, "body": cycle.body})

    def close(self) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._lifespan.result(timeout=_STARTUP_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
