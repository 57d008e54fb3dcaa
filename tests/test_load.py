"""Step 1, loading: formats, titles, folders, ids, hidden and unreadable files, errors."""

from __future__ import annotations

import os

import pytest

from helpers_core import CORPUS, DOC_A, DOC_B, copy_corpus, make_pdf
from qa.load import corpus_files, fingerprint, load_corpus, load_document
from qa.datatypes import QAError
from qa.split import split_document

pytestmark = pytest.mark.unit


def _load_one(tmp_path, name: str, data: bytes | str):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return load_document(path, tmp_path)


# ------------------------------------------------------------------ formats and titles


def test_txt_text_is_exact_and_title_is_first_nonempty_line(tmp_path):
    doc = _load_one(tmp_path, "notes.txt", "\n\n  Drone Deliveries  \nIran sent drones.\nRussia paid.\n")
    assert doc.id == "notes.txt"
    assert doc.title == "Drone Deliveries"
    assert doc.text == "\n\n  Drone Deliveries  \nIran sent drones.\nRussia paid.\n"
    import hashlib

    assert doc.sha256 == hashlib.sha256((tmp_path / "notes.txt").read_bytes()).hexdigest()


def test_real_corpus_documents_load_with_their_titles():
    docs = load_corpus(CORPUS)
    assert [d.id for d in docs] == [DOC_A, DOC_B]
    titles = {d.id: d.title for d in docs}
    assert titles[DOC_A] == "Iran–Russia Military Technology Collaboration: A Policy Brief"
    assert titles[DOC_B] == "The Expansion of Military Ties Between Russia and Iran Raises Concerns in the West"
    for d in docs:
        assert d.text == (CORPUS / d.id).read_text(encoding="utf-8").replace("\r\n", "\n")
    assert "1,700 drones" in docs[0].text


def test_markdown_title_is_first_heading_without_hashes(tmp_path):
    doc = _load_one(tmp_path, "brief.md", "## Su-35 Deliveries\n\nIran bought *Su-35* jets.\n")
    assert doc.title == "Su-35 Deliveries"
    assert "Iran bought *Su-35* jets." in doc.text
    doc = _load_one(tmp_path, "other.markdown", "# Yak-130\ntext\n")
    assert doc.title == "Yak-130"


def test_markdown_front_matter_is_not_the_title(tmp_path):
    doc = _load_one(tmp_path, "post.md", "---\ntitle: Drone Brief\ndate: 2024-01-01\n---\n\n# Drone Brief\n\nIran sent drones.\n")
    assert doc.title == "Drone Brief"


def test_crlf_and_cr_line_ends_become_newlines(tmp_path):
    doc = _load_one(tmp_path, "crlf.txt", b"Title line\r\nFirst sentence.\rSecond.\r\n")
    assert doc.text == "Title line\nFirst sentence.\nSecond.\n"
    assert "\r" not in doc.text


def test_utf8_bom_and_windows_1252_are_decoded(tmp_path):
    doc = _load_one(tmp_path, "bom.txt", "\ufeffCaf\u00e9 talks.\n".encode("utf-8"))
    assert doc.text == "Caf\u00e9 talks.\n"
    assert doc.title == "Caf\u00e9 talks."
    doc = _load_one(tmp_path, "cp.txt", b"Caf\xe9 \x93quoted\x94 talks.\n")
    assert doc.text == "Caf\u00e9 \u201cquoted\u201d talks.\n"


def test_html_title_tag_wins_and_scripts_styles_are_dropped(tmp_path):
    page = """<!doctype html><html><head><title>Arms &amp; Drones</title>
    <style>body { color: red }</style><script>var secret = "do not index";</script></head>
    <body><h1>Heading One</h1><p>Iran sent&nbsp;drones to Russia.</p><p>Russia paid &pound;5.</p>
    <ul><li>First item</li><li>Second item</li></ul></body></html>"""
    doc = _load_one(tmp_path, "page.html", page)
    assert doc.title == "Arms & Drones"
    assert "do not index" not in doc.text
    assert "color: red" not in doc.text
    assert "Iran sent drones to Russia." in doc.text
    assert "Russia paid \u00a35." in doc.text
    lines = doc.text.split("\n")
    assert "First item" in lines and "Second item" in lines  # block elements on their own lines
    assert "Heading One" in lines
    assert "<" not in doc.text


def test_html_without_title_uses_first_heading(tmp_path):
    doc = _load_one(tmp_path, "page.htm", "<html><body><p>x</p><h2>The Alabuga Plant</h2><p>Drones are built there.</p></body></html>")
    assert doc.title == "The Alabuga Plant"
    assert "Drones are built there." in doc.text


