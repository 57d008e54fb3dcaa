"""Step 3 (the passages on disk): a columnar store, memory-mapped, whose ``Passage`` objects are made on demand.

A generation holds its passages in four files (``write_passages``)::

    passages.npy          one row of int64 columns per passage (``ROW``): document, ordinal, offsets,
                          line, page, heading, and where its text and sentence spans end
    passage_spans.npy     (sentences, 2) int64: the (start, end) of every passage's sentences, in order
    passage_texts.bin     the passages' texts, UTF-8, one after the other
    passage_strings.json  the document ids and section headings the rows name by number

``open_passages`` maps the arrays and the texts and checks the columns with whole-array operations,
without reading a text: at 100k passages parsing the JSON columns of format 4 into ``Passage``
objects was 3.0 of the 4.0 s ``load_index`` took (cProfile, AMD EPYC, 2 cores, load 2). A
``PassageStore`` is a read-only sequence: ``store[row]`` decodes that passage's text and builds its
``Passage``, so only the passages a query touches are ever read. An index of format 4 or older keeps
its passages in ``passages.json`` (``read_json_passages``).
"""

from __future__ import annotations

import json
import mmap
import operator
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Iterator

import numpy as np

from qa.datatypes import Passage, QAError
from qa.storage import writing

ROWS, SPANS, TEXTS, STRINGS = "passages.npy", "passage_spans.npy", "passage_texts.bin", "passage_strings.json"
PASSAGE_FILES = (ROWS, SPANS, TEXTS, STRINGS)
JSON_FILE = "passages.json"  # format 4 and older
ROW = np.dtype([(name, "<i8") for name in ("doc", "ordinal", "start", "end", "line", "page", "page_line", "heading",
                                           "text_end", "spans_end")])
CHUNK = 4096  # rows decoded at a time when the whole store is iterated


