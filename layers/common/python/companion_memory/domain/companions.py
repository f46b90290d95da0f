"""The companion lifecycle: list, update (a new version), version history, rollback, pause / resume / archive,
and a companion's users (relationship, preferences, block). Creating a companion and its keys is
``domain.identity``'s; deleting one is the erasure's.

Every route is the owner's (an owner key, scope ``admin``): a companion key or a user token is refused 403,
and another owner's companion reads 404, like one that does not exist. Every change is audited in the
transaction that makes it.

Versions (semver, ``companions.version``). A change of name or config makes a new version; the old config
stays in ``companion_versions`` (the database records every version itself: migrations/0008). The bump:

- minor: limits, capabilities, retention or auto_pause change (what the companion may do or keep);
- patch: only the personality or the name change (who it is, not what it may do);
- ``"bump": "major"`` (or minor / patch) in the request raises the bump, never lowers it;
- an update that changes nothing makes no version and is not audited.

A rollback makes a new version (bumped by the same rule) whose name and config are an old version's; history
is never rewritten. Updates take the version they were made against (409 ``conflict`` with
``current_version`` when stale).

Status. ``active`` ⇄ ``paused`` (pause / resume); ``active`` or ``paused`` → ``archived`` (archive). Archiving
is one-way: an archived companion keeps its memories (the owner can still read and export them) but cannot
be resumed, updated or rolled back; it waits to be deleted, or to be exported into a new companion. That
keeps "archived" a state the upkeep and analytics schedules can treat as final. ``deleted`` is terminal.
Repeating the state a companion is already in (pause a paused one) answers it unchanged; any other move its
status does not allow is 409 ``illegal_transition``. A paused or archived companion's keys and user tokens
get 403 ``companion_paused`` / ``companion_archived`` (auth/authenticator.py), within the 15 s status cache
of a warm sandbox (plus the HttpApi authorizer's 30 s result cache on REST).
"""

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID

from companion_memory.auth import tokens
from companion_memory.auth.principal import Principal, require
from companion_memory.domain.identity import audit_event, owned_companion
from companion_memory.errors import Conflict, IllegalTransition, NotFound, ValidationFailed
from companion_memory.models.companion import (
    MAX_PREFERENCES_BYTES,
    Bump,
    CompanionPage,
    CompanionRollback,
    CompanionUpdate,
    CompanionUserDetail,
    CompanionUserPage,
    CompanionVersion,
    CompanionVersionPage,
)
from companion_memory.models.companion_config import CompanionConfig
from companion_memory.models.identity import Companion, CompanionStatus, CompanionUser, UserPermissions
from companion_memory.ports import Clock, CompanionStore, IdentityStore

Action = Literal["pause", "resume", "archive"]
NO_SUCH_COMPANION: Final = "No such companion"
NO_SUCH_USER: Final = "No such user"
MAX_PAGE: Final = 100
# Listing without a status filter leaves out deleted companions (tombstones); status=deleted shows them.
LISTED_BY_DEFAULT: Final = ("active", "paused", "archived")
_EDITABLE: Final = frozenset({"active", "paused"})
# action -> (the statuses it moves from, the status it moves to)
_TRANSITIONS: Final[dict[Action, tuple[frozenset[str], CompanionStatus]]] = {
    "pause": (frozenset({"active"}), "paused"),
    "resume": (frozenset({"paused"}), "active"),
    "archive": (frozenset({"active", "paused"}), "archived"),
}
_PAST: Final[dict[Action, str]] = {"pause": "paused", "resume": "resumed", "archive": "archived"}
_RANK: Final[dict[Bump, int]] = {"patch": 1, "minor": 2, "major": 3}
# Config sections whose change is a patch; any other section's change is a minor bump.
_PATCH_SECTIONS: Final = frozenset({"personality"})


