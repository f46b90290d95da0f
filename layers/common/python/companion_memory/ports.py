"""Ports: what the domain needs from the outside world, as Protocols.

Adapters in ``adapters/`` implement them; unit tests use fakes that implement the same Protocols,
so a type checker notices when a fake drifts.
"""

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class DependencyProbe(Protocol):
    """A cheap reachability check of one backing service; raises when it is not reachable."""

    name: str

    def check(self) -> None: ...
