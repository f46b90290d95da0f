"""Ports: what the domain needs from the outside world, as Protocols.

Adapters in ``adapters/`` implement them; unit tests use fakes that implement the same Protocols,
so a type checker notices when a fake drifts.
"""

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from companion_memory.models.analytics import (
    Bucket,
    CompanionActivity,
    HealthInputs,
    Operation,
    SeriesRows,
    UserEngagement,
)
from companion_memory.models.memory import (
    Candidate,
    HistoryEntry,
    MemoryCriteria,
    Relation,
    RelationType,
    StoredMemory,
)
from companion_memory.models.schedule import ScheduledCompanion
from companion_memory.models.session import LiveSession, SessionRecord, SessionTouch, SessionVisit
from companion_memory.models.tenancy import TenantScope
from companion_memory.models.upkeep import DuplicatePair, DuplicateScan, RetentionRules

if TYPE_CHECKING:
    # Identity types load the JWT stack; the identity ports below name them only in annotations, so
    # importing the ports costs no function that does not authenticate.
    from companion_memory.auth.keyset import SigningKeySet
    from companion_memory.models.companion import CompanionUserDetail, CompanionVersion
    from companion_memory.models.companion_config import Limits
    from companion_memory.models.erasure import Budget, StorePurge
    from companion_memory.models.identity import (
        ApiKey,
        AuditEvent,
        Companion,
        CompanionUser,
        Owner,
        StoredApiKey,
        UserPermissions,
    )


class Clock(Protocol):
    def now(self) -> datetime: ...


class DependencyProbe(Protocol):
    """A cheap reachability check of one backing service; raises when it is not reachable."""

    name: str

    def check(self) -> None: ...


