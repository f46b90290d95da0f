"""The JWT signing key set: ``current`` signs, ``previous`` still verifies (grace after a rotation), ``next``
is published ahead of use so relying parties that cache the JWKS know it before the first token it signs."""

import json
from dataclasses import dataclass
from typing import Any

from companion_memory.auth.tokens import SigningKey, VerificationKeys, generate_signing_key, public_jwks
from companion_memory.errors import ValidationFailed

_SLOTS = ("current", "previous", "next")


@dataclass(frozen=True, slots=True)
class SigningKeySet:
    current: SigningKey | None = None
    previous: SigningKey | None = None
    next: SigningKey | None = None

    @property
    def empty(self) -> bool:
        return self.current is None

    def signing_key(self) -> SigningKey:
        if self.current is None:
            raise ValidationFailed("The signing key set has no current key")
        return self.current

    def verification_keys(self) -> VerificationKeys:
        return VerificationKeys(key.verification_key() for key in self._present())

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return public_jwks(key.verification_key() for key in self._present())

    def rotated(self) -> "SigningKeySet":
        """current -> previous, next (or a new key) -> current, a new next."""
        return SigningKeySet(
            current=self.next or generate_signing_key(), previous=self.current, next=generate_signing_key()
        )

    @classmethod
    def initial(cls) -> "SigningKeySet":
        return cls(current=generate_signing_key(), next=generate_signing_key())

    def to_json(self) -> str:
        slots: dict[str, Any] = {}
        for slot in _SLOTS:
            key: SigningKey | None = getattr(self, slot)
            slots[slot] = None if key is None else {"kid": key.kid, "pem": key.to_pem().decode()}
        return json.dumps(slots)

    @classmethod
    def from_json(cls, text: str) -> "SigningKeySet":
        try:
            raw = json.loads(text) if text.strip() else {}
        except ValueError as error:
            raise ValidationFailed("The signing key secret is not JSON") from error
        if not isinstance(raw, dict):
            raise ValidationFailed("The signing key secret is not a JSON object")
        keys: dict[str, SigningKey | None] = {}
        for slot in _SLOTS:
            entry = raw.get(slot)
            keys[slot] = None if entry is None else SigningKey.from_pem(entry["kid"], entry["pem"])
        return cls(**keys)

    def _present(self) -> list[SigningKey]:
        return [key for key in (self.current, self.previous, self.next) if key is not None]
