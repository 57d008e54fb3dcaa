"""Step 3 (the index as a whole): a loaded ``Index`` and how it is read from its generation.

The files of a generation are written by ``qa.build``; the folder, its generations and locks are
``qa.storage``; the manifest and staleness ``qa.manifest``; FAISS ``qa.dense``; BM25 ``qa.bm25``.
Every file is checked on load; a bad one is a one-line ``QAError`` naming it.
"""

from __future__ import annotations

import json
import sys
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from qa.bm25 import BM25, load_bm25
from qa.config import Settings
from qa.datatypes import Passage, QAError
from qa.dense import read_faiss
from qa.load import file_sha256
from qa.manifest import GENERATION_FILES, read_manifest, read_manifest_of, staleness
from qa.storage import damaged, with_current

PASSAGE_COLUMNS = ("doc", "ordinal", "start", "end", "line", "text", "sentences", "page", "page_line", "heading")
Log = Callable[[str], None]


@dataclass
class Index:
    """A loaded index, ready for queries."""

    folder: Path
    manifest: dict
    passages: list[Passage]
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
    """Read and check every file of ``gen``; QAError naming the first bad one."""
    if verify:
        for name in GENERATION_FILES:
            try:
                digest = file_sha256(gen / name)
            except FileNotFoundError:
                raise damaged(folder, f"{name} is missing") from None
            except OSError as e:
                raise damaged(folder, f"{name} is unreadable: {e.strerror or e}") from None
            if digest != manifest["files"][name]:
                raise damaged(folder, f"{name} was modified")
    else:
        for name in GENERATION_FILES:
            if not (gen / name).is_file():
                raise damaged(folder, f"{name} is missing")
    name = "passages.json"
    try:
        passages = read_passages(gen)
        if len(passages) != manifest["passages"] or any(p.doc not in manifest["docs"] for p in passages):
            raise ValueError("passages.json does not match manifest.json")
        name = "dense.faiss"
        dense = read_faiss(gen / name, manifest["faiss"], settings)
        if dense.ntotal != len(passages) or dense.d != manifest["model"]["dim"]:
            raise ValueError("dense.faiss does not match passages.json")
        name = "bm25.npz"
        try:
            bm25 = load_bm25(gen)
        except QAError:
            raise ValueError("bm25.npz or bm25_vocab.json is unreadable") from None
        if bm25.n_docs != len(passages):
            raise ValueError("bm25.npz does not match passages.json")
        name = "sentences.npy"
        sentence_vecs = np.load(gen / name, mmap_mode="r")
        if sentence_vecs.shape != (manifest["sentences"], dense.d) or sentence_vecs.dtype != np.float16:
            raise ValueError("sentences.npy does not match manifest.json")
        name = "sentence_table.npz"
        with np.load(gen / name) as table:
            ptr, rows = table["ptr"], table["rows"]
        if not (ptr.ndim == rows.ndim == 1 and ptr.dtype.kind == rows.dtype.kind == "i"
                and len(ptr) == len(passages) + 1 and ptr[0] == 0 and ptr[-1] == len(rows)
                and bool(np.all(np.diff(ptr) >= 0))
                and (not len(rows) or 0 <= int(rows.min()) <= int(rows.max()) < len(sentence_vecs))
                and np.array_equal(np.diff(ptr), [len(p.sentences) for p in passages])):
            raise ValueError("sentence_table.npz does not match passages.json")
    except QAError:
        raise
    except FileNotFoundError:
        raise damaged(folder, f"{name} is missing") from None
    except ValueError as e:
        what = str(e)
        raise damaged(folder, what if what.startswith(name) else f"{name} is unreadable") from None
    except (OSError, KeyError, TypeError, RuntimeError, EOFError, IndexError, AttributeError, RecursionError,
            zipfile.BadZipFile):
        raise damaged(folder, f"{name} is unreadable") from None
    return Index(gen, manifest, passages, dense, bm25, sentence_vecs, ptr, rows)


def read_passages(gen: Path) -> list[Passage]:
    """The passages, sharing equal values: one doc-id string per document, one (start, end)
    tuple per sentence (neighbours overlap by a sentence), one int object per offset.
    ValueError when passages.json is not the columns a build writes."""
    c = json.loads((gen / "passages.json").read_bytes().decode("utf-8"))
    if not isinstance(c, dict) or not all(isinstance(c.get(k), list) for k in PASSAGE_COLUMNS) \
            or len({len(c[k]) for k in PASSAGE_COLUMNS}) != 1:
        raise ValueError("passages.json does not hold the passage columns")
    docs: dict[str, str] = {}
    ints: dict[int, int] = {}
    spans: dict[tuple, tuple[int, int]] = {}
    same = ints.setdefault
    out = []
    headings: dict[str, str] = {}
    for doc, ordinal, start, end, line, text, sents, page, page_line, heading in zip(*(c[k] for k in PASSAGE_COLUMNS)):
        if not (type(doc) is str and type(text) is str and type(ordinal) is int and type(start) is int
                and type(end) is int and type(line) is int and type(sents) is list
                and type(page) is int and type(page_line) is int and type(heading) is str
                and 0 <= start and end - start == len(text)):
            raise ValueError("passages.json holds a malformed passage")
        sents = [(s, e) for s, e in sents]
        if not all(type(s) is int and type(e) is int and start <= s <= e <= end for s, e in sents):
            raise ValueError("passages.json holds a malformed passage")
        doc = docs.setdefault(doc, doc)
        sentences = tuple(spans.setdefault((doc, s, e), (same(s, s), same(e, e))) for s, e in sents)
        out.append(Passage(doc, same(ordinal, ordinal), same(start, start), same(end, end), same(line, line),
                           text, sentences, same(page, page), same(page_line, page_line),
                           headings.setdefault(heading, heading)))
    return out


def documents_summary(index: Index) -> list[dict]:
    """One row per indexed document: id, title, passages."""
    return [{"doc": d, "title": m["title"], "passages": m["passages"]} for d, m in sorted(index.manifest["docs"].items())]
