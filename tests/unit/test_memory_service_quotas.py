"""The memory service's storage quotas (issue 4 item 7) over the in-memory store: which writes take quota,
which free it, and that a refused write leaves nothing behind. Concurrency and the PostgreSQL counters are
tested on the real database (tests/integration/test_memory_quotas.py)."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from companion_memory.domain.memory import MemoryService
from companion_memory.errors import QuotaExceeded
from companion_memory.models.memory import ListFilter, MemoryChanges, NewMemory
from companion_memory.models.tenancy import TenantScope
from tests.support.clock import FakeClock
from tests.support.embedders import HashEmbedder
from tests.support.memory_store import InMemoryMemoryStore

COMPANION = uuid4()
ALICE = TenantScope(companion_id=COMPANION, user_id="alice")
BOB = TenantScope(companion_id=COMPANION, user_id="bob")


def service(**limits: int) -> MemoryService:
    store = InMemoryMemoryStore({COMPANION: "standard"}, {COMPANION: {"limits": limits}})
    return MemoryService(store, HashEmbedder(), FakeClock(datetime(2026, 5, 1, tzinfo=UTC)))


def test_a_store_over_the_memory_quota_is_refused_and_writes_nothing() -> None:
    memories = service(max_memories_per_user=2)
    memories.store(ALICE, NewMemory(content="Alice plays the bassoon"))
    memories.store(ALICE, NewMemory(content="Alice is allergic to shellfish"))
    with pytest.raises(QuotaExceeded) as refused:
        memories.store(ALICE, NewMemory(content="Alice moved to Helsinki"))
    assert (refused.value.status, refused.value.code) == (429, "quota_exceeded")
    assert refused.value.details == {"quota": "max_memories_per_user", "limit": 2}
    assert len(memories.list(ALICE, ListFilter()).items) == 2


def test_the_quota_is_per_user() -> None:
    memories = service(max_memories_per_user=1)
    memories.store(ALICE, NewMemory(content="Alice plays the bassoon"))
    assert memories.store(BOB, NewMemory(content="Bob plays the bassoon")).outcome == "created"


def test_a_reinforced_duplicate_takes_no_quota() -> None:
    memories = service(max_memories_per_user=1)
    memories.store(ALICE, NewMemory(content="Alice loves green tea"))
    assert memories.store(ALICE, NewMemory(content="Alice loves green tea")).outcome == "reinforced"


def test_bytes_count_as_utf8_octets_and_an_update_may_shrink_but_not_grow_past_the_quota() -> None:
    memories = service(max_content_bytes_per_user=12)
    stored = memories.store(ALICE, NewMemory(content="Zoë é")).memory  # 7 octets for 5 characters
    with pytest.raises(QuotaExceeded):
        memories.update(ALICE, stored.id, MemoryChanges(expected_version=1, content="Zoë éé ééé"))
    assert memories.update(ALICE, stored.id, MemoryChanges(expected_version=1, content="Zoë")).version == 2
    with pytest.raises(QuotaExceeded):
        memories.store(ALICE, NewMemory(content="x" * 9))


def test_forget_frees_quota_and_restore_must_fit_again() -> None:
    memories = service(max_memories_per_user=1)
    first = memories.store(ALICE, NewMemory(content="Alice plays the bassoon")).memory
    memories.forget(ALICE, first.id, 1)
    memories.store(ALICE, NewMemory(content="Alice is allergic to shellfish"))
    with pytest.raises(QuotaExceeded):
        memories.restore(ALICE, first.id, 2)
