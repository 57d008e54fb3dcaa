"""Hostile corpus folders (issue "Hardening"): links out of the corpus, undecodable and unreadable
file names, UTF-16 text, pathological markup, the per-file time budget, entities decoded once.

Fast and offline: no model is loaded (the one index build uses a hash-based encoder).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pathlib
import time
from pathlib import Path

import pytest

import qa.load
from helpers_core import HashEncoder, make_pdf
from qa.config import Settings
from qa.load import corpus_files, fingerprint, load_corpus, load_document
from qa.datatypes import QAError
from qa.index import load_index

pytestmark = pytest.mark.unit

SECRET = "root:x:0:0:root:/root:/bin/bash\n"
GOOD = "Good report.\nIran sent drones to Russia in 2022.\n"


def _corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "good.txt").write_text(GOOD)
    return root


def _outside_secret(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd.txt").write_text(SECRET)
    return outside / "passwd.txt"


def _ids(root: Path, files: list[Path]) -> list[str]:
    return [p.relative_to(root).as_posix() for p in files]


def _listing(root: Path, **kw) -> tuple[list[str], list[str]]:
    warnings: list[str] = []
    return _ids(root, corpus_files(root, warn=warnings.append, **kw)), warnings


# ------------------------------------------------------------------ 1. links out of the corpus


def test_link_to_a_file_outside_the_corpus_is_skipped_with_one_warning(tmp_path):
    root = _corpus(tmp_path)
    secret = _outside_secret(tmp_path)
    (root / "passwd.txt").symlink_to(secret)
    (root / "etc.txt").symlink_to("/etc/passwd")
    ids, warnings = _listing(root)
    assert ids == ["good.txt"]
    assert warnings == [
        f"skipped etc.txt: link to {os.path.realpath('/etc/passwd')}, outside the corpus (follow_links is off)",
        f"skipped passwd.txt: link to {os.path.realpath(secret)}, outside the corpus (follow_links is off)",
    ]
    docs = load_corpus(root, warn=lambda m: None)
    assert [d.id for d in docs] == ["good.txt"]
    assert list(fingerprint(root)) == ["good.txt"]


def test_follow_links_reads_the_link_outside_the_corpus(tmp_path):
    root = _corpus(tmp_path)
    (root / "passwd.txt").symlink_to(_outside_secret(tmp_path))
    ids, warnings = _listing(root, follow_links=True)
    assert ids == ["good.txt", "passwd.txt"] and warnings == []
    docs = {d.id: d for d in load_corpus(root, follow_links=True, warn=pytest.fail)}
    assert docs["passwd.txt"].text == SECRET
    assert list(fingerprint(root, follow_links=True)) == ["good.txt", "passwd.txt"]


def test_link_to_a_file_inside_the_corpus_is_still_read(tmp_path):
    root = _corpus(tmp_path)
    (root / "sub").mkdir()
    (root / "sub" / "alias.txt").symlink_to(root / "good.txt")
    ids, warnings = _listing(root)
    assert ids == ["good.txt", "sub/alias.txt"] and warnings == []


def test_linked_folder_outside_is_skipped_unless_following_and_loops_end(tmp_path):
    root = _corpus(tmp_path)
    ext = tmp_path / "shared"
    ext.mkdir()
    (ext / "brief.md").write_text("# Shared brief\nText.\n")
    (ext / "loop").symlink_to(ext)  # a folder that contains itself
    (ext / "back").symlink_to(root)  # and one back into the corpus
    (root / "shared").symlink_to(ext)
    (root / "inner").symlink_to(root)  # a link inside the corpus to the corpus: its files are listed once
    ids, warnings = _listing(root)
    assert ids == ["good.txt"]
    assert warnings == [f"skipped folder shared: link to {os.path.realpath(ext)}, outside the corpus (follow_links is off)"]
    ids, warnings = _listing(root, follow_links=True)
    assert ids == ["good.txt", "shared/brief.md"] and warnings == []


def test_default_warning_is_one_stderr_line_per_file_however_often_the_folder_is_listed(tmp_path, capsys):
    root = _corpus(tmp_path)
    (root / "passwd.txt").symlink_to(_outside_secret(tmp_path))
    for _ in range(3):  # `qa index` lists the folder more than once
        assert _ids(root, corpus_files(root)) == ["good.txt"]
    assert fingerprint(root) == {"good.txt": hashlib.sha256(GOOD.encode()).hexdigest()}
    err = capsys.readouterr().err
    assert err == (f"warning: skipped passwd.txt: link to {os.path.realpath(tmp_path / 'outside' / 'passwd.txt')}, "
                   "outside the corpus (follow_links is off)\n")


# ------------------------------------------------------------------ 2. bad names, unreadable files


def _write_bytes_name(folder: Path, name: bytes, data: bytes) -> None:
    path = os.fsencode(folder) + b"/" + name
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def test_file_names_that_are_not_utf8_or_hold_control_characters_are_skipped(tmp_path):
    root = _corpus(tmp_path)
    _write_bytes_name(root, b"bad\xffname.txt", b"Undecodable name.\n")
    _write_bytes_name(root, b"sub\xfe/inner.md", b"# Inner\n")
    (root / "evil\x1b[2J.txt").write_text("Clears the screen.\n")
    (root / "two\nlines.txt").write_text("Two lines.\n")
    ids, warnings = _listing(root)
    assert ids == ["good.txt"]
    assert sorted(warnings) == [
        "skipped bad\\xffname.txt: file name is not printable UTF-8 text",
        "skipped evil\\x1b[2J.txt: file name is not printable UTF-8 text",
        "skipped sub\\xfe/inner.md: file name is not printable UTF-8 text",
        "skipped two\\nlines.txt: file name is not printable UTF-8 text",
    ]
    docs = load_corpus(root, warn=lambda m: None)
    assert [d.id for d in docs] == ["good.txt"]
    with pytest.raises(QAError) as e:
        load_document(Path(os.fsdecode(os.fsencode(root) + b"/bad\xffname.txt")), root)
    assert str(e.value) == "bad\\xffname.txt: file name is not printable UTF-8 text"


def _deny(monkeypatch, *names: str) -> None:
    """Simulate permission denied (the tests run as root, which reads any file)."""
    real_open = pathlib.Path.open

    def fake_open(self, *args, **kwargs):
        if self.name in names:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", fake_open)


def test_unreadable_file_is_skipped_with_one_warning(tmp_path, monkeypatch):
    root = _corpus(tmp_path)
    (root / "locked.txt").write_text("Nobody may read this.\n")
    _deny(monkeypatch, "locked.txt")
    ids, warnings = _listing(root)
    assert ids == ["good.txt"]
    assert warnings == ["skipped locked.txt: cannot be read (Permission denied)"]
    assert [d.id for d in load_corpus(root, warn=lambda m: None)] == ["good.txt"]
    assert list(fingerprint(root)) == ["good.txt"]
    with pytest.raises(QAError) as e:
        load_document(root / "locked.txt", root)
    assert str(e.value) == "locked.txt: cannot be read (Permission denied)"


def test_unreadable_folder_is_skipped_with_one_warning(tmp_path, monkeypatch):
    root = _corpus(tmp_path)
    (root / "private").mkdir()
    (root / "private" / "x.txt").write_text("Private.\n")
    real_scandir = os.scandir

    def fake_scandir(path):
        if os.path.basename(path) == "private":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", fake_scandir)
    ids, warnings = _listing(root)
    assert ids == ["good.txt"]
    assert warnings == ["skipped folder private: cannot be read (Permission denied)"]


def test_qa_index_over_a_hostile_folder_indexes_the_rest_and_stays_up_to_date(tmp_path, monkeypatch, capsys):
    """The index build (qa/index.py, unchanged) over every hostile file at once: one warning line
    each, the good file indexed, ids valid UTF-8 and JSON, and later staleness checks (every
    `qa ask`) neither rebuild nor crash."""
    from qa.build import build_index
    from qa.manifest import read_manifest, staleness

    root = _corpus(tmp_path)
    secret = _outside_secret(tmp_path)
    (root / "passwd.txt").symlink_to(secret)
    _write_bytes_name(root, b"bad\xffname.txt", b"Undecodable name.\n")
    (root / "locked.txt").write_text("Nobody may read this.\n")
    (root / "garbage.txt").write_bytes(b"\x00\x01\x02" * 100)
    _deny(monkeypatch, "locked.txt")
    settings = Settings(corpus=root, index=tmp_path / "index")
    log: list[str] = []
    assert staleness(settings) == "no index yet"
    manifest = build_index(settings, log=log.append, progress=False, encoder=HashEncoder())
    assert list(manifest["docs"]) == ["good.txt"]
    assert list(manifest["skipped"]) == ["garbage.txt"]
    assert capsys.readouterr().err.splitlines() == [
        "warning: skipped bad\\xffname.txt: file name is not printable UTF-8 text",
        "warning: skipped locked.txt: cannot be read (Permission denied)",
        f"warning: skipped passwd.txt: link to {os.path.realpath(secret)}, outside the corpus (follow_links is off)",
    ]
    assert log[0] == "warning: skipped garbage.txt: binary file, not text"
    assert staleness(settings) is None
    assert capsys.readouterr().err == ""
    saved = read_manifest(settings.index)
    text = json.dumps(saved, ensure_ascii=False)
    text.encode("utf-8")  # every id is valid UTF-8
    passages = load_index(settings).passages
    assert {p.doc for p in passages} == {"good.txt"}
    assert not any("root:x" in p.text for p in passages)


# ------------------------------------------------------------------ 3. UTF-16 text


UTF16_TEXT = "Café report – 1,700 drones\nIran sent drones to Russia.\n"


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe" + UTF16_TEXT.encode("utf-16-le"),
        b"\xfe\xff" + UTF16_TEXT.encode("utf-16-be"),
        UTF16_TEXT.encode("utf-16-le"),
        UTF16_TEXT.encode("utf-16-be"),
    ],
    ids=["le-bom", "be-bom", "le-no-bom", "be-no-bom"],
)
def test_utf16_text_is_read(tmp_path, data):
    (tmp_path / "wide.txt").write_bytes(data)
    doc = load_document(tmp_path / "wide.txt", tmp_path)
    assert doc.text == UTF16_TEXT
    assert doc.title == "Café report – 1,700 drones"


def test_utf16_markdown_and_html_are_read(tmp_path):
    (tmp_path / "notes.md").write_bytes("\ufeff# Wide Notes\n\nText.\n".encode("utf-16-le"))
    doc = load_document(tmp_path / "notes.md", tmp_path)
    assert (doc.title, doc.text) == ("Wide Notes", "# Wide Notes\n\nText.\n")
    (tmp_path / "page.html").write_bytes("<title>Wide Page</title><p>Body.</p>".encode("utf-16-be"))
    doc = load_document(tmp_path / "page.html", tmp_path)
    assert (doc.title, doc.text) == ("Wide Page", "Body.")


@pytest.mark.parametrize(
    "data",
    [b"\x00\x01\x02" * 100, b"a\x00\x00\x00" * 100, "Odd\n".encode("utf-16-le") + b"x", b"\xff\xfe" + "a\x00b".encode("utf-16-le")],
    ids=["nul-every-third", "nul-pairs", "odd-length", "bom-then-nul-char"],
)
def test_binary_with_nul_bytes_is_still_refused(tmp_path, data):
    (tmp_path / "bin.txt").write_bytes(data)
    with pytest.raises(QAError) as e:
        load_document(tmp_path / "bin.txt", tmp_path)
    assert str(e.value).startswith("bin.txt: binary file, not text")


# ------------------------------------------------------------------ 4. linear loaders, time budget


def _timed_load(tmp_path: Path, name: str, data: str):
    path = tmp_path / name
    path.write_text(data, encoding="utf-8")
    t0 = time.perf_counter()
    doc = load_document(path, tmp_path)
    return doc, time.perf_counter() - t0


def test_markdown_heading_of_8000_spaces_loads_fast(tmp_path):
    data = "# " + " " * 8000
    doc, seconds = _timed_load(tmp_path, "spaces.md", data)
    assert seconds < 2
    assert (doc.title, doc.text) == ("spaces", data)


def test_markdown_heading_that_made_the_old_pattern_backtrack_loads_fast(tmp_path):
    data = "#" + " " * 4000 + "#" * 4000 + " " * 4000 + "a#b\n"  # the old title pattern: minutes
    doc, seconds = _timed_load(tmp_path, "hashes.md", data)
    assert seconds < 2
    assert doc.title == "#" * 200 and doc.text == data  # the heading's text, cut at 200 characters


def test_markdown_front_matter_title_of_spaces_loads_fast(tmp_path):
    data = "---\ntitle:" + " " * 8000 + "'\"" * 4000 + "\n---\n\n# Real Title\n"
    doc, seconds = _timed_load(tmp_path, "front.md", data)
    assert seconds < 2
    assert doc.title == "\"'" * 100  # the value without its outer quotes, cut at 200 characters


def test_html_with_45000_flat_paragraphs_loads_fast(tmp_path):
    data = "<p>para</p>" * 45_000  # 495 KB
    assert len(data) == 495_000
    doc, seconds = _timed_load(tmp_path, "flat.html", data)
    assert seconds < 2
    assert doc.text == "\n\n".join(["para"] * 45_000)
    assert doc.title == "para"


def test_html_with_45000_headings_or_one_left_open_loads_fast(tmp_path):
    doc, seconds = _timed_load(tmp_path, "heads.html", "<h2>head</h2><p>para</p>" * 22_500)
    assert seconds < 2
    assert len(doc.headings) == 22_500 and doc.text[doc.headings[-1][0]:].startswith("head\n")
    doc, seconds = _timed_load(tmp_path, "open.html", "<h1>" + "line\n" * 100_000)
    assert seconds < 2
    assert doc.text == " ".join(["line"] * 100_000) and doc.headings == ((0, len(doc.text)),)


def test_html_nested_40000_deep_loads_fast(tmp_path):
    data = "<html><head><title>Deep</title></head><body>" + "<div>" * 40_000 + "bottom" + "</div>" * 40_000
    doc, seconds = _timed_load(tmp_path, "deep.html", data)
    assert seconds < 2
    assert (doc.title, doc.text) == ("Deep", "bottom")


@pytest.mark.parametrize(
    "data, text",
    [
        ("<p>Start.</p>" + "<a " * 100_000, "Start."),  # one tag cut off by the end: dropped
        ("<p>Start.</p><!--" + "<p>x</p>" * 50_000, "Start."),  # an unclosed comment
        ('<p>Start.</p><a title="' + "<p>x</p>=" * 50_000, "Start."),  # an unclosed attribute value
        ("<p>Start.</p><script>" + "</scrip" * 50_000, "Start."),  # an unclosed script
        ("<p>Start.</p>" + "</" * 100_000, "Start."),  # a bogus comment to the end
        ("Start." + "<" * 200_000, "Start." + "<" * 200_000),  # '<' that opens nothing is text
    ],
    ids=["unclosed-tags", "unclosed-comment", "unclosed-quote", "unclosed-script", "end-tag-openers", "lone-lt"],
)
def test_malformed_html_loads_fast(tmp_path, data, text):
    doc, seconds = _timed_load(tmp_path, "bad.html", data)
    assert seconds < 2
    assert doc.text == text


def _fake_clock(monkeypatch, step: float) -> None:
    """A clock that moves ``step`` seconds each time the budget looks at it."""
    ticks = itertools.count()
    monkeypatch.setattr(qa.load, "_clock", lambda: next(ticks) * step)


def test_file_over_its_time_budget_is_skipped_with_one_warning(tmp_path, monkeypatch):
    root = _corpus(tmp_path)
    (root / "slow.html").write_text("<p>para</p>" * 100_000)  # checked every 1,024 tokens
    _fake_clock(monkeypatch, 1.0)
    warnings: list[str] = []
    docs = load_corpus(root, warn=warnings.append)
    assert [d.id for d in docs] == ["good.txt"]  # four looks at the clock: 3 s of 30
    assert warnings == ["skipped slow.html: took longer than 30 s to read"]
    with pytest.raises(QAError, match=r"^slow\.html: took longer than 5 s to read$"):
        load_document(root / "slow.html", root, budget=5)
    assert load_document(root / "slow.html", root, budget=None).text.startswith("para\n\npara")


def test_pdf_over_its_time_budget_is_skipped(tmp_path, monkeypatch):
    make_pdf(tmp_path / "long.pdf", [[f"Page {i} text."] for i in range(12)])
    _fake_clock(monkeypatch, 1.0)
    with pytest.raises(QAError, match=r"^long\.pdf: took longer than 10 s to read$"):
        load_document(tmp_path / "long.pdf", tmp_path, budget=10)
    assert "Page 11 text." in load_document(tmp_path / "long.pdf", tmp_path, budget=100).text


def test_markdown_over_its_time_budget_is_skipped(tmp_path, monkeypatch):
    (tmp_path / "long.md").write_text("line\n" * 200_000)  # no heading: every line is looked at
    _fake_clock(monkeypatch, 1.0)
    with pytest.raises(QAError, match=r"^long\.md: took longer than 30 s to read$"):
        load_document(tmp_path / "long.md", tmp_path)


# ------------------------------------------------------------------ 5. entities decoded once, HTML details


def test_html_entities_are_decoded_once(tmp_path):
    page = ("<title>Tags &amp;amp; entities</title>"
            "<p>The page shows &amp;lt;b&amp;gt; literally, and &lt;i&gt; once decoded.</p>")
    (tmp_path / "page.html").write_text(page)
    doc = load_document(tmp_path / "page.html", tmp_path)
    assert doc.title == "Tags &amp; entities"
    assert doc.text == "The page shows &lt;b&gt; literally, and <i> once decoded."


def test_html_tag_ends_at_the_first_unquoted_gt_and_head_may_be_left_open(tmp_path):
    page = ('<html><head><title>Open Head</title><meta name="x">'
            '<body><p>Price <a title="a > b" href=x>here</a> &amp; there.<br>Next line.</p>'
            "<!-- a comment --><template><p>inert</p></template><noscript>no</noscript>"
            "<h2>Section</h2></body>")
    (tmp_path / "page.html").write_text(page)
    doc = load_document(tmp_path / "page.html", tmp_path)
    assert doc.title == "Open Head"
    assert doc.text == "Price here & there.\n\nNext line.\n\nSection"
