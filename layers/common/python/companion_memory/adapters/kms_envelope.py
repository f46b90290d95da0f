"""The edges of envelope encryption: data keys from KMS, wrapped keys in the ``companions`` row.

Row-level security on ``companions`` lets a companion's own scope read its row but only its owner's
scope write it. Reading the wrapped key therefore runs in the companion's scope. Writing it (installing a
lazily made key, shredding) runs in the owner's scope with the owner id *read from that row under the
companion's scope*, never taken from a caller, so the write cannot reach another tenant's row; the
statements are fixed and touch only ``wrapped_data_key`` (and ``status`` when shredding).
"""

from collections.abc import Callable
from typing import Any
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError

from companion_memory.adapters.postgres import Database
from companion_memory.errors import ContentIntegrityError, DependencyUnavailable
from companion_memory.models.tenancy import TenantScope
from companion_memory.observability import logger
from companion_memory.ports import WrappedKeyRecord

# KMS refuses the blob itself (tampered, another key, another encryption context): an integrity
# failure, not an outage, so no retry helps.
_INTEGRITY_ERRORS = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


class KmsDataKeys:
    """``ports.DataKeyService`` on a customer-managed KMS key."""

    def __init__(self, client: Any, key_id: str) -> None:
        self._client = client
        self._key_id = key_id

    def generate(self, context: dict[str, str]) -> tuple[bytearray, bytes]:
        answer = self._call(
            "GenerateDataKey",
            lambda: self._client.generate_data_key(
                KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=context
            ),
        )
        return _take_plaintext(answer), bytes(answer["CiphertextBlob"])

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytearray:
        # KeyId pins the CMK: a blob wrapped under any other key is refused instead of tried.
        answer = self._call(
            "Decrypt",
            lambda: self._client.decrypt(
                CiphertextBlob=wrapped, KeyId=self._key_id, EncryptionContext=context
            ),
        )
        return _take_plaintext(answer)

    @staticmethod
    def _call(operation: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = call()
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            logger.warning("KMS refused a data key operation", extra={"operation": operation, "code": code})
            if code in _INTEGRITY_ERRORS:
                raise ContentIntegrityError("the companion's data key could not be unwrapped") from None
            raise DependencyUnavailable("the key service is unavailable") from None
        except BotoCoreError as error:
            logger.warning("KMS unreachable", extra={"operation": operation, "error": type(error).__name__})
            raise DependencyUnavailable("the key service is unavailable") from None
        return answer


def _take_plaintext(answer: dict[str, Any]) -> bytearray:
    # botocore hands the key over as immutable bytes, which Python cannot overwrite; copy it into a
    # bytearray the cache can zeroise and drop the response's reference at once.
    return bytearray(answer.pop("Plaintext"))


class PostgresWrappedKeys:
    """``ports.WrappedKeyStore`` on the ``companions`` table."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def load(self, companion_id: UUID) -> WrappedKeyRecord | None:
        with self._database.transaction(TenantScope(companion_id=companion_id)) as conn:
            row = conn.execute(
                "SELECT owner_id, isolation_level, status, wrapped_data_key FROM companions WHERE id = %s",
                (companion_id,),
            ).fetchone()
        if row is None:
            return None
        owner_id, isolation_level, status, wrapped = row
        return WrappedKeyRecord(
            owner_id=owner_id,
            isolation_level=isolation_level,
            status=status,
            wrapped_data_key=None if wrapped is None else bytes(wrapped),
        )

    def install(self, companion_id: UUID, record: WrappedKeyRecord, wrapped: bytes) -> bool:
        scope = TenantScope(owner_id=record.owner_id, companion_id=companion_id)
        with self._database.transaction(scope) as conn:
            # Conditional: of two processes racing to make the first key, one UPDATE matches.
            cursor = conn.execute(
                "UPDATE companions SET wrapped_data_key = %s"
                " WHERE id = %s AND wrapped_data_key IS NULL AND status <> 'deleted'",
                (wrapped, companion_id),
            )
            return cursor.rowcount == 1

    def destroy(self, companion_id: UUID, record: WrappedKeyRecord) -> None:
        scope = TenantScope(owner_id=record.owner_id, companion_id=companion_id)
        with self._database.transaction(scope) as conn:
            # Marking the row deleted in the same statement stops every process from lazily making a
            # fresh key for it afterwards.
            conn.execute(
                "UPDATE companions SET wrapped_data_key = NULL, status = 'deleted', updated_at = now()"
                " WHERE id = %s",
                (companion_id,),
            )
