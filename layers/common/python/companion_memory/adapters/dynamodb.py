"""DynamoDB: the sessions table (session records arrive with the memory and lifecycle issues)."""

from collections.abc import Callable
from typing import Any


class DynamoDbProbe:
    name = "dynamodb"

    def __init__(self, client: Callable[[], Any], table_name: str) -> None:
        self._client = client
        self._table_name = table_name

    def check(self) -> None:
        self._client().describe_table(TableName=self._table_name)
