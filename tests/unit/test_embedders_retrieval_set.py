"""The retrieval bench's scorer (bench/retrieval/metrics.py) and its labelled set (bench/retrieval/data)."""

import hashlib
import json
import re
from collections import Counter

import pytest

from bench.retrieval import generate, generate_v3
from bench.retrieval.dataset import load_memories, load_questions
from bench.retrieval.metrics import recall_at_k, reciprocal_rank, score

# --- metrics -----------------------------------------------------------------------------------------------


def test_recall_at_k_counts_the_share_of_answers_in_the_first_k() -> None:
    ranked = ["a", "b", "c", "d"]

    assert recall_at_k(ranked, ["c"], 2) == 0.0
    assert recall_at_k(ranked, ["c"], 3) == 1.0
    assert recall_at_k(ranked, ["a", "d"], 3) == 0.5
    assert recall_at_k(ranked, ["a", "d"], 10) == 1.0


def test_reciprocal_rank_is_taken_at_the_first_answer_found_and_zero_when_none_is() -> None:
    assert reciprocal_rank(["a", "b", "c"], ["c", "b"]) == 0.5
    assert reciprocal_rank(["a", "b", "c"], ["z"]) == 0.0


def test_a_question_without_answers_or_a_k_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="answer"):
        recall_at_k(["a"], [], 5)
    with pytest.raises(ValueError, match="k must"):
        recall_at_k(["a"], ["a"], 0)
    with pytest.raises(ValueError, match="no questions"):
        score([])


def test_score_averages_over_questions() -> None:
    # Given one question answered first, one answered sixth, one not at all
    ranked = [f"m{i}" for i in range(12)]
    results = [(ranked, ["m0"]), (ranked, ["m5"]), (ranked, ["x"])]

    scores = score(results)

    assert scores.questions == 3
    assert scores.recall_at_5 == pytest.approx(1 / 3)
    assert scores.recall_at_10 == pytest.approx(2 / 3)
    assert scores.mrr == pytest.approx((1 + 1 / 6) / 3)


# --- the labelled set --------------------------------------------------------------------------------------


def test_the_committed_files_are_exactly_what_the_generator_writes() -> None:
    # A hand edit of data/ (or a generator change without regenerating) would silently change the bench.
    for name, text in generate.render(generate.SEED).items():
        assert (generate.DATA_DIR / name).read_text() == text, name


def test_the_set_has_enough_users_questions_and_every_kind() -> None:
    questions = load_questions()
    users = {m.user_id for m in load_memories()}

    assert len(users) >= 8
    assert len(questions) >= 300
    assert set(Counter(q.kind for q in questions)) == {
        "paraphrase",
        "temporal",
        "multi_hop",
        "distractor",
        "lexical",
    }


def test_version_1_is_kept_byte_for_byte_as_the_start_of_the_files() -> None:
    # Given the digests of v1's 410 memory lines and 350 question lines as they were committed
    v1 = {
        "memories.jsonl": (410, "1f84d3ead1c0a6d38fedf2a2a0565ed345ed5b1de76d4771bd16d5ffa16fc60b"),
        "questions.jsonl": (350, "a29168a72b1e5483c9ad24332720d12d380a52f4dcfc729e3335cdf361838553"),
    }

    for name, (lines, digest) in v1.items():
        # When the first lines of the current file are hashed
        head = "".join((generate.DATA_DIR / name).read_text().splitlines(keepends=True)[:lines])

        # Then they are v1's, unchanged (ids, wording, dates and split alike)
        assert hashlib.sha256(head.encode()).hexdigest() == digest, name


def test_every_user_has_between_15_and_25_chit_chat_memories_besides_v1_s_small_talk() -> None:
    per_user = Counter(m.user_id for m in load_memories() if m.metadata["topic"] == "chit_chat")

    assert len(per_user) == len(generate.PEOPLE)
    assert all(15 <= n <= 25 for n in per_user.values()), per_user


def test_lexical_questions_repeat_a_word_that_is_rare_among_their_user_s_memories() -> None:
    # A lexical question is asked the way people ask about a named thing: it shares with its answer a word
    # (name, code, number, brand) found in at most two of that user's memories, not just common words.
    memories = load_memories()
    lexical = [q for q in load_questions() if q.kind == "lexical"]

    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z0-9]+", text.lower()))

    assert len(lexical) >= 80
    for q in lexical:
        own = [m for m in memories if m.user_id == q.user_id]
        frequency = Counter(w for m in own for w in words(m.content))
        answers = set().union(*(words(m.content) for m in own if m.id in q.answer_ids))
        assert any(frequency[w] <= 2 for w in words(q.question) & answers), q.question


def test_every_answer_and_distractor_is_a_memory_of_the_question_s_own_user() -> None:
    owner = {m.id: m.user_id for m in load_memories()}

    for q in load_questions():
        assert q.answer_ids, q.id
        assert all(owner[i] == q.user_id for i in (*q.answer_ids, *q.distractor_ids)), q.id
        assert not set(q.answer_ids) & set(q.distractor_ids), q.id


def test_temporal_answers_fall_inside_their_window_and_multi_hop_needs_two_memories() -> None:
    memories = {m.id: m for m in load_memories()}

    for q in load_questions():
        if q.kind == "temporal":
            assert q.since is not None
            assert q.until is not None
            assert all(q.since <= memories[i].occurred_at < q.until for i in q.answer_ids), q.id
        if q.kind == "multi_hop":
            assert len(q.answer_ids) == 2, q.id


