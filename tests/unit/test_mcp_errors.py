"""How failures reach the model: tools, resources and prompts map errors the same way."""

import pytest
from mcp.server.mcpserver.exceptions import ResourceError, ToolError

from companion_memory.errors import NotFound
from companion_memory.mcp.errors import mapped, mapped_resource
from companion_memory.models.memory import RecallQuery


def _invalid_input() -> None:
    RecallQuery(query="")  # too short: a pydantic ValidationError


def _missing() -> None:
    raise NotFound("No such memory")


@pytest.mark.parametrize(("wrap", "kind"), [(mapped, ToolError), (mapped_resource, ResourceError)])
def test_invalid_input_is_a_validation_failed_error_not_a_crash(wrap: object, kind: type[Exception]) -> None:
    with pytest.raises(kind, match=r"invalid input: query: .*\(code: validation_failed\)"):
        wrap(_invalid_input)()  # type: ignore[operator]


@pytest.mark.parametrize(("wrap", "kind"), [(mapped, ToolError), (mapped_resource, ResourceError)])
def test_domain_errors_carry_their_stable_code(wrap: object, kind: type[Exception]) -> None:
    with pytest.raises(kind, match=r"No such memory \(code: not_found\)"):
        wrap(_missing)()  # type: ignore[operator]
