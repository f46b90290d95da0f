"""Redis (ElastiCache Serverless in AWS: TLS and RBAC; plain redis-server locally)."""

from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from companion_memory.config import RedisSettings

_HEALTH_CHECK_INTERVAL_S = 30


def _retry() -> Retry:
    # redis-py 8 retries a failed command 10 times with exponential backoff by default: ~4.4 s against a
    # refused port, far longer against a silent one, on every request. One immediate retry covers a
    # pooled connection the server closed; an outage then fails within the socket timeouts.
    return Retry(NoBackoff(), 1)


def redis_client(settings: RedisSettings, credentials: dict[str, str] | None) -> "redis.Redis":
    """A URL (local) or ElastiCache host + RBAC user from the secret ``{"username", "password"}``."""
    timeout = settings.redis_timeout_s
    if settings.redis_url is not None:
        return redis.Redis.from_url(
            settings.redis_url.get_secret_value(),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=_HEALTH_CHECK_INTERVAL_S,
            retry=_retry(),
        )
    if settings.redis_host is None:
        raise ValueError("set REDIS_URL or REDIS_HOST")
    credentials = credentials or {}
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        username=credentials.get("username"),
        password=credentials.get("password"),
        ssl=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=_HEALTH_CHECK_INTERVAL_S,
        retry=_retry(),
    )


class RedisProbe:
    name = "redis"

    def __init__(self, client: Callable[[], "redis.Redis"]) -> None:
        self._client = client

    def check(self) -> None:
        self._client().ping()
