"""The MCP server: stateless Streamable HTTP with JSON responses (a buffered Lambda cannot stream)."""

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from companion_memory import __version__
from companion_memory.config import McpSettings

SERVER_NAME = "companion-memory"
INSTRUCTIONS = (
    "Long-term memory for one companion and one of its users: store what you learn about the user "
    "and recall it when it matters."
)


def build_server() -> MCPServer:
    # The SDK logs every session at INFO on the root logger; Powertools' Logger is our log.
    return MCPServer(name=SERVER_NAME, version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")


def build_asgi_app(settings: McpSettings) -> Starlette:
    # Host/Origin checks stay on (DNS-rebinding protection): the template lists the real hostnames.
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=settings.mcp_allowed_hosts,
        allowed_origins=settings.mcp_allowed_origins,
    )
    return build_server().streamable_http_app(
        stateless_http=True, json_response=True, transport_security=security
    )
