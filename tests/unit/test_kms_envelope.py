"""Envelope encryption of strict companions' content, against fakes of the key service and key store."""

import json
import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from companion_memory.domain.envelope import FORMAT_V1, NONCE_BYTES, EnvelopeCipher, additional_data
from companion_memory.errors import Conflict, ContentIntegrityError, ContentShredded, NotFound
from companion_memory.ports import ContentCipher, DataKeyService, WrappedKeyRecord, WrappedKeyStore


class ManualClock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class FakeKms:
    """Wraps data keys under a master key with the encryption context as additional data, as KMS binds it."""

    def __init__(self, *, bind_context: bool = True) -> None:
        self._master = AESGCM(os.urandom(32))
        self._bind_context = bind_context
        self.calls: list[str] = []
        self.handed_out: list[bytearray] = []

    def generate(self, context: dict[str, str]) -> tuple[bytearray, bytes]:
        self.calls.append("GenerateDataKey")
        key = bytearray(os.urandom(32))
        nonce = os.urandom(12)
        self.handed_out.append(key)
        return key, nonce + self._master.encrypt(nonce, bytes(key), self._aad(context))

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytearray:
        self.calls.append("Decrypt")
        try:
            key = bytearray(self._master.decrypt(wrapped[:12], wrapped[12:], self._aad(context)))
        except InvalidTag:
            raise ContentIntegrityError("the companion's data key could not be unwrapped") from None
        self.handed_out.append(key)
        return key

    def _aad(self, context: dict[str, str]) -> bytes:
        return json.dumps(context if self._bind_context else {}, sort_keys=True).encode()


class FakeKeyStore:
    def __init__(self) -> None:
        self.rows: dict[UUID, WrappedKeyRecord] = {}
        self.lose_next_install_to: bytes | None = None

    def add(self, isolation_level: str = "strict", wrapped: bytes | None = None) -> UUID:
        companion_id = uuid.uuid4()
        self.rows[companion_id] = WrappedKeyRecord(uuid.uuid4(), isolation_level, "active", wrapped)
        return companion_id

    def load(self, companion_id: UUID) -> WrappedKeyRecord | None:
        return self.rows.get(companion_id)

    def install(self, companion_id: UUID, record: WrappedKeyRecord, wrapped: bytes) -> bool:
        if self.lose_next_install_to is not None:
            # Another process installed its key between our read and our write.
            wrapped, self.lose_next_install_to = self.lose_next_install_to, None
            self.rows[companion_id] = replace(self.rows[companion_id], wrapped_data_key=wrapped)
        current = self.rows[companion_id]
        if current.wrapped_data_key is not None or current.status == "deleted":
            return False
        self.rows[companion_id] = replace(current, wrapped_data_key=wrapped)
        return True

    def destroy(self, companion_id: UUID, record: WrappedKeyRecord) -> None:
        self.rows[companion_id] = replace(self.rows[companion_id], wrapped_data_key=None, status="deleted")


def _types_match(kms: DataKeyService, store: WrappedKeyStore, cipher: ContentCipher) -> None:
    """Never called: mypy checks that the fakes and the cipher implement the ports."""


@pytest.fixture
def kms() -> FakeKms:
    return FakeKms()


@pytest.fixture
def store() -> FakeKeyStore:
    return FakeKeyStore()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cipher(kms: FakeKms, store: FakeKeyStore, clock: ManualClock) -> EnvelopeCipher:
    _types_match(kms, store, EnvelopeCipher(kms, store, clock))
    return EnvelopeCipher(kms, store, clock, ttl_s=300, max_uses=100)


def test_sealed_content_opens_with_the_same_companion_user_and_memory(
    cipher: EnvelopeCipher, store: FakeKeyStore
) -> None:
    # Given a strict companion
    companion, memory = store.add(), uuid.uuid4()
    # When content is sealed and opened with the same binding
    sealed = cipher.seal(companion, "alice", memory, "she likes ramen 🍜")
    # Then it reads back, and the ciphertext neither contains nor is the size-revealing plaintext header
    assert cipher.open(companion, "alice", memory, sealed) == "she likes ramen 🍜"
    assert sealed[0] == FORMAT_V1
    assert b"ramen" not in sealed