HEADED_PAGE = """<!doctype html><html><head><title>Drone Trade Review</title></head><body>
<h1>Drone Trade Review</h1>
<p>Prepared for the analysts' desk.</p>
<h2>
  Iran-Russia drone trade routes
</h2>
<p>Since 2022, Russia purchased drones from Iran. They crossed the Caspian Sea by ship.</p>
<p>Paid In Gold Bars</p>
<h3>where the drones are <em>unloaded</em></h3>
<p>The drones are unloaded at the port of Makhachkala. Trucks take them north.</p>
</body></html>"""


def test_html_headings_are_the_h1_to_h6_lines(tmp_path):
    doc = _load_one(tmp_path, "review.html", HEADED_PAGE)
    assert [doc.text[s:e] for s, e in doc.headings] == [
        "Drone Trade Review", "Iran-Russia drone trade routes", "where the drones are unloaded"]
    assert "Paid In Gold Bars" in doc.text.split("\n")  # a short capitalised <p>: text, not a heading
    for newline in ("\r\n", "\r"):  # Windows and old Mac line ends: the same text, the same offsets
        other = _load_one(tmp_path, "review.html", HEADED_PAGE.replace("\n", newline))
        assert (other.text, other.headings) == (doc.text, doc.headings)
    cr = _load_one(tmp_path, "cr.html", "<h2>Drone\rroutes</h2><p>Text.</p>")  # a CR inside a heading
    assert (cr.text, cr.headings) == ("Drone routes\n\nText.", ((0, 12),))


def test_html_passages_carry_their_heading_and_never_end_on_one(tmp_path):
    doc = _load_one(tmp_path, "review.html", HEADED_PAGE)
    passages = split_document(doc, sentences_per_passage=8, overlap=1)  # one passage per section
    assert [(p.heading, p.line, p.text.split("\n")[0]) for p in passages] == [
        ("", 3, "Prepared for the analysts' desk."),  # under the title's heading: no heading of its own
        ("Iran-Russia drone trade routes", 7,
         "Since 2022, Russia purchased drones from Iran. They crossed the Caspian Sea by ship."),
        ("where the drones are unloaded", 13,
         "The drones are unloaded at the port of Makhachkala. Trucks take them north."),
    ]
    assert passages[1].text.endswith("Paid In Gold Bars")  # guessed, it was a heading and a section
    heads = {doc.text[s:e] for s, e in doc.headings}
    for p in split_document(doc, sentences_per_passage=2, overlap=1):
        assert not any(p.text.endswith(h) or p.text.startswith(h) for h in heads)
        assert all(doc.text[s:e] not in heads for s, e in p.sentences)


def test_html_without_headings_has_them_guessed_and_drops_nul(tmp_path):
    page = "<p>Sanctions Overview</p><!--" + " " * 9000 + "--><p>The EU\x00 sanctioned officials.</p>"
    doc = _load_one(tmp_path, "plain.html", page)  # a NUL past the first 8 KB: not a binary file
    assert doc.headings is None  # the page marks none: the splitter guesses, as for plain text
    assert doc.text == "Sanctions Overview\n\nThe EU sanctioned officials."


def test_html_without_title_or_heading_uses_first_line(tmp_path):
    doc = _load_one(tmp_path, "bare.html", "<html><body><p>Plain first paragraph.</p><p>Second.</p></body></html>")
    assert doc.title == "Plain first paragraph."


def test_pdf_text_of_every_page_and_title_from_metadata(tmp_path):
    make_pdf(
        tmp_path / "report.pdf",
        [["Drone Report", "Iran sold 1,700 drones to Russia in 2022. The deal was large."],
         ["Page two says the factory is in Tatarstan."]],
        title="Drone Trade Report 2023",
    )
    doc = load_document(tmp_path / "report.pdf", tmp_path)
    assert doc.id == "report.pdf"
    assert doc.title == "Drone Trade Report 2023"
    assert "Iran sold 1,700 drones to Russia in 2022. The deal was large." in doc.text
    assert "Page two says the factory is in Tatarstan." in doc.text
    assert doc.text.index("1,700") < doc.text.index("Tatarstan")  # pages in order


def test_pdf_without_metadata_title_uses_first_line(tmp_path):
    make_pdf(tmp_path / "untitled.pdf", [["Sanctions Overview", "The EU sanctioned officials."]])
    doc = load_document(tmp_path / "untitled.pdf", tmp_path)
    assert doc.title == "Sanctions Overview"


def test_pdf_without_text_is_refused(tmp_path):
    make_pdf(tmp_path / "blank.pdf", [[]])
    with pytest.raises(QAError, match="no text"):
        load_document(tmp_path / "blank.pdf", tmp_path)


def test_broken_pdf_is_refused_with_qaerror(tmp_path):
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf\n")
    with pytest.raises(QAError) as e:
        load_document(tmp_path / "broken.pdf", tmp_path)
    assert "broken.pdf" in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------ folders and ids


