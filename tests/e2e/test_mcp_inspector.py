"""MCP Inspector's CLI (Node 22, installed by `make node-tools`) against the local gateway."""

import json
import os
import shutil
import subprocess
from pathlib import Path

from localdev.stack import Running

NODE_BIN = Path(__file__).resolve().parents[2] / "tools" / "node" / "node_modules" / ".bin"


def inspector(*args: str) -> dict[str, object]:
    executable = shutil.which("mcp-inspector", path=str(NODE_BIN))
    assert executable, "MCP Inspector is missing: run `make node-tools`"
    # The Inspector's shebang runs `node` from PATH: Node 22 from tools/node, not the machine's.
    env = {**os.environ, "PATH": f"{NODE_BIN}:{os.environ['PATH']}"}
    run = subprocess.run(
        [executable, "--cli", *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result: dict[str, object] = json.loads(run.stdout)
    return result


def test_the_inspector_lists_the_tools_with_a_bearer_token(stack: Running, alice_token: str) -> None:
    auth = f"Authorization: Bearer {alice_token}"
    result = inspector(
        stack.env["MCP_URL"], "--transport", "http", "--header", auth, "--method", "tools/list"
    )
    assert isinstance(result["tools"], list)
    names = {tool["name"] for tool in result["tools"]}  # type: ignore[index]
    assert {"store_memory", "recall_memories", "get_memory", "update_memory"} <= names
    assert {"forget_memory", "list_memories", "link_memories"} <= names


def test_the_inspector_calls_a_tool_with_a_bearer_token(stack: Running, alice_token: str) -> None:
    auth = f"Authorization: Bearer {alice_token}"
    result = inspector(
        stack.env["MCP_URL"],
        "--transport",
        "http",
        "--header",
        auth,
        "--method",
        "tools/call",
        "--tool-name",
        "list_memories",
        "--tool-arg",
        "limit=5",
    )
    assert "content" in result
