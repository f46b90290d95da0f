"""Companion export and import (JSON Lines), for backups and moves between deployments.

Export (owner key): a page of JSON Lines: the header (format, version, when, the companion's name, config,
isolation level and config version), then memories user by user (each user's live memories, archived ones
included, forgotten ones never; no vectors, ever), each user's relations after their memories. Every page
starts with the same header, so each page is a file that imports on its own; the cursor of the next page
(bound to its owner and companion) comes back beside the page. A page ends at about ``limit`` memories or
before it would pass ``MAX_EXPORT_PAGE_BYTES``, whichever comes first, so it always fits in a response and
imports as it is. A strict companion's content is exported in plaintext, to its owner only (the owner key is
the only credential that may export; docs/security.md).

Import (owner key): the whole file is validated first; a malformed line fails the request naming the line,
and nothing is written. The target is the companion this owner already imported the same source into
(``companion_imports``; it must be active: a paused or archived one takes no import), or a new companion made
from the header (its own version history starts at 1.0.0), created in the same transaction that records it
as the source's target, so a failure leaves neither. Memories go through the bulk memory importer verbatim,
keyed ``transfer:<source memory id>`` per user: each line a memory of its own (no near-duplicate merging, so
near-duplicates and the relations between them come back as they were), its expiry as exported (none stays
none), archived again when it was archived; re-embedded in batches (one embedding call and one transaction
per batch), and stored once however often the file is sent. Relations are linked between the memories those
keys name (linking again changes nothing). Importing the same file twice creates nothing the second time.
Not carried over: access statistics, history, ids (the import's memories get new ones).
"""

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, ValidationError

from companion_memory.auth import tokens
from companion_memory.auth.principal import Principal, require
from companion_memory.domain.identity import NO_SUCH_COMPANION, IdentityService, owned_companion
from companion_memory.domain.memory import MemoryService
from companion_memory.domain.memory_import import CLAIM_LEASE, MAX_IMPORT_LINES, MemoryImporter
from companion_memory.errors import (
    CompanionMemoryError,
    Conflict,
    IllegalTransition,
    NotFound,
    ValidationFailed,
)
from companion_memory.models.companion_config import CompanionConfig
from companion_memory.models.companion_export import (
    MAX_EXPORT_PAGE,
    MAX_EXPORT_PAGE_BYTES,
    MAX_MEMORY_LINE_BYTES,
    MAX_RELATION_LINE_BYTES,
    MAX_TRANSFER_BYTES,
    CompanionImportReport,
    ExportedCompanion,
    ExportedMemory,
    ExportedRelation,
    ExportHeader,
)
from companion_memory.models.identity import AuditEvent, Companion, CompanionCreate
from companion_memory.models.memory import ListFilter, Memory, Relation
from companion_memory.models.memory_import import EXPORT_LIST_PAGE, ExportPage, ImportLine
from companion_memory.models.tenancy import TenantScope
from companion_memory.ports import Clock, IdentityStore, TransferStore

