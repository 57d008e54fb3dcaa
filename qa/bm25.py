"""BM25 over precomputed postings, scoring exactly like ``rank_bm25.BM25Okapi.get_scores``.

Each (term, document) pair stores its whole contribution
``idf[t] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``, computed with the
same floating-point operations as rank-bm25, so a query is a sum of posting slices.
Only numpy is imported here; rank-bm25 is the reference the tests hold the scores to.
"""

from __future__ import annotations

import json
import math
import zipfile
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.datatypes import QAError
from qa.storage import writing

NPZ_FILE = "bm25.npz"
VOCAB_FILE = "bm25_vocab.json"
DOCS_FILE, WEIGHTS_FILE = "bm25_docs.npy", "bm25_weights.npy"  # format 2: the postings, memory-mapped
BM25_FILES = (NPZ_FILE, VOCAB_FILE, DOCS_FILE, WEIGHTS_FILE)
_FORMAT = 2  # 1: the postings inside bm25.npz (read whole: 0.17 of the 0.27 s an index of 100k passages took to open)


@dataclass(eq=False)
class BM25:
    """Postings in CSR layout by term: term ``t`` occurs in ``docs[indptr[t]:indptr[t+1]]``."""

    vocab: dict[str, int]  # term -> term id
    indptr: np.ndarray  # int64, len(vocab) + 1
    docs: np.ndarray  # int32 row ids, ascending within each term
    weights: np.ndarray  # float64, the score contribution of each posting
    n_docs: int
    k1: float = 1.5
    b: float = 0.75
    epsilon: float = 0.25


@dataclass(eq=False)
class TermCounts:
    """Each document's distinct terms and their frequencies, counted as the documents stream past
    (``count_terms``): what ``bm25_from_counts`` needs, in a few bytes a posting. Term ids are given in
    order of first occurrence, as ``rank_bm25`` orders its idf table (its average idf sums them in it)."""

    vocab: dict[str, int]
    term_ids: array  # int32, each document's distinct terms in order of first occurrence, document after document
    tf: array  # int32, the frequency of each of them in its document
    n_terms: array  # int64, distinct terms per document
    doc_len: array  # int64, tokens per document


def count_terms(corpus_tokens: Iterable[list[str]]) -> TermCounts:
    """Count the terms of tokenised documents, one document at a time: a build passes a generator, so
    no list of every document's tokens is held (at 1M passages those lists took ~6 GB, rank_bm25's
    per-document dicts as much again)."""
    vocab: dict[str, int] = {}
    counts = TermCounts(vocab, array("i"), array("i"), array("q"), array("q"))
    add_term = vocab.setdefault
    for tokens in corpus_tokens:
        freqs = Counter(tokens)  # keeps the order of first occurrence
        counts.term_ids.extend([add_term(t, len(vocab)) for t in freqs])
        counts.tf.extend(freqs.values())
        counts.n_terms.append(len(freqs))
        counts.doc_len.append(len(tokens))
    return counts


def build_bm25(
    corpus_tokens: Iterable[list[str]], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25
) -> BM25:
    """Index tokenised documents, scoring like ``BM25Okapi`` over them."""
    return bm25_from_counts(count_terms(corpus_tokens), k1, b, epsilon)


def bm25_from_counts(counts: TermCounts, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> BM25:
    """The index of counted documents, with ``BM25Okapi``'s idf, document lengths and operations."""
    n_docs = len(counts.doc_len)
    vocab = counts.vocab
    total_len = sum(counts.doc_len)
    if not total_len:  # no terms at all: rank-bm25 would divide by zero
        return BM25({}, np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float64),
                    n_docs, float(k1), float(b), float(epsilon))
    term_ids = np.frombuffer(counts.term_ids, dtype=np.int32)
    tf = np.frombuffer(counts.tf, dtype=np.int32)
    n_terms = np.frombuffer(counts.n_terms, dtype=np.int64)
    rows = np.repeat(np.arange(n_docs, dtype=np.int32), n_terms)
    df = np.bincount(term_ids, minlength=len(vocab))

    # BM25Okapi._calc_idf, term by term in its order (its average idf is a sum in that order)
    idf = np.empty(len(vocab), dtype=np.float64)
    idf_sum = 0.0
    for t, freq in enumerate(df.tolist()):
        idf[t] = value = math.log(n_docs - freq + 0.5) - math.log(freq + 0.5)
        idf_sum += value
    idf[idf < 0] = epsilon * (idf_sum / len(vocab))
    doc_len = np.frombuffer(counts.doc_len, dtype=np.int64)
    avgdl = total_len / n_docs
    # Same operations, in the same order, as BM25Okapi.get_scores.
    norm = k1 * (1 - b + b * doc_len / avgdl)
    weights = idf[term_ids] * (tf * (k1 + 1) / (tf + norm[rows]))
    del norm

    order = _stable_argsort(term_ids)  # keeps rows ascending within a term
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    return BM25(vocab, indptr, rows[order], weights[order], n_docs, float(k1), float(b), float(epsilon))


