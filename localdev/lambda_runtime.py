"""Run a template function's handler in this process the way the Lambda runtime does.

Shared by the local gateway and ``localdev.invoke``. A handler module is imported once per process from
its file, so warm invocations reuse module state (clients, caches, the resolver) as they do on Lambda.
"""

import decimal
import importlib.util
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from localdev.template import Function

ACCOUNT_ID = "123456789012"  # the account id AWS uses in its own sample events
DEFAULT_REGION = "us-east-1"

Handler = Callable[[Any, Any], Any]


@dataclass
class LambdaContext:
    """The attributes and method of the Python runtime's context object that handlers and Powertools use."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    log_group_name: str
    log_stream_name: str
    timeout_seconds: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def make_context(function: Function, region: str = DEFAULT_REGION) -> LambdaContext:
    today = datetime.now(UTC).strftime("%Y/%m/%d")
    return LambdaContext(
        function_name=function.logical_id,
        memory_limit_in_mb=function.memory_size,
        invoked_function_arn=f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function.logical_id}",
        log_group_name=f"/aws/lambda/{function.logical_id}",
        log_stream_name=f"{today}/[$LATEST]{uuid.uuid4().hex}",
        timeout_seconds=function.timeout,
    )


class HandlerLoader:
    """Imports each function's handler module once, by file path, under a unique module name.

    No sys.path edits: two functions may both have an ``app.py``, and Lambda gives each its own process.
    A failed import is not remembered, so the next invocation retries the init, as Lambda does.
    """

    def __init__(self) -> None:
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.Lock()

    def handler(self, function: Function) -> Handler:
        module = self._modules.get(function.logical_id)
        if module is None:
            with self._lock:  # concurrent first requests must not run a module's init twice
                module = self._modules.get(function.logical_id) or self._import(function)
                self._modules[function.logical_id] = module
        handler: Handler = getattr(module, function.handler_attribute)
        return handler

    @staticmethod
    def _import(function: Function) -> ModuleType:
        name = f"lambda_{function.logical_id}"
        spec = importlib.util.spec_from_file_location(name, function.handler_file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {function.handler_file} for {function.logical_id}")
        module = importlib.util.module_from_spec(spec)
        # Registered before exec: pydantic and dataclasses resolve a module's annotations through sys.modules.
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module


def invoke(loader: HandlerLoader, function: Function, event: Any, region: str = DEFAULT_REGION) -> Any:
    """Call the function's handler with the event and a fresh context, and return its answer as the
    caller receives it (serialised to JSON and back). Exceptions propagate."""
    handler = loader.handler(function)
    return marshal(handler(event, make_context(function, region)))


def marshal(result: Any) -> Any:
    """The runtime's serialisation of a handler's answer: JSON, with Decimal as a number. Whatever JSON
    cannot carry (a datetime, a set) fails here as it fails on Lambda, not later in a client."""
    return json.loads(json.dumps(result, default=_decimal))


def _decimal(value: Any) -> float:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
