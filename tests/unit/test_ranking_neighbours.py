"""Neighbouring turns: the pure loan rule of domain.ranking, and recall lending through the service."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from companion_memory.domain import ranking
from companion_memory.domain.memory import MemoryPolicy, MemoryService
from companion_memory.models.memory import NewMemory, RecallQuery
from companion_memory.models.tenancy import TenantScope
from tests.support.clock import FakeClock
from tests.support.embedders import HashEmbedder
from tests.support.memory_store import InMemoryMemoryStore

SITTING = datetime(2025, 3, 4, 19, 0, tzinfo=UTC)

# --- the loan rule -----------------------------------------------------------------------------------------


def test_a_neighbour_borrows_the_share_of_its_hits_score() -> None:
    assert ranking.lent_scores({"hit": 0.8}, [("hit", "next")], 0.5) == {"next": pytest.approx(0.4)}


def test_a_neighbour_of_two_hits_keeps_the_better_loan() -> None:
    lent = ranking.lent_scores({"a": 0.8, "b": 0.6}, [("b", "n"), ("a", "n")], 0.5)
    assert lent == {"n": pytest.approx(0.4)}


def test_a_loan_is_always_below_the_hit_that_made_it() -> None:
    # Given the largest share allowed and the best possible hit, Then the loan is still lower
    lent = ranking.lent_scores({"hit": 1.0}, [("hit", "n")], 0.999)
    assert lent["n"] < 1.0


def test_pairs_of_unknown_hits_and_a_hit_with_itself_lend_nothing() -> None:
    assert ranking.lent_scores({"hit": 0.9}, [("other", "n"), ("hit", "hit")], 0.5) == {}


@pytest.mark.parametrize("share", [-0.1, 1.0, 1.5])
def test_a_share_outside_0_to_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="neighbour share"):
        ranking.lent_scores({"hit": 0.9}, [("hit", "n")], share)


# --- through the service -----------------------------------------------------------------------------------


class Conversation:
    def __init__(self, **policy: object) -> None:
        self.companion = uuid4()
        self.store = InMemoryMemoryStore({self.companion: "standard"})
        self.clock = FakeClock(datetime(2025, 7, 1, tzinfo=UTC))
        self.service = MemoryService(
            self.store,
            HashEmbedder(),
            self.clock,
            policy=MemoryPolicy(**policy),  # type: ignore[arg-type]
        )

    def scope(self, user: str = "priya") -> TenantScope:
        return TenantScope(companion_id=self.companion, user_id=user)

    def say(self, text: str, at: datetime, user: str = "priya", **fields: object) -> str:
        new = NewMemory(content=text, occurred_at=at, **fields)  # type: ignore[arg-type]
        return str(self.service.store(self.scope(user), new).memory.id)

    def recall(self, text: str, user: str = "priya", **fields: object) -> list[tuple[str, float]]:
        query = RecallQuery(query=text, **fields)  # type: ignore[arg-type]
        return [(str(m.id), m.score) for m in self.service.recall(self.scope(user), query).memories]


def sitting(chat: Conversation, user: str = "priya") -> dict[str, str]:
    """Juno asks, the user answers with a name only, and unrelated small talk on other days."""
    ids = {
        "question": chat.say("Juno: what is your sister called?", SITTING, user),
        "answer": chat.say("Priya: Anya, she lives in Tallinn now", SITTING + timedelta(minutes=1), user),
    }
    for day, text in enumerate(
        ["Priya: long day at work", "Priya: the bus was late again", "Juno: sleep well"]
    ):
        ids[f"chat{day}"] = chat.say(text, SITTING + timedelta(days=day + 1), user)
    return ids


def test_the_turn_after_the_match_joins_the_list_just_below_it() -> None:
    # Given the answer shares no word with the question, and neighbours lend 0.9 of a hit's score
    chat = Conversation(neighbour_share=0.9, neighbour_hits=1)
    ids = sitting(chat)
    # When recalled with room for two
    ranked = chat.recall("what is her sister called", limit=2)
    # Then the answer follows the turn that matched, at 0.9 of its score
    assert [memory for memory, _ in ranked] == [ids["question"], ids["answer"]]
    assert ranked[1][1] == pytest.approx(0.9 * ranked[0][1])


def test_without_a_share_the_answer_ranks_on_its_own_words_and_nothing_extra_is_asked() -> None:
    chat = Conversation(neighbour_share=0.0)
    ids = sitting(chat)
    ranked = chat.recall("what is her sister called", limit=2)
    assert ranked[0][0] == ids["question"]
    assert ids["answer"] not in [memory for memory, _ in ranked]
    assert chat.store.neighbour_calls == []


def test_a_neighbour_that_scores_better_on_its_own_keeps_its_own_score() -> None:
    # Given two adjacent turns that both match well, and a small share
    def told(chat: Conversation) -> list[tuple[str, float]]:
        chat.say("Priya: my sister Anya got the job", SITTING)
        chat.say("Juno: Anya got the job? tell your sister well done", SITTING + timedelta(minutes=1))
        chat.say("Priya: the bus was late again", SITTING + timedelta(days=2))
        return chat.recall("sister Anya job")

    lending = told(Conversation(neighbour_share=0.1, neighbour_hits=3))
    plain = told(Conversation(neighbour_share=0.0))
    # Then lending changes nothing: each turn's own score is above a tenth of the other's
    assert [s for _, s in lending] == [s for _, s in plain]
    assert plain[1][1] > 0.1 * plain[0][1]


def test_a_turn_outside_the_window_is_no_neighbour() -> None:
    chat = Conversation(neighbour_share=0.9, neighbour_hits=1, neighbour_window=timedelta(minutes=10))
    question = chat.say("Juno: what is your sister called?", SITTING)
    later = chat.say("Priya: Anya, she lives in Tallinn now", SITTING + timedelta(minutes=11))
    ranked = chat.recall("what is her sister called", limit=5)
    assert ranked[0][0] == question
    lent = [score for memory, score in ranked if memory == later]
    assert lent == [] or lent[0] < 0.9 * ranked[0][1] - 1e-9


def test_only_the_first_hits_lend() -> None:
    # Given two matching turns in two sittings, each followed by a wordless answer; one hit lends
    chat = Conversation(neighbour_share=0.9, neighbour_hits=1)
    chat.say("Juno: what is your sister called, and your sister's job?", SITTING)
    first_answer = chat.say("Priya: Anya", SITTING + timedelta(minutes=1))
    chat.say("Juno: what is your sister called?", SITTING + timedelta(days=30))
    second_answer = chat.say("Priya: Ilse", SITTING + timedelta(days=30, minutes=1))
    ranked = dict(chat.recall("sister called sister job", limit=10))
    top = max(ranked.values())
    assert ranked[first_answer] == pytest.approx(0.9 * top)
    assert ranked.get(second_answer, 0.0) < 0.9 * top - 1e-9
    assert len(chat.store.neighbour_calls) == 1
    assert len(chat.store.neighbour_calls[0]) == 1


def test_neighbours_keep_to_the_query_filters_and_skip_forgotten_turns() -> None:
    # Given the wordless answer is an experience, the matching turn a fact
    chat = Conversation(neighbour_share=0.9, neighbour_hits=1)
    question = chat.say("Juno: what is your sister called?", SITTING, type="fact")
    answer = chat.say("Priya: Anya", SITTING + timedelta(minutes=1), type="experience")
    chat.say("Priya: the bus was late again", SITTING + timedelta(days=2), type="fact")
    query = "what is her sister called"
    assert answer in [memory for memory, _ in chat.recall(query)]
    # When asked for facts only, or for a time before the answer, Then it is not lent to
    assert answer not in [memory for memory, _ in chat.recall(query, types=("fact",))]
    assert [m for m, _ in chat.recall(query, until=SITTING + timedelta(seconds=30))] == [question]
    # Nor once it is forgotten
    chat.service.forget(chat.scope(), UUID(answer), 1)
    assert answer not in [memory for memory, _ in chat.recall(query)]


def test_another_users_adjacent_turn_is_never_a_neighbour() -> None:
    # Given bob said something one minute after alice's matching turn
    chat = Conversation(neighbour_share=0.9, neighbour_hits=3)
    chat.say("Juno: what is your sister called?", SITTING, user="alice")
    bobs = chat.say("Bob: my PIN is 4471", SITTING + timedelta(minutes=1), user="bob")
    ranked = chat.recall("what is her sister called", user="alice")
    assert bobs not in [memory for memory, _ in ranked]
    assert all(a[0] != bobs for call in chat.store.neighbour_calls for a in call)


def test_a_lifted_neighbour_counts_an_access() -> None:
    chat = Conversation(neighbour_share=0.9, neighbour_hits=1)
    ids = sitting(chat)
    chat.recall("what is her sister called", limit=2)
    assert [str(m) for m in chat.store.touched[-1]] == [ids["question"], ids["answer"]]


@pytest.mark.parametrize(
    "fields",
    [
        {"neighbour_share": 1.0},
        {"neighbour_share": -0.1},
        {"neighbour_hits": 0},
        {"neighbour_window": timedelta(0)},
    ],
)
def test_a_policy_with_a_share_of_1_or_more_no_hits_or_no_window_is_refused(
    fields: dict[str, object],
) -> None:
    with pytest.raises(ValueError, match="neighbour"):
        MemoryPolicy(**fields)  # type: ignore[arg-type]
