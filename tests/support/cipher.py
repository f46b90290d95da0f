"""A stand-in for the AES-GCM content cipher: reversible, bound to (companion, user, memory) like the
real one, and visibly not plaintext."""

import hashlib
from uuid import UUID

_PREFIX = b"fake-gcm:"


class FakeCipher:
    def __init__(self) -> None:
        self.opened = 0

    @staticmethod
    def _binding(companion_id: UUID, user_id: str, memory_id: UUID) -> bytes:
        return hashlib.sha256(f"{companion_id}|{user_id}|{memory_id}".encode()).digest()[:8]

    def seal(self, companion_id: UUID, user_id: str, memory_id: UUID, plaintext: str) -> bytes:
        body = bytes(b ^ 0x5A for b in plaintext.encode())
        return _PREFIX + self._binding(companion_id, user_id, memory_id) + body

    def open(self, companion_id: UUID, user_id: str, memory_id: UUID, sealed: bytes) -> str:
        binding = self._binding(companion_id, user_id, memory_id)
        if not sealed.startswith(_PREFIX + binding):
            raise ValueError("ciphertext does not belong to this memory")
        self.opened += 1
        return bytes(b ^ 0x5A for b in sealed[len(_PREFIX) + len(binding) :]).decode()
