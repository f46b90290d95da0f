"""``memory://`` resources, scoped to the token's companion and user.

- ``memory://memories/{memory_id}``: one memory as JSON (the same shape as ``get_memory``);
- ``memory://profile``: the user's most important memories as markdown, to read before a conversation.
"""

from uuid import UUID

from mcp.server.mcpserver import MCPServer

from companion_memory.domain.memory import MemoryService
from companion_memory.mcp.errors import mapped_resource
from companion_memory.mcp.tools import Gate, line
from companion_memory.models.memory import ListFilter, Memory
from companion_memory.models.tenancy import TenantScope

PROFILE_SIZE = 20
# How many of the newest memories the profile picks its most important ones from: one page read, bounded.
PROFILE_WINDOW = 100


def most_important(memory: MemoryService, scope: TenantScope, size: int = PROFILE_SIZE) -> list[Memory]:
    page = memory.list(scope, ListFilter(limit=PROFILE_WINDOW))
    return sorted(page.items, key=lambda m: (-m.importance, -m.occurred_at.timestamp()))[:size]


def render_profile(memories: list[Memory]) -> str:
    if not memories:
        return "# What I know about this user\n\nNothing yet.\n"
    return "# What I know about this user\n\n" + "\n".join(line(m) for m in memories) + "\n"


def register(server: MCPServer, gate: Gate) -> None:
    @server.resource(
        "memory://memories/{memory_id}",
        name="memory",
        title="A memory",
        description="One of the user's memories, as JSON",
        mime_type="application/json",
    )
    @mapped_resource
    def memory_by_id(memory_id: str) -> str:
        memory, scope = gate.enter("read")
        return memory.get(scope, UUID(memory_id)).model_dump_json()

    @server.resource(
        "memory://profile",
        name="profile",
        title="User profile",
        description=f"The user's {PROFILE_SIZE} most important memories, as markdown",
        mime_type="text/markdown",
    )
    @mapped_resource
    def profile() -> str:
        memory, scope = gate.enter("read")
        return render_profile(most_important(memory, scope))
