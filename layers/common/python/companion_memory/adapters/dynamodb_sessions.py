"""Companion session records in the DynamoDB sessions table (template.yaml ``SessionsTable``).

One item per (companion, user, session key):

=================  ==  ===========================================================================
pk                 S   ``COMPANION#<companion uuid>#USER#<user id>``: a user's sessions share a
                       partition, so erasing a user's sessions (or listing their conversations) is
                       one Query, and a client-chosen key can never reach another user's item
sk                 S   ``SESSION#<kind>:<key>`` (kind ``mcp`` for a legacy Mcp-Session-Id,
                       ``conversation`` otherwise)
companion_id       S   hash key of the ``by_companion`` index
expires_at         N   epoch seconds: the TTL attribute and the index's range key, so a companion's
                       live sessions are ``companion_id = :c AND expires_at > :now`` (the
                       concurrent-session limit of the lifecycle work counts exactly that)
user_id            S   also in pk; kept plain for readers of the item
session_key        S   ``<kind>:<key>``
session_id         S   uuid of this incarnation; a new one when an expired session restarts
created_at         S   ISO 8601 UTC
last_activity_at   S   ISO 8601 UTC
request_count      N
protocol_version   S   optional, last one seen
client_name        S   optional, last one seen
=================  ==  ===========================================================================

A touch is one UpdateItem in the common case (continue or create). TTL deletion is lazy, so an item
may outlive its ``expires_at``: the first write is conditioned on the item being absent or live, and
when it finds an expired one, a second UpdateItem conditioned on "still expired" starts the new
incarnation (and returns the old one). Each step is a conditional write, so racing touches either
increment the same incarnation or lose the condition and go round again; none loses a count.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError

from companion_memory.errors import CompanionMemoryError, DependencyUnavailable
from companion_memory.models.session import LiveSession, SessionKey, SessionRecord, SessionTouch, SessionVisit

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BY_COMPANION_INDEX = "by_companion"
# Two rounds cover "expired, then restarted by a racing writer"; more means writers keep trading the
# item, and the caller is better served by an answer than by a spin.
_MAX_ROUNDS = 4
_RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)

_CONTINUE_OR_CREATE = (
    "SET companion_id = :companion, user_id = :user, session_key = :key, "
    "last_activity_at = :at, expires_at = :expires, "
    "created_at = if_not_exists(created_at, :at), session_id = if_not_exists(session_id, :session_id)"
)
_RESTART = (
    "SET companion_id = :companion, user_id = :user, session_key = :key, "
    "last_activity_at = :at, expires_at = :expires, created_at = :at, session_id = :session_id, "
    "request_count = :one"
)


def partition_key(companion_id: UUID, user_id: str) -> str:
    return f"COMPANION#{companion_id}#USER#{user_id}"


def sort_key(key: SessionKey) -> str:
    return f"SESSION#{key}"


class DynamoDbSessionStore:
    def __init__(self, client: "DynamoDBClient", table_name: str) -> None:
        self._client = client
        self._table = table_name

    def touch(self, visit: SessionVisit) -> SessionTouch:
        for _ in range(_MAX_ROUNDS):
            item = self._continue_or_create(visit)
            if item is not None:
                record = _record(item)
                return SessionTouch(record=record, started=record.request_count == 1)
            old = self._restart_expired(visit)
            if old is not None:
                ended = _record(old)
                return SessionTouch(record=_restarted(visit, ended), started=True, ended=ended)
        raise DependencyUnavailable(
            "The session record kept changing under concurrent requests", details={"rounds": _MAX_ROUNDS}
        )

    def live_sessions(self, companion_id: UUID, now: datetime) -> list[LiveSession]:
        sessions: list[LiveSession] = []
        start: Mapping[str, Any] | None = None
        prefix = partition_key(companion_id, "")
        while True:
            paging: dict[str, Any] = {} if start is None else {"ExclusiveStartKey": start}
            with _translated("Query"):
                page = self._client.query(
                    TableName=self._table,
                    IndexName=BY_COMPANION_INDEX,
                    KeyConditionExpression="companion_id = :companion AND expires_at > :now",
                    ExpressionAttributeValues={
                        ":companion": {"S": str(companion_id)},
                        ":now": {"N": str(_epoch(now))},
                    },
                    **paging,
                )
            for item in page.get("Items", []):
                sessions.append(
                    LiveSession(
                        user_id=_string(item, "pk").removeprefix(prefix),
                        key=SessionKey.parse(_string(item, "sk").removeprefix("SESSION#")),
                        expires_at=datetime.fromtimestamp(_integer(item, "expires_at"), UTC),
                    )
                )
            start = page.get("LastEvaluatedKey")
            if not start:
                return sessions

    def _continue_or_create(self, visit: SessionVisit) -> Mapping[str, Any] | None:
        """The item after the write, or None when an expired incarnation is in the way."""
        return self._conditional_update(
            visit,
            update=f"{_CONTINUE_OR_CREATE}{{optional}} ADD request_count :one",
            condition="attribute_not_exists(pk) OR expires_at > :now",
            returns="ALL_NEW",
        )

    def _restart_expired(self, visit: SessionVisit) -> Mapping[str, Any] | None:
        """The expired incarnation this write replaced, or None when it is no longer expired (another
        request restarted it) or no longer there (TTL deleted it)."""
        return self._conditional_update(
            visit, update=f"{_RESTART}{{optional}}", condition="expires_at <= :now", returns="ALL_OLD"
        )

    def _conditional_update(
        self, visit: SessionVisit, *, update: str, condition: str, returns: Literal["ALL_NEW", "ALL_OLD"]
    ) -> Mapping[str, Any] | None:
        """One UpdateItem of the visit's record; None when ``condition`` does not hold."""
        optional, values = _optional_fields(visit)
        try:
            with _translated("UpdateItem"):
                response = self._client.update_item(
                    TableName=self._table,
                    Key=_key(visit),
                    UpdateExpression=update.format(optional=optional),
                    ConditionExpression=condition,
                    ExpressionAttributeValues={**_common_values(visit), **values, ":now": _now(visit)},
                    ReturnValues=returns,
                )
        except self._client.exceptions.ConditionalCheckFailedException:
            return None
        return response["Attributes"]


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """AWS failures as our errors: retryable ones (throttling, timeouts, 5xx) as DependencyUnavailable.
    Only the AWS error code travels on, never the message (it can echo request values)."""
    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "Unknown"))
        details = {"operation": operation, "aws_code": code}
        if code in _RETRYABLE_CODES:
            raise DependencyUnavailable("The session store is busy", details=details) from None
        if code == "ConditionalCheckFailedException":
            raise
        raise CompanionMemoryError("The session store refused the request", details=details) from None
    except BotoCoreError as error:
        details = {"operation": operation, "error": type(error).__name__}
        raise DependencyUnavailable("The session store did not answer", details=details) from None


