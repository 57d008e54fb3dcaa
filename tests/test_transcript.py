"""The page's copy and export (qa.transcript) name a source as `qa ask` does: a PDF's by page and
line, a Word document's by line under its heading, with the passage's extent."""

from __future__ import annotations

import json
import re

import pytest

from helpers_core import make_docx, make_pdf
from qa.cli import main
from qa.present import from_dict, location, to_dict, to_text
from qa.transcript import conversation_markdown, reply_markdown
from test_citations import BRIEF_PAGES
from test_docx import REVIEW

pytestmark = pytest.mark.integration  # the real encoder and reader answer through the CLI

QUESTIONS = ("Where is the drone factory?", "At which port are the drones unloaded?")


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    make_pdf(folder / "brief.pdf", BRIEF_PAGES, title="Drone Brief")
    make_docx(folder / "review.docx", REVIEW)
    return folder


def ask(capsys, corpus, question: str, *extra: str) -> str:
    rc = main(["ask", "-q", "--corpus", str(corpus), "--index", str(corpus.parent / "index"), *extra, question])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def sources(md: str) -> dict[int, str]:
    """Each source line's location, as the Markdown's code span holds it."""
    return {int(n): where for n, where in re.findall(r"^\[(\d+)\] .* — `([^`]+)`$", md, flags=re.M)}


def test_export_names_sources_as_the_cli_does(corpus, fast, capsys):
    replies = []
    for question in QUESTIONS:
        data = json.loads(ask(capsys, corpus, question, "--json"))
        text = ask(capsys, corpus, question)
        md = reply_markdown(data)
        found = sources(md)
        assert found and set(found) == {a["citation"] for a in data["answers"]}
        for n, where in found.items():
            cited = data["citations"][n - 1]
            assert f"[{n}] {cited['title']} — {where}" in text.splitlines()  # the CLI's own line
            assert where == location(from_dict(data).citations[n - 1])
            if cited["heading"]:
                assert f"§ {cited['heading']}" in md.splitlines() and f"    § {cited['heading']}" in text
        replies.append(data)
    pdf, docx = (from_dict(r) for r in replies)
    assert "brief.pdf p. 3, line 2 (passage p" in sources(reply_markdown(replies[0]))[pdf.answers[0].citation]
    cited = docx.citations[docx.answers[0].citation - 1]
    assert sources(reply_markdown(replies[1]))[cited.n].startswith("review.docx:10 (passage ")
    assert cited.heading == "Ports" and "\n§ Ports\n" in reply_markdown(replies[1])
    assert sources(conversation_markdown(replies)) == {**sources(reply_markdown(replies[0])),
                                                      **sources(reply_markdown(replies[1]))}


def test_from_dict_gives_back_what_to_dict_took(corpus, fast, capsys):
    """The copy is formatted from the dict the page keeps: reading it back loses nothing it shows."""
    from qa.config import Settings
    from qa.pipeline import ask as pipeline_ask, open_engine

    engine = open_engine(Settings(corpus=corpus, index=corpus.parent / "index"), progress=False)
    for question in QUESTIONS + ("Which country won the 2022 FIFA World Cup?",):
        result = pipeline_ask(engine, question)
        back = from_dict(to_dict(result))
        assert back.citations == result.citations
        assert [(a.text, a.span, a.line, a.page, a.page_line, a.label, a.lacks) for a in back.answers] == [
            (a.text, a.span, a.line, a.page, a.page_line, a.label, a.lacks) for a in result.answers]
        assert back.abstention == result.abstention
        assert to_text(back) == to_text(result)