class PassageStore(Sequence):
    """The passages of a generation, read from its memory-mapped columns as they are asked for."""

    def __init__(self, folder: Path, rows: np.ndarray, spans: np.ndarray, texts: bytes | mmap.mmap,
                 docs: list[str], headings: list[str]):
        self.folder = folder  # the index folder, named by a damaged-text error
        self.rows, self.spans, self.texts, self.docs, self.headings = rows, spans, texts, docs, headings

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = operator.index(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("passage row out of range")
        text_from = int(self.rows["text_end"][i - 1]) if i else 0
        spans_from = int(self.rows["spans_end"][i - 1]) if i else 0
        row = self.rows[i].item()
        return self._passage(row, text_from, self.spans[spans_from : row[9]].tolist())

    def __iter__(self) -> Iterator[Passage]:
        text_from = spans_from = 0
        for lo in range(0, len(self), CHUNK):
            rows = self.rows[lo : lo + CHUNK].tolist()
            spans = self.spans[spans_from : rows[-1][9]].tolist()
            base = spans_from
            for row in rows:
                yield self._passage(row, text_from, spans[spans_from - base : row[9] - base])
                text_from, spans_from = row[8], row[9]

    def _passage(self, row: tuple, text_from: int, spans: list) -> Passage:
        doc, ordinal, start, end, line, page, page_line, heading, text_end, _ = row
        try:
            text = self.texts[text_from:text_end].decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or len(text) != end - start:
            raise QAError(f"index in {self.folder} is damaged ({TEXTS} does not match {ROWS}): "
                          "run `qa index --rebuild`")
        return Passage(self.docs[doc], ordinal, start, end, line, text, tuple(map(tuple, spans)), page, page_line,
                       self.headings[heading])

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def sentence_counts(self) -> np.ndarray:
        """How many sentences each passage has (int64), from the columns alone."""
        return np.diff(self.rows["spans_end"], prepend=0)

    def __repr__(self) -> str:
        return f"PassageStore({len(self)} passages)"


def write_passages(folder: Path, passages: Sequence[Passage]) -> None:
    """Write the four files of the store into ``folder`` (a generation being built); IndexWriteError
    naming the file that could not be written."""
    docs: dict[str, int] = {}
    headings: dict[str, int] = {}
    rows = np.zeros(len(passages), dtype=ROW)
    spans: list[tuple[int, int]] = []
    text_end = 0
    with writing(folder / TEXTS), open(folder / TEXTS, "wb") as f:
        for i, p in enumerate(passages):
            data = p.text.encode("utf-8")
            f.write(data)
            text_end += len(data)
            spans.extend(p.sentences)
            rows[i] = (docs.setdefault(p.doc, len(docs)), p.ordinal, p.start, p.end, p.line, p.page, p.page_line,
                       headings.setdefault(p.heading, len(headings)), text_end, len(spans))
    with writing(folder / ROWS), open(folder / ROWS, "wb") as f:
        np.save(f, rows, allow_pickle=False)
    with writing(folder / SPANS), open(folder / SPANS, "wb") as f:
        np.save(f, np.asarray(spans, dtype=np.int64).reshape(-1, 2), allow_pickle=False)
    with writing(folder / STRINGS), open(folder / STRINGS, "w", encoding="utf-8") as f:
        json.dump({"docs": list(docs), "headings": list(headings)}, f, ensure_ascii=False)


def open_passages(gen: Path, known_docs) -> PassageStore:
    """The store of generation ``gen``, mapped and checked; no text is read. ``known_docs``: the
    document ids of the manifest. ValueError whose message starts with the bad file's name."""
    rows = np.load(gen / ROWS, mmap_mode="r", allow_pickle=False)
    if rows.dtype != ROW or rows.ndim != 1:
        raise ValueError(f"{ROWS} does not hold the passage columns")
    spans = np.load(gen / SPANS, mmap_mode="r", allow_pickle=False)
    if spans.dtype != np.int64 or spans.ndim != 2 or spans.shape[1] != 2:
        raise ValueError(f"{SPANS} does not hold sentence spans")
    try:
        strings = json.loads((gen / STRINGS).read_bytes().decode("utf-8"))
        docs, headings = strings["docs"], strings["headings"]
    except (ValueError, RecursionError, TypeError, KeyError):
        raise ValueError(f"{STRINGS} is unreadable") from None
    if not (isinstance(docs, list) and isinstance(headings, list)
            and all(type(s) is str for s in docs) and all(type(s) is str for s in headings)):
        raise ValueError(f"{STRINGS} is unreadable")
    if not set(docs) <= set(known_docs):
        raise ValueError(f"{STRINGS} does not match manifest.json")
    size = os.path.getsize(gen / TEXTS)
    _check_columns(rows, spans, size, len(docs), len(headings))
    if size:
        with open(gen / TEXTS, "rb") as f:
            texts: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    else:
        texts = b""
    return PassageStore(gen.parent, rows, spans, texts, docs, headings)


def _check_columns(rows: np.ndarray, spans: np.ndarray, text_bytes: int, n_docs: int, n_headings: int) -> None:
    """ValueError naming the file when the columns cannot be what ``write_passages`` wrote."""
    start, end, text_end, spans_end = (np.asarray(rows[k]) for k in ("start", "end", "text_end", "spans_end"))
    chars = end - start
    text_len = np.diff(text_end, prepend=0)  # bytes of each text: 1 to 4 per character of UTF-8
    if not (np.all((rows["doc"] >= 0) & (rows["doc"] < n_docs)) and np.all((rows["heading"] >= 0)
            & (rows["heading"] < n_headings)) and all(np.all(rows[k] >= 0) for k in ("ordinal", "line", "page",
                                                                                    "page_line"))
            and np.all(start >= 0) and np.all(chars >= 0)):
        raise ValueError(f"{ROWS} holds a malformed passage")
    if not (np.all(text_len >= chars) and np.all(text_len <= 4 * chars)
            and (text_end[-1] if len(rows) else 0) == text_bytes):
        raise ValueError(f"{TEXTS} does not match {ROWS}")
    counts = np.diff(spans_end, prepend=0)
    if not (np.all(counts >= 0) and (spans_end[-1] if len(rows) else 0) == len(spans)):
        raise ValueError(f"{SPANS} does not match {ROWS}")
    owner = np.repeat(np.arange(len(rows)), counts)
    s, e = spans[:, 0], spans[:, 1]
    if not np.all((start[owner] <= s) & (s <= e) & (e <= end[owner])):
        raise ValueError(f"{SPANS} does not match {ROWS}")


def read_json_passages(gen: Path) -> list[Passage]:
    """The passages of a format-4 (or older) generation, from ``passages.json``, sharing equal values:
    one doc-id string per document, one (start, end) tuple per sentence (neighbours overlap by a
    sentence), one int object per offset. ValueError when it is not the columns a build wrote."""
    keys = ("doc", "ordinal", "start", "end", "line", "text", "sentences", "page", "page_line", "heading")
    c = json.loads((gen / JSON_FILE).read_bytes().decode("utf-8"))
    if not isinstance(c, dict) or not all(isinstance(c.get(k), list) for k in keys) \
            or len({len(c[k]) for k in keys}) != 1:
        raise ValueError(f"{JSON_FILE} does not hold the passage columns")
    docs: dict[str, str] = {}
    ints: dict[int, int] = {}
    spans: dict[tuple, tuple[int, int]] = {}
    same = ints.setdefault
    out = []
    headings: dict[str, str] = {}
    for doc, ordinal, start, end, line, text, sents, page, page_line, heading in zip(*(c[k] for k in keys)):
        if not (type(doc) is str and type(text) is str and type(ordinal) is int and type(start) is int
                and type(end) is int and type(line) is int and type(sents) is list
                and type(page) is int and type(page_line) is int and type(heading) is str
                and 0 <= start and end - start == len(text)):
            raise ValueError(f"{JSON_FILE} holds a malformed passage")
        sents = [(s, e) for s, e in sents]
        if not all(type(s) is int and type(e) is int and start <= s <= e <= end for s, e in sents):
            raise ValueError(f"{JSON_FILE} holds a malformed passage")
        doc = docs.setdefault(doc, doc)
        sentences = tuple(spans.setdefault((doc, s, e), (same(s, s), same(e, e))) for s, e in sents)
        out.append(Passage(doc, same(ordinal, ordinal), same(start, start), same(end, end), same(line, line),
                           text, sentences, same(page, page), same(page_line, page_line),
                           headings.setdefault(heading, heading)))
    return out
