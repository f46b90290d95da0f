"""POST /mcp on the function URL and the HttpApi: the MCP server (stateless, JSON, Bearer user token)."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from companion_memory import wiring
from companion_memory.config import IdentitySettings, McpSettings, settings_for
from companion_memory.mcp.access import resource_metadata_url
from companion_memory.mcp.handler import McpHandler
from companion_memory.mcp.lambda_bridge import AsgiLambdaBridge
from companion_memory.mcp.server import McpHttpApp
from companion_memory.observability import logger, metrics, tracer

mcp_app = McpHttpApp(settings_for(McpSettings), wiring.mcp_services)
handler = McpHandler(
    mcp_app,
    AsgiLambdaBridge(mcp_app.asgi),
    wiring.mcp_services,
    lambda: resource_metadata_url(settings_for(IdentitySettings).mcp_resource),
)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.LAMBDA_FUNCTION_URL)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handler(event, context)