class CompanionService:
    def __init__(self, store: CompanionStore, identity: IdentityStore, clock: Clock) -> None:
        self._store = store
        self._identity = identity
        self._clock = clock

    # --- companions -----------------------------------------------------------------------------------------

    def list_companions(
        self, principal: Principal, status: CompanionStatus | None, cursor: str | None, limit: int
    ) -> CompanionPage:
        require(principal, tokens.SCOPE_ADMIN)
        statuses = LISTED_BY_DEFAULT if status is None else (status,)
        binding = _binding(principal.owner_id, "companions", status or "")
        after = None
        if cursor is not None:
            key = _decode_cursor(cursor, binding)
            after = (_instant(key.get("c")), _uuid(key.get("i")))
        rows = self._store.list_companions(principal.owner_id, statuses, after, _limit(limit) + 1)
        page, more = rows[: _limit(limit)], len(rows) > _limit(limit)
        next_cursor = None
        if more:
            last = page[-1]
            next_cursor = _encode_cursor({"c": last.created_at.isoformat(), "i": str(last.id)}, binding)
        return CompanionPage(companions=page, next_cursor=next_cursor)

    def update(self, principal: Principal, companion_id: UUID, request: CompanionUpdate) -> Companion:
        current = self._owned(principal, companion_id)
        _require_editable(current, "update")
        _require_version(current, request.expected_version)
        name = request.name if request.name is not None else current.name
        config = CompanionConfig.of(_merged(current.config, request.config or {})).stored()
        return self._new_version(principal, current, name, config, request.bump, "companion.updated", {})

    def rollback(self, principal: Principal, companion_id: UUID, request: CompanionRollback) -> Companion:
        current = self._owned(principal, companion_id)
        _require_editable(current, "rollback")
        _require_version(current, request.expected_version)
        target = self._store.version(principal.owner_id, companion_id, request.to_version)
        if target is None:
            raise NotFound("No such version", details={"version": request.to_version})
        return self._new_version(
            principal,
            current,
            target.name,
            # Through today's schema: a config stored under an older one comes back with every field it now
            # has, and one that no longer validates is refused by field instead of being restored as it was.
            CompanionConfig.of(target.config).stored(),
            None,
            "companion.rolled_back",
            {"to_version": target.version},
        )

    def versions(
        self, principal: Principal, companion_id: UUID, cursor: str | None, limit: int
    ) -> CompanionVersionPage:
        companion = self._owned(principal, companion_id)
        page, next_cursor = _keyed_page(
            _binding(principal.owner_id, "versions", str(companion.id)),
            cursor,
            limit,
            lambda before, n: self._store.versions(principal.owner_id, companion.id, before, n),
            lambda version: version.version,
        )
        return CompanionVersionPage(versions=page, next_cursor=next_cursor)

    def version(self, principal: Principal, companion_id: UUID, version: str) -> CompanionVersion:
        companion = self._owned(principal, companion_id)
        found = self._store.version(principal.owner_id, companion.id, version)
        if found is None:
            raise NotFound("No such version", details={"version": version})
        return found

    def transition(self, principal: Principal, companion_id: UUID, action: Action) -> Companion:
        """Pause, resume or archive (see the module docstring for which moves are allowed)."""
        current = self._owned(principal, companion_id)
        sources, target = _TRANSITIONS[action]
        if current.status == target:
            return current  # already there: a retried request changes nothing
        if current.status not in sources:
            raise IllegalTransition(
                f"A companion that is {current.status} cannot be {_PAST[action]}",
                details={"status": current.status, "action": action},
            )
        now = self._clock.now()
        audit = audit_event(
            principal,
            f"companion.{_PAST[action]}",
            current.id,
            f"companion:{current.id}",
            now,
            {"from": current.status, "to": target},
        )
        moved = self._store.set_status(principal.owner_id, current.id, current.status, target, now, audit)
        if moved is None:
            raise Conflict("The companion's status changed meanwhile; read it again")
        return moved

    # --- users ----------------------------------------------------------------------------------------------

    def users(
        self, principal: Principal, companion_id: UUID, cursor: str | None, limit: int
    ) -> CompanionUserPage:
        companion = self._owned(principal, companion_id)
        page, next_cursor = _keyed_page(
            _binding(principal.owner_id, "users", str(companion.id)),
            cursor,
            limit,
            lambda after, n: self._store.users(principal.owner_id, companion.id, after, n),
            lambda user: user.user_id,
        )
        return CompanionUserPage(users=page, next_cursor=next_cursor)

    def user(self, principal: Principal, companion_id: UUID, user_id: str) -> CompanionUserDetail:
        companion = self._owned(principal, companion_id)
        found = self._store.user(principal.owner_id, companion.id, user_id)
        if found is None:
            raise NotFound(NO_SUCH_USER)
        return found

    def set_preferences(
        self, principal: Principal, companion_id: UUID, user_id: str, preferences: dict[str, Any]
    ) -> CompanionUserDetail:
        companion = self._owned(principal, companion_id)
        _require_not_deleted(companion, "set_preferences")
        size = len(json.dumps(preferences, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_PREFERENCES_BYTES:
            raise ValidationFailed(
                f"preferences are {size} bytes as JSON; at most {MAX_PREFERENCES_BYTES}",
                details={"max_bytes": MAX_PREFERENCES_BYTES, "bytes": size},
            )
        now = self._clock.now()
        # The audit names the keys, not the values: preferences may be personal.
        audit = audit_event(
            principal,
            "user.preferences_changed",
            companion.id,
            f"user:{user_id}",
            now,
            {"keys": sorted(preferences)[:50]},
        )
        return self._store.set_preferences(principal.owner_id, companion.id, user_id, preferences, now, audit)

    def set_blocked(
        self, principal: Principal, companion_id: UUID, user_id: str, blocked: bool
    ) -> CompanionUserDetail:
        """Block (no token, no request) or unblock a user; within the 15 s auth cache."""
        companion = self._owned(principal, companion_id)
        _require_not_deleted(companion, "block" if blocked else "unblock")
        now = self._clock.now()
        action = "user.blocked" if blocked else "user.unblocked"
        self._identity.update_companion_user(
            principal.owner_id,
            companion.id,
            user_id,
            UserPermissions(is_blocked=blocked),
            now,
            audit_event(principal, action, companion.id, f"user:{user_id}", now, {}),
        )
        return self.user(principal, companion.id, user_id)

    def set_permissions(
        self, principal: Principal, companion_id: UUID, user_id: str, changes: UserPermissions
    ) -> CompanionUser:
        """Set some of a user's permissions (absent fields stay); the user is created if new. Audited. A
        deleted companion gets no user row back (409 ``illegal_transition``)."""
        companion = self._owned(principal, companion_id)
        _require_not_deleted(companion, "set_permissions")
        changed = changes.model_dump(exclude_none=True)
        if not changed:
            raise ValidationFailed("Name at least one of can_read, can_write, can_delete, is_blocked")
        now = self._clock.now()
        return self._identity.update_companion_user(
            principal.owner_id,
            companion.id,
            user_id,
            changes,
            now,
            audit_event(principal, "permission.changed", companion.id, f"user:{user_id}", now, changed),
        )

    # --- helpers --------------------------------------------------------------------------------------------

    def _owned(self, principal: Principal, companion_id: UUID) -> Companion:
        return owned_companion(self._identity, principal, companion_id)

    def _new_version(
        self,
        principal: Principal,
        current: Companion,
        name: str,
        config: dict[str, Any],
        requested: Bump | None,
        action: str,
        details: dict[str, Any],
    ) -> Companion:
        changed = changed_sections(current, name, config)
        if not changed:
            return current  # nothing differs: no version, nothing to audit
        bump = version_bump(changed, requested)
        now = self._clock.now()
        updated = current.model_copy(
            update={
                "name": name,
                "config": config,
                "version": next_version(current.version, bump),
                "updated_at": now,
            }
        )
        audit = audit_event(
            principal,
            action,
            current.id,
            f"companion:{current.id}",
            now,
            {**details, "changed": changed, "bump": bump, "from": current.version, "to": updated.version},
        )
        if not self._store.save_version(updated, current.version, audit):
            now_stored = self._identity.get_companion(principal.owner_id, current.id)
            if now_stored is None:
                raise NotFound(NO_SUCH_COMPANION)
            raise Conflict(
                "The companion changed meanwhile; read it again",
                details={"current_version": now_stored.version, "status": now_stored.status},
            )
        return updated


def changed_sections(current: Companion, name: str, config: dict[str, Any]) -> list[str]:
    """What a change touches: ``name`` and each config section whose value differs, sorted."""
    sections = {
        key for key in set(current.config) | set(config) if current.config.get(key) != config.get(key)
    }
    if name != current.name:
        sections.add("name")
    return sorted(sections)


def version_bump(changed: list[str], requested: Bump | None) -> Bump:
    """minor when what the companion may do or keep changes, patch for personality or name alone; a
    requested bump raises it (see the module docstring)."""
    required: Bump = "minor" if set(changed) - _PATCH_SECTIONS - {"name"} else "patch"
    if requested is not None and _RANK[requested] > _RANK[required]:
        return requested
    return required


def next_version(version: str, bump: Bump) -> str:
    major, minor, patch = (int(part) for part in version.split("."))
    if bump == "major":
        return f"{major + 1}.0.0"
    if bump == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def _require_version(current: Companion, expected: str) -> None:
    if current.version != expected:
        raise Conflict(
            f"The companion is at version {current.version}, not {expected}",
            details={"current_version": current.version},
        )


def _require_editable(companion: Companion, action: str) -> None:
    if companion.status not in _EDITABLE:
        raise IllegalTransition(
            f"A companion that is {companion.status} cannot be changed",
            details={"status": companion.status, "action": action},
        )


def _require_not_deleted(companion: Companion, action: str) -> None:
    if companion.status == "deleted":
        raise IllegalTransition(
            "The companion is deleted", details={"status": companion.status, "action": action}
        )


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in override.items():
        merged[name] = (
            _merged(base[name], value)
            if isinstance(value, dict) and isinstance(base.get(name), dict)
            else value
        )
    return merged


# --- cursors ------------------------------------------------------------------------------------------------
# base64url(JSON of the last row's key) "." base64url(SHA-256 of the key, the owner and the listing's filter).
# The digest makes an edited, truncated or borrowed cursor (another owner's, another filter's) a clear 400
# instead of a silently different page. It is a checksum, not a secret: a forger could recompute it, and would
# gain nothing, since every page is read under the caller's own tenant context.


def _binding(owner_id: UUID, listing: str, filter: str) -> str:
    return f"{owner_id}|{listing}|{filter}"


def _digest(body: bytes, binding: str) -> bytes:
    return hashlib.sha256(binding.encode() + b"\x00" + body).digest()[:16]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _keyed_page[T](
    binding: str,
    cursor: str | None,
    limit: int,
    fetch: Callable[[str | None, int], list[T]],
    key_of: Callable[[T], str],
) -> tuple[list[T], str | None]:
    """One page of rows ordered by a single text key: the cursor holds the last key shown, bound to what
    is being paged (``binding``); one row more than the page tells whether another page follows."""
    after = None
    if cursor is not None:
        after = _decode_cursor(cursor, binding).get("k")
        if not isinstance(after, str):
            raise _invalid_cursor()
    rows = fetch(after, _limit(limit) + 1)
    page = rows[: _limit(limit)]
    return page, _encode_cursor({"k": key_of(page[-1])}, binding) if len(rows) > len(page) else None


def _encode_cursor(key: dict[str, str], binding: str) -> str:
    body = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64(body)}.{_b64(_digest(body, binding))}"


def _decode_cursor(cursor: str, binding: str) -> dict[str, Any]:
    try:
        encoded_body, _, encoded_digest = cursor.partition(".")
        body, digest = _unb64(encoded_body), _unb64(encoded_digest)
        if not hmac.compare_digest(digest, _digest(body, binding)):
            raise _invalid_cursor()
        key = json.loads(body)
    except (binascii.Error, ValueError) as error:
        raise _invalid_cursor() from error
    if not isinstance(key, dict):
        raise _invalid_cursor()
    return key


def _invalid_cursor() -> ValidationFailed:
    return ValidationFailed(
        "invalid cursor: pass next_cursor from the previous page, with the same filters",
        details={"reason": "invalid_cursor"},
    )


def _instant(value: object) -> datetime:
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError as error:
        raise _invalid_cursor() from error
    if at.tzinfo is None:
        raise _invalid_cursor()
    return at


def _uuid(value: object) -> UUID:
    try:
        return UUID(str(value))
    except ValueError as error:
        raise _invalid_cursor() from error
