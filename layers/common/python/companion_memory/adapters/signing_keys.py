"""The JWT signing key set in one Secrets Manager secret (KMS-encrypted at rest), cached in process.

The template creates the secret holding ``{}``. The first caller that needs a key generates the set and
writes it as a new version whose ClientRequestToken is derived from the version it read: two sandboxes racing
from the same version send the same token with different contents, Secrets Manager refuses the second
(ResourceExistsException), and the loser re-reads the winner's keys. ``rotate`` (the ``companion-memory keys
rotate`` command) uses the same compare-and-set. Readers cache the set for ``cache_s`` (5 minutes), so a
rotation reaches every sandbox within that time; verification accepts current, previous and next.
"""

import threading
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from companion_memory.auth.keyset import SigningKeySet
from companion_memory.errors import Conflict, DependencyUnavailable

_TOKEN_NAMESPACE = uuid.UUID("5d0c1b8e-2f7a-4c43-9a55-3f3d2b1c0a11")
_MAX_ATTEMPTS = 3


class SecretsManagerSigningKeys:
    def __init__(
        self, client: Any, secret_id: str, *, cache_s: float, monotonic: Callable[[], float]
    ) -> None:
        self._client = client
        self._secret_id = secret_id
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cached: tuple[float, SigningKeySet] | None = None

    def load(self) -> SigningKeySet:
        with self._lock:
            if self._cached is not None and self._monotonic() - self._cached[0] < self._cache_s:
                return self._cached[1]
            key_set = self._read_or_bootstrap()
            self._cached = (self._monotonic(), key_set)
            return key_set

    def rotate(self) -> SigningKeySet:
        with self._lock:
            version, current = self._read()
            rotated = current.rotated() if not current.empty else SigningKeySet.initial()
            if not self._write(version, "rotate", rotated):
                raise Conflict("Another rotation ran at the same time; read the keys again and retry")
            self._cached = (self._monotonic(), rotated)
            return rotated

    def _read_or_bootstrap(self) -> SigningKeySet:
        for _ in range(_MAX_ATTEMPTS):
            version, key_set = self._read()
            if not key_set.empty:
                return key_set
            initial = SigningKeySet.initial()
            if self._write(version, "bootstrap", initial):
                return initial
        raise DependencyUnavailable("The signing keys could not be initialised")

    def _read(self) -> tuple[str, SigningKeySet]:
        try:
            answer = self._client.get_secret_value(SecretId=self._secret_id)
        except (BotoCoreError, ClientError) as error:
            raise DependencyUnavailable("The signing keys are unavailable") from error
        return str(answer["VersionId"]), SigningKeySet.from_json(answer.get("SecretString") or "")

    def _write(self, read_version: str, purpose: str, key_set: SigningKeySet) -> bool:
        """Write a new version unless another writer already moved on from ``read_version``."""
        token = str(uuid.uuid5(_TOKEN_NAMESPACE, f"{read_version}:{purpose}"))
        try:
            self._client.put_secret_value(
                SecretId=self._secret_id, SecretString=key_set.to_json(), ClientRequestToken=token
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceExistsException":
                return False
            raise DependencyUnavailable("The signing keys could not be written") from error
        except BotoCoreError as error:
            raise DependencyUnavailable("The signing keys could not be written") from error
        return True