@pytest.mark.parametrize("moved_to", ["memory", "user", "companion"])
def test_a_ciphertext_moved_to_another_memory_user_or_companion_does_not_open(
    store: FakeKeyStore, clock: ManualClock, moved_to: str
) -> None:
    # Given content sealed for alice's memory of a companion, and a second companion holding the very
    # same data key (a key service that ignores the encryption context), so only the additional data
    # can tell the two apart
    cipher = EnvelopeCipher(FakeKms(bind_context=False), store, clock)
    companion, memory = store.add(), uuid.uuid4()
    sealed = cipher.seal(companion, "alice", memory, "secret")
    twin = store.add(wrapped=store.rows[companion].wrapped_data_key)
    # When it is presented as another memory's, another user's or the other companion's content
    target = {
        "memory": (companion, "alice", uuid.uuid4()),
        "user": (companion, "bob", memory),
        "companion": (twin, "alice", memory),
    }[moved_to]
    # Then it does not open
    with pytest.raises(ContentIntegrityError, match="failed authentication"):
        cipher.open(*target, sealed)


def test_another_companion_with_a_copied_wrapped_key_cannot_unwrap_it(
    kms: FakeKms, store: FakeKeyStore, clock: ManualClock
) -> None:
    # Given two strict companions, the second holding a copy of the first one's wrapped key
    first = store.add()
    cipher = EnvelopeCipher(kms, store, clock)
    cipher.seal(first, "alice", uuid.uuid4(), "x")
    second = store.add(wrapped=store.rows[first].wrapped_data_key)
    # When the second one's key is needed, Then the encryption context refuses it
    with pytest.raises(ContentIntegrityError):
        cipher.seal(second, "alice", uuid.uuid4(), "x")


@pytest.mark.parametrize("part", ["version", "nonce", "ciphertext", "tag", "truncated"])
def test_tampered_sealed_content_does_not_open(
    cipher: EnvelopeCipher, store: FakeKeyStore, part: str
) -> None:
    # Given sealed content
    companion, memory = store.add(), uuid.uuid4()
    sealed = bytearray(cipher.seal(companion, "alice", memory, "a fact worth keeping"))
    # When one part is changed
    position = {"version": 0, "nonce": 1, "ciphertext": 1 + NONCE_BYTES + 2, "tag": len(sealed) - 1}
    if part == "truncated":
        del sealed[1 + NONCE_BYTES + 4 :]
    else:
        sealed[position[part]] ^= 0x01
    # Then it is refused, without saying which part was wrong
    with pytest.raises(ContentIntegrityError):
        cipher.open(companion, "alice", memory, bytes(sealed))


def test_every_seal_draws_a_fresh_nonce(cipher: EnvelopeCipher, store: FakeKeyStore) -> None:
    # Given one companion, user and memory
    companion, memory = store.add(), uuid.uuid4()
    # When the same content is sealed many times
    sealed = [cipher.seal(companion, "alice", memory, "same") for _ in range(5_000)]
    # Then no nonce repeats (and so no ciphertext does)
    assert len({s[1 : 1 + NONCE_BYTES] for s in sealed}) == 5_000


def test_the_additional_data_encoding_cannot_be_confused_by_shifting_bytes_between_fields() -> None:
    # Given two bindings whose naive concatenation would be equal
    companion, memory = uuid.uuid4(), uuid.uuid4()
    # Then their encodings differ (fixed-size ids, length-prefixed user)
    assert additional_data(1, companion, "ab", memory) != additional_data(1, companion, "a", memory)
    assert additional_data(1, companion, "a", memory) != additional_data(2, companion, "a", memory)


def test_a_warm_cache_makes_no_key_service_call(
    cipher: EnvelopeCipher, store: FakeKeyStore, kms: FakeKms
) -> None:
    # Given a strict companion with a stored wrapped key, and a cold cache
    companion = store.add()
    EnvelopeCipher(kms, store, ManualClock()).seal(companion, "alice", uuid.uuid4(), "provision")
    kms.calls.clear()
    # When it seals and opens 50 times
    for _ in range(50):
        memory = uuid.uuid4()
        assert cipher.open(companion, "alice", memory, cipher.seal(companion, "alice", memory, "x")) == "x"
    # Then one unwrap served all of them
    assert kms.calls == ["Decrypt"]


def test_the_cached_key_expires_after_its_ttl_and_is_zeroised(
    cipher: EnvelopeCipher, store: FakeKeyStore, kms: FakeKms, clock: ManualClock
) -> None:
    # Given a key cached by a first seal
    companion = store.add()
    cipher.seal(companion, "alice", uuid.uuid4(), "x")
    first_key = kms.handed_out[-1]
    # When less than the TTL passes, Then the cache still serves
    clock.advance(299)
    cipher.seal(companion, "alice", uuid.uuid4(), "x")
    assert kms.calls == ["GenerateDataKey"]
    # When the TTL is reached, Then the next seal unwraps again and the old plaintext key is all zeros
    clock.advance(1)
    cipher.seal(companion, "alice", uuid.uuid4(), "x")
    assert kms.calls == ["GenerateDataKey", "Decrypt"]
    assert first_key == bytearray(32)


