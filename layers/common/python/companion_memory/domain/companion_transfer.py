"""Companion export and import (JSON Lines), for backups and moves between deployments.

Export (owner key): a page of JSON Lines: the header (format, version, when, the companion's name, config,
isolation level and config version), then memories user by user (each user's live memories, archived ones
included, forgotten ones never; no vectors, ever), each user's relations after their memories. Every page
starts with the same header, so each page is a file that imports on its own; the cursor of the next page
comes back beside the page. A strict companion's content is exported in plaintext, to its owner only (the
owner key is the only credential that may export; docs/security.md).

Import (owner key): the whole file is validated first; a malformed line fails the request naming the line,
and nothing is written. The target is the companion this owner already imported the same source into
(``companion_imports``), or a new companion made from the header (its own version history starts at 1.0.0).
Memories go through the bulk memory importer, keyed ``transfer:<source memory id>`` per user: re-embedded in
batches (one embedding call and one transaction per batch), and stored once however often the file is sent.
Relations are linked between the memories those keys name (linking again changes nothing). Importing the
same file twice creates nothing the second time. Not carried over: the archived state (an archived memory
comes back live), access statistics, history, ids (the import's memories get new ones).
"""

import base64
import binascii
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from pydantic import BaseModel, ValidationError

from companion_memory.auth import tokens
from companion_memory.auth.principal import Principal, require
from companion_memory.domain.identity import IdentityService
from companion_memory.domain.memory import MemoryService
from companion_memory.domain.memory_import import (
    CLAIM_LEASE,
    MAX_IMPORT_BYTES,
    MAX_IMPORT_LINES,
    MemoryImporter,
)
from companion_memory.errors import Conflict, NotFound, ValidationFailed
from companion_memory.models.companion_export import (
    CompanionImportReport,
    ExportedCompanion,
    ExportedMemory,
    ExportedRelation,
    ExportHeader,
)
from companion_memory.models.identity import Companion, CompanionCreate
from companion_memory.models.memory import ListFilter, Memory, Relation
from companion_memory.models.memory_import import ImportLine
from companion_memory.models.tenancy import TenantScope
from companion_memory.ports import Clock, IdentityStore

MAX_EXPORT_PAGE = 1_000
DEFAULT_EXPORT_PAGE = 500
MAX_TRANSFER_BYTES = MAX_IMPORT_BYTES
_LIST_PAGE = 100
_MAX_REPORTED_ERRORS = 20
NO_SUCH_COMPANION = "No such companion"


class TransferStore(Protocol):
    """What export and import need beyond the memory service."""

    def users_page(self, owner_id: UUID, companion_id: UUID, after: str | None, limit: int) -> list[str]:
        """The users with live memories, by user id, strictly after ``after``."""
        ...

    def relations(self, owner_id: UUID, companion_id: UUID, user_id: str) -> list[Relation]:
        """The user's relations between live memories."""
        ...

    def imported(self, scope: TenantScope, keys: Sequence[str]) -> dict[str, UUID]:
        """The memories that completed import keys of the scope's user name."""
        ...

    def import_target(self, owner_id: UUID, source_companion_id: UUID) -> UUID | None:
        """The live companion the owner imported the source into, if any."""
        ...

    def claim_target(
        self, owner_id: UUID, source_companion_id: UUID, now: datetime, stale_before: datetime
    ) -> bool:
        """Claim the right to create the source's companion: True when no one holds it (or a claim older than
        ``stale_before`` was never completed, or its companion was deleted since)."""
        ...

    def release_target(self, owner_id: UUID, source_companion_id: UUID) -> None:
        """Give up a claim that created nothing (the companion could not be created)."""
        ...

    def complete_target(self, owner_id: UUID, source_companion_id: UUID, companion_id: UUID) -> None: ...


@dataclass(frozen=True, slots=True)
class ExportPage:
    lines: list[str]
    next_cursor: str | None


@dataclass(slots=True)
class _Position:
    """Where an export stands: inside ``user``'s memories (at ``list_cursor``), or before the first user
    after ``after_user``."""

    user: str | None = None
    list_cursor: str | None = None
    after_user: str | None = None
    # When the export began: every page's header carries it, so the pages of one export agree.
    exported_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Parsed:
    header: ExportHeader
    memories: dict[str, list[ExportedMemory]]
    relations: dict[str, list[tuple[int, ExportedRelation]]]


def transfer_key(source_memory_id: UUID) -> str:
    return f"transfer:{source_memory_id}"


