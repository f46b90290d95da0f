"""The MCP server: stateless Streamable HTTP with JSON responses (a buffered Lambda cannot stream)."""

from collections.abc import Callable
from typing import Any

from mcp import MCPError
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import INVALID_PARAMS, GetPromptResult, InputRequiredResult
from starlette.applications import Starlette

from companion_memory import __version__
from companion_memory.config import McpSettings
from companion_memory.mcp import prompts, resources, tools
from companion_memory.mcp.access import CallerContext, McpServices

SERVER_NAME = "companion-memory"
INSTRUCTIONS = (
    "Long-term memory for one companion and one of its users: store what you learn about the user "
    "and recall it when it matters."
)


class _Server(MCPServer):
    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Any, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        # An unknown name is the client's mistake: -32602 as the specification says, where the SDK answers
        # its generic failure (code 0 over HTTP) and logs an error with a traceback.
        if name not in {prompt.name for prompt in await self.list_prompts()}:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {name}")
        return await super().get_prompt(name, arguments, context)


def build_server(
    services: Callable[[], McpServices], caller_of: tools.CallerOf = tools.caller_in_request
) -> MCPServer:
    """The server with every tool, resource and prompt. ``services`` is called on first use (never at
    import), ``caller_of`` finds the authenticated caller of a request (the handler puts it in the scope)."""
    # The SDK logs every session at INFO on the root logger; Powertools' Logger is our log.
    server = _Server(name=SERVER_NAME, version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    gate = tools.Gate(services, caller_of)
    tools.register(server, gate)
    resources.register(server, gate)
    prompts.register(server, gate)
    return server


class McpHttpApp:
    """The SDK's ASGI app with Host/Origin validation (DNS-rebinding protection) kept on."""

    def __init__(self, settings: McpSettings, services: Callable[[], McpServices]) -> None:
        self._security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=list(settings.mcp_allowed_hosts),
            allowed_origins=list(settings.mcp_allowed_origins),
        )
        self.asgi: Starlette = build_server(services).streamable_http_app(
            stateless_http=True, json_response=True, transport_security=self._security
        )
        self.asgi.add_middleware(CallerContext)

    def trust_routed_domain(self, domain_name: str) -> None:
        """Accept the domain AWS routed a request by (``requestContext.domainName``).

        AWS sets it from its own routing (function URL, API or custom domain), not from the client,
        and a function URL's host cannot be configured ahead of time (it exists only once the
        function does). Hosts are only ever added, and the SDK reads this list per request.
        """
        if domain_name and domain_name not in self._security.allowed_hosts:
            self._security.allowed_hosts.append(domain_name)
