"""How failures reach the model: one mapping from our errors to tool errors (``isError`` results).

A tool raises ordinary exceptions (the domain's); ``mapped`` turns them into the SDK's ``ToolError`` with a
clear message and the stable code, so the model can read and act on it. Anything unexpected stays a crash
the SDK reports as "Error executing tool <name>" without detail (the traceback stays in the log).
"""

import functools
from collections.abc import Callable

from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from pydantic import ValidationError

from companion_memory.errors import CompanionMemoryError, QuotaExceeded, RateLimited


def describe(error: CompanionMemoryError) -> str:
    """``<message> (code: <code>[, retry after N s])``: what the model reads."""
    notes = [f"code: {error.code}"]
    if isinstance(error, (RateLimited, QuotaExceeded)) and error.retry_after_s is not None:
        notes.append(f"retry after {error.retry_after_s} s")
    elif error.retryable:
        notes.append("retryable")
    return f"{error.message} ({', '.join(notes)})"


def describe_validation(error: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'input'}: {item['msg']}" for item in error.errors()
    )
    return f"invalid input: {problems} (code: validation_failed)"


def mapped[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """Run a tool; our errors and invalid input become tool errors with their code, never a stack trace."""
    return _mapped_to(ToolError, fn)


def mapped_resource[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """The same for resources and prompts: a ``ResourceError`` carries the message to the client."""
    return _mapped_to(ResourceError, fn)


def _mapped_to[**P, R](kind: type[Exception], fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CompanionMemoryError as error:
            raise kind(describe(error)) from None
        except ValidationError as error:
            raise kind(describe_validation(error)) from None

    return run