class CompanionTransfer:
    def __init__(
        self,
        identity: IdentityService,
        identity_store: IdentityStore,
        memory: MemoryService,
        importer: MemoryImporter,
        store: TransferStore,
        clock: Clock,
        *,
        max_bytes: int = MAX_TRANSFER_BYTES,
    ) -> None:
        self._identity = identity
        self._identity_store = identity_store
        self._memory = memory
        self._importer = importer
        self._store = store
        self._clock = clock
        self._max_bytes = max_bytes

    # --- export --------------------------------------------------------------------------------------------

    def export_page(
        self, principal: Principal, companion_id: UUID, limit: int, cursor: str | None
    ) -> ExportPage:
        """The header, then up to about ``limit`` memories (whole list pages) and their users' relations."""
        if not 1 <= limit <= MAX_EXPORT_PAGE:
            raise ValidationFailed(f"limit is 1 to {MAX_EXPORT_PAGE}")
        companion = self._owned(principal, companion_id)
        position = _decode_cursor(cursor) if cursor is not None else _Position()
        started = position.exported_at or self._clock.now()
        header = ExportHeader(
            exported_at=started,
            source_companion_id=companion.id,
            companion=ExportedCompanion(
                name=companion.name,
                config=companion.config,
                isolation_level=companion.isolation_level,
                version=companion.version,
            ),
        )
        lines = [_json(header)]
        exported = 0
        while exported < limit:
            user = position.user
            if user is None:
                users = self._store.users_page(companion.owner_id, companion.id, position.after_user, 1)
                if not users:
                    return ExportPage(lines=lines, next_cursor=None)
                user = users[0]
                position = _Position(user=user, exported_at=started)
            scope = TenantScope(owner_id=companion.owner_id, companion_id=companion.id, user_id=user)
            page = self._memory.list(
                scope,
                ListFilter(
                    include_archived=True,
                    limit=min(_LIST_PAGE, limit - exported),
                    cursor=position.list_cursor,
                ),
            )
            lines.extend(_json(_exported_memory(memory)) for memory in page.items)
            exported += len(page.items)
            if page.next_cursor is not None:
                position = _Position(user=user, list_cursor=page.next_cursor, exported_at=started)
                continue
            lines.extend(
                _json(_exported_relation(user, relation))
                for relation in self._store.relations(companion.owner_id, companion.id, user)
            )
            position = _Position(after_user=user, exported_at=started)
        return ExportPage(lines=lines, next_cursor=_encode_cursor(position))

    # --- import --------------------------------------------------------------------------------------------

    def import_file(self, principal: Principal, body: bytes) -> CompanionImportReport:
        require(principal, tokens.SCOPE_ADMIN)
        parsed = self._parse(body)
        source = parsed.header.source_companion_id
        target = self._store.import_target(principal.owner_id, source)
        created = False
        if target is None:
            now = self._clock.now()
            if not self._store.claim_target(principal.owner_id, source, now, now - CLAIM_LEASE):
                # Another import of the same source is creating its companion right now (or just did).
                target = self._store.import_target(principal.owner_id, source)
                if target is None:
                    raise Conflict(
                        "Another import of this export is creating its companion; send this one again",
                        details={"reason": "import_in_progress"},
                    )
            else:
                try:
                    made = self._identity.create_companion(
                        principal,
                        CompanionCreate(
                            name=parsed.header.companion.name,
                            config=parsed.header.companion.config,
                            isolation_level=parsed.header.companion.isolation_level,
                        ),
                    )
                except BaseException:
                    self._store.release_target(principal.owner_id, source)
                    raise
                self._store.complete_target(principal.owner_id, source, made.id)
                target, created = made.id, True
        stored = already = pending = linked = 0
        unresolved: list[int] = []
        for user in sorted(set(parsed.memories) | set(parsed.relations)):
            scope = TenantScope(owner_id=principal.owner_id, companion_id=target, user_id=user)
            ids: dict[str, UUID] = {}
            items = parsed.memories.get(user, [])
            for start in range(0, len(items), MAX_IMPORT_LINES):
                report = self._importer.import_lines(
                    scope, _import_body(items[start : start + MAX_IMPORT_LINES])
                )
                stored += report.stored
                already += report.already_imported
                pending += report.failed  # every line was validated: only a key another import holds fails
                ids.update(
                    {r.import_key: r.memory_id for r in report.results if r.import_key and r.memory_id}
                )
            relations = parsed.relations.get(user, [])
            wanted = {
                transfer_key(end)
                for _, relation in relations
                for end in (relation.source_id, relation.target_id)
            }
            missing = sorted(wanted - set(ids))
            if missing:
                ids.update(self._store.imported(scope, missing))
            for line, relation in relations:
                source_id = ids.get(transfer_key(relation.source_id))
                target_id = ids.get(transfer_key(relation.target_id))
                if source_id is None or target_id is None or source_id == target_id:
                    unresolved.append(line)
                    continue
                self._memory.link(scope, source_id, target_id, relation.type, relation.metadata)
                linked += 1
        return CompanionImportReport(
            companion_id=target,
            source_companion_id=source,
            created=created,
            memories_stored=stored,
            memories_already_imported=already,
            memories_pending=pending,
            relations_linked=linked,
            relations_unresolved=sorted(unresolved),
            imported_at=self._clock.now(),
        )

    def _parse(self, body: bytes) -> _Parsed:
        if len(body) > self._max_bytes:
            raise ValidationFailed(
                f"an import is at most {self._max_bytes} bytes; import the export page by page"
            )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed("an import is UTF-8 JSON Lines, as an export page is") from None
        numbered = [(n, raw) for n, raw in enumerate(text.splitlines(), start=1) if raw.strip()]
        if not numbered:
            raise ValidationFailed("the import is empty: send an export page (a header line first)")
        errors: list[dict[str, Any]] = []
        first_line, first_raw = numbered[0]
        header = _line(first_line, first_raw, {"header": ExportHeader}, errors)
        memories: dict[str, list[ExportedMemory]] = defaultdict(list)
        relations: dict[str, list[tuple[int, ExportedRelation]]] = defaultdict(list)
        seen: dict[UUID, int] = {}
        for number, raw in numbered[1:]:
            item = _line(number, raw, {"memory": ExportedMemory, "relation": ExportedRelation}, errors)
            if isinstance(item, ExportedMemory):
                try:
                    # What the memory importer checks (metadata size, storable text), refused here by line.
                    ImportLine.model_validate(_import_fields(item))
                except ValidationError as error:
                    errors.append({"line": number, "message": _problems(error)})
                    continue
                if item.id in seen:
                    errors.append(
                        {"line": number, "message": f"memory {item.id} is already on line {seen[item.id]}"}
                    )
                    continue
                seen[item.id] = number
                memories[item.user_id].append(item)
            elif isinstance(item, ExportedRelation):
                relations[item.user_id].append((number, item))
        if errors or not isinstance(header, ExportHeader):
            first = errors[0]
            raise ValidationFailed(
                f"line {first['line']}: {first['message']}; nothing was imported",
                details={"errors": errors[:_MAX_REPORTED_ERRORS], "error_count": len(errors)},
            )
        return _Parsed(header=header, memories=dict(memories), relations=dict(relations))

    def _owned(self, principal: Principal, companion_id: UUID) -> Companion:
        # Owner keys only (admin scope): the export holds every user's memories, strict ones in plaintext.
        require(principal, tokens.SCOPE_ADMIN)
        companion = self._identity_store.get_companion(principal.owner_id, companion_id)
        if companion is None or companion.status == "deleted":
            raise NotFound(NO_SUCH_COMPANION)
        return companion


