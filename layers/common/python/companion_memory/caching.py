"""A small per-process TTL map for the short caches in front of the database (auth and access checks)."""

import threading
from collections.abc import Callable


class TtlCache[K, V]:
    """Thread-safe; an entry lives ``ttl_s`` on the injected monotonic clock. Bounded: when full it is
    cleared at once, which beats an LRU's bookkeeping for caches that live seconds."""

    def __init__(self, ttl_s: float, monotonic: Callable[[], float], max_entries: int = 10_000) -> None:
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> tuple[bool, V | None]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._monotonic() - entry[0] >= self._ttl_s:
                return False, None
            return True, entry[1]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (self._monotonic(), value)

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._monotonic() - entry[0] < self._ttl_s:
                return entry[1]
        value = load()  # outside the lock: a slow read never holds up the other threads' hits
        self.put(key, value)
        return value
