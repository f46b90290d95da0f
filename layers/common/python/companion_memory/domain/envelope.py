"""Envelope encryption of strict companions' memory content: the ContentCipher behind the port.

Each strict companion has one 256-bit data key, made by the key service (KMS) under the encryption
context ``{"companion_id": <id>}`` and stored only wrapped, in the companion's row. The unwrapped key is
cached in this process for a bounded time and a bounded number of uses, so a warm request makes no key
service call at all.

Sealed content is ``version (1 byte) | nonce (12 bytes) | AES-256-GCM ciphertext and tag``. The nonce is
random per seal. The additional data binds the ciphertext to the format version, its companion, its memory
and its user: a ciphertext copied to another row does not open there.

Crypto-shredding: ``shred`` destroys the wrapped key (and marks the companion deleted, so no process
provisions a fresh key for it) and zeroises the cached plaintext key; nothing sealed for the companion
can be opened again once every process's cache entry has expired (at most the cache TTL).
"""

import os
import threading
from dataclasses import dataclass
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from companion_memory.errors import (
    Conflict,
    ContentIntegrityError,
    ContentShredded,
    NotFound,
    ValidationFailed,
)
from companion_memory.ports import Clock, DataKeyService, WrappedKeyStore

FORMAT_V1 = 1
NONCE_BYTES = 12
TAG_BYTES = 16
DATA_KEY_BYTES = 32
_AAD_LABEL = b"companion-memory/memory-content\x00"
_MAX_USER_ID_BYTES = 0xFFFF


def encryption_context(companion_id: UUID) -> dict[str, str]:
    """The KMS encryption context of a companion's data key (also logged by CloudTrail on every use)."""
    return {"companion_id": str(companion_id)}


def additional_data(version: int, companion_id: UUID, user_id: str, memory_id: UUID) -> bytes:
    """Canonical, unambiguous encoding: fixed-size ids, then the user id with its length in front."""
    user = user_id.encode()
    if len(user) > _MAX_USER_ID_BYTES:
        raise ValidationFailed("user_id is too long")
    return (
        _AAD_LABEL
        + bytes([version])
        + companion_id.bytes
        + memory_id.bytes
        + len(user).to_bytes(2, "big")
        + user
    )


def zeroise(key: bytearray) -> None:
    key[:] = bytes(len(key))


@dataclass(slots=True)
class _CachedKey:
    # The bytearray is ours to overwrite; AESGCM keeps its own copy inside OpenSSL, which OpenSSL
    # cleanses when the object is freed (dropping the last reference, below, is what frees it).
    key: bytearray
    aead: AESGCM | None
    loaded_at: float
    uses: int = 0

    def discard(self) -> None:
        zeroise(self.key)
        self.aead = None


