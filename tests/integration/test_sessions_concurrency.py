"""Concurrent touches of one session, over HTTP to moto DynamoDB, with the adapter's real requests.

DynamoDB applies writes to one item one at a time: a conditional UpdateItem sees the result of every
write before it. moto's threaded server does not (its UpdateItem reads, computes and stores without a
lock, so two requests at once can lose an ADD). These tests give moto that guarantee with a lock
around its item writes, in a moto server of their own, so what they check is our side: no
read-modify-write, and a restart of an expired session that only one writer can win.
"""

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import boto3
import pytest
from botocore.config import Config

from companion_memory.adapters.dynamodb_sessions import DynamoDbSessionStore
from companion_memory.domain.sessions import SessionService
from companion_memory.models.session import SessionTouch
from localdev import cloud, template
from tests.unit.test_sessions_service import FakeSessionLedger

START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
_ITEM_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


class ManualClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@pytest.fixture(scope="module")
def serialized_dynamodb(stack: object) -> Iterator[Any]:
    """A moto server in this process whose item writes are serialised as DynamoDB's are; a client of it
    (credentials and region from the stack's environment), with the sessions table of template.yaml."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.server import ThreadedMotoServer

    lock = threading.Lock()
    originals = {name: getattr(DynamoDBBackend, name) for name in _ITEM_WRITES}

    def serialised(write: Callable[..., Any]) -> Callable[..., Any]:
        def locked(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return write(*args, **kwargs)

        return locked

    for name, write in originals.items():
        setattr(DynamoDBBackend, name, serialised(write))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client(
            "dynamodb",
            endpoint_url=f"http://{host}:{port}",
            config=Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 2}),
        )
        table = cloud.plan(template.default()).tables["SessionsTable"].create
        client.create_table(**table)
        yield client, table["TableName"]
    finally:
        server.stop()
        for name, write in originals.items():
            setattr(DynamoDBBackend, name, write)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sessions(serialized_dynamodb: Any, clock: ManualClock) -> SessionService:
    client, table = serialized_dynamodb
    return SessionService(DynamoDbSessionStore(client, table), FakeSessionLedger(), clock)


@pytest.fixture
def companion() -> UUID:
    return uuid4()


def run_threads(count: int, work: Callable[[], None]) -> None:
    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_concurrent_touches_never_lose_a_count(sessions: SessionService, companion: UUID) -> None:
    # Given 8 threads touching one session 25 times each
    def work() -> None:
        for _ in range(25):
            sessions.touch(companion, "alice", None, "busy", None, None)

    run_threads(8, work)

    # Then every touch was counted once, in one session
    final = sessions.touch(companion, "alice", None, "busy", None, None)
    assert final.record.request_count == 8 * 25 + 1


def test_concurrent_touches_of_an_expired_session_restart_it_once(
    sessions: SessionService, clock: ManualClock, companion: UUID
) -> None:
    # Given an expired session
    sessions.touch(companion, "alice", None, "racy", None, None)
    clock.at = START + timedelta(hours=1)

    # When 8 threads touch it at once, 5 times each
    outcomes: list[SessionTouch] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(5):
            touched = sessions.touch(companion, "alice", None, "racy", None, None)
            with lock:
                outcomes.append(touched)

    run_threads(8, work)

    # Then exactly one touch started the new session and ended the old; all 40 counted in the new one
    assert sum(touched.started for touched in outcomes) == 1
    assert sum(touched.ended is not None for touched in outcomes) == 1
    assert {touched.record.session_id for touched in outcomes} == {outcomes[0].record.session_id}
    assert sorted(touched.record.request_count for touched in outcomes) == list(range(1, 41))