class Embedder(Protocol):
    """Turns text into vectors. Documents and queries are separate calls because some models
    (E5, for one) embed them with different prefixes. Calls are batched by the caller."""

    @property
    def model_id(self) -> str:
        """Stable name of the model and its settings, recorded with every stored vector."""
        ...

    @property
    def dimensions(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class ContentCipher(Protocol):
    """Seals the content of strict companions' memories (AES-256-GCM under a per-companion data key).

    The additional data binds a ciphertext to its companion, user and memory: moved anywhere else
    it no longer opens.
    """

    def seal(self, companion_id: UUID, user_id: str, memory_id: UUID, plaintext: str) -> bytes: ...

    def open(self, companion_id: UUID, user_id: str, memory_id: UUID, sealed: bytes) -> str: ...


@dataclass(frozen=True, slots=True)
class CandidateQuery:
    """What recall asks the store for: the top ``k`` by vector distance (vectors of ``model`` only) and
    the top ``k`` by keyword rank (any of ``terms``), among memories that meet ``criteria``; their union,
    each with both raw scores."""

    model: str
    vector: Sequence[float]
    terms: Sequence[str]
    criteria: MemoryCriteria
    k: int


@dataclass(frozen=True, slots=True)
class UserStorage:
    """What one companion user holds now (live memories, stored content bytes) and the companion's config,
    whose ``limits`` say how much it may hold."""

    memories: int
    content_bytes: int
    companion_config: dict[str, Any]


class MemoryUnit(Protocol):
    """One transaction of the memory store in one tenant scope; rows outside the scope do not exist."""

    def isolation_level(self) -> str | None:
        """The companion's isolation level ('standard' or 'strict'); None when it is not visible."""
        ...

    def lock_usage(self, user_id: str) -> UserStorage:
        """The user's storage counters, locked until the unit ends: concurrent writes of one user queue
        here, so a quota check and the write it admits are one step. The store moves the counters itself
        when memories are written, forgotten, restored or deleted."""
        ...

    def get(self, memory_id: UUID, *, include_forgotten: bool = False) -> StoredMemory | None: ...

    def insert(self, memory: StoredMemory) -> None: ...

    def save(self, memory: StoredMemory, *, expected_version: int) -> bool:
        """Write every field of ``memory`` if the stored version is still ``expected_version``."""
        ...

    def put_embedding(self, memory: StoredMemory, model: str, vector: Sequence[float]) -> None: ...

    def add_history(self, entry: HistoryEntry) -> None: ...

    def history(self, memory_id: UUID) -> list[HistoryEntry]: ...

    def nearest(
        self, user_id: str, criteria: MemoryCriteria, model: str, vector: Sequence[float], limit: int
    ) -> list[tuple[StoredMemory, float]]:
        """The user's live memories closest to ``vector`` (exact cosine similarity, highest first)."""
        ...

    def candidates(self, user_id: str, query: CandidateQuery) -> list[Candidate]:
        """Exact: every one of the user's memories that meets the criteria is considered."""
        ...

    def companion_candidates(self, query: CandidateQuery, ef_search: int) -> list[Candidate]:
        """Approximate, companion-wide, by the model's vector index only (keyword rank 0)."""
        ...

    def neighbours(
        self,
        user_id: str,
        anchors: Sequence[tuple[UUID, datetime]],
        criteria: MemoryCriteria,
        window: timedelta,
    ) -> list[tuple[UUID, StoredMemory]]:
        """Per anchor (a memory's id and occurred_at), the user's nearest earlier and nearest later memory
        by (occurred_at, id) that meets ``criteria`` and lies within ``window`` of it, as (anchor id,
        neighbour); one round trip."""
        ...

    def touch(self, memory_ids: Sequence[UUID], at: datetime) -> None:
        """Count an access; rows another transaction holds are skipped rather than waited for."""
        ...

    def page(
        self, user_id: str, criteria: MemoryCriteria, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[StoredMemory]:
        """Newest first by (created_at, id), strictly after the ``after`` key."""
        ...

    def link(
        self,
        relation_id: UUID,
        source: StoredMemory,
        target: StoredMemory,
        type: RelationType,
        metadata: dict[str, Any],
        at: datetime,
    ) -> Relation:
        """Create the relation, or return the existing one of the same (source, target, type) with the
        given metadata."""
        ...


class MemoryStore(Protocol):
    def unit(self, scope: TenantScope) -> AbstractContextManager[MemoryUnit]:
        """A transaction in ``scope``: committed when the block ends, rolled back when it raises."""
        ...

    def purge_forgotten(self, cutoff: datetime, max_rows: int) -> int:
        """Delete, across all tenants, forgotten memories whose grace period ended by ``cutoff``."""
        ...


@dataclass(frozen=True, slots=True)
class PendingEmbedding:
    """A memory that has no vector of the target model yet: its text (or ciphertext) as of ``version``."""

    memory_id: UUID
    companion_id: UUID
    user_id: str
    version: int
    content: str | None
    sealed: bytes | None


@dataclass(frozen=True, slots=True)
class PendingCount:
    total: int
    sealed: int


class ReembedBatch(Protocol):
    """Memories claimed by one re-embedding run: no concurrent run claims them until the batch ends."""

    @property
    def pending(self) -> Sequence[PendingEmbedding]: ...

    @property
    def scanned_to(self) -> UUID | None:
        """The highest memory id the claim went over (the next claim's ``after``); None when it found no
        memory left to claim. Memories another run completed meanwhile are passed over, not pending."""
        ...

    def insert(self, model: str, vectors: Sequence[tuple[PendingEmbedding, Sequence[float]]]) -> int:
        """Add each vector under ``model`` if its memory is still at the version read and has no vector of
        that model yet; returns how many were added. Never changes or removes an existing vector."""
        ...


class ReembedStore(Protocol):
    """Every tenant's memories as seen by the re-embedding job (an operator action, not a request)."""

    def claim(
        self, model: str, after: UUID | None, limit: int, companion_id: UUID | None = None
    ) -> AbstractContextManager[ReembedBatch]:
        """Up to ``limit`` memories (forgotten ones included; of one companion when given) with no vector of
        ``model``, by id after ``after``, skipping those another run holds; held until the block ends."""
        ...

    def pending(self, model: str, companion_id: UUID | None = None) -> PendingCount:
        """How many memories (of one companion when given) have no vector of ``model``, and how many of
        them are sealed."""
        ...


class DataKeyService(Protocol):
    """Makes and unwraps per-companion data keys under the customer-managed key (KMS in AWS).

    ``context`` is the encryption context: a wrapped key unwraps only with the context it was made with.
    Plaintext keys come back as ``bytearray`` so their holder can zeroise them.
    """

    def generate(self, context: dict[str, str]) -> tuple[bytearray, bytes]:
        """A new 256-bit data key: (plaintext, wrapped)."""
        ...

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytearray: ...


@dataclass(frozen=True, slots=True)
class WrappedKeyRecord:
    """What envelope encryption needs to know of a companion."""

    owner_id: UUID
    isolation_level: str
    status: str
    wrapped_data_key: bytes | None


class WrappedKeyStore(Protocol):
    """Where companions' wrapped data keys live (the ``companions`` row)."""

    def load(self, companion_id: UUID) -> WrappedKeyRecord | None: ...

    def install(self, companion_id: UUID, record: WrappedKeyRecord, wrapped: bytes) -> bool:
        """Store a wrapped key where there is none yet (and the companion is not deleted); False when
        another writer was first or the companion was deleted meanwhile."""
        ...

    def destroy(self, companion_id: UUID, record: WrappedKeyRecord) -> None:
        """Forget the wrapped key for good and mark the companion deleted (crypto-shredding)."""
        ...


class ActivityRecorder(Protocol):
    """Counts admitted memory requests for analytics (``adapters.postgres_activity``): one request of
    ``operation`` in the scope's user's activity of the hour of ``at``; raises DependencyUnavailable when it
    cannot."""

    def record(self, scope: TenantScope, operation: Operation, at: datetime) -> None: ...


class AnalyticsStore(Protocol):
    """What analytics reads and the auto-pause schedule writes (``adapters.postgres_analytics``). Each call is
    one transaction in the scope it is given (a companion with user ``*``, or an owner alone for the
    leaderboard)."""

    def companion(self, owner_id: UUID, companion_id: UUID) -> "Companion | None": ...

    def series(self, scope: TenantScope, start: datetime, end: datetime, bucket: Bucket) -> SeriesRows: ...

    def engagement(
        self, scope: TenantScope, start: datetime, end: datetime, limit: int
    ) -> list[UserEngagement]: ...

    def leaderboard(
        self, owner_id: UUID, start: datetime, end: datetime, limit: int
    ) -> list[CompanionActivity]: ...

    def health_inputs(self, scope: TenantScope, now: datetime, limits: "Limits") -> HealthInputs:
        """Windows end at the start of ``now``'s hour: the last 24 complete hours, the 7 days before them."""
        ...

    def pause(self, companion: ScheduledCompanion, audit: "AuditEvent") -> bool:
        """Pause the companion if it is still active, with ``audit`` in the same transaction; False (and
        nothing written) when it no longer is: two overlapping runs pause and audit once."""
        ...

    def last_resumed(self, owner_id: UUID, companion_id: UUID) -> datetime | None:
        """When the companion was last resumed (its latest ``companion.resumed`` audit entry), if ever."""
        ...

    def cursor(self, job: str) -> UUID | None:
        """The last companion id the schedule ``job`` passed (``schedule_cursors``), None to start over."""
        ...

    def save_cursor(self, job: str, after: UUID | None) -> None: ...


class RateLimiter(Protocol):
    """Counts one request of a companion's user against its per-minute rate and daily interactions.

    One atomic round trip; raises RateLimited or QuotaExceeded (with the wait) when over, and
    DependencyUnavailable when the counters cannot be reached.
    """

    def admit(self, companion_id: UUID, user_id: str, *, per_minute: int, per_day: int) -> None: ...


class SessionStore(Protocol):
    """Companion session records (keyed inside one companion and user), with sliding expiry.

    Expiry is the store's ``expires_at``; a record whose expiry has passed is treated as gone even while
    it still exists (TTL deletion is lazy), so a visit to it starts a new session.
    """

    def touch(
        self, visit: SessionVisit, before_start: Callable[[SessionRecord | None], None] | None = None
    ) -> SessionTouch:
        """Create or refresh the visit's session atomically: concurrent touches never lose a count.
        ``before_start`` runs before a write that would start a session (a new key, or an expired one
        restarting), given the expired incarnation the start would replace (read consistently; None for a
        new key): it may raise to refuse the start (nothing is written then), and it is where that
        incarnation's statistics are folded, before the write that replaces it. The start is conditioned on
        that very incarnation (or on absence), so an incarnation is never overwritten unread.
        Raises DependencyUnavailable when the store cannot be reached or keeps refusing."""
        ...

    def live_sessions(self, companion_id: UUID, now: datetime) -> list[LiveSession]:
        """Every session of the companion, across its users, that expires after ``now``."""
        ...

    def count_live(self, companion_id: UUID, now: datetime, up_to: int) -> int:
        """How many of the companion's sessions expire after ``now``, counted up to ``up_to`` (from an
        eventually consistent index: a session started a moment ago may be missing)."""
        ...

    def count_user_live(self, companion_id: UUID, user_id: str, now: datetime, up_to: int) -> int:
        """How many of one user's sessions of the companion expire after ``now``, up to ``up_to``."""
        ...

    def expired(self, companion_id: UUID, now: datetime, limit: int) -> list[SessionRecord]:
        """Up to ``limit`` of the companion's sessions whose expiry passed by ``now`` and that still exist
        (TTL deletion is lazy), each read consistently."""
        ...

    def remove_expired(self, record: SessionRecord) -> bool:
        """Delete ``record`` if it is still that incarnation with that expiry; False when a request
        revived or restarted it since, or it is gone."""
        ...


class SessionLedger(Protocol):
    """What sessions leave in PostgreSQL: the companion's session limit, ``companion_users`` relationship
    statistics, and ``session_log`` (one row per finished session, so each is folded exactly once)."""

    def session_limits(self, companion_id: UUID) -> "Limits":
        """The companion's limits (``max_concurrent_sessions``, ``max_sessions_per_user``); the defaults
        when its stored config does not parse (logged: a server-side fault, not the caller's). Raises
        NotFound for an unknown companion."""
        ...

    def started(self, companion_id: UUID, user_id: str, at: datetime) -> None:
        """A session of ``user_id`` started at ``at`` (first and last interaction)."""
        ...

    def fold(self, companion_id: UUID, sessions: Sequence[SessionRecord]) -> int:
        """Log each finished session and add its requests to its user's interaction count, once: a session
        already logged is skipped. Answers how many were folded now."""
        ...


class UpkeepUnit(Protocol):
    """One companion's memory upkeep under its companion-wide tenant context, while the run holds the
    companion's lease. Every step is its own short transaction, bounded by ``limit`` rows and idempotent:
    a row it has done no longer matches it. A step that fails raises a CompanionMemoryError (what earlier
    steps committed stays)."""

    def expire(self, rules: RetentionRules, limit: int) -> int:
        """Forget (with history 'expired') live memories past their ``expires_at`` or the age limit;
        instructions have no age limit. Answers how many."""
        ...

    def decay(self, rules: RetentionRules, limit: int) -> int:
        """Lower the importance of live, unarchived memories (not instructions) by the time since their last
        decay, recall or creation, when that is at least ``decay_interval``. Answers how many."""
        ...

    def archive_unimportant(self, rules: RetentionRules, limit: int) -> int:
        """Archive (with history 'archived') live memories, not instructions, whose importance is below
        ``archive_below_importance``. Answers how many."""
        ...

    def duplicates(self, rules: RetentionRules, limit: int) -> DuplicateScan:
        """Up to ``limit`` live memories not compared since their last change, and the pairs each forms
        with the same user's live memories of the same embedding model at or above the similarity."""
        ...

    def consolidate(self, rules: RetentionRules, pair: DuplicatePair, keeper: UUID) -> bool:
        """Archive the pair's other memory (history 'consolidated') and link it ``consolidated_into``
        ``keeper``; False when it is no longer live (nothing written)."""
        ...

    def mark_compared(self, rules: RetentionRules, memory_ids: list[UUID]) -> None: ...

    def enforce_caps(self, rules: RetentionRules, limit: int) -> int:
        """Forget (history 'expired') the lowest-value memories of each user holding more than
        ``max_memories_per_user`` memories or ``max_content_bytes_per_user`` bytes, until under both:
        archived ones first, instructions last. Answers how many."""
        ...


class CompanionDirectory(Protocol):
    """The companions the schedules walk (the cleanup's upkeep and the analytics schedule share it). The
    walk across tenants yields ids only; a companion's owner and config are read in its own context."""

    def page(self, after: UUID | None, limit: int) -> list[UUID]:
        """The next companions that are not deleted, after ``after`` in id order, across every tenant."""
        ...

    def load(self, companion_id: UUID) -> ScheduledCompanion | None:
        """The companion's owner, status and stored config, read in its own tenant context (a deleted
        companion's too: its tombstone, which a pending purge needs); None when there is no such row."""
        ...

    def deleted_with_data(self, after: UUID | None, limit: int) -> list[UUID]:
        """Deleted companions whose purge is unfinished (PostgreSQL still holds their users' rows), after
        ``after`` in id order."""
        ...


class UpkeepStore(Protocol):
    def cursor(self, job: str) -> UUID | None: ...

    def save_cursor(self, job: str, after: UUID | None) -> None: ...

    def unit(self, companion_id: UUID) -> AbstractContextManager[UpkeepUnit | None]:
        """The companion's upkeep under its lease (taken on entry, released on exit, expiring by itself
        if the run dies), or None when another run holds the lease (the companion is left to it)."""
        ...

    def purge_forgotten(self, cutoff: datetime, max_rows: int) -> int:
        """Delete for good forgotten memories (every tenant) whose grace ended by ``cutoff``."""
        ...


class ImportKeyStore(Protocol):
    """The client keys of bulk-imported lines, per companion user: claimed before a line's memory is
    stored, completed with its memory's id after, released when storing failed."""

    def claim(
        self, scope: TenantScope, keys: Sequence[str], now: datetime, stale_before: datetime
    ) -> tuple[set[str], dict[str, UUID | None]]:
        """Claim the keys no one holds (or whose claim is older than ``stale_before``), in one round trip.
        Returns the keys claimed now and, for every other key, the memory it names (None while another
        import holds it)."""
        ...

    def complete(self, scope: TenantScope, memory_ids: dict[str, UUID]) -> None: ...

    def release(self, scope: TenantScope, keys: Sequence[str]) -> None: ...


# --- identity -----------------------------------------------------------------------------------------------


class IdentityStore(Protocol):
    """Owners, companions, companion users, API keys and the audit log.

    Each method is one transaction; an ``audit`` event passed along is written in it, so an action and its
    record of who did it commit together or not at all.
    """

    def create_owner(self, owner: "Owner", key: "StoredApiKey", audit: "AuditEvent") -> None: ...

    def create_companion(self, companion: "Companion", audit: "AuditEvent") -> None: ...

    def get_companion(self, owner_id: UUID, companion_id: UUID) -> "Companion | None":
        """The companion if it belongs to ``owner_id`` (another owner's reads as missing)."""
        ...

    def companion_of_key(self, key: "ApiKey") -> "Companion | None":
        """The companion a companion key acts for, read in that key's own tenant context."""
        ...

    def insert_api_key(self, key: "StoredApiKey", audit: "AuditEvent") -> None:
        """Raises ``Conflict`` when the prefix is taken (the caller draws a new key)."""
        ...

    def api_key_by_prefix(self, prefix: str) -> "StoredApiKey | None": ...

    def list_api_keys(self, owner_id: UUID, companion_id: UUID | None) -> list["ApiKey"]:
        """A companion's keys, or with ``companion_id`` None its owner keys (so too in the methods below)."""
        ...

    def revoke_api_key(
        self, owner_id: UUID, companion_id: UUID | None, key_id: UUID, at: datetime, audit: "AuditEvent"
    ) -> "ApiKey | None":
        """None when there is no such key. An owner key is revoked only if another stays usable, checked with
        the owner keys locked (``domain.identity.refuse_owner_lockout`` raises Conflict; nothing written)."""
        ...

    def rotate_api_key(
        self,
        owner_id: UUID,
        companion_id: UUID | None,
        key_id: UUID,
        successor: "StoredApiKey",
        grace_until: datetime,
        audit: "AuditEvent",
    ) -> "ApiKey | None":
        """Insert ``successor`` and give the old key ``grace_until``; None when the old key is not there
        (or no longer valid), in which case nothing is written."""
        ...

    def touch_api_key(self, owner_id: UUID, key_id: UUID, at: datetime, not_since: datetime) -> None:
        """Set last_used_at = at unless it is already after ``not_since`` (one write per interval)."""
        ...

    def companion_user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> "CompanionUser | None": ...

    def ensure_companion_user(
        self, owner_id: UUID, companion_id: UUID, user_id: str, at: datetime, audit: "AuditEvent | None"
    ) -> "CompanionUser":
        """The user's row, created with default permissions on first use; ``audit`` is written with it."""
        ...

    def update_companion_user(
        self,
        owner_id: UUID,
        companion_id: UUID,
        user_id: str,
        changes: "UserPermissions",
        at: datetime,
        audit: "AuditEvent",
    ) -> "CompanionUser": ...

    def audit_events(self, owner_id: UUID, companion_id: UUID | None = None) -> list["AuditEvent"]: ...

    def record_erasure(self, owner_id: UUID, companion_id: UUID, user_id: str, at: datetime) -> None:
        """Remember that the user was erased at ``at`` (by pseudonym: migrations/0013 ``erased_users``); a
        later erasure moves it forward, never back."""
        ...

    def erased_at(self, owner_id: UUID, companion_id: UUID, user_id: str) -> datetime | None:
        """When the user was last erased, None if never: tokens issued until then are refused."""
        ...


class CompanionStore(Protocol):
    """The companion lifecycle (domain/companions.py): an owner's companions, their version history, their
    users' relationship records. Reads name ``owner_id``: another owner's rows read as missing. Writes that
    take an ``audit`` event write it in the same transaction."""

    def list_companions(
        self, owner_id: UUID, statuses: Sequence[str], after: tuple[datetime, UUID] | None, limit: int
    ) -> list["Companion"]:
        """Newest first by (created_at, id), strictly after ``after``, with one of ``statuses``."""
        ...

    def save_version(self, companion: "Companion", expected_version: str, audit: "AuditEvent") -> bool:
        """Write ``companion``'s name, config, version and updated_at if the stored version is still
        ``expected_version`` and its status still ``companion.status``; the history row is written with it.
        False (nothing written) otherwise."""
        ...

    def set_status(
        self,
        owner_id: UUID,
        companion_id: UUID,
        expected: str,
        status: str,
        at: datetime,
        audit: "AuditEvent",
    ) -> "Companion | None":
        """Move the status from ``expected`` to ``status``; None (nothing written) if it is not that."""
        ...

    def versions(
        self, owner_id: UUID, companion_id: UUID, before: str | None, limit: int
    ) -> list["CompanionVersion"]:
        """Newest version first, strictly older than ``before``."""
        ...

    def version(self, owner_id: UUID, companion_id: UUID, version: str) -> "CompanionVersion | None": ...

    def users(
        self, owner_id: UUID, companion_id: UUID, after: str | None, limit: int
    ) -> list["CompanionUserDetail"]:
        """The companion's users by user_id, strictly after ``after``."""
        ...

    def user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> "CompanionUserDetail | None": ...

    def set_preferences(
        self,
        owner_id: UUID,
        companion_id: UUID,
        user_id: str,
        preferences: dict[str, Any],
        at: datetime,
        audit: "AuditEvent",
    ) -> "CompanionUserDetail":
        """Replace the user's preferences (the user is created if new)."""
        ...


class SigningKeyStore(Protocol):
    """The JWT signing key set (current, previous, next), kept where private keys may live."""

    def load(self) -> "SigningKeySet": ...

    def rotate(self) -> "SigningKeySet": ...


class TenantDataStore(Protocol):
    """A store that holds data of a companion's users. Erasing a user and deleting a companion reach
    every one of them (``wiring.tenant_data_stores``); a store added later that holds user data joins
    that list, or erasure leaves a trace behind.

    Both calls are idempotent (a second call removes nothing and says so) and answer what they removed,
    per kind of item, for the receipt: ``{"memories": 12, "memory_history": 30}``. Counts only, never
    content. Raise DependencyUnavailable when the store cannot be reached (the caller retries the whole
    erasure: everything already removed stays removed).
    """

    @property
    def name(self) -> str:
        """The store in the receipt: ``postgres``, ``redis``, ``dynamodb``."""
        ...

    def erase_user(self, owner_id: UUID, companion_id: UUID, user_id: str) -> dict[str, int]: ...

    def erase_companion(
        self, owner_id: UUID, companion_id: UUID, budget: "Budget | None" = None
    ) -> "StorePurge":
        """Remove the companion's data in short batches. With a ``budget``, stop before a batch once it is
        spent and answer ``finished=False``: a later call (the same, or the cleanup schedule's) resumes
        where this one stopped, as a store is purged in whatever order its batches come."""
        ...


class ErasureLedger(Protocol):
    """The records around an erasure: the companion's tombstone and the audit events."""

    def retire_companion(self, owner_id: UUID, companion_id: UUID, at: datetime, audit: "AuditEvent") -> bool:
        """Mark the companion deleted, destroy its wrapped data key, empty its config and revoke its API keys,
        with ``audit``, in one transaction; False (nothing written) when it was already deleted."""
        ...

    def record(self, audit: "AuditEvent") -> None: ...


class KeyShredder(Protocol):
    """Forgets a companion's data key (``EnvelopeCipher.shred``: the stored one and this process's cache)."""

    def shred(self, companion_id: UUID) -> None: ...


class TransferStore(Protocol):
    """What companion export and import need beyond the memory service."""

    def users_page(self, owner_id: UUID, companion_id: UUID, after: str | None, limit: int) -> list[str]:
        """The users with live memories, by user id, strictly after ``after``."""
        ...

    def relations_page(
        self, owner_id: UUID, companion_id: UUID, user_id: str, after: UUID | None, limit: int
    ) -> list[Relation]:
        """Up to ``limit`` of the user's relations between live memories, by id, strictly after ``after``."""
        ...

    def imported(self, scope: TenantScope, keys: Sequence[str]) -> dict[str, UUID]:
        """The memories that completed import keys of the scope's user name."""
        ...

    def archive(self, scope: TenantScope, memory_ids: Sequence[UUID], at: datetime) -> int:
        """Archive those of the scope's user's memories that are live and not archived yet (history
        'archived'); answers how many."""
        ...

    def import_target(self, owner_id: UUID, source_companion_id: UUID) -> "Companion | None":
        """The companion (not deleted) the owner imported the source into, if any."""
        ...

    def claim_target(
        self, owner_id: UUID, source_companion_id: UUID, now: datetime, stale_before: datetime
    ) -> bool:
        """Claim the right to create the source's companion: True when no one holds it (or a claim older than
        ``stale_before`` was never completed, or its companion was deleted since)."""
        ...

    def create_target(
        self, companion: "Companion", audit: "AuditEvent", source_companion_id: UUID, claimed_at: datetime
    ) -> None:
        """Create the companion and point the claim made at ``claimed_at`` at it, in one transaction (so a
        failure leaves neither); Conflict, nothing written, when that claim is no longer this import's."""
        ...

    def release_target(self, owner_id: UUID, source_companion_id: UUID, claimed_at: datetime) -> None:
        """Give up the claim made at ``claimed_at``, which created nothing."""
        ...
