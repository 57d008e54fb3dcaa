"""Uploaded files: checked (name, type, size, readable as a document) before they reach the corpus folder."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
import uuid
from pathlib import Path

from qa.datatypes import QAError
from qa.load import SUFFIXES, file_hash, fingerprint, load_document

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


def add_uploads(paths: list[str], corpus: Path) -> tuple[list[str], list[str]]:
    """Copy the readable files among ``paths`` into ``corpus``: (names added, problems).

    Each file is checked first (name, type, size, readable as a document, not already
    in the corpus) on a temporary copy; a refused file leaves the corpus untouched. An
    existing document is never overwritten: a different file of the same name gets a
    numbered name.
    """
    corpus = Path(corpus)
    known = {digest: doc for doc, digest in fingerprint(corpus).items()}
    added: list[str] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="qa-upload-") as tmp:
        for i, path in enumerate(map(Path, paths)):
            try:
                name = _check_upload(path, Path(tmp) / str(i))
                digest = file_hash(path.read_bytes())
                if digest in known:
                    raise QAError(f"{name}: already in the corpus as {known[digest]}")
            except QAError as e:
                problems.append(str(e))
                continue
            target = _free_target(corpus, name)
            staged = corpus / f".upload-{uuid.uuid4().hex}.tmp"
            shutil.copyfile(path, staged)
            os.replace(staged, target)
            known[digest] = target.name
            added.append(target.name)
    return added, problems


def remove_uploads(names: list[str], corpus: Path) -> None:
    """Take back files that ``add_uploads`` added (when indexing them failed)."""
    for name in names:
        (Path(corpus) / name).unlink(missing_ok=True)


def _check_upload(path: Path, folder: Path) -> str:
    name = safe_name(path.name)
    if Path(name).suffix.lower() not in SUFFIXES:
        raise QAError(f"{name}: not a supported file type (use {', '.join(UPLOAD_TYPES)})")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise QAError(f"{name}: the upload could not be read") from e
    if size > MAX_UPLOAD_BYTES:
        raise QAError(f"{name}: too large ({size / 2**20:.1f} MB; at most {MAX_UPLOAD_BYTES // 2**20} MB)")
    folder.mkdir()
    copy = folder / name
    shutil.copyfile(path, copy)
    try:
        load_document(copy, folder)
    except QAError:
        raise
    except Exception as e:  # a parser choking on a damaged file: refuse it like any unreadable file
        raise QAError(f"{name}: unreadable ({e.__class__.__name__})") from e
    return name


def _free_target(corpus: Path, name: str) -> Path:
    stem, suffix = os.path.splitext(name)
    target, n = corpus / name, 1
    while target.exists():
        n += 1
        target = corpus / f"{stem}-{n}{suffix}"
    return target
