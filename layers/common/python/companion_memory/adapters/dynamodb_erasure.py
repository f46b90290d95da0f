"""Erasure in the DynamoDB sessions table (layout: ``adapters/dynamodb_sessions.py``).

A user's items share one partition (``COMPANION#<id>#USER#<user>``): one paged Query finds them all. A
companion's items are found through the ``by_companion`` index (keys only, every expiry); the index is
eventually consistent, so an item written a moment before the delete may be missed by one run and is
found by the next (a repeated delete is the documented way to finish a purge). Deletes go in
BatchWriteItem requests of 25, with unprocessed items sent again a bounded number of times.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError

from companion_memory.adapters.dynamodb_sessions import BY_COMPANION_INDEX, partition_key
from companion_memory.errors import DependencyUnavailable
from companion_memory.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_BATCH = 25
_MAX_ATTEMPTS = 5
_SESSION_PREFIX = "SESSION#"


class DynamoDbErasure:
    """``ports.TenantDataStore`` for DynamoDB."""

    name = "dynamodb"

    def __init__(self, client: "DynamoDBClient", table_name: str) -> None:
        self._client = client
        self._table = table_name

    def erase_user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> dict[str, int]:
        keys = self._query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": partition_key(companion_id, user_id)}},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
        )
        return self._delete(keys)

    def erase_companion(self, owner_id: UUID, companion_id: UUID) -> dict[str, int]:
        keys = self._query(
            IndexName=BY_COMPANION_INDEX,
            KeyConditionExpression="companion_id = :companion",
            ExpressionAttributeValues={":companion": {"S": str(companion_id)}},
        )
        # The index holds only items that carry companion_id; stay inside the companion's partitions.
        prefix = partition_key(companion_id, "")
        return self._delete([key for key in keys if key["pk"]["S"].startswith(prefix)])

    def _query(self, **query: Any) -> list[dict[str, Any]]:
        keys: list[dict[str, Any]] = []
        start: Mapping[str, Any] | None = None
        while True:
            paging: dict[str, Any] = {} if start is None else {"ExclusiveStartKey": start}
            with _translated("Query"):
                page = self._client.query(TableName=self._table, **query, **paging)
            keys.extend({"pk": item["pk"], "sk": item["sk"]} for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return keys

    def _delete(self, keys: list[dict[str, Any]]) -> dict[str, int]:
        # Two sessions' keys may come twice from a paged index read; a batch refuses duplicates.
        unique = list({(key["pk"]["S"], key["sk"]["S"]): key for key in keys}.values())
        for start in range(0, len(unique), _BATCH):
            self._write_batch([{"DeleteRequest": {"Key": key}} for key in unique[start : start + _BATCH]])
        sessions = sum(key["sk"]["S"].startswith(_SESSION_PREFIX) for key in unique)
        removed = {"sessions": sessions}
        if len(unique) > sessions:
            removed["other_items"] = len(unique) - sessions
        return removed

    def _write_batch(self, requests: list[dict[str, Any]]) -> None:
        pending: list[Any] = requests
        for _ in range(_MAX_ATTEMPTS):
            with _translated("BatchWriteItem"):
                answer = self._client.batch_write_item(RequestItems={self._table: pending})
            pending = list(answer.get("UnprocessedItems", {}).get(self._table, []))
            if not pending:
                return
        raise DependencyUnavailable(
            "The session store kept refusing deletes", details={"unprocessed": len(pending)}
        )


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """AWS failures as a retryable error; only the AWS error code travels on (a message can echo values)."""
    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "Unknown"))
        logger.warning("DynamoDB refused an erasure call", extra={"operation": operation, "aws_code": code})
        raise DependencyUnavailable(
            "The session store is unavailable", details={"operation": operation, "aws_code": code}
        ) from None
    except BotoCoreError as error:
        logger.warning("DynamoDB unreachable", extra={"operation": operation, "error": type(error).__name__})
        raise DependencyUnavailable(
            "The session store did not answer", details={"operation": operation}
        ) from None