def _key(visit: SessionVisit) -> dict[str, Any]:
    return {
        "pk": {"S": partition_key(visit.companion_id, visit.user_id)},
        "sk": {"S": sort_key(visit.key)},
    }


def _common_values(visit: SessionVisit) -> dict[str, Any]:
    return {
        ":companion": {"S": str(visit.companion_id)},
        ":user": {"S": visit.user_id},
        ":key": {"S": str(visit.key)},
        ":at": {"S": _iso(visit.at)},
        ":expires": {"N": str(_epoch(visit.expires_at))},
        ":session_id": {"S": str(visit.new_session_id)},
        ":one": {"N": "1"},
    }


def _optional_fields(visit: SessionVisit) -> tuple[str, dict[str, Any]]:
    """SET clauses for what this request told us; what it did not say keeps its stored value (a legacy
    client names itself only on ``initialize``)."""
    clauses, values = "", {}
    if visit.protocol_version is not None:
        clauses += ", protocol_version = :protocol_version"
        values[":protocol_version"] = {"S": visit.protocol_version}
    if visit.client_name is not None:
        clauses += ", client_name = :client_name"
        values[":client_name"] = {"S": visit.client_name}
    return clauses, values


def _now(visit: SessionVisit) -> dict[str, str]:
    return {"N": str(_epoch(visit.at))}


def _restarted(visit: SessionVisit, ended: SessionRecord) -> SessionRecord:
    return SessionRecord(
        companion_id=visit.companion_id,
        user_id=visit.user_id,
        key=visit.key,
        session_id=visit.new_session_id,
        created_at=visit.at,
        last_activity_at=visit.at,
        expires_at=datetime.fromtimestamp(_epoch(visit.expires_at), UTC),
        request_count=1,
        protocol_version=visit.protocol_version or ended.protocol_version,
        client_name=visit.client_name or ended.client_name,
    )


def _record(item: Mapping[str, Any]) -> SessionRecord:
    return SessionRecord(
        companion_id=UUID(_string(item, "companion_id")),
        user_id=_string(item, "user_id"),
        key=SessionKey.parse(_string(item, "session_key")),
        session_id=UUID(_string(item, "session_id")),
        created_at=datetime.fromisoformat(_string(item, "created_at")),
        last_activity_at=datetime.fromisoformat(_string(item, "last_activity_at")),
        expires_at=datetime.fromtimestamp(_integer(item, "expires_at"), UTC),
        request_count=_integer(item, "request_count"),
        protocol_version=_string(item, "protocol_version") if "protocol_version" in item else None,
        client_name=_string(item, "client_name") if "client_name" in item else None,
    )


def _string(item: Mapping[str, Any], name: str) -> str:
    return str(item[name]["S"])


def _integer(item: Mapping[str, Any], name: str) -> int:
    return int(item[name]["N"])


def _epoch(moment: datetime) -> int:
    # Whole seconds, as TTL wants; "expired" is expires_at <= now, in the same unit on both sides.
    return int(moment.timestamp())


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
