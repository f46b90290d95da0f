"""Envelope encryption against the local stack: moto's KMS and the real PostgreSQL under RLS."""

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import boto3
import pytest
from botocore.config import Config

from companion_memory.adapters import aws
from companion_memory.adapters.kms_envelope import KmsDataKeys, PostgresWrappedKeys
from companion_memory.adapters.postgres import Database
from companion_memory.config import AwsSettings
from companion_memory.domain.envelope import EnvelopeCipher, encryption_context
from companion_memory.errors import ContentIntegrityError, ContentShredded, DependencyUnavailable
from companion_memory.models.tenancy import TenantScope
from tests.support.database import app_database


class ManualClock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


class KmsCalls:
    """Counts the KMS operations a client actually sends, from botocore's own event hook."""

    def __init__(self, client: Any) -> None:
        self.operations: list[str] = []
        client.meta.events.register("before-call.kms.*", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[Database]:
    with app_database() as db:
        yield db


@pytest.fixture
def kms_client(stack: object) -> Any:
    # A client of its own per test, so the counting hook sees this test's calls only.
    return aws.client("kms", AwsSettings())


@pytest.fixture
def kms(kms_client: Any) -> KmsDataKeys:
    return KmsDataKeys(kms_client, os.environ["KMS_KEY_ID"])


def _cipher(kms: KmsDataKeys, database: Database, clock: ManualClock | None = None) -> EnvelopeCipher:
    """A fresh cipher is a fresh process: nothing cached."""
    return EnvelopeCipher(
        kms, PostgresWrappedKeys(database), clock or ManualClock(), ttl_s=300, max_uses=10_000
    )


def _strict_companion(
    database: Database, wrapped: bytes | None = None, companion_id: UUID | None = None
) -> UUID:
    owner, companion = uuid.uuid4(), companion_id or uuid.uuid4()
    with database.transaction(TenantScope(owner_id=owner)) as conn:
        conn.execute("INSERT INTO owners (id, name) VALUES (%s, 'org')", (owner,))
        conn.execute(
            "INSERT INTO companions (id, owner_id, name, isolation_level, wrapped_data_key)"
            " VALUES (%s, %s, 'c', 'strict', %s)",
            (companion, owner, wrapped),
        )
    return companion


def _stored_key(database: Database, companion: UUID) -> tuple[bytes | None, str]:
    with database.transaction(TenantScope(companion_id=companion)) as conn:
        row = conn.execute(
            "SELECT wrapped_data_key, status FROM companions WHERE id = %s", (companion,)
        ).fetchone()
    assert row is not None
    return (None if row[0] is None else bytes(row[0])), row[1]


def test_a_warm_process_makes_exactly_one_kms_call_for_a_hundred_seals_and_opens(
    kms: KmsDataKeys, kms_client: Any, database: Database
) -> None:
    # Given a strict companion created with a provisioned data key, and a new process (cold cache)
    companion_id = uuid.uuid4()
    wrapped = _cipher(kms, database).provision_data_key(companion_id)
    companion = _strict_companion(database, wrapped, companion_id)
    cipher = _cipher(kms, database)
    calls = KmsCalls(kms_client)
    # When it seals and opens 100 memories
    for number in range(100):
        memory = uuid.uuid4()
        sealed = cipher.seal(companion, "alice", memory, f"memory {number}")
        assert cipher.open(companion, "alice", memory, sealed) == f"memory {number}"
    # Then KMS was asked once, to unwrap the key; every later request was served from the cache
    assert calls.operations == ["Decrypt"]


def test_provisioning_at_creation_leaves_the_first_seals_without_any_kms_call(
    kms: KmsDataKeys, kms_client: Any, database: Database
) -> None:
    # Given the process that created the companion (it made the key)
    companion_id = uuid.uuid4()
    cipher = _cipher(kms, database)
    calls = KmsCalls(kms_client)
    companion = _strict_companion(database, cipher.provision_data_key(companion_id), companion_id)
    # When it seals and opens
    memory = uuid.uuid4()
    assert cipher.open(companion, "alice", memory, cipher.seal(companion, "alice", memory, "x")) == "x"
    # Then GenerateDataKey was the only call
    assert calls.operations == ["GenerateDataKey"]


def test_a_strict_companion_without_a_key_gets_one_stored_and_other_processes_use_it(
    kms: KmsDataKeys, database: Database
) -> None:
    # Given a strict companion whose row has no data key
    companion = _strict_companion(database)
    # When one process seals content for it
    memory = uuid.uuid4()
    sealed = _cipher(kms, database).seal(companion, "alice", memory, "lazily keyed")
    # Then the wrapped key is in the row, and another process opens the content with it
    assert _stored_key(database, companion)[0] is not None
    assert _cipher(kms, database).open(companion, "alice", memory, sealed) == "lazily keyed"


def test_processes_racing_to_make_the_first_key_end_up_sharing_one(
    kms: KmsDataKeys, database: Database
) -> None:
    # Given a strict companion without a key and four processes starting at once
    companion = _strict_companion(database)
    ciphers = [_cipher(kms, database) for _ in range(4)]
    start = threading.Barrier(len(ciphers))
    sealed: dict[int, tuple[UUID, bytes]] = {}

    def seal(index: int) -> None:
        memory = uuid.uuid4()
        start.wait()
        sealed[index] = (memory, ciphers[index].seal(companion, "alice", memory, f"from {index}"))

    # When each seals its first content concurrently
    threads = [threading.Thread(target=seal, args=(i,)) for i in range(len(ciphers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every process opens what every other sealed: one key won
    reader = _cipher(kms, database)
    assert sorted(reader.open(companion, "alice", m, s) for m, s in sealed.values()) == [
        f"from {i}" for i in range(4)
    ]


def test_kms_refuses_a_wrapped_key_under_another_companions_encryption_context(
    kms: KmsDataKeys, database: Database
) -> None:
    # Given a data key wrapped for one companion
    _, wrapped = kms.generate(encryption_context(uuid.uuid4()))
    # When it is unwrapped with another companion's context, Then KMS refuses it
    with pytest.raises(ContentIntegrityError):
        kms.unwrap(wrapped, encryption_context(uuid.uuid4()))


def test_a_wrapped_key_copied_into_another_companions_row_does_not_unwrap(
    kms: KmsDataKeys, database: Database
) -> None:
    # Given a companion whose row holds a wrapped key copied from another companion
    donor = _strict_companion(database)
    _cipher(kms, database).seal(donor, "alice", uuid.uuid4(), "x")
    thief = _strict_companion(database, _stored_key(database, donor)[0])
    # When the thief's content is sealed, Then the key does not unwrap under the thief's context
    with pytest.raises(ContentIntegrityError):
        _cipher(kms, database).seal(thief, "alice", uuid.uuid4(), "x")


def test_shredding_makes_sealed_content_unreadable_here_and_in_other_processes_after_their_ttl(
    kms: KmsDataKeys, database: Database
) -> None:
    # Given content sealed for a strict companion, and another process that has its key cached
    companion, memory = _strict_companion(database), uuid.uuid4()
    here = _cipher(kms, database)
    sealed = here.seal(companion, "alice", memory, "erase me")
    elsewhere_clock = ManualClock()
    elsewhere = _cipher(kms, database, elsewhere_clock)
    assert elsewhere.open(companion, "alice", memory, sealed) == "erase me"
    # When the companion is shredded here
    here.shred(companion)
    # Then the row holds no key and says deleted, and this process cannot open the content
    assert _stored_key(database, companion) == (None, "deleted")
    with pytest.raises(ContentShredded):
        here.open(companion, "alice", memory, sealed)
    # And the other process stops being able to once its cached key expires
    elsewhere_clock.at += timedelta(seconds=300)
    with pytest.raises(ContentShredded):
        elsewhere.open(companion, "alice", memory, sealed)


def test_an_unreachable_kms_is_a_retryable_dependency_error(database: Database) -> None:
    # Given a KMS endpoint nobody listens on (port 9, discard: closed on 127.0.0.1)
    unreachable = boto3.client(
        "kms",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        config=Config(connect_timeout=0.2, read_timeout=0.2, retries={"max_attempts": 1}),
    )
    companion = _strict_companion(database)
    cipher = EnvelopeCipher(
        KmsDataKeys(unreachable, "alias/none"), PostgresWrappedKeys(database), ManualClock()
    )
    # When a key is needed, Then the error says the dependency is unavailable and may be retried
    with pytest.raises(DependencyUnavailable) as raised:
        cipher.seal(companion, "alice", uuid.uuid4(), "x")
    assert raised.value.retryable
