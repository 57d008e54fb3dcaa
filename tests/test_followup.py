"""Follow-up questions: decided by the retrieval scores of the question alone against the question
with the conversation's last query, in both directions, and shown as "searched as"."""

from __future__ import annotations

import json

import pytest

from helpers_core import DRONES_QUESTION, ROOT, real_encoder, settings_for, template
from qa.followup import MAX_CONTEXT_CHARS, contextual_query, understand
from qa.index import load_index
from qa.present import to_dict, to_text

pytestmark = pytest.mark.integration

DIALOGUES = [json.loads(line) for line in (ROOT / "questions" / "followups.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    settings = settings_for(template(tmp_path_factory))
    return settings, load_index(settings)


@pytest.mark.parametrize("dialogue", DIALOGUES, ids=[d["question"] for d in DIALOGUES])
def test_each_written_dialogue_is_read_as_labelled(built, dialogue):
    settings, index = built
    decision = understand(index, real_encoder(), dialogue["question"], [dialogue["previous"]], settings)
    u = decision.understanding
    assert u.followup is dialogue["followup"], u.why
    if u.followup:
        assert u.query == contextual_query(dialogue["question"], dialogue["previous"])
        assert u.why.startswith("a follow-up")
    else:
        assert u.query == dialogue["question"]
        assert u.why.startswith("a new question")


def test_a_new_topic_is_searched_on_its_own_words(built):
    settings, index = built
    decision = understand(index, real_encoder(), "What is SEPAM?", [DRONES_QUESTION], settings)
    assert decision.understanding.query == "What is SEPAM?"
    assert "SEPAM" in decision.retrieval.hits[0].passage.text
    alone = understand(index, real_encoder(), "What is SEPAM?", [], settings)
    assert [h.row for h in decision.retrieval.hits] == [h.row for h in alone.retrieval.hits]


def test_a_real_follow_up_borrows_the_topic(built):
    settings, index = built
    decision = understand(index, real_encoder(), "Which port do they arrive at?", [DRONES_QUESTION], settings)
    assert decision.understanding.followup
    assert decision.understanding.query == f"Which port do they arrive at? {DRONES_QUESTION}"
    assert any("Makhachkala" in h.passage.text for h in decision.retrieval.hits[: settings.read])


def test_the_last_non_blank_query_is_the_context(built):
    settings, index = built
    history = ["What is SEPAM?", DRONES_QUESTION, "  "]
    decision = understand(index, real_encoder(), "Which port do they arrive at?", history, settings)
    assert decision.understanding.query.endswith(DRONES_QUESTION)


def test_without_history_nothing_is_borrowed_or_explained(built):
    settings, index = built
    for history in ([], ["", "   "]):
        u = understand(index, real_encoder(), "Which port do they arrive at?", history, settings).understanding
        assert (u.query, u.followup, u.why) == ("Which port do they arrive at?", False, "")


def test_a_long_chain_borrows_a_bounded_context():
    query = contextual_query("And then?", "word " * 500)
    assert len(query) <= len("And then? ") + MAX_CONTEXT_CHARS
    assert query.startswith("And then? word word")


def test_searched_as_is_shown_in_text_and_json(idx, fast):
    from qa.pipeline import ask, open_engine

    engine = open_engine(idx, progress=False)
    follow = ask(engine, "Which port do they arrive at?", history=[DRONES_QUESTION])
    text = to_text(follow)
    assert f"searched as: Which port do they arrive at? {DRONES_QUESTION}" in text
    data = to_dict(follow)
    assert data["followup"] is True and data["searched_as"].endswith(DRONES_QUESTION)
    assert data["followup_reason"].startswith("a follow-up")
    new = ask(engine, "What is SEPAM?", history=[DRONES_QUESTION])
    assert "searched as" not in to_text(new)
    assert to_dict(new)["searched_as"] == "What is SEPAM?" and to_dict(new)["followup"] is False


def test_the_reader_reads_a_follow_up_with_the_previous_content_words():
    from qa.followup import reader_question

    assert reader_question("Which port?", "How are Iranian drones shipped to Russia?") == \
        "Which port? Iranian drones shipped Russia"
    assert reader_question("Why?", "   ") == "Why?"


def test_a_follow_up_is_answered_not_the_previous_question(idx, fast):
    from qa.pipeline import ask, open_engine

    engine = open_engine(idx, progress=False)
    result = ask(engine, "Which port do they arrive at?", history=["How are Iranian drones shipped to Russia?"])
    assert result.understood.followup and "Makhachkala" in result.answers[0].span
    assert result.understood.read_as == "Which port do they arrive at? Iranian drones shipped Russia"
