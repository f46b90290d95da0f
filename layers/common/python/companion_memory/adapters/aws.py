"""boto3 clients with short timeouts, and secrets read through Powertools (cached per process).

boto3 honours AWS_ENDPOINT_URL by itself, which is how the local stack points every client at moto.
"""

import json
from typing import Any

import boto3
from aws_lambda_powertools.utilities import parameters
from botocore.config import Config

from companion_memory.config import AwsSettings

SECRET_CACHE_S = 300


def client(service: str, settings: AwsSettings) -> Any:
    config = Config(
        connect_timeout=settings.aws_timeout_s,
        read_timeout=settings.aws_timeout_s,
        retries={"mode": "standard", "max_attempts": 2},
    )
    return boto3.client(service, region_name=settings.aws_region, config=config)  # type: ignore[call-overload]


def secret_json(secret_id: str) -> dict[str, Any]:
    value = parameters.get_secret(secret_id, max_age=SECRET_CACHE_S)
    parsed = json.loads(value)
    if not isinstance(parsed, dict):
        raise ValueError(f"secret {secret_id} is not a JSON object")
    return parsed
