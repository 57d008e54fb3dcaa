"""When sources disagree: the detection as a unit, and through ask() on the fixture pair
(tests/fixtures/disagree: two reports giving 4,200 and 3,100 container ships for one port and year)."""

from __future__ import annotations

import json
import shutil

import pytest

from helpers_core import ROOT
from qa.datatypes import Answer
from qa.disagree import differ, disagreement, kind, numbers
from qa.present import differ_line, to_json, to_text


PAIR = ROOT / "tests" / "fixtures" / "disagree"
SHIPS = "How many container ships did the Port of Veranda handle in 2024?"


@pytest.mark.parametrize("span,want", [
    ("1,700", "number"), ("approximately 1,700", "number"), ("hundreds", "number"), ("a dozen", "number"),
    ("31 percent", "number"), ("$145 million", "number"), ("2022", "date"), ("November 2022", "date"),
    ("Su-35", "name"), ("S-400", "name"), ("Caspian Sea", "name"), ("the lack of spare parts", None),
])
@pytest.mark.unit
def test_kind_of_a_span(span, want):
    assert kind(span) == want


@pytest.mark.unit
def test_number_values():
    assert numbers("approximately 1,700") == {1700.0}
    assert numbers("$145 million") == {145e6}
    assert numbers("hundreds of drones") == {"hundreds"}
    assert numbers("a dozen") == {12.0}
    assert numbers("Su-35") == set()


@pytest.mark.parametrize("a,b,what,want", [
    ("1,700", "hundreds", "number", True),
    ("1,700", "approximately 1,700", "number", False),
    ("31 percent", "31", "number", False),
    ("4,200", "3,100", "number", True),
    ("2022", "November 2022", "date", False),
    ("2022", "2023", "date", True),
    ("Su-35", "Su-35 jets", "name", False),
    ("Su-35", "Su-30SM", "name", True),
    ("Caspian Sea", "Black Sea", "name", True),
])
@pytest.mark.unit
def test_differ(a, b, what, want):
    assert differ(a, b, what) is want


def answer(span: str, doc: str, n: int, text: str | None = None) -> Answer:
    text = text or f"They say {span} here."
    start = text.index(span)
    return Answer(text=text, span=span, score=0.8, citation=n, start=0, end=len(text), span_start=start,
                  span_end=start + len(span), doc=doc)


@pytest.mark.unit
def test_answers_from_two_documents_that_differ_disagree():
    d = disagreement([answer("4,200", "a.txt", 1), answer("3,100", "b.txt", 2)])
    assert d is not None and d.kind == "number" and [a.span for a in d.answers] == ["4,200", "3,100"]


@pytest.mark.unit
def test_agreeing_same_document_other_kind_or_free_text_answers_do_not():
    assert disagreement([answer("1,700", "a.txt", 1), answer("approximately 1,700", "b.txt", 2)]) is None
    assert disagreement([answer("1,700", "a.txt", 1), answer("700", "a.txt", 2)]) is None  # one document
    assert disagreement([answer("1,700", "a.txt", 1), answer("Caspian Sea", "b.txt", 2)]) is None  # other kind
    assert disagreement([answer("spare parts", "a.txt", 1), answer("cheap labour", "b.txt", 2)]) is None
    assert disagreement([answer("1,700", "a.txt", 1)]) is None


@pytest.mark.unit
def test_one_answer_per_other_document_and_agreeing_ones_left_out():
    d = disagreement([answer("4,200", "a.txt", 1), answer("3,100", "b.txt", 2), answer("3,000", "b.txt", 3),
                      answer("4,200 ships", "c.txt", 4), answer("2,900", "d.txt", 5)])
    assert [(a.doc, a.span) for a in d.answers] == [("a.txt", "4,200"), ("b.txt", "3,100"), ("d.txt", "2,900")]


@pytest.fixture
def pair(tmp_path, fast):
    from qa.config import Settings
    from qa.pipeline import open_engine

    corpus = tmp_path / "corpus"
    shutil.copytree(PAIR, corpus)
    return open_engine(Settings(corpus=corpus, index=tmp_path / "index"), progress=False)


@pytest.mark.integration
def test_the_fixture_pair_disagrees_through_ask(pair):
    from qa.pipeline import ask

    result = ask(pair, SHIPS)
    d = result.disagreement
    assert d is not None and d.kind == "number"
    assert {(a.doc, a.span) for a in d.answers} == {("harbour-report.txt", "4,200"), ("shipping-review.txt", "3,100")}
    line = differ_line(result)
    assert line.startswith("Sources differ: [") and "“4,200”" in line and "“3,100”" in line
    assert line in to_text(result)
    data = json.loads(to_json(result))
    assert data["disagreement"]["kind"] == "number"
    assert {a["span"] for a in data["disagreement"]["answers"]} == {"4,200", "3,100"}
    for a in data["disagreement"]["answers"]:  # each cites the passage it quotes
        cited = next(c for c in data["citations"] if c["n"] == a["citation"])
        assert cited["doc"] == a["doc"] and a["text"] in cited["text"]
    assert ask(pair, "How many dock workers does the port employ?").disagreement is None
