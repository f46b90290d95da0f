"""``ports.ImportKeyStore`` on PostgreSQL (table ``memory_imports``, migration 0005)."""

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from companion_memory.adapters.postgres import Database
from companion_memory.models.tenancy import TenantScope


class PostgresImportKeys:
    def __init__(self, database: Database) -> None:
        self._database = database

    def claim(
        self, scope: TenantScope, keys: Sequence[str], now: datetime, stale_before: datetime
    ) -> tuple[set[str], dict[str, UUID | None]]:
        if not keys:
            return set(), {}
        with self._database.transaction(scope) as conn:
            # A fresh key is inserted; a key claimed by an import that died (never completed, claim
            # older than the lease) is taken over; any other key stays with whoever holds it.
            claimed = conn.execute(
                """
                INSERT INTO memory_imports (companion_id, user_id, import_key, claimed_at)
                SELECT app_companion_id(), %(user)s, key, %(now)s FROM unnest(%(keys)s::text[]) AS key
                ON CONFLICT (companion_id, user_id, import_key) DO UPDATE SET claimed_at = EXCLUDED.claimed_at
                    WHERE memory_imports.memory_id IS NULL AND memory_imports.claimed_at < %(stale)s
                RETURNING import_key
                """,
                {"user": scope.user_id, "now": now, "keys": list(keys), "stale": stale_before},
            ).fetchall()
            mine = {str(row[0]) for row in claimed}
            others = [key for key in keys if key not in mine]
            held = conn.execute(
                "SELECT import_key, memory_id FROM memory_imports"
                " WHERE companion_id = app_companion_id() AND user_id = %s AND import_key = ANY(%s)",
                (scope.user_id, others),
            ).fetchall()
        return mine, {str(key): memory_id for key, memory_id in held}

    def complete(self, scope: TenantScope, memory_ids: dict[str, UUID]) -> None:
        if not memory_ids:
            return
        with self._database.transaction(scope) as conn:
            conn.execute(
                """
                UPDATE memory_imports AS i SET memory_id = done.memory_id
                FROM unnest(%s::text[], %s::uuid[]) AS done(import_key, memory_id)
                WHERE i.companion_id = app_companion_id() AND i.user_id = %s
                    AND i.import_key = done.import_key
                """,
                (list(memory_ids), list(memory_ids.values()), scope.user_id),
            )

    def release(self, scope: TenantScope, keys: Sequence[str]) -> None:
        if not keys:
            return
        with self._database.transaction(scope) as conn:
            conn.execute(
                "DELETE FROM memory_imports WHERE companion_id = app_companion_id() AND user_id = %s"
                " AND import_key = ANY(%s) AND memory_id IS NULL",
                (scope.user_id, list(keys)),
            )
