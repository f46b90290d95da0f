"""Composition root: the only place that names concrete adapters.

Everything is built lazily on first use and cached for the life of the process (a warm Lambda
sandbox), so a handler pays only for what it touches. After a SnapStart restore the cache is
dropped, because connections captured in the snapshot are dead.
"""

from functools import cache
from typing import Any

import redis

from companion_memory.adapters import aws
from companion_memory.adapters.dynamodb import DynamoDbProbe
from companion_memory.adapters.postgres import Database, PostgresProbe, conninfo_from
from companion_memory.adapters.redis import RedisProbe, redis_client
from companion_memory.config import AwsSettings, HealthSettings, PostgresSettings, RedisSettings, settings_for
from companion_memory.domain.health import HealthService
from companion_memory.ports import DependencyProbe


@cache
def database() -> Database:
    settings = settings_for(PostgresSettings)
    secret = None
    if settings.database_url is None and settings.db_secret_arn is not None:
        secret = aws.secret_json(settings.db_secret_arn)
    return Database(conninfo_from(settings, secret), settings)


@cache
def redis_connection() -> "redis.Redis":
    settings = settings_for(RedisSettings)
    credentials = aws.secret_json(settings.redis_secret_arn) if settings.redis_secret_arn else None
    return redis_client(settings, credentials)


@cache
def aws_client(service: str) -> Any:
    return aws.client(service, settings_for(AwsSettings))


@cache
def health_service() -> HealthService:
    settings = settings_for(HealthSettings)
    probes: list[DependencyProbe] = [
        PostgresProbe(database()),
        RedisProbe(redis_connection()),
        DynamoDbProbe(aws_client("dynamodb"), settings.sessions_table),
    ]
    return HealthService(probes, timeout_s=settings.health_check_timeout_s)


def reset() -> None:
    """Forget every cached client (after a SnapStart restore, or between tests)."""
    for built in (database, redis_connection, aws_client, health_service):
        built.cache_clear()


def _register_snapstart_hook() -> None:
    try:
        from snapshot_restore_py import register_after_restore  # only present in the Lambda runtime
    except ImportError:
        return
    register_after_restore(reset)


_register_snapstart_hook()
