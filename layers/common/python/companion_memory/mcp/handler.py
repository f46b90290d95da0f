"""The MCP function's request path: authenticate, record the session, then serve the request with the SDK."""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from companion_memory.auth.context import MISSING_CREDENTIAL
from companion_memory.errors import CompanionMemoryError, Unauthorized
from companion_memory.mcp.access import CALLER_SCOPE_KEY, McpServices, authenticate, challenge
from companion_memory.mcp.lambda_bridge import AsgiLambdaBridge, json_response
from companion_memory.mcp.server import McpHttpApp
from companion_memory.mcp.sessions import record_session
from companion_memory.observability import logger


class McpHandler:
    """One per process: the SDK app, its bridge, and where services come from (built on first use)."""

    def __init__(
        self,
        app: McpHttpApp,
        bridge: AsgiLambdaBridge,
        services: Callable[[], McpServices],
        metadata_url: Callable[[], str],
    ) -> None:
        self._app = app
        self._bridge = bridge
        self._services = services
        self._metadata_url = metadata_url

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        self._app.trust_routed_domain(event["requestContext"].get("domainName", ""))
        if event["requestContext"]["http"]["method"] != "POST":
            return self._bridge.handle(event, context)  # 405, before anything else is read
        headers: dict[str, str] = event.get("headers") or {}
        try:
            if not any(name.lower() == "authorization" for name in headers):
                # Refused before anything is built or read: a flood of anonymous requests costs nothing.
                raise Unauthorized(MISSING_CREDENTIAL)
            services = self._services()
            # The Authorization header only: a token in the query string is never read.
            caller = authenticate(headers, services)
            record_session(event, caller.companion_id, caller.user_id, service=services.sessions)
        except Unauthorized as error:
            sent = any(name.lower() == "authorization" for name in headers)
            www = challenge(self._metadata_url(), error, credential_sent=sent)
            return json_response(
                error.status, error.to_body(), {"www-authenticate": www, "cache-control": "no-store"}
            )
        except CompanionMemoryError as error:
            log = logger.warning if error.retryable else logger.info
            log("MCP request refused before the server", extra={"error_code": error.code})
            return json_response(error.status, error.to_body(), error.headers())
        return self._bridge.handle(event, context, {CALLER_SCOPE_KEY: caller})
