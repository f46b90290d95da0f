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

A touch is one UpdateItem in the common case (continuing a live session, conditioned on
``expires_at > now``). When that condition fails the touch would start a session: it reads the item
consistently (an expired incarnation may still be there: TTL deletion is lazy), the caller's
``before_start`` runs with that incarnation (the session limits, then folding its statistics into
PostgreSQL), and only then one UpdateItem writes the new incarnation, conditioned on "absent" or on
"still that expired incarnation" (``session_id = :old AND expires_at <= :now``): an incarnation is never
overwritten before it was folded. Each step is a conditional write, so racing touches either increment
the same incarnation or lose the condition and go round again; none loses a count.

The cleanup schedule finds a companion's expired items on the ``by_companion`` index (``expires_at <=
now``; it projects keys only), reads them consistently from the table (BatchGetItem), and deletes each
with a condition that it is still the same incarnation with the same expiry.
"""

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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

# BatchGetItem takes at most 100 keys; unprocessed keys are retried this many times (with a short
# backoff) before the rest wait for the next run.
_BATCH_GET_MAX = 100
_BATCH_GET_ROUNDS = 4

_CONTINUE = "SET last_activity_at = :at, expires_at = :expires"
_START = (
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

    def touch(
        self, visit: SessionVisit, before_start: Callable[[SessionRecord | None], None] | None = None
    ) -> SessionTouch:
        for _ in range(_MAX_ROUNDS):
            item = self._continue(visit)
            if item is not None:
                return SessionTouch(record=_record(item), started=False)
            current = self._current(visit)
            ended = None if current is None else _record(current)
            if ended is not None and ended.is_live(visit.at):
                continue  # another request started it since: continue that one
            if before_start is not None:
                before_start(ended)
            if self._start(visit, ended):
                return SessionTouch(record=_started(visit, ended), started=True, ended=ended)
        raise DependencyUnavailable(
            "The session record kept changing under concurrent requests", details={"rounds": _MAX_ROUNDS}
        )

    def live_sessions(self, companion_id: UUID, now: datetime) -> list[LiveSession]:
        prefix = partition_key(companion_id, "")
        return [
            LiveSession(
                user_id=_string(item, "pk").removeprefix(prefix),
                key=SessionKey.parse(_string(item, "sk").removeprefix("SESSION#")),
                expires_at=datetime.fromtimestamp(_integer(item, "expires_at"), UTC),
            )
            for page in self._query(_by_companion(companion_id, now, live=True))
            for item in page.get("Items", [])
        ]

    def count_user_live(self, companion_id: UUID, user_id: str, now: datetime, up_to: int) -> int:
        # The user's own partition, read consistently; expired items wait there for the cleanup, so the
        # filter (applied after the read) keeps the live ones.
        counted = 0
        for page in self._query(
            {
                "KeyConditionExpression": "pk = :pk",
                "FilterExpression": "expires_at > :now",
                "ExpressionAttributeValues": {
                    ":pk": {"S": partition_key(companion_id, user_id)},
                    ":now": {"N": str(_epoch(now))},
                },
                "Select": "COUNT",
                "ConsistentRead": True,
            }
        ):
            counted += int(page.get("Count", 0))
            if counted >= up_to:
                break
        return min(counted, up_to)

    def count_live(self, companion_id: UUID, now: datetime, up_to: int) -> int:
        # Limit stops the index read at ``up_to`` items: a check against a limit never pays for more.
        query = {**_by_companion(companion_id, now, live=True), "Select": "COUNT"}
        counted = sum(int(page.get("Count", 0)) for page in self._query(query, up_to=up_to))
        return min(counted, up_to)

    def expired(self, companion_id: UUID, now: datetime, limit: int) -> list[SessionRecord]:
        keys = [
            {"pk": item["pk"], "sk": item["sk"]}
            for page in self._query(_by_companion(companion_id, now, live=False), up_to=limit)
            for item in page.get("Items", [])
        ]
        records = []
        for first in range(0, len(keys), _BATCH_GET_MAX):
            for item in self._read_consistently(keys[first : first + _BATCH_GET_MAX]):
                record = _record(item)
                # The index is eventually consistent: what the table says now decides.
                if not record.is_live(now) and record.companion_id == companion_id:
                    records.append(record)
        return records

    def remove_expired(self, record: SessionRecord) -> bool:
        try:
            with _translated("DeleteItem"):
                self._client.delete_item(
                    TableName=self._table,
                    Key={
                        "pk": {"S": partition_key(record.companion_id, record.user_id)},
                        "sk": {"S": sort_key(record.key)},
                    },
                    ConditionExpression="session_id = :session_id AND expires_at = :expires",
                    ExpressionAttributeValues={
                        ":session_id": {"S": str(record.session_id)},
                        ":expires": {"N": str(_epoch(record.expires_at))},
                    },
                )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _query(self, params: Mapping[str, Any], up_to: int | None = None) -> Iterator[Mapping[str, Any]]:
        """The pages of one Query, following ``LastEvaluatedKey``. With ``up_to``, each page asks for no
        more than what is still missing (``Limit``) and the pages stop once ``up_to`` items came back."""
        taken = 0
        start: Mapping[str, Any] | None = None
        while up_to is None or taken < up_to:
            paging: dict[str, Any] = {} if start is None else {"ExclusiveStartKey": start}
            if up_to is not None:
                paging["Limit"] = up_to - taken
            with _translated("Query"):
                page = self._client.query(TableName=self._table, **params, **paging)
            taken += int(page.get("Count", 0))
            yield page
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def _read_consistently(self, keys: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        found: list[Mapping[str, Any]] = []
        pending: Sequence[Mapping[str, Any]] = keys
        for attempt in range(_BATCH_GET_ROUNDS):
            if not pending:
                break
            if attempt:
                time.sleep(0.05 * 2**attempt)
            with _translated("BatchGetItem"):
                response = self._client.batch_get_item(
                    RequestItems={self._table: {"Keys": list(pending), "ConsistentRead": True}}
                )
            found.extend(response.get("Responses", {}).get(self._table, []))
            unprocessed: Mapping[str, Any] = response.get("UnprocessedKeys", {}).get(self._table, {})
            pending = list(unprocessed.get("Keys", []))
        return found

    def _continue(self, visit: SessionVisit) -> Mapping[str, Any] | None:
        """The item after the write, or None when there is no live session to continue."""
        return self._conditional_update(
            visit,
            update=f"{_CONTINUE}{{optional}} ADD request_count :one",
            condition="expires_at > :now",
            returns="ALL_NEW",
            values=_continue_values(visit),
        )

    def _current(self, visit: SessionVisit) -> Mapping[str, Any] | None:
        """The visit's item as it stands (strongly consistent), or None when there is none."""
        with _translated("GetItem"):
            response = self._client.get_item(TableName=self._table, Key=_key(visit), ConsistentRead=True)
        item = response.get("Item")
        return item or None

    def _start(self, visit: SessionVisit, ended: SessionRecord | None) -> bool:
        """Write the new incarnation over nothing or over exactly ``ended`` (still expired); False when
        the item changed since it was read (another request started or replaced it first)."""
        if ended is None:
            condition, values = "attribute_not_exists(pk)", _common_values(visit)
        else:
            condition = "session_id = :old_session_id AND expires_at <= :now"
            values = {**_common_values(visit), ":old_session_id": {"S": str(ended.session_id)}}
        written = self._conditional_update(
            visit, update=f"{_START}{{optional}}", condition=condition, returns="ALL_OLD", values=values
        )
        return written is not None

    def _conditional_update(
        self,
        visit: SessionVisit,
        *,
        update: str,
        condition: str,
        returns: Literal["ALL_NEW", "ALL_OLD"],
        values: dict[str, Any],
    ) -> Mapping[str, Any] | None:
        """One UpdateItem of the visit's record; None when ``condition`` does not hold, else the item
        ``returns`` names ({} for ALL_OLD when the item did not exist)."""
        optional, optional_values = _optional_fields(visit)
        # DynamoDB refuses a value no expression uses (a start over nothing compares no expiry).
        now = {":now": _now(visit)} if ":now" in condition else {}
        try:
            with _translated("UpdateItem"):
                response = self._client.update_item(
                    TableName=self._table,
                    Key=_key(visit),
                    UpdateExpression=update.format(optional=optional),
                    ConditionExpression=condition,
                    ExpressionAttributeValues={**values, **optional_values, **now},
                    ReturnValues=returns,
                )
        except self._client.exceptions.ConditionalCheckFailedException:
            return None
        return response.get("Attributes", {})


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


