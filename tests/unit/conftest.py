"""Unit tests run without network sockets: anything that reaches for one is an integration test.

Unix socket pairs stay allowed because asyncio's event loop uses one to wake itself.
"""

import pytest
from pytest_socket import disable_socket, enable_socket


@pytest.fixture(autouse=True)
def _no_network() -> object:
    disable_socket(allow_unix_socket=True)
    yield
    enable_socket()
