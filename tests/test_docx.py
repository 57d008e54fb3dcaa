"""Word documents (.docx): paragraphs, headings and tables read in order, cited by line."""

from __future__ import annotations

import json
import zipfile

import pytest

from helpers_core import make_docx
from qa.cli import main
from qa.datatypes import QAError
from qa.load import SUFFIXES, load_corpus, load_document
from qa.split import split_document
from qa.web_uploads import UPLOAD_TYPES

# The document's lines as the loader gives them (1-based line numbers in the comments).
DOCX_LINES = [
    "Caspian Shipping Review",  # 1  Title style
    "Prepared for the analysts' desk.",  # 2
    "Routes",  # 3  Heading 1
    "Iranian drones cross the Caspian Sea by ship.",  # 4
    "The ships sail from Amirabad.",  # 5
    "Port | Ships per month",  # 6  table header row
    "Astrakhan | 12",  # 7
    "Makhachkala | 7",  # 8
    "Ports",  # 9  Heading 2
    "The drones are unloaded at the port of Makhachkala.",  # 10
]


REVIEW = [
    (0, "Caspian Shipping Review"),
    "Prepared for the analysts' desk.",
    (1, "Routes"),
    "Iranian drones cross the Caspian Sea by ship.",
    "The ships sail from Amirabad.",
    [("Port", "Ships per month"), ("Astrakhan", "12"), ("Makhachkala", "7")],
    (2, "Ports"),
    "The drones are unloaded at the port of Makhachkala.",
]


@pytest.mark.unit
def test_docx_paragraphs_headings_and_tables_in_order(tmp_path):
    make_docx(tmp_path / "review.docx", REVIEW)
    doc = load_document(tmp_path / "review.docx", tmp_path)
    assert doc.text.split("\n") == DOCX_LINES
    assert doc.title == "Caspian Shipping Review"  # the first heading, without a title property
    assert [doc.text[s:e] for s, e in doc.headings] == ["Caspian Shipping Review", "Routes", "Ports"]


@pytest.mark.unit
def test_docx_title_property_wins(tmp_path):
    make_docx(tmp_path / "review.docx", REVIEW, title_property="Caspian Review, 2024")
    assert load_document(tmp_path / "review.docx", tmp_path).title == "Caspian Review, 2024"


@pytest.mark.unit
def test_docx_passages_carry_their_heading_and_never_hold_one(tmp_path):
    make_docx(tmp_path / "review.docx", REVIEW)
    doc = load_document(tmp_path / "review.docx", tmp_path)
    passages = split_document(doc, sentences_per_passage=8, overlap=1)  # one passage per section
    assert [(p.heading, p.line, p.text.split("\n")[0]) for p in passages] == [
        ("", 2, "Prepared for the analysts' desk."),
        ("Routes", 4, "Iranian drones cross the Caspian Sea by ship."),
        ("Ports", 10, "The drones are unloaded at the port of Makhachkala."),
    ]
    assert "Astrakhan | 12" in passages[1].text  # a table row is text of its section
    assert all("Routes" not in p.text and "Ports" not in p.text.split("\n") for p in passages)


@pytest.mark.integration
def test_a_docx_answer_is_cited_at_its_line(tmp_path, fast, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    make_docx(corpus / "review.docx", REVIEW)
    rc = main(["ask", "--json", "-q", "--corpus", str(corpus), "--index", str(tmp_path / "index"),
               "At which port are the drones unloaded?"])
    obj = json.loads(capsys.readouterr().out)
    assert rc == 0
    best = obj["answers"][0]
    assert "Makhachkala" in best["span"] and best["line"] == 10 and best["page"] is None
    cited = obj["citations"][best["citation"] - 1]
    assert (cited["doc"], cited["line"], cited["heading"]) == ("review.docx", 10, "Ports")


@pytest.mark.parametrize("data", [b"PK\x03\x04 not really a zip", b"", b"plain text named docx"])
@pytest.mark.unit
def test_malformed_docx_is_one_line_error(tmp_path, data):
    (tmp_path / "bad.docx").write_bytes(data)
    with pytest.raises(QAError) as e:
        load_document(tmp_path / "bad.docx", tmp_path)
    assert str(e.value).startswith("bad.docx: unreadable Word document") and "\n" not in str(e.value)


@pytest.mark.unit
def test_a_zip_that_is_no_word_document_is_skipped_with_one_warning(tmp_path):
    with zipfile.ZipFile(tmp_path / "archive.docx", "w") as z:
        z.writestr("hello.txt", "not a Word document")
    make_docx(tmp_path / "review.docx", REVIEW)
    warnings: list[str] = []
    docs = load_corpus(tmp_path, warn=warnings.append)
    assert [d.id for d in docs] == ["review.docx"]
    assert len(warnings) == 1 and warnings[0].startswith("skipped archive.docx: unreadable Word document")


@pytest.mark.unit
def test_docx_is_loaded_and_accepted_as_an_upload():
    assert ".docx" in SUFFIXES and ".docx" in UPLOAD_TYPES
