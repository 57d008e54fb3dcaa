"""Step 1: read the corpus folder into Documents (.txt, .md, .html, .pdf, .docx, recursively).

Hostile folders are expected: links out of the corpus, undecodable or unreadable file names,
pathological markup. Every loader is linear in its input, and each file has a time budget;
a file that cannot be read is skipped with one warning line, never a traceback.
"""

from __future__ import annotations

import hashlib
import html
import io
import os
import re
import sys
import time
from pathlib import Path

from qa.datatypes import Document, QAError

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
MAX_TITLE_CHARS = 200
LOAD_BUDGET_S = 30.0  # seconds one file may take to read; past it the file is skipped with a warning
_clock = time.monotonic  # the budget's clock (tests replace it)

# Not allowed in a document id: undecodable bytes (surrogate escapes) and control characters,
# so every id is UTF-8 text that prints on one line and encodes as JSON.
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_reported: set[tuple[str, str]] = set()  # (corpus, message) already printed by the default warning


def corpus_files(corpus: Path, *, follow_links: bool = False, warn=None) -> list[Path]:
    """The readable-looking files under the corpus folder, sorted by id, hidden files skipped.

    Also skipped, with one line each to ``warn`` (default: stderr, once per process): a link to
    a file outside the corpus unless ``follow_links``, a file whose name is not printable UTF-8
    text, a file or folder that cannot be opened. Linked folders are entered only with
    ``follow_links`` and when they lie outside the corpus, each at most once (no loops).
    """
    corpus = Path(corpus)
    if not corpus.exists():
        raise QAError(f"corpus folder not found: {corpus}")
    if not corpus.is_dir():
        raise QAError(f"corpus is not a folder: {corpus}")
    report = warn or _warn_once(corpus)
    root = os.path.realpath(corpus)
    seen = {root}
    found: list[tuple[str, Path]] = []
    stack = [(str(corpus), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)  # warnings in a stable order
        except OSError as e:
            report(f"skipped folder {_show(prefix.rstrip('/') or str(corpus))}: cannot be read ({_reason(e)})")
            continue
        folders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            try:
                link, is_dir, is_file = entry.is_symlink(), entry.is_dir(), entry.is_file()
            except OSError:
                continue
            if is_dir:
                if link:
                    real = os.path.realpath(entry.path)
                    if _inside(real, root) or real in seen:
                        continue  # its files are listed once, by their own path
                    if not follow_links:
                        report(f"skipped folder {_show(rel)}: link to {_show(real)}, outside the corpus "
                               "(follow_links is off)")
                        continue
                    seen.add(real)
                folders.append((entry.path, rel + "/"))
                continue
            if not is_file or os.path.splitext(entry.name)[1].lower() not in SUFFIXES:
                continue
            if _BAD_NAME.search(rel):
                report(f"skipped {_show(rel)}: file name is not printable UTF-8 text")
                continue
            if link and not follow_links:
                real = os.path.realpath(entry.path)
                if not _inside(real, root):
                    report(f"skipped {_show(rel)}: link to {_show(real)}, outside the corpus (follow_links is off)")
                    continue
            path = corpus / rel
            try:
                with path.open("rb"):
                    pass
            except OSError as e:
                report(f"skipped {_show(rel)}: cannot be read ({_reason(e)})")
                continue
            found.append((rel, path))
        stack.extend(reversed(folders))  # subfolders next, in name order
    found.sort(key=lambda f: f[0])
    return [path for _, path in found]


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _show(name: str) -> str:
    """A file name fit for a one-line message: undecodable bytes as \\xNN, control characters escaped."""
    try:
        name = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        name = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), name)


def _reason(e: OSError) -> str:
    return e.strerror or e.__class__.__name__


def _warn_once(corpus: Path):
    """The default warning: one stderr line per message and corpus in this process, however many
    times the folder is listed (building an index lists it more than once)."""
    key = os.path.realpath(corpus)

    def warn(msg: str) -> None:
        if (key, msg) not in _reported:
            _reported.add((key, msg))
            print(f"warning: {msg}", file=sys.stderr, flush=True)

    return warn


def _quiet(msg: str) -> None:
    pass


def doc_id(path: Path, corpus: Path) -> str:
    return path.relative_to(corpus).as_posix()


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(corpus: Path, *, follow_links: bool = False) -> dict[str, str]:
    """Document id -> sha256 of the raw bytes, for every file that would be loaded.

    Quiet: the files that ``corpus_files`` skips are reported when the index is built.
    """
    corpus = Path(corpus)
    out = {}
    for p in corpus_files(corpus, follow_links=follow_links, warn=_quiet):
        try:
            out[doc_id(p, corpus)] = file_hash(p.read_bytes())
        except OSError:  # gone or locked since it was listed: left out like an unreadable file
            continue
    return out


