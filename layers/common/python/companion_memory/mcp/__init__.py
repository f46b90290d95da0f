"""The MCP server (official SDK) and its bridge to Lambda events."""