def test_the_split_holds_out_about_a_third_of_the_questions_for_testing() -> None:
    questions = load_questions()
    test = load_questions(split="test")

    assert 0.2 < len(test) / len(questions) < 0.4
    assert len(load_questions(split="tune")) + len(test) == len(questions)
    manifest = json.loads((generate.DATA_DIR / "manifest.json").read_text())
    assert manifest["by_split"] == {"tune": len(questions) - len(test), "test": len(test)}


def test_memories_keep_the_speaker_s_name_in_the_text() -> None:
    names = {p.slug: p.name for p in generate.PEOPLE}

    for memory in load_memories():
        if memory.metadata["topic"].endswith("_event"):
            continue  # the second memory of a chain names the pet, sibling or partner instead
        assert names[memory.user_id.removeprefix("user-")] in memory.content, memory.id


# --- data set v3: conversations as memories (bench/retrieval/README.md, "Version 3") ------------------------

V3 = generate_v3.DATA_DIR


def test_v3_s_committed_files_are_exactly_what_its_generator_writes() -> None:
    for name, text in generate_v3.render(generate_v3.SEED).items():
        assert (V3 / name).read_text() == text, name


def test_v3_asks_400_questions_of_ten_users_in_the_proportions_fixed_by_its_design() -> None:
    questions = load_questions(V3)

    per_user = Counter((q.user_id, q.kind) for q in questions)

    assert len({q.user_id for q in questions}) == 10
    assert len(questions) == 400
    for user in {q.user_id for q in questions}:
        assert per_user[(user, "paraphrase")] == 16
        assert per_user[(user, "lexical")] == 10
        assert per_user[(user, "temporal")] == 6
        assert per_user[(user, "multi_hop")] == 4
        assert per_user[(user, "distractor")] == 4


def test_v3_memories_are_conversation_turns_with_the_speaker_s_name_in_front() -> None:
    names = {f"user-{p.slug}": p.name for p in generate.PEOPLE}
    memories = load_memories(V3)

    for m in memories:
        speaker = m.metadata["speaker"]
        expected = names[m.user_id] if speaker == "user" else generate_v3.COMPANION
        assert m.content.startswith(f"{expected}: "), m.id
        # a store of raw turns judges nothing: one type, the type's default importance
        assert (m.type, m.importance) == ("experience", 4), m.id
    per_user = Counter(m.user_id for m in memories)
    assert set(per_user.values()) == {194}


def test_v3_is_mostly_chit_chat_and_juno_s_replies_as_a_real_store_of_turns_is() -> None:
    memories = load_memories(V3)

    chit_chat = sum(m.metadata["topic"] == "chit_chat" for m in memories)
    companion = sum(m.metadata["speaker"] == "companion" for m in memories)

    assert chit_chat / len(memories) > 0.6
    assert companion / len(memories) > 0.4


def test_v3_buries_about_half_of_the_facts_in_longer_turns() -> None:
    # Given the user turns that questions are answered by, and the bare sentences the generator starts from
    memories = {m.id: m for m in load_memories(V3)}
    answers = {a for q in load_questions(V3) for a in q.answer_ids}
    clauses = [c.split("{")[0].strip() for c in generate_v3.PREFIX] + [
        c.split("{")[0].strip() for c in generate_v3.SUFFIX
    ]

    buried = sum(any(c and c in memories[a].content for c in clauses) for a in answers)

    assert 0.35 < buried / len(answers) < 0.65


def test_v3_lexical_questions_name_a_word_rare_among_their_user_s_turns() -> None:
    memories = load_memories(V3)
    lexical = [q for q in load_questions(V3) if q.kind == "lexical"]

    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z0-9]+", text.lower()))

    for q in lexical:
        own = [m for m in memories if m.user_id == q.user_id]
        frequency = Counter(w for m in own for w in words(m.content))
        answers = set().union(*(words(m.content) for m in own if m.id in q.answer_ids))
        assert any(frequency[w] <= 2 for w in words(q.question) & answers), q.question


def test_v3_answers_and_distractors_are_the_user_s_own_and_echoes_are_never_answers() -> None:
    memories = {m.id: m for m in load_memories(V3)}

    for q in load_questions(V3):
        assert all(memories[i].user_id == q.user_id for i in (*q.answer_ids, *q.distractor_ids)), q.id
        assert not set(q.answer_ids) & set(q.distractor_ids), q.id
        assert all(memories[i].metadata["speaker"] == "user" for i in q.answer_ids), q.id


def test_v3_temporal_windows_hold_one_session_and_multi_hop_needs_two_sessions() -> None:
    memories = load_memories(V3)
    by_id = {m.id: m for m in memories}

    for q in load_questions(V3):
        if q.kind == "temporal":
            assert q.since is not None
            assert q.until is not None
            inside = {
                m.metadata["session"]
                for m in memories
                if m.user_id == q.user_id and q.since <= m.occurred_at < q.until
            }
            assert inside == {by_id[q.answer_ids[0]].metadata["session"]}, q.id
        if q.kind == "multi_hop":
            first, second = (by_id[i] for i in q.answer_ids)
            assert first.metadata["session"] < second.metadata["session"], q.id


def test_v3_split_holds_out_about_a_third_of_its_questions() -> None:
    questions = load_questions(V3)
    test = load_questions(V3, split="test")

    assert 0.2 < len(test) / len(questions) < 0.4
    manifest = json.loads((V3 / "manifest.json").read_text())
    assert manifest["by_split"] == {"tune": len(questions) - len(test), "test": len(test)}
