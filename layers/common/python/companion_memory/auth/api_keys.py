"""API keys: owner keys ``ok_...`` (admin) and companion keys ``ck_...`` (a companion's backend).

A key is ``<kind>_<prefix><secret>``: a 12-character public prefix (72 random bits, the lookup handle, shown
in listings) and a 43-character secret (256 random bits from ``secrets``). Only the prefix and the SHA-256 of
the whole key are stored. A fast hash is the right tool here: with 256 unguessable bits there is no
dictionary to try, so a slow KDF would only slow every authentication down. Pure code: no I/O.
"""

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

KeyKind = Literal["owner", "companion"]

_MARKERS: Final[dict[KeyKind, str]] = {"owner": "ok_", "companion": "ck_"}
PREFIX_BYTES: Final = 9  # 12 base64url characters
SECRET_BYTES: Final = 32  # 256 bits: 43 base64url characters
PREFIX_LENGTH: Final = 12
_SECRET_LENGTH: Final = 43
_KEY_PATTERN: Final = re.compile(r"^(ok|ck)_([A-Za-z0-9_-]{12})([A-Za-z0-9_-]{43})$")
# Hashed when a presented key's prefix is unknown, so a miss costs the same hash as a hit.
_DUMMY_HASH: Final = hashlib.sha256(b"companion-memory: no such key").digest()


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key. ``plaintext`` is shown to the caller once and never stored."""

    kind: KeyKind
    prefix: str
    hash: bytes
    plaintext: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PresentedKey:
    kind: KeyKind
    prefix: str
    plaintext: str = field(repr=False)


def _b64(raw: bytes) -> str:
    from base64 import urlsafe_b64encode

    return urlsafe_b64encode(raw).rstrip(b"=").decode()


def generate(kind: KeyKind, random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> NewKey:
    prefix = _b64(random_bytes(PREFIX_BYTES))
    secret = _b64(random_bytes(SECRET_BYTES))
    plaintext = f"{_MARKERS[kind]}{prefix}{secret}"
    return NewKey(kind, prefix, digest(plaintext), plaintext)


def digest(plaintext: str) -> bytes:
    return hashlib.sha256(plaintext.encode()).digest()


def parse(text: str) -> PresentedKey | None:
    """The kind and prefix of something shaped like one of our keys, else None (nothing is looked up)."""
    match = _KEY_PATTERN.fullmatch(text)
    if match is None:
        return None
    kind: KeyKind = "owner" if match[1] == "ok" else "companion"
    return PresentedKey(kind, match[2], text)


def looks_like_key(text: str) -> bool:
    return text.startswith(("ok_", "ck_"))


def matches(presented: PresentedKey, stored_hash: bytes | None) -> bool:
    """Constant-time comparison of the presented key's hash with the stored one (or a dummy on a miss)."""
    expected = stored_hash if stored_hash is not None else _DUMMY_HASH
    return hmac.compare_digest(digest(presented.plaintext), expected) and stored_hash is not None
