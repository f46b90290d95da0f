"""Bulk import (JSON Lines, idempotent by a client key per line) and export (JSON Lines, paged).

Import: every line is parsed and validated first; a bad line is reported with its number and nothing is
written for it, while the good lines are stored. Keyed lines are claimed in one round trip
(``ports.ImportKeyStore``), stored through ``MemoryService.store_many`` in batches (one embedding call and
one transaction per batch), and their keys completed with the memory each one became. A line whose key was
imported before is reported ``already_imported`` with that memory's id and writes nothing.
"""

import json
from dataclasses import dataclass
from datetime import timedelta

from pydantic import ValidationError

from companion_memory.domain.memory import MemoryService
from companion_memory.errors import ValidationFailed
from companion_memory.models.memory import ListFilter, Memory
from companion_memory.models.memory_import import (
    EXPORT_LIST_PAGE,
    MAX_EXPORT_PAGE,
    ExportPage,
    ImportLine,
    ImportLineReport,
    ImportReport,
)
from companion_memory.models.tenancy import TenantScope
from companion_memory.ports import Clock, ImportKeyStore

# The HTTP API hands a Lambda a binary body base64-encoded, and a Lambda takes at most 6 MB: 4 MiB raw is
# 5.6 MB encoded, with room for the event around it.
MAX_IMPORT_BYTES = 4 * 1024 * 1024
MAX_IMPORT_LINES = 500
# Longer than any import can run (the function's timeout), so a live claim is never taken over.
CLAIM_LEASE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class _Parsed:
    line: int
    item: ImportLine


class MemoryImporter:
    def __init__(
        self,
        service: MemoryService,
        keys: ImportKeyStore,
        clock: Clock,
        *,
        max_bytes: int = MAX_IMPORT_BYTES,
        max_lines: int = MAX_IMPORT_LINES,
        lease: timedelta = CLAIM_LEASE,
    ) -> None:
        self._service = service
        self._keys = keys
        self._clock = clock
        self._max_bytes = max_bytes
        self._max_lines = max_lines
        self._lease = lease

    # --- import --------------------------------------------------------------------------------------------

    def import_lines(self, scope: TenantScope, body: bytes, *, verbatim: bool = False) -> ImportReport:
        """Store the file's lines (``verbatim``: each a new memory exactly as given, see
        ``MemoryService.store_many``; the companion import restores an export so)."""
        parsed, reports = self._parse(body)
        keyed = [p for p in parsed if p.item.key is not None]
        now = self._clock.now()
        claimed, held = self._keys.claim(
            scope, [p.item.key for p in keyed if p.item.key], now, now - self._lease
        )
        to_store: list[_Parsed] = []
        for entry in parsed:
            key = entry.item.key
            if key is None or key in claimed:
                to_store.append(entry)
            elif held.get(key) is not None:
                reports[entry.line] = ImportLineReport(
                    line=entry.line, status="already_imported", import_key=key, memory_id=held[key]
                )
            else:
                reports[entry.line] = _failed(
                    entry.line, key, "import_in_progress", "another import is storing this key; send it again"
                )
        batch = self._service.policy.max_batch
        for start in range(0, len(to_store), batch):
            self._store_batch(scope, to_store[start : start + batch], reports, verbatim)
        results = [reports[line] for line in sorted(reports)]
        stored = sum(r.status in ("created", "reinforced", "updated") for r in results)
        already = sum(r.status == "already_imported" for r in results)
        return ImportReport(
            lines=len(results),
            stored=stored,
            already_imported=already,
            failed=len(results) - stored - already,
            results=results,
        )

    def _store_batch(
        self, scope: TenantScope, batch: list[_Parsed], reports: dict[int, ImportLineReport], verbatim: bool
    ) -> None:
        keys = [entry.item.key for entry in batch if entry.item.key is not None]
        try:
            stored = self._service.store_many(
                scope, [entry.item.to_new() for entry in batch], verbatim=verbatim
            )
        except BaseException:
            # Nothing of this batch was written (one transaction): its keys are free for the next attempt.
            self._keys.release(scope, keys)
            raise
        self._keys.complete(
            scope,
            {
                entry.item.key: result.memory.id
                for entry, result in zip(batch, stored, strict=True)
                if entry.item.key
            },
        )
        for entry, result in zip(batch, stored, strict=True):
            reports[entry.line] = ImportLineReport(
                line=entry.line, status=result.outcome, import_key=entry.item.key, memory_id=result.memory.id
            )

    def _parse(self, body: bytes) -> tuple[list[_Parsed], dict[int, ImportLineReport]]:
        if len(body) > self._max_bytes:
            raise ValidationFailed(f"an import is at most {self._max_bytes} bytes; split the file")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed("an import is UTF-8 text, one JSON object per line") from None
        numbered = [(n, raw) for n, raw in enumerate(text.splitlines(), start=1) if raw.strip()]
        if not numbered:
            raise ValidationFailed("the import is empty: send one JSON object (a memory) per line")
        if len(numbered) > self._max_lines:
            raise ValidationFailed(f"an import is at most {self._max_lines} lines; split the file")
        parsed: list[_Parsed] = []
        reports: dict[int, ImportLineReport] = {}
        first_line_of: dict[str, int] = {}
        for number, raw in numbered:
            try:
                item = ImportLine.model_validate(json.loads(raw))
            except json.JSONDecodeError as error:
                reports[number] = _failed(number, None, "invalid_json", f"not JSON: {error.msg}")
                continue
            except ValidationError as error:
                reports[number] = _failed(number, None, "validation_failed", _problems(error))
                continue
            key = item.key
            if key is not None and key in first_line_of:
                reports[number] = _failed(
                    number, key, "duplicate_key", f"import_key already used on line {first_line_of[key]}"
                )
                continue
            if key is not None:
                first_line_of[key] = number
            parsed.append(_Parsed(number, item))
        return parsed, reports

    # --- export --------------------------------------------------------------------------------------------

    def export_page(
        self, scope: TenantScope, limit: int, cursor: str | None, include_archived: bool
    ) -> ExportPage:
        """Up to ``limit`` memories as JSON Lines (newest first), and the cursor of the next page.

        Each line is the memory as the API returns it plus ``import_key`` (its id), so an export file
        imports unchanged into another user, and importing it twice stores nothing the second time.
        """
        if not 1 <= limit <= MAX_EXPORT_PAGE:
            raise ValidationFailed(f"limit is 1 to {MAX_EXPORT_PAGE}")
        lines: list[str] = []
        while len(lines) < limit:
            # The list's own pages (newest first, stable under concurrent writes) make the export's.
            page = self._service.list(
                scope,
                ListFilter(
                    include_archived=include_archived,
                    limit=min(EXPORT_LIST_PAGE, limit - len(lines)),
                    cursor=cursor,
                ),
            )
            lines.extend(export_line(memory) for memory in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        return ExportPage(lines=lines, next_cursor=cursor)


def export_line(memory: Memory) -> str:
    return json.dumps({**memory.model_dump(mode="json"), "import_key": str(memory.id)}, ensure_ascii=False)


def _failed(line: int, key: str | None, code: str, message: str) -> ImportLineReport:
    return ImportLineReport(
        line=line, status="failed", import_key=key, error={"code": code, "message": message}
    )


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or 'line'}: {item['msg']}" for item in error.errors()
    )