class EnvelopeCipher:
    """Seals and opens memory content of strict companions (implements ``ports.ContentCipher``)."""

    def __init__(
        self,
        keys: DataKeyService,
        store: WrappedKeyStore,
        clock: Clock,
        *,
        ttl_s: float = 300.0,
        max_uses: int = 10_000,
    ) -> None:
        if ttl_s <= 0 or max_uses < 1:
            raise ValueError("the data key cache needs a positive TTL and use cap")
        self._keys = keys
        self._store = store
        self._clock = clock
        self._ttl_s = ttl_s
        self._max_uses = max_uses
        self._cache: dict[UUID, _CachedKey] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ ContentCipher

    def seal(self, companion_id: UUID, user_id: str, memory_id: UUID, plaintext: str) -> bytes:
        aad = additional_data(FORMAT_V1, companion_id, user_id, memory_id)
        aead = self._lease(companion_id, create=True)
        nonce = os.urandom(NONCE_BYTES)
        return bytes([FORMAT_V1]) + nonce + aead.encrypt(nonce, plaintext.encode(), aad)

    def open(self, companion_id: UUID, user_id: str, memory_id: UUID, sealed: bytes) -> str:
        if len(sealed) < 1 + NONCE_BYTES + TAG_BYTES or sealed[0] != FORMAT_V1:
            raise ContentIntegrityError("sealed content is malformed or of an unknown format")
        aad = additional_data(sealed[0], companion_id, user_id, memory_id)
        aead = self._lease(companion_id, create=False)
        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return aead.decrypt(nonce, body, aad).decode()
        except InvalidTag:
            raise ContentIntegrityError("sealed content failed authentication") from None

    # ------------------------------------------------------------------ lifecycle

    def provision_data_key(self, companion_id: UUID) -> bytes:
        """A new wrapped data key for a strict companion being created: the caller stores it in the
        companion's row in the same transaction that inserts the row. The plaintext is cached, so the
        first seal needs no unwrap."""
        plaintext, wrapped = self._keys.generate(encryption_context(companion_id))
        self._remember(companion_id, plaintext)
        return wrapped

    def shred(self, companion_id: UUID) -> None:
        """Destroy the companion's data key: its sealed content becomes unreadable for good.

        Idempotent. Other processes notice at their next unwrap, at most the cache TTL later.
        """
        self.evict(companion_id)
        record = self._store.load(companion_id)
        if record is not None:
            self._store.destroy(companion_id, record)
        # A seal or open racing with the destroy may have cached the key again in between.
        self.evict(companion_id)

    def evict(self, companion_id: UUID) -> None:
        with self._lock:
            entry = self._cache.pop(companion_id, None)
        if entry is not None:
            entry.discard()

    # ------------------------------------------------------------------ the cache

    def _lease(self, companion_id: UUID, *, create: bool) -> AESGCM:
        now = self._clock.now().timestamp()
        with self._lock:
            entry = self._cache.get(companion_id)
            if entry is not None and entry.aead is not None and self._fresh(entry, now):
                entry.uses += 1
                return entry.aead
            if entry is not None:
                del self._cache[companion_id]
        if entry is not None:
            entry.discard()
        return self._remember(companion_id, self._load(companion_id, create=create), uses=1)

    def _fresh(self, entry: _CachedKey, now: float) -> bool:
        return now - entry.loaded_at < self._ttl_s and entry.uses < self._max_uses

    def _remember(self, companion_id: UUID, key: bytearray, *, uses: int = 0) -> AESGCM:
        if len(key) != DATA_KEY_BYTES:
            zeroise(key)
            raise ContentIntegrityError("the key service returned a data key of the wrong size")
        aead = AESGCM(key)
        entry = _CachedKey(key=key, aead=aead, loaded_at=self._clock.now().timestamp(), uses=uses)
        with self._lock:
            replaced = self._cache.get(companion_id)
            self._cache[companion_id] = entry
        if replaced is not None:
            replaced.discard()
        return aead

    def _load(self, companion_id: UUID, *, create: bool) -> bytearray:
        context = encryption_context(companion_id)
        record = self._store.load(companion_id)
        if record is None:
            raise NotFound("companion not found")
        if record.status == "deleted":
            raise ContentShredded("the companion was deleted: its sealed content can no longer be read")
        if record.wrapped_data_key is not None:
            return self._keys.unwrap(record.wrapped_data_key, context)
        if not create:
            raise ContentShredded("the companion has no data key: nothing sealed for it can be read")
        if record.isolation_level != "strict":
            raise Conflict("only the content of strict companions is sealed")
        # A strict companion created without a key (or before keys existed): make one now. The store
        # installs it only where none exists, so of two racing processes exactly one key wins.
        plaintext, wrapped = self._keys.generate(context)
        if self._store.install(companion_id, record, wrapped):
            return plaintext
        zeroise(plaintext)
        winner = self._store.load(companion_id)
        if winner is None:
            raise NotFound("companion not found")
        if winner.status == "deleted" or winner.wrapped_data_key is None:
            raise ContentShredded("the companion was deleted: its sealed content can no longer be read")
        return self._keys.unwrap(winner.wrapped_data_key, context)
