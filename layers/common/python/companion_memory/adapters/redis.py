"""Redis (ElastiCache Serverless in AWS: TLS and AUTH; plain redis-server locally)."""

import redis

from companion_memory.config import RedisSettings


def redis_client(settings: RedisSettings, credentials: dict[str, str] | None) -> "redis.Redis":
    """A URL (local) or ElastiCache host + RBAC user from the secret ``{"username", "password"}``."""
    options = {
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        "health_check_interval": 30,
    }
    if settings.redis_url is not None:
        return redis.Redis.from_url(settings.redis_url.get_secret_value(), **options)  # type: ignore[arg-type]
    if settings.redis_host is None:
        raise ValueError("set REDIS_URL or REDIS_HOST")
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        username=(credentials or {}).get("username"),
        password=(credentials or {}).get("password"),
        ssl=True,
        **options,  # type: ignore[arg-type]
    )


class RedisProbe:
    name = "redis"

    def __init__(self, client: "redis.Redis") -> None:
        self._client = client

    def check(self) -> None:
        self._client.ping()
