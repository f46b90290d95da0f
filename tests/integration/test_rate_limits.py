"""Rate limits and daily quotas against the local Redis (RBAC user: no FLUSHDB/KEYS, so every test
counts under a key prefix of its own instead of flushing)."""

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
import redis
from pydantic import SecretStr

from companion_memory.adapters.redis import redis_client
from companion_memory.adapters.redis_limits import RedisRateLimiter
from companion_memory.config import RedisSettings
from companion_memory.domain.limits import RequestGuard
from companion_memory.errors import DependencyUnavailable, QuotaExceeded, RateLimited


class ManualClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


class CountingConnection(redis.Connection):
    """Counts what goes over the wire: one packed send is one round trip of a command or pipeline."""

    sends: ClassVar[list[bytes]] = []

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        chunks = [command] if isinstance(command, (bytes, str, memoryview)) else list(command)
        type(self).sends.append(
            b"".join(bytes(c, "utf-8") if isinstance(c, str) else bytes(c) for c in chunks)
        )
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


NOON = datetime(2026, 3, 1, 12, 30, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def client(stack: object) -> Iterator["redis.Redis"]:
    connection = redis_client(RedisSettings(), None)
    yield connection
    connection.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOON)


@pytest.fixture
def limiter(client: "redis.Redis", clock: ManualClock) -> RedisRateLimiter:
    # A prefix of its own: counters of other tests (and other runs) never meet this test's.
    return RedisRateLimiter(client, clock, key_prefix=f"test:{uuid.uuid4()}")


def _admitted(limiter: RedisRateLimiter, companion: uuid.UUID, attempts: int, **limits: int) -> int:
    admitted = 0
    for _ in range(attempts):
        try:
            limiter.admit(companion, "alice", **limits)
            admitted += 1
        except (RateLimited, QuotaExceeded):
            pass
    return admitted


def test_exactly_the_limit_is_admitted_under_fifty_concurrent_requests(limiter: RedisRateLimiter) -> None:
    # Given a limit of 20 a minute and 50 requests released at the same instant from 50 threads
    companion = uuid.uuid4()
    start = threading.Barrier(50)
    outcomes: list[str] = []
    lock = threading.Lock()

    def request() -> None:
        start.wait()
        try:
            limiter.admit(companion, "alice", per_minute=20, per_day=1_000)
            outcome = "admitted"
        except RateLimited:
            outcome = "limited"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=request) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly 20 got through and 30 were told to wait
    assert outcomes.count("admitted") == 20
    assert outcomes.count("limited") == 30


def test_over_the_rate_the_answer_says_how_long_to_wait(limiter: RedisRateLimiter) -> None:
    # Given a user who used up 3 requests a minute at 12:30:15
    companion = uuid.uuid4()
    assert _admitted(limiter, companion, 3, per_minute=3, per_day=100) == 3
    # When a fourth comes, Then it is refused until the minute ends, 45 s later
    with pytest.raises(RateLimited) as raised:
        limiter.admit(companion, "alice", per_minute=3, per_day=100)
    assert raised.value.retry_after_s == 45
    assert raised.value.headers() == {"Retry-After": "45"}
    assert raised.value.status == 429


def test_a_new_minute_admits_again_and_refused_requests_did_not_count(
    limiter: RedisRateLimiter, clock: ManualClock
) -> None:
    # Given a user at the limit who kept trying
    companion = uuid.uuid4()
    assert _admitted(limiter, companion, 10, per_minute=3, per_day=100) == 3
    # When the next minute starts, Then the full limit is available again
    clock.at += timedelta(seconds=45)
    assert _admitted(limiter, companion, 5, per_minute=3, per_day=100) == 3


def test_users_and_companions_have_separate_counters(limiter: RedisRateLimiter) -> None:
    companion, other = uuid.uuid4(), uuid.uuid4()
    assert _admitted(limiter, companion, 2, per_minute=2, per_day=100) == 2
    limiter.admit(companion, "bob", per_minute=2, per_day=100)
    limiter.admit(other, "alice", per_minute=2, per_day=100)


