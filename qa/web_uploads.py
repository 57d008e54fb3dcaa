"""Uploaded files: checked (name, type, size, readable as a document) before they reach the corpus folder.

An upload goes in two steps: ``stage_uploads`` checks and reads the files on a private copy (the
slow part, which needs no lock), ``place_uploads`` copies those that passed into the corpus (quick,
done under the page's update lock together with the index update).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path

from qa.config import UPLOADS
from qa.datatypes import Document, QAError
from qa.load import SUFFIXES, doc_id, fingerprint, load_document

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_NAME_CHARS = 120
UPLOAD_TYPES = sorted(set(SUFFIXES))


def safe_name(name: str) -> str:
    """A plain file name for an uploaded file (no folders, no hidden names); QAError when none is left."""
    base = unicodedata.normalize("NFC", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip()
    cleaned = re.sub(r"[^\w.\- ()]+", "_", base).strip(" .")
    if not cleaned or base.startswith(".") or set(cleaned) <= {".", "_", " "}:
        raise QAError(f"'{name}': not an acceptable file name")
    stem, suffix = os.path.splitext(cleaned)
    return stem[: MAX_NAME_CHARS - len(suffix)] + suffix


@dataclass(frozen=True)
class Staged:
    """An uploaded file that passed the checks, read, waiting to enter the corpus."""

    name: str  # its safe file name
    path: Path  # the checked copy, in the staging folder
    doc: Document  # as read, with the id it gets in the corpus under ``name``


def add_uploads(paths: list[str], corpus: Path) -> tuple[list[str], list[str]]:
    """Copy the readable files among ``paths`` into the corpus's uploads folder (``UPLOADS``):
    (document ids added, such as ``uploads/report.txt``; problems).

    ``stage_uploads`` then ``place_uploads``, in one go (the page does the two apart, see ``qa.web``).
    """
    corpus = Path(corpus)
    with tempfile.TemporaryDirectory(prefix="qa-upload-") as tmp:
        staged, problems = stage_uploads(paths, corpus, corpus / UPLOADS, Path(tmp))
        added, more, _ = place_uploads(staged, corpus, corpus / UPLOADS, {})
    return added, problems + more


def stage_uploads(paths: list[str], corpus: Path, folder: Path, staging: Path) -> tuple[list[Staged], list[str]]:
    """Check and read each of ``paths`` on a copy under ``staging``: (the files that passed, problems).

    A file passes when its name can be made safe, its type is one the loaders read, its size is
    within MAX_UPLOAD_BYTES, it reads as a document within the loaders' time budget, and the same
    bytes are neither in the corpus nor earlier in ``paths``. Nothing here touches the corpus or
    holds a lock: this is the slow part of an upload. ``folder`` is where uploads go in ``corpus``.
    """
    corpus, folder = Path(corpus), Path(folder)
    where = folder.relative_to(corpus) if folder != corpus else Path()
    known = {digest: doc for doc, digest in fingerprint(corpus).items()}
    staged: list[Staged] = []
    problems: list[str] = []
    for i, path in enumerate(map(Path, paths)):
        try:
            root = Path(staging) / str(i)
            name, doc = _check_upload(path, root, where)
            if doc.sha256 in known:
                raise QAError(f"{name}: already in the corpus as {known[doc.sha256]}")
        except QAError as e:
            problems.append(str(e))
            continue
        known[doc.sha256] = name
        staged.append(Staged(name, root / where / name, doc))
    return staged, problems


def place_uploads(staged: list[Staged], corpus: Path, folder: Path,
                  known: dict[str, str]) -> tuple[list[str], list[str], dict[str, Document]]:
    """Copy staged files into ``folder`` of ``corpus``: (their document ids, problems, the documents as read
    by id, for the build). ``known``: digest -> document id of what the index holds, so a file
    that another upload added meanwhile is refused. An existing document is never overwritten: a
    different file of the same name gets a numbered name (and is read again by the build).
    """
    corpus, folder = Path(corpus), Path(folder)
    known = dict(known)
    added: list[str] = []
    problems: list[str] = []
    loaded: dict[str, Document] = {}
    for item in staged:
        if item.doc.sha256 in known:
            problems.append(f"{item.name}: already in the corpus as {known[item.doc.sha256]}")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        target = _free_target(folder, item.name)
        temporary = folder / f".upload-{uuid.uuid4().hex}.tmp"
        shutil.copyfile(item.path, temporary)
        os.replace(temporary, target)
        did = doc_id(target, corpus)
        if did == item.doc.id:
            loaded[did] = item.doc
        known[item.doc.sha256] = did
        added.append(did)
    return added, problems, loaded


def remove_uploads(names: list[str], corpus: Path) -> None:
    """Take back files that ``place_uploads`` added (when indexing them failed), by document id."""
    for name in names:
        (Path(corpus) / name).unlink(missing_ok=True)


def uploaded(docs: list[str]) -> list[str]:
    """The document ids among ``docs`` that are uploads (in the uploads folder), sorted."""
    return sorted(d for d in docs if d.startswith(UPLOADS + "/"))


def remove_upload(doc: str, corpus: Path) -> None:
    """Delete the uploaded document ``doc`` (an id such as ``uploads/report.txt``) from the corpus
    folder; QAError when it is not an upload or is gone. Only uploads can be removed from the page:
    the other documents are the analyst's own files, removed by deleting them from the folder."""
    if not isinstance(doc, str) or not uploaded([doc]) or "/../" in f"/{doc}/" or "\\" in doc:
        raise QAError(f"{doc!r} is not an uploaded document")
    path = Path(corpus) / doc
    try:
        path.unlink()
    except FileNotFoundError:
        raise QAError(f"{doc} is no longer in the corpus folder") from None
    except OSError as e:
        raise QAError(f"{doc} could not be removed ({e.strerror or e})") from None


def _check_upload(path: Path, root: Path, where: Path) -> tuple[str, Document]:
    """The safe name of the upload at ``path`` and its document, read from a copy at ``root/where/name``."""
    name = safe_name(path.name)
    if Path(name).suffix.lower() not in SUFFIXES:
        raise QAError(f"{name}: not a supported file type (use {', '.join(UPLOAD_TYPES)})")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise QAError(f"{name}: the upload could not be read") from e
    if size > MAX_UPLOAD_BYTES:
        raise QAError(f"{name}: too large ({size / 2**20:.1f} MB; at most {MAX_UPLOAD_BYTES // 2**20} MB)")
    copy = root / where / name
    copy.parent.mkdir(parents=True)
    try:
        shutil.copyfile(path, copy)
    except OSError as e:
        raise QAError(f"{name}: the upload could not be read") from e
    try:
        return name, load_document(copy, root)
    except QAError:
        raise
    except Exception as e:  # a parser choking on a damaged file: refuse it like any unreadable file
        raise QAError(f"{name}: unreadable ({e.__class__.__name__})") from e


def _free_target(folder: Path, name: str) -> Path:
    stem, suffix = os.path.splitext(name)
    target, n = folder / name, 1
    while target.exists():
        n += 1
        target = folder / f"{stem}-{n}{suffix}"
    return target