def _tree(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "a.txt").write_text("Alpha doc.\n")
    (tmp_path / "b" / "c.md").write_text("# Charlie\nText.\n")
    (tmp_path / "b" / "deep" / "d.html").write_text("<title>Delta</title><p>Text.</p>")
    (tmp_path / "Z.TXT").write_text("Upper-case suffix.\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # not a document suffix
    (tmp_path / "notes.odt").write_bytes(b"PK\x03\x04")
    (tmp_path / ".hidden.txt").write_text("Hidden file.\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.txt").write_text("Inside a hidden folder.\n")
    (tmp_path / "b" / ".cache").mkdir()
    (tmp_path / "b" / ".cache" / "y.md").write_text("Hidden nested.\n")
    return tmp_path


def test_recursive_folders_give_stable_posix_ids_sorted(tmp_path):
    root = _tree(tmp_path)
    docs = load_corpus(root, warn=lambda m: pytest.fail(f"unexpected warning {m}"))
    assert [d.id for d in docs] == ["Z.TXT", "a.txt", "b/c.md", "b/deep/d.html"]
    assert {d.id: d.title for d in docs}["b/deep/d.html"] == "Delta"
    assert {d.id: d.title for d in docs}["b/c.md"] == "Charlie"
    # the same ids whatever the working directory or how the corpus path is spelled
    cwd = os.getcwd()
    try:
        os.chdir(root / "b")
        again = load_corpus(root / ".." / root.name)
    finally:
        os.chdir(cwd)
    assert [d.id for d in again] == [d.id for d in docs]
    assert list(fingerprint(root)) == [d.id for d in docs]


def test_hidden_files_and_folders_are_skipped(tmp_path):
    root = _tree(tmp_path)
    names = [p.relative_to(root).as_posix() for p in corpus_files(root)]
    assert not any(part.startswith(".") for n in names for part in n.split("/"))
    texts = " ".join(d.text for d in load_corpus(root))
    assert "Hidden" not in texts and "hidden folder" not in texts


def test_hidden_parent_of_corpus_does_not_hide_everything(tmp_path):
    root = tmp_path / ".config" / "corpus"
    copy_corpus(root)
    assert [d.id for d in load_corpus(root)] == [DOC_A, DOC_B]


def test_only_loads_the_ids_asked_for(tmp_path):
    root = copy_corpus(tmp_path / "corpus")
    assert [d.id for d in load_corpus(root, only={DOC_B})] == [DOC_B]
    assert load_corpus(root, only=set()) == []


# ------------------------------------------------------------------ unreadable files and errors


GARBAGE = bytes((i * 37 + 11) % 256 for i in range(4096))  # contains NUL bytes
GARBAGE_NO_NUL = bytes(b for b in GARBAGE if b) + b"\x81\x8d\x8f\x90\x9d"  # undefined in cp1252


@pytest.mark.parametrize("data", [GARBAGE, GARBAGE_NO_NUL], ids=["with-nul", "no-nul"])
def test_binary_garbage_named_txt_is_refused(tmp_path, data):
    (tmp_path / "garbage.txt").write_bytes(data)
    with pytest.raises(QAError) as e:
        load_document(tmp_path / "garbage.txt", tmp_path)
    msg = str(e.value)
    assert "garbage.txt" in msg and "\n" not in msg


def test_load_corpus_skips_binary_file_with_a_warning(tmp_path):
    root = copy_corpus(tmp_path / "corpus")
    (root / "garbage.txt").write_bytes(GARBAGE)
    (root / "empty.md").write_text("   \n\n")
    warnings: list[str] = []
    docs = load_corpus(root, warn=warnings.append)
    assert [d.id for d in docs] == [DOC_A, DOC_B]
    assert len(warnings) == 2
    assert any("garbage.txt" in w for w in warnings) and any("empty.md" in w for w in warnings)
    assert all("\n" not in w for w in warnings)


def test_load_corpus_default_warning_goes_to_stderr(tmp_path, capsys):
    root = copy_corpus(tmp_path / "corpus", (DOC_B,))
    (root / "garbage.txt").write_bytes(GARBAGE)
    docs = load_corpus(root)
    assert [d.id for d in docs] == [DOC_B]
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "garbage.txt" in err and err.count("\n") == 1


def _one_line_error(fn, *args) -> str:
    with pytest.raises(QAError) as e:
        fn(*args)
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def test_missing_corpus_is_one_line_qaerror(tmp_path):
    msg = _one_line_error(load_corpus, tmp_path / "nope")
    assert "not found" in msg and "nope" in msg


def test_corpus_that_is_a_file_is_one_line_qaerror(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    assert "not a folder" in _one_line_error(load_corpus, tmp_path / "file.txt")


def test_empty_corpus_is_one_line_qaerror(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "picture.jpg").write_bytes(b"\xff\xd8\xff")
    assert "no documents" in _one_line_error(load_corpus, tmp_path / "empty")


def test_corpus_of_only_unreadable_files_is_one_line_qaerror(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_bytes(GARBAGE)
    (tmp_path / "c" / "b.pdf").write_bytes(b"not a pdf at all")
    msg = _one_line_error(load_corpus, tmp_path / "c", )
    assert "no readable documents" in msg