class _Deadline:
    """The time left to read one file: ``check`` raises QAError once ``budget`` seconds have passed."""

    def __init__(self, budget: float | None, name: str):
        self.budget, self.name = budget, name
        self.end = None if budget is None else _clock() + budget

    def check(self) -> None:
        if self.end is not None and _clock() > self.end:
            raise QAError(f"{self.name}: took longer than {self.budget:g} s to read")


def load_document(path: Path, corpus: Path, *, budget: float | None = LOAD_BUDGET_S) -> Document:
    """Read one file; raises QAError (one line) when it cannot be read as text, or when reading
    takes longer than ``budget`` seconds (None: no limit)."""
    path = Path(path)
    name = _show(path.name)
    did = doc_id(path, corpus)
    if _BAD_NAME.search(did):
        raise QAError(f"{_show(did)}: file name is not printable UTF-8 text")
    deadline = _Deadline(budget, name)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise QAError(f"{name}: cannot be read ({_reason(e)})") from e
    deadline.check()
    suffix = path.suffix.lower()
    headings = None
    if suffix == ".pdf":
        title, text = _read_pdf(data, name, deadline)
    elif suffix == ".docx":
        title, text, headings = _read_docx(data, name, deadline)
    else:
        raw = _decode(data, name)
        deadline.check()
        if suffix in (".html", ".htm"):
            title, text, headings = _read_html(raw, deadline)
        elif suffix in (".md", ".markdown"):
            title, text = _markdown_title(raw, deadline), raw
        else:
            title, text = None, raw
    text = _utf8(text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.strip():
        raise QAError(f"{name}: no text found")
    title = title or _first_line_title(text) or path.stem
    deadline.check()
    return Document(id=did, title=_utf8(title), text=text, sha256=file_hash(data), headings=headings)


def load_corpus(corpus: Path, *, only: set[str] | None = None, warn=None, follow_links: bool = False,
                budget: float | None = LOAD_BUDGET_S) -> list[Document]:
    """Load every document (or just the ids in ``only``); unreadable files are reported and skipped.

    Raises QAError when the folder is missing or nothing readable is in it.
    """
    corpus = Path(corpus)
    files = corpus_files(corpus, follow_links=follow_links, warn=warn)
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    if not files:
        raise QAError(f"no documents in {corpus} (expected {', '.join(SUFFIXES)} files)")
    docs = []
    for path in files:
        if only is not None and doc_id(path, corpus) not in only:
            continue
        try:
            docs.append(load_document(path, corpus, budget=budget))
        except QAError as e:
            warn(f"skipped {e}")
    if not docs and only is None:
        raise QAError(f"no readable documents in {corpus}")
    return docs


def _utf8(text: str) -> str:
    """``text`` as valid UTF-8 (a PDF's text can hold lone surrogates; they become '?')."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _decode(data: bytes, name: str) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return _decode_utf16(data, "utf-16", name)  # the byte-order mark says which
    sample = data[:8192]
    if b"\x00" in sample:
        encoding = _utf16_without_bom(sample)
        if encoding is None:
            raise QAError(f"{name}: binary file, not text")
        return _decode_utf16(data, encoding, name)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as e:
        raise QAError(f"{name}: not UTF-8 or Windows-1252 text") from e
    return text


def _utf16_without_bom(sample: bytes) -> str | None:
    """UTF-16 LE or BE when NUL bytes fill one byte of each pair, as in ASCII-range UTF-16 text."""
    pairs = len(sample) // 2
    if not pairs:
        return None
    even, odd = sample[0 : 2 * pairs : 2].count(0), sample[1 : 2 * pairs : 2].count(0)
    if odd >= 0.3 * pairs and even * 10 <= odd:
        return "utf-16-le"
    if even >= 0.3 * pairs and odd * 10 <= even:
        return "utf-16-be"
    return None


def _decode_utf16(data: bytes, encoding: str, name: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise QAError(f"{name}: binary file, not text (not valid UTF-16)") from e
    if "\x00" in text:
        raise QAError(f"{name}: binary file, not text")
    return text.removeprefix("\ufeff")


def _markdown_title(raw: str, deadline: _Deadline | None = None) -> str | None:
    """The front matter's ``title:``, else the first ``#`` heading; one pass over the lines."""
    lines = raw.split("\n")
    start = 0
    if lines[0].strip() == "---":
        for end in range(1, len(lines)):
            if lines[end].strip() == "---":
                for line in lines[1:end]:
                    if line.startswith("title:"):
                        value = line[len("title:") :].strip()
                        value = value[1:] if value[:1] in "\"'" else value
                        value = (value[:-1] if value[-1:] in "\"'" else value).strip()
                        if value:
                            return value[:MAX_TITLE_CHARS]
                start = end + 1
                break
    for i in range(start, len(lines)):
        if deadline is not None and i % 4096 == 0:
            deadline.check()
        line = lines[i]
        if not line.startswith("#"):
            continue
        level = len(line) - len(line.lstrip("#"))
        if level > 6 or not line[level : level + 1].isspace():
            continue
        title = line[level:].strip()
        unclosed = title.rstrip("#")  # a closing run of #s, when a space precedes it
        if unclosed != title and (not unclosed or unclosed[-1].isspace()):
            title = unclosed.rstrip()
        if title:
            return title[:MAX_TITLE_CHARS]
    return None


def _first_line_title(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line.lstrip("#").strip()[:MAX_TITLE_CHARS]
    return ""


# HTML is read by a small tokenizer that follows the HTML5 rules for where tags, comments and raw
# text end, in one pass and without building a tree: wide or deep pages cost their length, a tag
# or comment cut off by the end of the file is dropped (as browsers do) instead of rescanned.
_BLOCKS = frozenset("p div br h1 h2 h3 h4 h5 h6 li tr section article blockquote pre".split())
_RAW = frozenset("script style noscript template xmp iframe noembed noframes title textarea".split())
_HEAD_TAGS = frozenset("head title base basefont bgsound link meta style script noscript template".split())
_TAG = re.compile(r"<(/?)([A-Za-z][^\t\n\f\r />]*)")
# The rest of a tag up to its '>' (not consumed); quoted attribute values may hold '>' and run to
# the end of the file when unclosed. Possessive: it never backtracks.
_TAG_REST = re.compile(r"""(?:[^>"'=]++|=[\t\n\f\r ]*+(?:"[^"]*+"?|'[^']*+'?)|[="'])*+""")
_RAW_END = {name: re.compile(rf"</{name}(?=[\t\n\f\r />])", re.I) for name in _RAW}
_SPACES = re.compile(r"[ \t\u00a0]+")
_HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())
_MARK = "\x00"  # starts the text of an <h1>-<h6> until the lines are laid out (NULs are dropped first)


def _read_html(raw: str, deadline: _Deadline | None = None
               ) -> tuple[str | None, str, tuple[tuple[int, int], ...] | None]:
    """(title, text, heading offsets) of a page: the <title>, else the first <h1>/<h2>; the text
    without scripts, styles, templates or <head>, block elements on their own lines, entities
    decoded once; the lines of <h1>-<h6> text are the headings (a heading's own line breaks fold
    into spaces, as a browser shows them), None when the page marks none."""
    # As browsers do: a NUL in a page's text is dropped, CR LF and lone CRs are line feeds
    # (load_document's own CR rewrite would otherwise break a heading's line in two).
    raw = raw.replace(_MARK, "").replace("\r\n", "\n").replace("\r", "\n")
    parts: list[str] = []
    title = heading = None
    heading_tag, heading_depth, heading_parts, heading_len = None, 0, [], 0
    in_head = in_heading = False
    pos, n, steps = 0, len(raw), 0
    while pos < n:
        steps += 1
        if deadline is not None and steps % 1024 == 0:
            deadline.check()
        lt = raw.find("<", pos)
        if lt != pos:  # text up to the next '<'
            lt = n if lt < 0 else lt
            chunk, pos = html.unescape(raw[pos:lt]), lt
        elif (m := _TAG.match(raw, pos)) is not None:
            end = _TAG_REST.match(raw, m.end()).end()
            if end >= n:
                break  # a tag cut off by the end of the file
            pos = end + 1
            name = m.group(2).lower()
            if m.group(1):  # end tag
                if name == "head":
                    in_head = False
                elif name == heading_tag:
                    heading_depth -= 1
                    if not heading_depth:
                        heading, heading_tag = " ".join(" ".join(heading_parts).split()), None
                if name in _HEADINGS:  # any heading's end tag closes the open heading (HTML5)
                    in_heading = False
            else:
                if name == "head":
                    in_head = True
                elif in_head and name not in _HEAD_TAGS:
                    in_head = False  # e.g. <body> or <p>: the head ended without </head>
                if name == heading_tag:
                    heading_depth += 1
                elif heading is None and heading_tag is None and name in ("h1", "h2") and not in_head:
                    heading_tag, heading_depth = name, 1
                if name in _HEADINGS:
                    in_heading = not in_head
                if name in _RAW:  # raw text up to the matching end tag, or to the end of the file
                    close = _RAW_END[name].search(raw, pos)
                    end = close.start() if close else n
                    if name == "title" and title is None:
                        title = " ".join(html.unescape(raw[pos:end]).split())
                    elif name == "textarea" and not in_head:
                        parts.append(html.unescape(raw[pos:end]))
                    pos = end
            if name in _BLOCKS and not in_head:
                parts.append("\n\n" if name == "br" and not m.group(1) else "\n")  # <br> has no end tag
            continue
        elif raw.startswith("<!--", pos):
            if raw.startswith(">", pos + 4) or raw.startswith("->", pos + 4):
                pos = raw.index(">", pos + 4) + 1  # <!--> and <!---> are empty comments
            else:
                end = raw.find("-->", pos + 4)
                pos = n if end < 0 else end + 3
            continue
        elif raw.startswith(("<!", "<?", "</"), pos):  # doctype, bogus comment, </>: up to the next '>'
            end = raw.find(">", pos + 2)
            pos = n if end < 0 else end + 1
            continue
        else:
            chunk, pos = "<", pos + 1  # a '<' that opens nothing is text
        if in_head:
            if chunk.isspace():
                continue
            in_head = False  # text ends a head left open
        parts.append(_MARK + chunk.replace("\n", " ") if in_heading else chunk)
        if heading_tag and heading_len < 4 * MAX_TITLE_CHARS:
            heading_parts.append(chunk)
            heading_len += len(chunk)
    if heading_tag:  # a heading still open at the end of the file
        heading = " ".join(" ".join(heading_parts).split())
    text, headings = _layout("".join(parts))
    title = title or heading
    # A page that marks no heading may still have some (bold paragraphs, converted text): guessed.
    return (title[:MAX_TITLE_CHARS] if title else None), text, headings or None


def _layout(text: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The page's lines with runs of spaces folded, ends trimmed, at most one blank line in a row
    and none at either end; and the offsets of the lines that hold heading text (``_MARK``)."""
    lines: list[str] = []
    headings: list[tuple[int, int]] = []
    pos, blank = 0, False
    for line in text.split("\n"):
        marked = _MARK in line
        line = _SPACES.sub(" ", line.replace(_MARK, "") if marked else line).strip()
        if not line:
            blank = bool(lines)
            continue
        if blank:
            lines.append("")
            pos += 1
            blank = False
        if marked:
            headings.append((pos, pos + len(line)))
        lines.append(line)
        pos += len(line) + 1
    return "\n".join(lines), tuple(headings)


def _read_pdf(data: bytes, name: str, deadline: _Deadline | None = None) -> tuple[str | None, str]:
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = []
        for page in reader.pages:
            pages.append(page.extract_text() or "")
            if deadline is not None:
                deadline.check()
        meta = reader.metadata
        title = str(meta.title or "").strip() if meta else ""
    except QAError:
        raise
    except Exception as e:  # pypdf raises many kinds on damaged files: all mean "unreadable"
        raise QAError(f"{name}: unreadable PDF ({e.__class__.__name__})") from e
    # Pages end with a form feed, as pdftotext writes them: a page starts on a line of its own,
    # and every citation can name its page (an empty page keeps its number).
    return (title[:MAX_TITLE_CHARS] or None), "\n\f".join(p.strip("\n").replace("\f", "") for p in pages)


def _read_docx(data: bytes, name: str, deadline: _Deadline | None = None
               ) -> tuple[str | None, str, tuple[tuple[int, int], ...]]:
    """(title, text, heading offsets) of a Word document, read with python-docx: its paragraphs
    and tables in document order, one line each (a table row is its cells joined by " | ");
    paragraphs styled Title or Heading N are the headings. The title is the document's
    properties' title, else its first heading."""
    from docx import Document as open_docx
    from docx.text.paragraph import Paragraph

    lines: list[str] = []
    marked: list[int] = []  # line numbers of the headings
    try:
        doc = open_docx(io.BytesIO(data))
        for n, block in enumerate(doc.iter_inner_content()):
            if deadline is not None and n % 256 == 0:
                deadline.check()
            if isinstance(block, Paragraph):
                style = block.style.name if block.style is not None else ""
                if style == "Title" or style.startswith("Heading"):
                    heading = " ".join(block.text.split())
                    if heading:
                        marked.append(len(lines))
                        lines.append(heading)
                    continue
                lines.append(block.text.replace("\r\n", "\n").replace("\r", "\n"))
                continue
            for row in block.rows:
                cells, seen = [], set()
                for cell in row.cells:
                    if id(cell._tc) not in seen:  # a merged cell is listed once per column it spans
                        seen.add(id(cell._tc))
                        cells.append(" ".join(cell.text.split()))
                lines.append(" | ".join(c for c in cells if c))
        title = (doc.core_properties.title or "").strip()
    except QAError:
        raise
    except Exception as e:  # python-docx raises many kinds on damaged files: all mean "unreadable"
        raise QAError(f"{name}: unreadable Word document ({e.__class__.__name__})") from e
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    headings = tuple((starts[k], starts[k] + len(lines[k])) for k in marked)
    if not title and marked:
        title = lines[marked[0]]
    return (title[:MAX_TITLE_CHARS] or None), "\n".join(lines), headings
