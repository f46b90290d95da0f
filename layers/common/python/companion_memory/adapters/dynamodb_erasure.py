"""Erasure in the DynamoDB sessions table (layout: ``adapters/dynamodb_sessions.py``).

A user's items share one partition (``COMPANION#<id>#USER#<user>``): one paged Query finds them all. A
companion's items are found through the ``by_companion`` index (keys only, every expiry); the index is
eventually consistent, so an item written a moment before the delete may be missed by one run and is
found by the next (a repeated delete, or the cleanup schedule's sweep, finishes a purge). Deletes go in
BatchWriteItem requests of 25, with unprocessed items sent again a bounded number of times after a growing,
jittered pause (DynamoDB hands them back when the table is throttling: sending them at once fails again).
"""

import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError

from companion_memory.adapters.dynamodb_sessions import BY_COMPANION_INDEX, partition_key
from companion_memory.errors import DependencyUnavailable
from companion_memory.models.erasure import Budget, StorePurge
from companion_memory.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_BATCH = 25
_MAX_ATTEMPTS = 5
# Pause before resending unprocessed items: up to 100 ms, doubling per attempt, at most 1 s, full jitter
# (AWS's advice); five attempts wait 1.5 s at most in all.
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 1.0
_SESSION_PREFIX = "SESSION#"


class DynamoDbErasure:
    """``ports.TenantDataStore`` for DynamoDB."""

    name = "dynamodb"

    def __init__(
        self,
        client: "DynamoDBClient",
        table_name: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float], float] = lambda top: random.uniform(0, top),  # noqa: S311 (not a secret)
    ) -> None:
        self._client = client
        self._table = table_name
        self._sleep = sleep
        self._jitter = jitter

    def erase_user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> dict[str, int]:
        keys = self._query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": partition_key(companion_id, user_id)}},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
        )
        return self._delete(keys, None).removed

    def erase_companion(self, owner_id: UUID, companion_id: UUID, budget: Budget | None = None) -> StorePurge:
        keys = self._query(
            IndexName=BY_COMPANION_INDEX,
            KeyConditionExpression="companion_id = :companion",
            ExpressionAttributeValues={":companion": {"S": str(companion_id)}},
        )
        # The index holds only items that carry companion_id; stay inside the companion's partitions.
        prefix = partition_key(companion_id, "")
        return self._delete([key for key in keys if key["pk"]["S"].startswith(prefix)], budget)

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

    def _delete(self, keys: list[dict[str, Any]], budget: Budget | None) -> StorePurge:
        """Delete in batches; with a budget, stop before a batch once it is spent (the next call's read
        finds the items left)."""
        # Two sessions' keys may come twice from a paged index read; a batch refuses duplicates.
        unique = list({(key["pk"]["S"], key["sk"]["S"]): key for key in keys}.values())
        done: list[dict[str, Any]] = []
        finished = True
        for start in range(0, len(unique), _BATCH):
            if budget is not None and budget.spent():
                finished = False
                break
            batch = unique[start : start + _BATCH]
            self._write_batch([{"DeleteRequest": {"Key": key}} for key in batch])
            done.extend(batch)
        sessions = sum(key["sk"]["S"].startswith(_SESSION_PREFIX) for key in done)
        removed = {"sessions": sessions}
        if len(done) > sessions:
            removed["other_items"] = len(done) - sessions
        return StorePurge(removed, finished=finished)

    def _write_batch(self, requests: list[dict[str, Any]]) -> None:
        pending: list[Any] = requests
        for attempt in range(_MAX_ATTEMPTS):
            if attempt:
                self._sleep(self._jitter(min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)))
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