def test_the_daily_quota_stops_a_user_until_utc_midnight(
    limiter: RedisRateLimiter, clock: ManualClock
) -> None:
    # Given a daily quota of 5 interactions used up over several minutes
    companion = uuid.uuid4()
    for _ in range(5):
        limiter.admit(companion, "alice", per_minute=100, per_day=5)
        clock.at += timedelta(minutes=7)
    # When one more comes the same day, Then it is a quota error that says when the day ends
    with pytest.raises(QuotaExceeded) as raised:
        limiter.admit(companion, "alice", per_minute=100, per_day=5)
    midnight = datetime(2026, 3, 2, tzinfo=UTC)
    assert raised.value.retry_after_s == int((midnight - clock.at).total_seconds())
    assert raised.value.details["quota"] == "interactions_per_day"
    # And after midnight UTC the user is admitted again
    clock.at = midnight + timedelta(seconds=1)
    limiter.admit(companion, "alice", per_minute=100, per_day=5)


def test_counters_expire_by_themselves_after_their_window(
    limiter: RedisRateLimiter, client: "redis.Redis"
) -> None:
    # Given one admitted request
    companion = uuid.uuid4()
    limiter.admit(companion, "alice", per_minute=10, per_day=10)
    # Then both of its counters carry an expiry (set in the same atomic script), none lives forever
    prefix = limiter._prefix
    keys = [k for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    assert len(keys) == 2
    assert all(client.pttl(k) > 0 for k in keys)


def test_a_check_is_one_round_trip_once_the_script_is_loaded(stack: object, clock: ManualClock) -> None:
    # Given a limiter whose connections count what they send, warmed by one first check
    url = os.environ["REDIS_URL"]
    pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection, socket_timeout=1)
    counted = redis.Redis(connection_pool=pool)
    limiter = RedisRateLimiter(counted, clock, key_prefix=f"test:{uuid.uuid4()}")
    companion = uuid.uuid4()
    limiter.admit(companion, "alice", per_minute=10, per_day=10)
    CountingConnection.sends.clear()
    # When it checks 5 more requests (the last ones refused)
    for _ in range(5):
        with contextlib.suppress(RateLimited):
            limiter.admit(companion, "alice", per_minute=3, per_day=10)
    # Then each check sent exactly one command, an EVALSHA of the script
    assert len(CountingConnection.sends) == 5
    assert all(b"EVALSHA" in sent for sent in CountingConnection.sends)
    counted.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def unreachable_limiter(clock: ManualClock) -> RedisRateLimiter:
    # Built by the same factory as production's client, so its retry policy is the one under test.
    url = SecretStr(f"redis://127.0.0.1:{_closed_port()}/0")
    down = redis_client(RedisSettings(redis_url=url, redis_timeout_s=0.2), None)
    return RedisRateLimiter(down, clock)


def test_with_redis_down_failing_open_admits_and_counts_it(unreachable_limiter: RedisRateLimiter) -> None:
    from companion_memory.observability import metrics

    metrics.clear_metrics()
    # Given the fail-open policy and a Redis nobody listens for
    guard = RequestGuard(unreachable_limiter, "open")
    # When a request comes, Then it is admitted and the outage is counted in a metric
    guard.admit(uuid.uuid4(), "alice", {"limits": {"requests_per_minute": 1}})
    assert "RateLimiterFailOpen" in metrics.metric_set
    metrics.clear_metrics()


def test_with_redis_down_failing_closed_refuses_with_a_retryable_error(
    unreachable_limiter: RedisRateLimiter,
) -> None:
    guard = RequestGuard(unreachable_limiter, "closed")
    with pytest.raises(DependencyUnavailable) as raised:
        guard.admit(uuid.uuid4(), "alice", {})
    assert raised.value.retryable
    assert raised.value.status == 503