def _stable_argsort(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative int32 keys as two 16-bit radix passes (about 2x numpy's timsort)."""
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    if keys.size and int(keys.max()) > 0xFFFF:
        high = (keys >> 16).astype(np.uint16)[order]
        order = order[np.argsort(high, kind="stable")]
    return order


def bm25_scores(index: BM25, query_tokens: list[str]) -> np.ndarray:
    """Score of every document (float64, length ``n_docs``); a repeated token counts each time."""
    scores = np.zeros(index.n_docs, dtype=np.float64)
    for token in query_tokens:
        t = index.vocab.get(token)
        if t is not None:
            lo, hi = index.indptr[t], index.indptr[t + 1]
            rows = index.docs[lo:hi]
            if hi > lo and not (0 <= rows.min() and rows.max() < index.n_docs):  # a few µs beside the sum
                raise QAError("the BM25 index is damaged (a posting names no passage): run `qa index --rebuild`")
            scores[rows] += index.weights[lo:hi]
    return scores


def bm25_top(index: BM25, query_tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows (int64) and scores of the ``k`` best documents with a positive score, best first.

    Equal scores are ordered by row id.
    """
    scores = bm25_scores(index, query_tokens)
    rows = np.flatnonzero(scores > 0)
    if k <= 0 or rows.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    found = scores[rows]
    if rows.size > k:
        kth = found[np.argpartition(-found, k - 1)[:k]].min()
        keep = found >= kth  # every tie of the k-th score, so the tie-break is by row
        rows, found = rows[keep], found[keep]
    order = np.lexsort((rows, -found))[:k]
    return rows[order].astype(np.int64, copy=False), found[order]


def save_bm25(index: BM25, folder: Path) -> None:
    """Write ``bm25_docs.npy``, ``bm25_weights.npy`` (the postings), ``bm25.npz`` (the rest) and
    ``bm25_vocab.json`` into ``folder``; IndexWriteError naming the file that could not be written."""
    folder = Path(folder)
    for name, array in ((DOCS_FILE, index.docs.astype(np.int32, copy=False)),
                        (WEIGHTS_FILE, index.weights.astype(np.float64, copy=False))):
        with writing(folder / name), open(folder / name, "wb") as f:
            np.save(f, array, allow_pickle=False)
    terms = sorted(index.vocab, key=index.vocab.__getitem__)
    with writing(folder / NPZ_FILE), open(folder / NPZ_FILE, "wb") as f:
        np.savez(f, format=np.int64(_FORMAT), n_docs=np.int64(index.n_docs),
                 params=np.array([index.k1, index.b, index.epsilon], dtype=np.float64),
                 indptr=index.indptr.astype(np.int64, copy=False))
    with writing(folder / VOCAB_FILE):
        (folder / VOCAB_FILE).write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")


def load_bm25(folder: Path) -> BM25:
    """Read an index written by ``save_bm25`` (the postings memory-mapped: a query reads only its terms'),
    or by the format-1 writer (postings inside ``bm25.npz``); ``QAError`` if it is missing or broken.

    Whether every posting names a passage is checked when a query reads it (``bm25_scores``): checking
    them all here would read every posting (0.25 GB at 1M passages) at every start."""
    folder = Path(folder)
    try:
        with np.load(folder / NPZ_FILE, allow_pickle=False) as npz:
            version = int(npz["format"])
            if version not in (1, _FORMAT):
                raise ValueError(f"unknown format {version}")
            n_docs = int(npz["n_docs"])
            k1, b, epsilon = (float(x) for x in npz["params"])
            indptr = npz["indptr"]
            if version == 1:
                docs, weights = npz["docs"], npz["weights"]
        if version == _FORMAT:
            docs = np.load(folder / DOCS_FILE, mmap_mode="r", allow_pickle=False)
            weights = np.load(folder / WEIGHTS_FILE, mmap_mode="r", allow_pickle=False)
        terms = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise QAError(f"BM25 index file missing: {e.filename}; rebuild the index") from None
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as e:
        raise QAError(f"BM25 index in {folder} is corrupt ({type(e).__name__}); rebuild the index") from None
    if not (
        isinstance(terms, list)
        and all(isinstance(t, str) for t in terms)
        and indptr.dtype == np.int64
        and docs.dtype == np.int32
        and weights.dtype == np.float64
        and indptr.shape == (len(terms) + 1,)
        and indptr[0] == 0
        and docs.shape == weights.shape == (int(indptr[-1]),)
        and bool(np.all(np.diff(indptr) >= 0))
    ):
        raise QAError(f"BM25 index in {folder} is corrupt (inconsistent arrays); rebuild the index")
    vocab = {t: i for i, t in enumerate(terms)}
    if len(vocab) != len(terms):
        raise QAError(f"BM25 index in {folder} is corrupt (duplicate terms); rebuild the index")
    return BM25(vocab, indptr, docs, weights, n_docs, k1, b, epsilon)
