"""Rate limits and quotas: what a companion's config allows, the windows they count in, and the checks.

- requests per minute, per companion and user: a fixed one-minute window (UTC-aligned);
- interactions per day, per companion and user: resets at UTC midnight;
- memories and content bytes, per companion and user: checked against the user's live memories in the
  store's own transaction (PostgreSQL is the only count; Redis never holds the only copy of anything).

The per-minute and per-day counters are one atomic round trip to Redis (``ports.RateLimiter``). When
Redis cannot be reached, ``RequestGuard`` follows the configured failure mode (see docs/security.md).
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from companion_memory.errors import DependencyUnavailable, QuotaExceeded
from companion_memory.models.companion_config import Limits
from companion_memory.observability import logger, metrics
from companion_memory.ports import RateLimiter

FailureMode = Literal["open", "closed"]


@dataclass(frozen=True, slots=True)
class Window:
    """One counting window: its index (part of the counter's key), when it ends, and the wait until then."""

    index: int
    ends_at: datetime
    retry_after_s: int


def minute_window(now: datetime) -> Window:
    start = now.astimezone(UTC).replace(second=0, microsecond=0)
    return _window(int(start.timestamp()) // 60, start + timedelta(minutes=1), now)


def day_window(now: datetime) -> Window:
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return _window(start.toordinal(), start + timedelta(days=1), now)


def _window(index: int, ends_at: datetime, now: datetime) -> Window:
    # Rounded up and at least one second: a client told "0" would retry at once and be refused again.
    wait = max(1, math.ceil((ends_at - now).total_seconds()))
    return Window(index=index, ends_at=ends_at, retry_after_s=wait)


@dataclass(frozen=True, slots=True)
class StorageUsage:
    """What one user of a companion holds now: live memories and the bytes of their content."""

    memories: int
    content_bytes: int


def check_storage(limits: Limits, usage: StorageUsage, adding_memories: int, adding_bytes: int) -> None:
    """Refuse a write that would take the user past a storage quota.

    ``adding_bytes`` is the change in content size (negative when an update shrinks it).
    """
    if adding_memories > 0 and usage.memories + adding_memories > limits.max_memories_per_user:
        raise QuotaExceeded(
            f"this user already has {usage.memories} memories, the most this companion allows is "
            f"{limits.max_memories_per_user}; forget some first",
            details={"quota": "max_memories_per_user", "limit": limits.max_memories_per_user},
        )
    if adding_bytes > 0 and usage.content_bytes + adding_bytes > limits.max_content_bytes_per_user:
        raise QuotaExceeded(
            f"this would take the user's memories past {limits.max_content_bytes_per_user} bytes of content,"
            " the most this companion allows; forget some first",
            details={"quota": "max_content_bytes_per_user", "limit": limits.max_content_bytes_per_user},
        )


class RequestGuard:
    """Admits one request of a companion's user, or raises RateLimited / QuotaExceeded.

    With Redis unreachable: ``open`` lets the request through (a warning and the metric
    ``RateLimiterFailOpen``, so an outage is visible), ``closed`` raises DependencyUnavailable.
    """

    def __init__(self, limiter: RateLimiter, failure_mode: FailureMode) -> None:
        self._limiter = limiter
        self._failure_mode = failure_mode

    def admit(self, companion_id: UUID, user_id: str, config: Mapping[str, Any]) -> None:
        limits = Limits.of(config)
        try:
            self._limiter.admit(
                companion_id,
                user_id,
                per_minute=limits.requests_per_minute,
                per_day=limits.interactions_per_day,
            )
        except DependencyUnavailable:
            if self._failure_mode == "closed":
                raise
            logger.warning("rate limiter unavailable: request admitted (fail open)")
            metrics.add_metric(name="RateLimiterFailOpen", unit="Count", value=1)
