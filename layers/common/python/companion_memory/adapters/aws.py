"""boto3 clients with short timeouts, and secrets read through Powertools (cached per process).

boto3 honours AWS_ENDPOINT_URL by itself, which is how the local stack points every client at moto.
"""

import json
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities import parameters
from botocore.config import Config

from companion_memory.config import AwsSettings, settings_for

SECRET_CACHE_S = 300


def client(service: str, settings: AwsSettings) -> Any:
    config = Config(
        connect_timeout=settings.aws_timeout_s,
        read_timeout=settings.aws_timeout_s,
        retries={"mode": "standard", "max_attempts": 2},
    )
    return boto3.client(service, region_name=settings.aws_region, config=config)  # type: ignore[call-overload]


@cache
def secrets_provider() -> parameters.SecretsProvider:
    # Powertools' default provider would build its client with botocore's defaults (60 s timeouts,
    # retries, no region from AWS_REGION): a Secrets Manager outage would then hold a request until
    # Lambda kills it. Same client settings as every other call instead; values still cached.
    return parameters.SecretsProvider(boto3_client=client("secretsmanager", settings_for(AwsSettings)))


def secret_json(secret_id: str) -> dict[str, Any]:
    value = secrets_provider().get(secret_id, max_age=SECRET_CACHE_S)
    parsed = json.loads(value) if isinstance(value, str | bytes) else value
    if not isinstance(parsed, dict):
        raise ValueError(f"secret {secret_id} is not a JSON object")
    return parsed
