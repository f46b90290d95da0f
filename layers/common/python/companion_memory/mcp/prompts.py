"""The ``memory_context`` prompt: the user's relevant memories as a context block for a system prompt."""

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from companion_memory.mcp.errors import mapped_resource
from companion_memory.mcp.resources import most_important
from companion_memory.mcp.tools import Gate, line
from companion_memory.models.memory import Memory, RecallQuery

CONTEXT_SIZE = 10


def context_block(memories: list[Memory], topic: str | None) -> str:
    about = f" relevant to “{topic}”" if topic else ""
    if not memories:
        return f"<user_memories>\nNo memories{about} yet.\n</user_memories>"
    body = "\n".join(line(m) for m in memories)
    return (
        f"<user_memories>\nWhat you remember about this user{about} (most relevant first). Use it naturally; "
        f"do not recite it.\n{body}\n</user_memories>"
    )


def register(server: MCPServer, gate: Gate) -> None:
    @server.prompt(
        title="Memory context",
        description="The user's memories most relevant to a topic (or the most important ones) as a block "
        "to put in a system prompt",
    )
    @mapped_resource
    def memory_context(
        topic: Annotated[
            str | None, Field(description="What the conversation is about; empty for the most important")
        ] = None,
    ) -> str:
        memory, scope = gate.enter("read")
        if topic:
            found: list[Memory] = list(
                memory.recall(scope, RecallQuery(query=topic, limit=CONTEXT_SIZE)).memories
            )
        else:
            found = most_important(memory, scope, CONTEXT_SIZE)
        return context_block(found, topic)
