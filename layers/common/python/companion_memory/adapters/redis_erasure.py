"""Erasure in Redis: the rate-limit and daily-quota counters of ``adapters/redis_limits.py``.

Those keys are ``<prefix>:{<companion id>:<user id>}:<m|d>:<window>``. A user's keys are found by SCAN with
the user's exact hash tag, a companion's with the tag's companion part; ids are glob-escaped, so a user id
holding ``*`` or ``?`` matches only itself. SCAN walks every node through the client (a cluster client scans
each), and keys are unlinked one command each through a pipeline, so keys of different slots never meet in
one command. Redis holds no other data of a user (DESIGN.md §3: never the only copy of anything).

A user's pattern ``{<companion>:a}:*`` would also match the keys of a user ``a}:x``: every edge refuses ``{``
and ``}`` in user ids (models/identity.py ``USER_ID_PATTERN``), and a key SCAN finds for a user is unlinked
only when its hash tag is exactly that user's, whatever ids older data holds.
"""

import re
from collections.abc import Callable, Iterable
from uuid import UUID

import redis

from companion_memory.errors import DependencyUnavailable
from companion_memory.models.erasure import Budget, StorePurge
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
        tag = f"{companion_id}:{user_id}"
        head = f"{self._prefix}:{{{tag}}}"
        # <head>:<m|d>:<window>; the window (a number) holds no ":", so the head is all before the last two.
        return self._unlink(
            f"{self._prefix}:{{{_glob_escape(tag)}}}:*", None, lambda key: key.rsplit(":", 2)[0] == head
        ).removed

    def erase_companion(self, owner_id: UUID, companion_id: UUID, budget: Budget | None = None) -> StorePurge:
        return self._unlink(f"{self._prefix}:{{{companion_id}:*", budget, lambda key: True)

    def _unlink(self, pattern: str, budget: Budget | None, mine: Callable[[str], bool]) -> StorePurge:
        """Unlink what SCAN finds, a batch at a time; with a budget, stop before a batch once it is spent
        (the keys left are found by the next call's SCAN)."""
        removed = dict.fromkeys(_KINDS.values(), 0)
        try:
            batch: list[str] = []
            for key in self._client.scan_iter(match=pattern, count=_SCAN_COUNT):
                name = key.decode() if isinstance(key, bytes) else str(key)
                if not mine(name):
                    continue
                batch.append(name)
                if len(batch) >= _SCAN_COUNT:
                    if budget is not None and budget.spent():
                        return StorePurge(removed, finished=False)
                    self._count(removed, self._unlink_batch(batch))
                    batch = []
            self._count(removed, self._unlink_batch(batch))
        except redis.RedisError as error:
            logger.warning("Redis unavailable for erasure", extra={"error": type(error).__name__})
            raise DependencyUnavailable("the rate limiter's store is unavailable") from None
        return StorePurge(removed, finished=True)

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
