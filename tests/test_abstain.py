"""Abstention says why in plain words (a name no document mentions; a match too weak) and offers the
nearest passage, in the text, the JSON and (tests/test_ui.py) the page."""

from __future__ import annotations

import json

import pytest

from helpers_core import settings_for, template
from qa.abstain import explain, unmentioned
from qa.datatypes import Answer, Citation
from qa.index import load_index
from qa.present import location, quote_location, to_dict, to_json, to_text

NEAR = Citation(n=1, doc="a.txt", title="A", passage=0, start=0, end=10, line=7, text="Some text.")
# The nearest passage in a PDF: its quote on page 3, line 2 of that page (line 58 of the document).
NEAR_PDF = Citation(n=2, doc="brief.pdf", title="Brief", passage=4, start=900, end=960, line=58, text="Some text.",
                    passage_line=57, passage_end_line=59, page=3, page_line=2, passage_pages=(3, 3))


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return load_index(settings_for(template(tmp_path_factory)))


@pytest.mark.integration
@pytest.mark.parametrize("question,missing", [
    ("Which country won the 2022 FIFA World Cup?", ["FIFA", "Cup"]),  # 2022 and "World" are in the documents
    ("What is the capital of France?", ["France"]),
    ("How many drones did Russia buy in 2031?", ["2031"]),
    ("What does the Chinese government think?", []),  # "China" is mentioned: the same stem
    ("What did Ankara buy from Caracas?", []),  # capitals of countries the documents name (Turkey, Venezuela)
    ("What did Hanoi buy from Beijing?", ["Hanoi"]),  # China is named, Vietnam is not
    ("What is SEPAM?", []),
    ("how many drones?", []),  # names nothing
    # misspelt by one edit, from 5 letters: a letter added, dropped, changed, or two swapped
    ("Which drones reach Makhachkalla?", []),
    ("Which drones reach Mahachkala?", []),
    ("Which drones cross the Caspain Sea?", []),
    ("Which drones reach Makhachkola?", []),
    ("Which drones reach Makachkola?", ["Makachkola"]),  # two edits: another name
    ("What did Iraq buy?", ["Iraq"]),  # one edit from "Iran", but under 5 letters: short names differ so
    ("Who sold drones to Zimbabwe?", ["Zimbabwe"]),
])
def test_names_no_document_mentions(index, question, missing):
    assert unmentioned(question, index) == missing


@pytest.mark.integration
def test_unmentioned_name_is_the_reason_and_the_nearest_passage_is_offered(index):
    a = explain("Which country won the 2022 FIFA World Cup?", index, [NEAR], best=0.1, threshold=0.48)
    assert a.reason == "unmentioned" and a.missing == ["FIFA", "Cup"] and a.nearest == 1
    assert a.text == ("The documents do not answer this question: no document mentions “FIFA” or “Cup”. "
                      "The nearest passage is [1], a.txt:7.")


@pytest.mark.integration
def test_weak_match_says_how_weak(index):
    a = explain("What is SEPAM?", index, [NEAR], best=0.29191, threshold=0.480013)
    assert a.reason == "weak" and (a.best, a.threshold) == (0.2919, 0.48)
    assert "the best match is too weak (the best answer found has confidence 0.29; an answer needs 0.48)" in a.text
    none = explain("What is SEPAM?", index, [], best=None, threshold=0.5)
    assert "no answer found reaches the confidence needed, 0.50" in none.text
    assert none.text.endswith("No passage came close.") and none.nearest is None


@pytest.mark.unit
def test_the_nearest_passage_of_a_pdf_is_named_by_page_and_line():
    """A PDF's document line means nothing to a reader: the offer names the page, as citations do."""
    weak = explain("What is SEPAM?", None, [NEAR_PDF], best=0.2, threshold=0.5, missing=[])
    assert weak.text.endswith("The nearest passage is [2], brief.pdf p. 3, line 2.") and weak.nearest == 2
    unnamed = explain("Who won the 2031 FIFA Cup?", None, [NEAR_PDF], best=0.2, threshold=0.5, missing=["FIFA"])
    assert unnamed.text == ("The documents do not answer this question: no document mentions “FIFA”. "
                            "The nearest passage is [2], brief.pdf p. 3, line 2.")
    assert quote_location(NEAR_PDF) in location(NEAR_PDF)  # the same words as the citation list


@pytest.mark.unit
def test_a_weak_match_names_the_best_answer_found_and_where_it_stands():
    lead = Answer(text="In late 2001, Russia signed an arms deal.", span="2001", score=0.2866, citation=2, start=900,
                  end=941, span_start=908, span_end=912, label="low", doc="brief.pdf", line=58, page=3, page_line=2)
    weak = explain("When was the deal signed?", None, [NEAR, NEAR_PDF], best=0.2866, threshold=0.41, missing=[],
                   lead=lead)
    assert weak.reason == "weak" and weak.lead == lead and weak.nearest == 2  # its passage, not the top one
    assert weak.text == ("The documents do not answer this question: the best match is too weak (the best answer "
                         "found, “2001”, has confidence 0.29; an answer needs 0.41). It stands in [2], brief.pdf "
                         "p. 3, line 2.")
    unnamed = explain("Who won the 2031 FIFA Cup?", None, [NEAR], best=0.2, threshold=0.5, missing=["FIFA"], lead=lead)
    assert unnamed.lead is None and unnamed.nearest == 1 and "2001" not in unnamed.text
    assert explain("Why?", None, [NEAR], best=None, threshold=0.5, missing=[], lead=lead).lead is None


@pytest.mark.integration
def test_ask_explains_in_text_and_json(idx, fast):
    from qa.pipeline import ask, open_engine

    engine = open_engine(idx, progress=False)
    result = ask(engine, "Which country won the 2022 FIFA World Cup?")
    assert result.abstained and result.abstention.reason == "unmentioned"
    text = to_text(result)
    assert "A: The documents do not answer this question: no document mentions “FIFA” or “Cup”." in text
    assert f"The nearest passage is [1], {result.citations[0].doc}:{result.citations[0].line}." in text
    data = json.loads(to_json(result))
    assert data["abstention"]["reason"] == "unmentioned" and data["abstention"]["nearest"] == 1
    assert data["message"] == result.abstention.text
    answered = ask(engine, "Through which sea are Iranian drones shipped to Russia?")
    assert answered.abstention is None and to_dict(answered)["abstention"] is None
