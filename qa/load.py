"""Step 1: read the corpus folder into Documents (.txt, .md, .html, .pdf, recursively)."""

from __future__ import annotations

import hashlib
import html
import re
import sys
from pathlib import Path

from qa.types import Document, QAError

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")
MAX_TITLE_CHARS = 200


def corpus_files(corpus: Path) -> list[Path]:
    """The readable-looking files under the corpus folder, sorted, hidden files skipped."""
    corpus = Path(corpus)
    if not corpus.exists():
        raise QAError(f"corpus folder not found: {corpus}")
    if not corpus.is_dir():
        raise QAError(f"corpus is not a folder: {corpus}")
    files = [
        p
        for p in corpus.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(corpus).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(corpus).as_posix())


def doc_id(path: Path, corpus: Path) -> str:
    return path.relative_to(corpus).as_posix()


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(corpus: Path) -> dict[str, str]:
    """Document id -> sha256 of the raw bytes, for every file that would be loaded."""
    corpus = Path(corpus)
    return {doc_id(p, corpus): file_hash(p.read_bytes()) for p in corpus_files(corpus)}


def load_document(path: Path, corpus: Path) -> Document:
    """Read one file; raises QAError when it cannot be read as text."""
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        title, text = _read_pdf(path)
    else:
        raw = _decode(data, path)
        if suffix in (".html", ".htm"):
            title, text = _read_html(raw)
        elif suffix in (".md", ".markdown"):
            title, text = _markdown_title(raw), raw
        else:
            title, text = None, raw
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise QAError(f"{path.name}: no text found")
    return Document(
        id=doc_id(path, corpus),
        title=title or _first_line_title(text) or path.stem,
        text=text,
        sha256=file_hash(data),
    )


def load_corpus(corpus: Path, *, only: set[str] | None = None, warn=None) -> list[Document]:
    """Load every document (or just the ids in ``only``); unreadable files are reported and skipped.

    Raises QAError when the folder is missing or nothing readable is in it.
    """
    corpus = Path(corpus)
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    files = corpus_files(corpus)
    if not files:
        raise QAError(f"no documents in {corpus} (expected {', '.join(SUFFIXES)} files)")
    docs = []
    for path in files:
        if only is not None and doc_id(path, corpus) not in only:
            continue
        try:
            docs.append(load_document(path, corpus))
        except QAError as e:
            warn(f"skipped {e}")
    if not docs and only is None:
        raise QAError(f"no readable documents in {corpus}")
    return docs


def _decode(data: bytes, path: Path) -> str:
    if b"\x00" in data[:8192]:
        raise QAError(f"{path.name}: binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as e:
        raise QAError(f"{path.name}: not UTF-8 or Windows-1252 text") from e
    return text


def _markdown_title(raw: str) -> str | None:
    """The front matter's ``title:``, else the first ``#`` heading."""
    front = re.match(r"---\s*\n(.*?)\n---\s*\n", raw, re.S)
    if front:
        m = re.search(r"^title:\s*[\"']?(.+?)[\"']?\s*$", front.group(1), re.M)
        if m:
            return m.group(1)[:MAX_TITLE_CHARS]
    m = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", raw[front.end() if front else 0 :], re.M)
    return m.group(1)[:MAX_TITLE_CHARS] if m else None


def _first_line_title(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line.lstrip("#").strip()[:MAX_TITLE_CHARS]
    return ""


def _read_html(raw: str) -> tuple[str | None, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(raw, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    heading = soup.find(["h1", "h2"])
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    for tag in soup.find_all(["p", "div", "br", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "section", "article", "blockquote", "pre"]):
        tag.insert_before("\n")
        tag.insert_after("\n")
    text = html.unescape(soup.get_text())
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    title = title or (heading.get_text(" ", strip=True) if heading else None)
    return (title[:MAX_TITLE_CHARS] if title else None), text


def _read_pdf(path: Path) -> tuple[str | None, str]:
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
        meta = reader.metadata
        title = str(meta.title or "").strip() if meta else ""
    except Exception as e:  # pypdf raises many kinds on damaged files: all mean "unreadable"
        raise QAError(f"{path.name}: unreadable PDF ({e.__class__.__name__})") from e
    return (title[:MAX_TITLE_CHARS] or None), "\n\n".join(p.strip() for p in pages if p.strip())
