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


# --- Security case counts (auth: JWT attack battery, Wycheproof JWS) ----------------------------------------
# Security suites record each case they try through `security_cases`; the totals print at the end of the run,
# whatever `-s`/`-q` says, so "how many attack cases ran" is visible in every `make test`.


class _SecurityCases:
    def __init__(self, table: dict[str, dict[str, int]]) -> None:
        self._table = table

    def __call__(self, suite: str, outcome: str) -> None:
        counts = self._table.setdefault(suite, {})
        counts[outcome] = counts.get(outcome, 0) + 1


_SECURITY_CASES = pytest.StashKey[dict[str, dict[str, int]]]()


@pytest.fixture
def security_cases(request: pytest.FixtureRequest) -> _SecurityCases:
    return _SecurityCases(request.config.stash.setdefault(_SECURITY_CASES, {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    table = config.stash.get(_SECURITY_CASES, {})
    if not table:
        return
    terminalreporter.section("security cases")
    for suite, counts in sorted(table.items()):
        outcomes = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
        terminalreporter.write_line(f"{suite}: {sum(counts.values())} tried ({outcomes})")