def _continue_values(visit: SessionVisit) -> dict[str, Any]:
    return {
        ":at": {"S": _iso(visit.at)},
        ":expires": {"N": str(_epoch(visit.expires_at))},
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


def _started(visit: SessionVisit, ended: SessionRecord | None) -> SessionRecord:
    return SessionRecord(
        companion_id=visit.companion_id,
        user_id=visit.user_id,
        key=visit.key,
        session_id=visit.new_session_id,
        created_at=visit.at,
        last_activity_at=visit.at,
        expires_at=datetime.fromtimestamp(_epoch(visit.expires_at), UTC),
        request_count=1,
        protocol_version=visit.protocol_version or (ended.protocol_version if ended else None),
        client_name=visit.client_name or (ended.client_name if ended else None),
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


def _by_companion(companion_id: UUID, now: datetime, *, live: bool) -> dict[str, Any]:
    """A Query of the companion's sessions on the ``by_companion`` index: live ones, or expired ones."""
    return {
        "IndexName": BY_COMPANION_INDEX,
        "KeyConditionExpression": f"companion_id = :companion AND expires_at {'>' if live else '<='} :now",
        "ExpressionAttributeValues": {
            ":companion": {"S": str(companion_id)},
            ":now": {"N": str(_epoch(now))},
        },
    }
