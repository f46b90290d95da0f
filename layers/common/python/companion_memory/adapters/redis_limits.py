"""Per-minute rate and daily interaction counters in Redis: one Lua script, one round trip, atomic.

Both counters of a (companion, user) share a hash tag, so they live in one slot of a cluster (ElastiCache
Serverless is one) and one script may touch both. A request is counted only when admitted: a client
hammering past its limit does not push its own window further out. Counter keys carry their window's
index, so a new window starts at zero by name; their expiry (set in the same script) only collects them.
"""

from datetime import timedelta
from uuid import UUID

import redis
from redis.commands.core import Script

from companion_memory.domain.limits import day_window, minute_window
from companion_memory.errors import DependencyUnavailable, QuotaExceeded, RateLimited
from companion_memory.observability import logger
from companion_memory.ports import Clock

# KEYS: minute counter, day counter. ARGV: per-minute limit, per-day limit, and how long (ms) each counter
# is kept. Returns 0 admitted, 1 over the rate, 2 over the daily quota. Relative expiries: a process whose
# clock is off from Redis's still has its counters collected, neither at once nor never.
_ADMIT = """
local minute = tonumber(redis.call('GET', KEYS[1]) or '0')
if minute >= tonumber(ARGV[1]) then return 1 end
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
if day >= tonumber(ARGV[2]) then return 2 end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 0
"""
_ADMITTED, _OVER_RATE, _OVER_DAY = 0, 1, 2
# Counters outlive their window a little, so a process whose clock runs slightly behind still finds them.
_GRACE_MS = 60_000


class RedisRateLimiter:
    """``ports.RateLimiter`` on Redis."""

    def __init__(self, client: "redis.Redis", clock: Clock, *, key_prefix: str = "cm:limits") -> None:
        self._clock = clock
        self._prefix = key_prefix
        # EVALSHA, falling back to loading the script once per server when it does not know it yet.
        self._script: Script = client.register_script(_ADMIT)

    def admit(self, companion_id: UUID, user_id: str, *, per_minute: int, per_day: int) -> None:
        now = self._clock.now()
        minute, day = minute_window(now), day_window(now)
        tag = f"{self._prefix}:{{{companion_id}:{user_id}}}"
        try:
            outcome = self._script(
                keys=[f"{tag}:m:{minute.index}", f"{tag}:d:{day.index}"],
                args=[
                    per_minute,
                    per_day,
                    _keep_ms(minute.ends_at - now),
                    _keep_ms(day.ends_at - now),
                ],
            )
        except redis.RedisError as error:
            logger.warning("rate limit counters unavailable", extra={"error": type(error).__name__})
            raise DependencyUnavailable("the rate limiter is unavailable") from None
        if outcome == _OVER_RATE:
            raise RateLimited(
                f"more than {per_minute} requests a minute; retry in {minute.retry_after_s} s",
                retry_after_s=minute.retry_after_s,
                details={"limit": per_minute, "window": "minute"},
            )
        if outcome == _OVER_DAY:
            raise QuotaExceeded(
                f"the daily quota of {per_day} interactions is used up; it resets at 00:00 UTC",
                retry_after_s=day.retry_after_s,
                details={"quota": "interactions_per_day", "limit": per_day},
            )


def _keep_ms(remaining: timedelta) -> int:
    return int(remaining.total_seconds() * 1000) + _GRACE_MS
