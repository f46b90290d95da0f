"""The JWT signing keys in Secrets Manager (KMS-encrypted at rest): the private set and, apart, its JWKS.

Two secrets, for least privilege: ``SigningKeysSecret`` holds the private key set and only the auth function
(the issuer) may read or write it; ``PublicJwksSecret`` holds the public JWKS that the verifiers (the
authorizer, the MCP function) read, and nothing else. Whoever writes the private set publishes its JWKS in the
same code path.

The template creates both secrets holding ``{}``. The first issuer that needs a key generates the set and
writes it as a new version whose ClientRequestToken is derived from the version it read: two sandboxes racing
from the same version send the same token with different contents, Secrets Manager refuses the second
(ResourceExistsException), and the loser re-reads the winner's keys. ``rotate`` (the ``companion-memory keys
rotate`` command) uses the same compare-and-set. Readers cache for ``cache_s`` (5 minutes), so a rotation
reaches every sandbox within that time; verification accepts current, previous and next, and ``next`` is
published one rotation ahead, so a token signed right after a rotation verifies everywhere.
"""

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from companion_memory.auth.keyset import SigningKeySet
from companion_memory.auth.tokens import VerificationKeys
from companion_memory.errors import Conflict, DependencyUnavailable, ValidationFailed
from companion_memory.observability import logger

_TOKEN_NAMESPACE = uuid.UUID("5d0c1b8e-2f7a-4c43-9a55-3f3d2b1c0a11")
_MAX_ATTEMPTS = 3
# An empty public set (before the first issuer ran) is re-read this soon, not after the full cache time.
_EMPTY_SET_CACHE_S = 5.0


class SecretsManagerSigningKeys:
    """The private key set (the issuer's side): signs, rotates, and publishes the public JWKS."""

    def __init__(
        self,
        client: Any,
        secret_id: str,
        *,
        public_secret_id: str,
        cache_s: float,
        monotonic: Callable[[], float],
    ) -> None:
        self._client = client
        self._secret_id = secret_id
        self._public_secret_id = public_secret_id
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cached: tuple[float, SigningKeySet] | None = None

    def load(self) -> SigningKeySet:
        with self._lock:
            if self._cached is not None and self._monotonic() - self._cached[0] < self._cache_s:
                return self._cached[1]
            key_set = self._read_or_bootstrap()
            self._ensure_published(key_set)
            self._cached = (self._monotonic(), key_set)
            return key_set

    def rotate(self) -> SigningKeySet:
        with self._lock:
            version, current = self._read()
            rotated = current.rotated() if not current.empty else SigningKeySet.initial()
            if not self._write(version, "rotate", rotated):
                raise Conflict("Another rotation ran at the same time; read the keys again and retry")
            self._publish(rotated)
            self._cached = (self._monotonic(), rotated)
            return rotated

    def _read_or_bootstrap(self) -> SigningKeySet:
        for _ in range(_MAX_ATTEMPTS):
            version, key_set = self._read()
            if not key_set.empty:
                return key_set
            initial = SigningKeySet.initial()
            if self._write(version, "bootstrap", initial):
                self._publish(initial)
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

    def _ensure_published(self, key_set: SigningKeySet) -> None:
        """Publish again if the public set lacks a key of ours (a publish after a write that failed).

        A superset is left alone: it is what a newer rotation by another sandbox published, and writing our
        older set over it would withdraw that rotation's next key.
        """
        published = _read_jwks(self._client, self._public_secret_id)
        if not key_set.verification_keys().kids <= published.kids:
            self._publish(key_set)

    def _publish(self, key_set: SigningKeySet) -> None:
        try:
            self._client.put_secret_value(
                SecretId=self._public_secret_id, SecretString=json.dumps(key_set.jwks())
            )
        except (BotoCoreError, ClientError) as error:
            # The private set is written; the next load() of any issuer publishes it (see above).
            logger.warning("could not publish the public signing keys")
            raise DependencyUnavailable("The public signing keys could not be published") from error


class SecretsManagerPublicKeys:
    """The public JWKS (the verifiers' side): read-only, cached."""

    def __init__(
        self, client: Any, secret_id: str, *, cache_s: float, monotonic: Callable[[], float]
    ) -> None:
        self._client = client
        self._secret_id = secret_id
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cached: tuple[float, VerificationKeys] | None = None

    def load(self) -> VerificationKeys:
        with self._lock:
            if self._cached is not None:
                at, keys = self._cached
                ttl = self._cache_s if len(keys) else min(self._cache_s, _EMPTY_SET_CACHE_S)
                if self._monotonic() - at < ttl:
                    return keys
            keys = _read_jwks(self._client, self._secret_id)
            self._cached = (self._monotonic(), keys)
            return keys


def _read_jwks(client: Any, secret_id: str) -> VerificationKeys:
    try:
        answer = client.get_secret_value(SecretId=secret_id)
    except (BotoCoreError, ClientError) as error:
        raise DependencyUnavailable("The public signing keys are unavailable") from error
    try:
        document = json.loads(answer.get("SecretString") or "{}")
    except ValueError as error:
        raise ValidationFailed("The public signing key secret is not JSON") from error
    if not isinstance(document, dict):
        raise ValidationFailed("The public signing key secret is not a JSON object")
    return VerificationKeys.from_jwks(document) if document else VerificationKeys(())