def test_the_cached_key_serves_at_most_its_use_cap(
    cipher: EnvelopeCipher, store: FakeKeyStore, kms: FakeKms
) -> None:
    # Given a cap of 100 uses and a key loaded by the first of them
    companion = store.add(wrapped=None)
    for _ in range(100):
        cipher.seal(companion, "alice", uuid.uuid4(), "x")
    assert kms.calls == ["GenerateDataKey"]
    # When the 101st operation comes, Then the key is unwrapped again
    cipher.seal(companion, "alice", uuid.uuid4(), "x")
    assert kms.calls == ["GenerateDataKey", "Decrypt"]


def test_a_strict_companion_without_a_key_gets_one_lazily_and_keeps_it(
    cipher: EnvelopeCipher, store: FakeKeyStore
) -> None:
    # Given a strict companion created without a data key
    companion = store.add(wrapped=None)
    # When its first content is sealed
    cipher.seal(companion, "alice", uuid.uuid4(), "x")
    # Then a wrapped key is stored for it
    assert store.rows[companion].wrapped_data_key is not None


def test_a_process_losing_the_race_to_make_the_first_key_uses_the_winners_key(
    kms: FakeKms, store: FakeKeyStore, clock: ManualClock
) -> None:
    # Given a strict companion without a key, and another process that installs one first
    companion = store.add(wrapped=None)
    winner = EnvelopeCipher(kms, FakeKeyStore(), clock)
    winner_wrapped = winner.provision_data_key(companion)
    store.lose_next_install_to = winner_wrapped
    loser = EnvelopeCipher(kms, store, clock)
    # When this process seals, Then it used the winner's key: the winner opens what it sealed
    memory = uuid.uuid4()
    sealed = loser.seal(companion, "alice", memory, "one key only")
    assert store.rows[companion].wrapped_data_key == winner_wrapped
    assert winner.open(companion, "alice", memory, sealed) == "one key only"
    # And the key it made and lost with is zeroised
    assert kms.handed_out[1] == bytearray(32)


def test_provisioning_returns_a_wrapped_key_and_caches_the_plaintext(
    cipher: EnvelopeCipher, store: FakeKeyStore, kms: FakeKms
) -> None:
    # Given a strict companion being created with a provisioned key stored in its row
    companion = store.add(wrapped=None)
    store.rows[companion] = replace(
        store.rows[companion], wrapped_data_key=cipher.provision_data_key(companion)
    )
    # When content is sealed and opened, Then no unwrap was needed
    memory = uuid.uuid4()
    assert cipher.open(companion, "alice", memory, cipher.seal(companion, "alice", memory, "x")) == "x"
    assert kms.calls == ["GenerateDataKey"]


def test_a_shredded_companion_cannot_open_its_content_and_no_plaintext_key_remains(
    cipher: EnvelopeCipher, store: FakeKeyStore, kms: FakeKms
) -> None:
    # Given sealed content of a strict companion, its key cached
    companion, memory = store.add(), uuid.uuid4()
    sealed = cipher.seal(companion, "alice", memory, "forget me")
    # When the companion is shredded
    cipher.shred(companion)
    # Then its wrapped key is gone, every plaintext copy this process held is zeros, and opening fails clearly
    assert store.rows[companion].wrapped_data_key is None
    assert all(key == bytearray(32) for key in kms.handed_out)
    with pytest.raises(ContentShredded, match="deleted"):
        cipher.open(companion, "alice", memory, sealed)
    # And no new key is made for it either
    with pytest.raises(ContentShredded):
        cipher.seal(companion, "alice", uuid.uuid4(), "new")
    assert kms.calls == ["GenerateDataKey"]


def test_shredding_twice_or_an_unknown_companion_is_harmless(
    cipher: EnvelopeCipher, store: FakeKeyStore
) -> None:
    companion = store.add()
    cipher.shred(companion)
    cipher.shred(companion)
    cipher.shred(uuid.uuid4())
    assert store.rows[companion].status == "deleted"


def test_opening_for_a_companion_that_never_had_a_key_says_so(
    cipher: EnvelopeCipher, store: FakeKeyStore
) -> None:
    companion = store.add(wrapped=None)
    with pytest.raises(ContentShredded, match="no data key"):
        cipher.open(companion, "alice", uuid.uuid4(), bytes([FORMAT_V1]) + bytes(40))


def test_a_standard_companion_gets_no_key_and_an_unknown_one_is_not_found(
    cipher: EnvelopeCipher, store: FakeKeyStore
) -> None:
    with pytest.raises(Conflict, match="strict"):
        cipher.seal(store.add(isolation_level="standard"), "alice", uuid.uuid4(), "x")
    with pytest.raises(NotFound):
        cipher.seal(uuid.uuid4(), "alice", uuid.uuid4(), "x")
