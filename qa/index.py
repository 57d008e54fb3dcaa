"""Step 3 (the index as a whole): a loaded ``Index`` and how it is read from its generation.

The files of a generation are written by ``qa.build``; the folder, its generations and locks are
``qa.storage``; the manifest and staleness ``qa.manifest``; FAISS ``qa.dense``; BM25 ``qa.bm25``.
Every file is checked on load; a bad one is a one-line ``QAError`` naming it.
"""

from __future__ import annotations

import sys
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from qa.bm25 import BM25, load_bm25
from qa.config import Settings
from qa.datatypes import Passage, QAError
from qa.dense import read_faiss
from qa.manifest import check_files, read_manifest, read_manifest_of, staleness
from qa.passages import JSON_FILE, PASSAGE_FILES, ROWS, open_passages, read_json_passages
from qa.storage import damaged, with_current

Log = Callable[[str], None]


@dataclass
class Index:
    """A loaded index, ready for queries."""

    folder: Path
    manifest: dict
    passages: Sequence[Passage]  # a qa.passages.PassageStore (a list for an index of format 4 or older)
    dense: object  # faiss.Index over passage embeddings
    bm25: BM25
    sentence_vectors: np.ndarray  # (n_sentences, dim) float16, memory-mapped
    sentence_ptr: np.ndarray  # passage row p owns sentence rows sentence_rows[ptr[p]:ptr[p+1]]
    sentence_rows: np.ndarray

    @cached_property
    def titles(self) -> dict[str, str]:
        """Document id -> title, made once per loaded index (every citation looks one up)."""
        return {d: meta["title"] for d, meta in self.manifest["docs"].items()}

    def passage_vector(self, row: int) -> np.ndarray:
        return self.dense.reconstruct(int(row))

    def sentence_vectors_of(self, row: int) -> np.ndarray:
        rows = self.sentence_rows[self.sentence_ptr[row] : self.sentence_ptr[row + 1]]
        return np.asarray(self.sentence_vectors[rows], dtype=np.float32)


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def open_existing(settings: Settings, *, log: Log = stderr_log) -> Index:
    """Load the index as it is, without building: a stale one with a warning line saying why."""
    if read_manifest(Path(settings.index)) is None:
        raise QAError(f"no index in {settings.index} yet: build it first with `qa index`")
    reason = staleness(settings)
    if reason:
        log(f"warning: the index is stale ({reason}); answering from it as it is (`qa index` updates it)")
    return load_index(settings)


def load_index(settings: Settings, *, verify: bool = True) -> Index:
    """Load the live generation; QAError (one line, naming the bad file) when it is missing or damaged.

    The generation is held (shared lock) while it is read, so no build deletes it meanwhile; when a
    build replaced it between reading CURRENT and taking the lock, CURRENT is read again."""
    folder = Path(settings.index)

    def read(gen: Path) -> Index:
        return _load_generation(folder, gen, read_manifest_of(folder, gen), settings, verify)

    index = with_current(folder, read)
    if index is None:
        raise QAError(f"no index in {folder}: run `qa index`")
    return index


def _load_generation(folder: Path, gen: Path, manifest: dict, settings: Settings, verify: bool) -> Index:
    """Open and check every file of ``gen``; QAError naming the first bad one. The passages, the
    sentence vectors and the FAISS index are memory-mapped: nothing is read until a query needs it."""
    check_files(folder, gen, manifest, verify=verify)
    name = pfile = JSON_FILE if JSON_FILE in manifest["files"] else ROWS  # named when another file disagrees
    try:
        if pfile == JSON_FILE:
            passages: Sequence[Passage] = read_json_passages(gen)
            if any(p.doc not in manifest["docs"] for p in passages):
                raise ValueError(f"{name} does not match manifest.json")
            counts = np.array([len(p.sentences) for p in passages], dtype=np.int64)
        else:
            passages = open_passages(gen, manifest["docs"])
            counts = passages.sentence_counts()
        if len(passages) != manifest["passages"]:
            raise ValueError(f"{name} does not match manifest.json")
        name = "dense.faiss"
        dense = read_faiss(gen / name, manifest["faiss"], settings,
                           vector_bytes=manifest["passages"] * manifest["model"]["dim"] * 2)  # float16
        if dense.ntotal != len(passages) or dense.d != manifest["model"]["dim"]:
            raise ValueError(f"dense.faiss does not match {pfile}")
        name = "bm25.npz"
        try:
            bm25 = load_bm25(gen)
        except QAError:
            raise ValueError("bm25.npz or bm25_vocab.json is unreadable") from None
        if bm25.n_docs != len(passages):
            raise ValueError(f"bm25.npz does not match {pfile}")
        name = "sentences.npy"
        sentence_vecs = np.load(gen / name, mmap_mode="r")
        if sentence_vecs.shape != (manifest["sentences"], dense.d) or sentence_vecs.dtype != np.float16:
            raise ValueError("sentences.npy does not match manifest.json")
        name = "sentence_table.npz"
        with np.load(gen / name) as table:
            ptr, rows = table["ptr"], table["rows"]
        if not (ptr.ndim == rows.ndim == 1 and ptr.dtype.kind == rows.dtype.kind == "i"
                and len(ptr) == len(passages) + 1 and ptr[0] == 0 and ptr[-1] == len(rows)
                and (not len(rows) or 0 <= int(rows.min()) <= int(rows.max()) < len(sentence_vecs))
                and np.array_equal(np.diff(ptr), counts)):
            raise ValueError(f"sentence_table.npz does not match {pfile}")
    except QAError:
        raise
    except FileNotFoundError as e:
        raise damaged(folder, f"{Path(e.filename or name).name} is missing") from None
    except ValueError as e:
        what = str(e)
        raise damaged(folder, what if what.split(" ", 1)[0] in (name, *PASSAGE_FILES) else f"{name} is unreadable") from None
    except (OSError, KeyError, TypeError, RuntimeError, EOFError, IndexError, AttributeError, RecursionError,
            zipfile.BadZipFile):
        raise damaged(folder, f"{name} is unreadable") from None
    return Index(gen, manifest, passages, dense, bm25, sentence_vecs, ptr, rows)


def documents_summary(index: Index) -> list[dict]:
    """One row per indexed document: id, title, passages."""
    return [{"doc": d, "title": m["title"], "passages": m["passages"]} for d, m in sorted(index.manifest["docs"].items())]
