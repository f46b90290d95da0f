"""The wall clock, for services that take a ``Clock`` (tests pass one they control)."""

from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
