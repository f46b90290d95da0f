"""Session wiring: markers by folder, and the test suite's own local stack for integration and e2e tests.

The stack lives in ``.local/test-stack/`` with its own ports and data, so it runs beside a developer's
``make up`` stack. It starts only when a test asks for the ``stack`` fixture (unit tests never do) and
stops when the last session using it ends (sessions running at once share it), also on failure,
Ctrl-C or SIGTERM. Its PostgreSQL data is kept between sessions for speed, and discarded whenever a
migration file changed since it was made (an edited migration could not be re-applied over the old
schema). ``COMPANION_TEST_STACK_FRESH=1`` starts from nothing when no other session is using it.
"""

import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import pytest

from localdev import template

if TYPE_CHECKING:
    from localdev.stack import Running

# Every function sees the literal environment template.yaml's Globals give it (Powertools' service name
# and metrics namespace), as on Lambda. Set here, before any test module is collected: the one Metrics
# object reads its namespace when companion_memory.observability is first imported, whichever test
# folder's modules import it first.
for _name, _value in template.default().global_environment().items():
    os.environ.setdefault(_name, _value)

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
# COMPANION_TEST_STACK_DIR gives a session a stack of its own (e.g. two checkouts testing side by side).
TEST_STATE_DIR = Path(os.environ.get("COMPANION_TEST_STACK_DIR") or ROOT / ".local" / "test-stack")
MIGRATIONS = ROOT / "migrations"
_FINGERPRINT = "migrations.sha256"
_MARK_BY_FOLDER = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            folder = item.path.relative_to(TESTS).parts[0]
        except ValueError:
            continue
        if folder in _MARK_BY_FOLDER:
            item.add_marker(_MARK_BY_FOLDER[folder])


def _migrations_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(MIGRATIONS).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _reset_process_caches() -> None:
    """Clients and settings built from the previous environment must not outlive it."""
    from aws_lambda_powertools.utilities import parameters

    from companion_memory import wiring
    from companion_memory.adapters import aws
    from companion_memory.config import settings_for

    wiring.reset()
    settings_for.cache_clear()
    aws.secrets_provider.cache_clear()
    parameters.clear_caches()  # type: ignore[no-untyped-call]


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def stack() -> Iterator["Running"]:
    from localdev.stack import Running, Stack  # here, not at the top: unit-only sessions never load it

    local = Stack(TEST_STATE_DIR)
    fingerprint = _migrations_fingerprint()
    recorded = TEST_STATE_DIR / _FINGERPRINT

    def discard_data() -> bool:
        fresh = os.environ.get("COMPANION_TEST_STACK_FRESH") == "1"
        return fresh or not recorded.exists() or recorded.read_text() != fingerprint

    saved_env = dict(os.environ)
    # A CI timeout sends SIGTERM: turn it into the same unwinding as Ctrl-C, so the stack stops.
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        # Shared: other sessions in this checkout (a colleague's, xdist workers) use the same stack.
        with local.shared(discard_data) as env:
            recorded.write_text(fingerprint)
            os.environ.update(env)
            _reset_process_caches()
            try:
                yield Running(local, env)
            finally:
                os.environ.clear()
                os.environ.update(saved_env)
                _reset_process_caches()
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


# --- Security case counts (JWT attack battery, Wycheproof JWS, HTTP attacks on the edge) -------------------
# Security suites (unit, integration and e2e alike) record each case they try through `security_cases`; the
# totals print at the end of the run, whatever `-s`/`-q` says, so "how many attack cases ran" is visible in
# every `make test`.


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