_RELATION_PAGE = 500
_MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True, slots=True)
class _Position:
    """Where an export stands: inside ``user``'s memories (at ``list_cursor``), or in their relations
    (after ``relations_after``, when ``relations``), or before the first user after ``after_user``."""

    user: str | None = None
    list_cursor: str | None = None
    relations: bool = False
    relations_after: UUID | None = None
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
        page_bytes: int = MAX_EXPORT_PAGE_BYTES,
    ) -> None:
        self._identity = identity
        self._identity_store = identity_store
        self._memory = memory
        self._importer = importer
        self._store = store
        self._clock = clock
        self._max_bytes = max_bytes
        self._page_bytes = page_bytes

    # --- export --------------------------------------------------------------------------------------------

    def export_page(
        self, principal: Principal, companion_id: UUID, limit: int, cursor: str | None
    ) -> ExportPage:
        """The header, then up to about ``limit`` memories and their users' relations, within
        ``MAX_EXPORT_PAGE_BYTES`` (each read asks for no more lines than the bytes left can hold at the
        largest a line can be, so no line is ever read and then left out)."""
        if not 1 <= limit <= MAX_EXPORT_PAGE:
            raise ValidationFailed(f"limit is 1 to {MAX_EXPORT_PAGE}")
        companion = self._owned(principal, companion_id)
        binding = f"{companion.owner_id}|{companion.id}"
        position = _decode_cursor(cursor, binding) if cursor is not None else _Position()
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
        room = self._page_bytes - _size(lines[0])
        exported = 0
        while True:
            user = position.user
            if user is not None and position.relations:
                fits = min(_RELATION_PAGE, room // MAX_RELATION_LINE_BYTES)
                if fits < 1:
                    break
                relations = self._store.relations_page(
                    companion.owner_id, companion.id, user, position.relations_after, fits
                )
                for relation in relations:
                    lines.append(_json(_exported_relation(user, relation)))
                    room -= _size(lines[-1])
                if len(relations) == fits:
                    position = _Position(
                        user=user, relations=True, relations_after=relations[-1].id, exported_at=started
                    )
                else:
                    position = _Position(after_user=user, exported_at=started)
                continue
            fits = min(EXPORT_LIST_PAGE, limit - exported, room // MAX_MEMORY_LINE_BYTES)
            if fits < 1:
                break
            if user is None:
                users = self._store.users_page(companion.owner_id, companion.id, position.after_user, 1)
                if not users:
                    return ExportPage(lines=lines, next_cursor=None)
                user = users[0]
                position = _Position(user=user, exported_at=started)
            scope = TenantScope(owner_id=companion.owner_id, companion_id=companion.id, user_id=user)
            page = self._memory.list(
                scope, ListFilter(include_archived=True, limit=fits, cursor=position.list_cursor)
            )
            for memory in page.items:
                lines.append(_json(_exported_memory(memory)))
                room -= _size(lines[-1])
            exported += len(page.items)
            if page.next_cursor is not None:
                position = _Position(user=user, list_cursor=page.next_cursor, exported_at=started)
            else:
                position = _Position(user=user, relations=True, exported_at=started)
        return ExportPage(lines=lines, next_cursor=_encode_cursor(position, binding))

    # --- import --------------------------------------------------------------------------------------------

    def import_file(self, principal: Principal, body: bytes) -> CompanionImportReport:
        require(principal, tokens.SCOPE_ADMIN)
        parsed = self._parse(body)
        source = parsed.header.source_companion_id
        target, created = self._target(principal, parsed.header)
        stored = already = pending = linked = 0
        unresolved: list[int] = []
        for user in sorted(set(parsed.memories) | set(parsed.relations)):
            scope = TenantScope(owner_id=principal.owner_id, companion_id=target, user_id=user)
            ids: dict[str, UUID] = {}
            items = parsed.memories.get(user, [])
            for start in range(0, len(items), MAX_IMPORT_LINES):
                report = self._importer.import_lines(
                    scope, _import_body(items[start : start + MAX_IMPORT_LINES]), verbatim=True
                )
                stored += report.stored
                already += report.already_imported
                pending += report.failed  # every line was validated: only a key another import holds fails
                ids.update(
                    {r.import_key: r.memory_id for r in report.results if r.import_key and r.memory_id}
                )
            # Archived in the export, archived here (again, after a retry that stored them first: a memory
            # already archived is left as it is).
            archived = [ids[key] for key in (transfer_key(m.id) for m in items if m.archived) if key in ids]
            self._store.archive(scope, archived, self._clock.now())
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

    def _target(self, principal: Principal, header: ExportHeader) -> tuple[UUID, bool]:
        """The companion the file goes into, and whether this call created it."""
        source = header.source_companion_id
        existing = self._store.import_target(principal.owner_id, source)
        if existing is not None:
            return _active(existing).id, False
        now = self._clock.now()
        if not self._store.claim_target(principal.owner_id, source, now, now - CLAIM_LEASE):
            # Another import of the same source is creating its companion right now (or just did).
            existing = self._store.import_target(principal.owner_id, source)
            if existing is None:
                raise Conflict(
                    "Another import of this export is creating its companion; send this one again",
                    details={"reason": "import_in_progress"},
                )
            return _active(existing).id, False
        # Validated as a create request is, and stored as IdentityService.create_companion stores one.
        request = CompanionCreate(
            name=header.companion.name,
            config=header.companion.config,
            isolation_level=header.companion.isolation_level,
        )
        companion = Companion(
            id=uuid4(),
            owner_id=principal.owner_id,
            name=request.name,
            config=CompanionConfig.of(request.config or {}).stored(),
            isolation_level=request.isolation_level,
            status="active",
            version="1.0.0",
            created_at=now,
            updated_at=now,
        )
        audit = AuditEvent(
            owner_id=principal.owner_id,
            companion_id=companion.id,
            actor=principal.actor,
            action="companion.created",
            target=f"companion:{companion.id}",
            details={"isolation_level": companion.isolation_level, "imported_from": str(source)},
            at=now,
        )
        try:
            self._store.create_target(companion, audit, source, now)
        except Conflict:
            raise  # the claim is another import's now: nothing of ours to release
        except BaseException:
            # Nothing was created (one transaction): free the claim at once rather than after the lease.
            with contextlib.suppress(CompanionMemoryError):
                self._store.release_target(principal.owner_id, source, now)
            raise
        return companion.id, True

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
        # Owner keys only: the export holds every user's memories, strict ones in plaintext.
        companion = owned_companion(self._identity_store, principal, companion_id)
        if companion.status == "deleted":
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


def _active(companion: Companion) -> Companion:
    if companion.status != "active":
        raise IllegalTransition(
            f"A companion that is {companion.status} takes no import; resume it first",
            details={"status": companion.status, "action": "import"},
        )
    return companion


def _size(line: str) -> int:
    return len(line.encode()) + 1  # and its newline


# An export cursor: base64url(JSON of the position) "." base64url(SHA-256 of it and the owner and companion).
# The digest makes an edited cursor, or one of another companion's export, a clear 400 instead of a page of
# something else (like the lifecycle's cursors: a checksum, not a secret; every read is the caller's own).


def _digest(body: bytes, binding: str) -> bytes:
    return hashlib.sha256(binding.encode() + b"\x00" + body).digest()[:16]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _encode_cursor(position: _Position, binding: str) -> str:
    started = position.exported_at.isoformat() if position.exported_at else None
    after = None if position.relations_after is None else str(position.relations_after)
    body = json.dumps(
        {
            "u": position.user,
            "c": position.list_cursor,
            "r": position.relations,
            "ra": after,
            "a": position.after_user,
            "t": started,
        },
        separators=(",", ":"),
    ).encode()
    return f"{_b64(body)}.{_b64(_digest(body, binding))}"


def _decode_cursor(cursor: str, binding: str) -> _Position:
    try:
        encoded_body, _, encoded_digest = cursor.partition(".")
        body = _unb64(encoded_body)
        if not hmac.compare_digest(_unb64(encoded_digest), _digest(body, binding)):
            raise ValueError("the digest does not match")
        value = json.loads(body)
        parts = (value["u"], value["c"], value["ra"], value["a"], value["t"])
        if not all(part is None or isinstance(part, str) for part in parts):
            raise TypeError("a cursor holds strings")
        if not isinstance(value["r"], bool):
            raise TypeError("a cursor's relations flag is a boolean")
        return _Position(
            user=parts[0],
            list_cursor=parts[1],
            relations=value["r"],
            relations_after=None if parts[2] is None else UUID(parts[2]),
            after_user=parts[3],
            exported_at=None if parts[4] is None else datetime.fromisoformat(parts[4]),
        )
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValidationFailed("the cursor is not one this export gave") from None