def _line(
    number: int, raw: str, kinds: dict[str, type[BaseModel]], errors: list[dict[str, Any]]
) -> BaseModel | None:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        errors.append({"line": number, "message": f"not JSON: {error.msg}"})
        return None
    kind = value.get("kind") if isinstance(value, dict) else None
    if kind not in kinds:
        expected = " or ".join(repr(k) for k in kinds)
        errors.append({"line": number, "message": f"expected a line of kind {expected}, got {kind!r}"})
        return None
    try:
        return kinds[kind].model_validate(value)
    except ValidationError as error:
        errors.append({"line": number, "message": _problems(error)})
        return None


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or 'line'}: {item['msg']}" for item in error.errors()
    )


_IMPORTED_FIELDS = {"type", "content", "summary", "metadata", "importance", "occurred_at", "expires_at"}


def _import_fields(item: ExportedMemory) -> dict[str, Any]:
    return {**item.model_dump(mode="json", include=_IMPORTED_FIELDS), "import_key": transfer_key(item.id)}


def _import_body(items: Sequence[ExportedMemory]) -> bytes:
    return "".join(json.dumps(_import_fields(item)) + "\n" for item in items).encode()


def _exported_memory(memory: Memory) -> ExportedMemory:
    return ExportedMemory(
        user_id=memory.user_id,
        id=memory.id,
        type=memory.type,
        content=memory.content,
        summary=memory.summary,
        metadata=memory.metadata,
        importance=memory.importance,
        occurred_at=memory.occurred_at,
        expires_at=memory.expires_at,
        archived=memory.archived,
        created_at=memory.created_at,
    )


def _exported_relation(user_id: str, relation: Relation) -> ExportedRelation:
    return ExportedRelation(
        user_id=user_id,
        source_id=relation.source_id,
        target_id=relation.target_id,
        type=relation.type,
        metadata=relation.metadata,
    )


def _json(line: BaseModel) -> str:
    return line.model_dump_json(exclude_none=False)


def _encode_cursor(position: _Position) -> str:
    started = position.exported_at.isoformat() if position.exported_at else None
    body = json.dumps({"u": position.user, "c": position.list_cursor, "a": position.after_user, "t": started})
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> _Position:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        parts = (value["u"], value["c"], value["a"], value["t"])
        if not all(part is None or isinstance(part, str) for part in parts):
            raise TypeError("a cursor holds strings")
        return _Position(
            user=parts[0],
            list_cursor=parts[1],
            after_user=parts[2],
            exported_at=None if parts[3] is None else datetime.fromisoformat(parts[3]),
        )
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValidationFailed("the cursor is not one this export gave") from None
