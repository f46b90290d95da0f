"""Unit tests run without network sockets: anything that reaches for one is an integration test.

Unix socket pairs stay allowed because asyncio's event loop uses one to wake itself.
"""

import os

import pytest
from pytest_socket import disable_socket, enable_socket

from localdev import template

# Handlers see the literal environment template.yaml gives every function (Powertools' service name
# and metrics namespace), as they do on Lambda.
for _name, _value in template.default().global_environment().items():
    os.environ.setdefault(_name, _value)

# The X-Ray recorder behind Powertools' Tracer opens its (UDP, never used here) emitter socket when
# first imported; let that happen before sockets are switched off.
import companion_memory.observability  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _no_network() -> object:
    disable_socket(allow_unix_socket=True)
    yield
    enable_socket()
