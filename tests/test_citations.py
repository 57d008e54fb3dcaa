"""Citations point at the quote: its line, its page in a PDF, one citation per stretch of text."""

from __future__ import annotations

import pytest

import json
from types import SimpleNamespace

from helpers_core import doc_from_text, line_of, make_pdf
from qa.answer import cite
from qa.cli import main
from qa.datatypes import Answer, Hit, Result
from qa.load import load_document
from qa.present import location, to_text
from qa.split import split_document


# A three-page PDF whose second page is blank: page numbers must survive it.
BRIEF_PAGES = [
    ["Drone Trade Brief", "Iran sold drones to Russia in 2022.", "The deal was paid in cash."],
    [],
    ["Drone Production", "The drone factory is in Yelabuga, in Tatarstan.", "It builds Shahed drones under licence."],
]


def _ask_json(capsys, corpus, index, question: str) -> dict:
    rc = main(["ask", "--json", "-q", "--corpus", str(corpus), "--index", str(index), question])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


@pytest.mark.unit
def test_pdf_pages_are_separated_by_form_feeds(tmp_path):
    make_pdf(tmp_path / "brief.pdf", BRIEF_PAGES, title="Drone Brief")
    doc = load_document(tmp_path / "brief.pdf", tmp_path)
    pages = doc.text.split("\f")
    assert len(pages) == 3 and pages[1] == "\n"  # the blank page keeps its place
    assert pages[0] == "\n".join(BRIEF_PAGES[0]) + "\n"
    assert pages[2] == "\n".join(BRIEF_PAGES[2])


@pytest.mark.unit
def test_passages_of_a_pdf_know_their_page_and_line_on_it(tmp_path):
    make_pdf(tmp_path / "brief.pdf", BRIEF_PAGES)
    doc = load_document(tmp_path / "brief.pdf", tmp_path)
    passages = split_document(doc, sentences_per_passage=1, overlap=0)
    where = {p.text: (p.line, p.page, p.page_line) for p in passages}
    assert where["Iran sold drones to Russia in 2022."] == (2, 1, 2)
    assert where["The deal was paid in cash."] == (3, 1, 3)
    assert where["The drone factory is in Yelabuga, in Tatarstan."] == (6, 3, 2)
    assert where["It builds Shahed drones under licence."] == (7, 3, 3)
    assert {p.heading for p in passages} == {"", "Drone Production"}  # the first heading is the title


@pytest.mark.unit
def test_a_passage_over_a_page_break_locates_each_offset_on_its_page():
    doc = doc_from_text("Alpha one is here.\nBeta two is here.\n\fGamma three is here.\nDelta four is here.")
    whole = split_document(doc, sentences_per_passage=20, overlap=0)[0]
    assert (whole.page, whole.page_line, whole.heading) == (1, 1, "")
    gamma, delta = doc.text.index("Gamma"), doc.text.index("Delta")
    assert whole.locate(gamma) == (line_of(doc.text, gamma), 2, 1) == (3, 2, 1)
    assert whole.locate(delta) == (4, 2, 2)
    assert whole.locate(doc.text.index("Beta")) == (2, 1, 2)


@pytest.mark.unit
def test_text_without_form_feeds_has_no_pages():
    doc = doc_from_text("First line here.\nSecond line here.\n")
    p = split_document(doc)[0]
    assert (p.page, p.page_line) == (0, 0)
    assert p.locate(doc.text.index("Second")) == (2, 0, 0)


@pytest.mark.integration
def test_a_pdf_answer_is_cited_by_page_and_line(tmp_path, fast, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    make_pdf(corpus / "brief.pdf", BRIEF_PAGES, title="Drone Brief")
    obj = _ask_json(capsys, corpus, tmp_path / "index", "Where is the drone factory?")
    best = obj["answers"][0]
    assert "Yelabuga" in best["span"]
    assert (best["page"], best["page_line"], best["line"]) == (3, 2, 6)
    c = obj["citations"][best["citation"] - 1]
    assert (c["doc"], c["page"], c["page_line"]) == ("brief.pdf", 3, 2)
    assert c["passage_pages"][1] == 3
    main(["ask", "-q", "--corpus", str(corpus), "--index", str(tmp_path / "index"), "Where is the drone factory?"])
    out = capsys.readouterr().out
    assert "brief.pdf p. 3, line 2 (passage p" in out


def _hit(p, rank: int) -> Hit:
    return Hit(row=rank, passage=p, score=1.0 - rank / 10, rank=rank)


@pytest.mark.unit
def test_overlapping_passages_are_one_citation_and_answers_follow_it():
    text = "One fact here.\nTwo fact here.\nThree fact here.\nFour fact here.\nFive fact here.\nSix fact here.\n"
    doc = doc_from_text(text)
    a, b, c = split_document(doc, sentences_per_passage=2, overlap=1)[:3]  # a∩b, b∩c share a sentence
    other = split_document(doc_from_text(text, "u.txt"), sentences_per_passage=2, overlap=1)[0]
    hits = [_hit(c, 0), _hit(other, 1), _hit(a, 2), _hit(b, 3)]  # b joins a and c into one stretch
    start = text.index("Three")
    answer = Answer(text="Three fact here.", span="Three", score=0.9, citation=4, start=start, end=start + 16,
                    span_start=start, span_end=start + 5, doc="t.txt")
    index = SimpleNamespace(titles={"t.txt": "T", "u.txt": "U"})
    citations, (moved,) = cite(hits, [answer], index)
    assert [(x.n, x.doc) for x in citations] == [(1, "t.txt"), (2, "u.txt")]
    merged = citations[0]
    assert (merged.start, merged.end) == (a.start, c.end) and merged.text == text[a.start : c.end]
    assert (merged.passage_line, merged.passage_end_line) == (1, 4)
    assert moved.citation == 1 and moved.line == merged.line == 3
    assert citations[1].line == citations[1].passage_line == 1  # quoted by no answer: where its text starts
    assert location(merged) == "t.txt:3 (passage 1–4)"
    result = Result(question="q", answers=[moved], citations=citations, mode="bm25", timings_ms={})
    assert "[1] T — t.txt:3 (passage 1–4)" in to_text(result)


@pytest.mark.unit
def test_an_answer_lacks_only_what_its_whole_citation_does_not_mention():
    text = "Russia bought 1,700 drones.\nIt paid in cash.\nChina watched the trade.\nNothing more here.\n"
    doc = doc_from_text(text)
    a, b = split_document(doc, sentences_per_passage=2, overlap=1)[:2]  # b brings "China" in
    start = text.index("Russia")
    answer = Answer(text="Russia bought 1,700 drones.", span="1,700", score=0.49, citation=1, start=start,
                    end=start + 27, span_start=start + 14, span_end=start + 19, doc="t.txt", label="low",
                    lacks=["China", "2019"])
    index = SimpleNamespace(titles={"t.txt": "T"})
    _, (alone,) = cite([_hit(a, 0)], [answer], index)
    assert alone.lacks == ["China", "2019"]
    citations, (joined,) = cite([_hit(a, 0), _hit(b, 1)], [answer], index)
    assert len(citations) == 1 and "China" in citations[0].text and joined.lacks == ["2019"]
