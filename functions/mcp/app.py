"""POST /mcp on the function URL and the HttpApi: the MCP server (stateless, JSON responses)."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from companion_memory.config import McpSettings, settings_for
from companion_memory.mcp.lambda_bridge import AsgiLambdaBridge
from companion_memory.mcp.server import McpHttpApp
from companion_memory.observability import logger, metrics, tracer

mcp_app = McpHttpApp(settings_for(McpSettings))
bridge = AsgiLambdaBridge(mcp_app.asgi)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.LAMBDA_FUNCTION_URL)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    mcp_app.trust_routed_domain(event["requestContext"].get("domainName", ""))
    return bridge.handle(event, context)
