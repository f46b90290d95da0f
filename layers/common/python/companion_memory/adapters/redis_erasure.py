"""Erasure in Redis: the rate-limit and daily-quota counters of ``adapters/redis_limits.py``.

Those keys are ``<prefix>:{<companion id>:<user id>}:<m|d>:<window>``. A user's keys are found by SCAN with
the user's exact hash tag, a companion's with the tag's companion part; ids are glob-escaped, so a user id
holding ``*`` or ``?`` matches only itself. SCAN walks every node through the client (a cluster client scans
each), and keys are unlinked one command each through a pipeline, so keys of different slots never meet in
one command. Redis holds no other data of a user (DESIGN.md §3: never the only copy of anything).
"""

import re
from collections.abc import Iterable
from uuid import UUID

import redis

from companion_memory.errors import DependencyUnavailable
from companion_memory.observability import logger

# RedisRateLimiter's default key prefix (adapters/redis_limits.py).
LIMITS_PREFIX = "cm:limits"
_SCAN_COUNT = 500
_KINDS = {"m": "rate_limit_counters", "d": "daily_quota_counters"}


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class RedisErasure:
    """``ports.TenantDataStore`` for Redis."""

    name = "redis"

    def __init__(self, client: "redis.Redis", *, prefix: str = LIMITS_PREFIX) -> None:
        self._client = client
        self._prefix = prefix

    def erase_user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> dict[str, int]:
        tag = _glob_escape(f"{companion_id}:{user_id}")
        return self._unlink(f"{self._prefix}:{{{tag}}}:*")

    def erase_companion(self, owner_id: UUID, companion_id: UUID) -> dict[str, int]:
        return self._unlink(f"{self._prefix}:{{{companion_id}:*")

    def _unlink(self, pattern: str) -> dict[str, int]:
        removed = dict.fromkeys(_KINDS.values(), 0)
        try:
            batch: list[str] = []
            for key in self._client.scan_iter(match=pattern, count=_SCAN_COUNT):
                batch.append(key.decode() if isinstance(key, bytes) else str(key))
                if len(batch) >= _SCAN_COUNT:
                    self._count(removed, self._unlink_batch(batch))
                    batch = []
            self._count(removed, self._unlink_batch(batch))
        except redis.RedisError as error:
            logger.warning("Redis unavailable for erasure", extra={"error": type(error).__name__})
            raise DependencyUnavailable("the rate limiter's store is unavailable") from None
        return removed

    def _unlink_batch(self, keys: list[str]) -> list[tuple[str, int]]:
        if not keys:
            return []
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        return list(zip(keys, (int(n) for n in pipe.execute()), strict=True))

    @staticmethod
    def _count(removed: dict[str, int], unlinked: Iterable[tuple[str, int]]) -> None:
        for key, count in unlinked:
            kind = _KINDS.get(key.rsplit(":", 2)[-2], "other_keys")
            removed[kind] = removed.get(kind, 0) + count
