"""Step 4: find the passages for a query: BM25, dense (FAISS) or both fused."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from qa.bm25 import bm25_top
from qa.config import Settings, check_choice
from qa.dense import dense_top
from qa.index import Index
from qa.terms import tokenize
from qa.datatypes import Hit
from qa.protocols import Retriever, TextEncoder

@dataclass
class Retrieval:
    hits: list[Hit]
    query_vector: np.ndarray | None  # (dim,) float32, when the query was encoded
    timings_ms: dict[str, float]


def bm25_retriever(index: Index, query: str, qvec: np.ndarray | None, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """BM25 over the query's terms (``qa.terms.tokenize``)."""
    return bm25_top(index.bm25, tokenize(query), depth)


def dense_retriever(index: Index, query: str, qvec: np.ndarray | None, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Inner product of the query's vector with the passages' (FAISS)."""
    return dense_top(index.dense, qvec, depth)


RETRIEVERS: dict[str, Retriever] = {"bm25": bm25_retriever, "dense": dense_retriever}


def retrieve(index: Index, encoder: TextEncoder, query: str, settings: Settings) -> Retrieval:
    """The top ``settings.k`` passages for ``query`` by ``settings.mode``."""
    check_choice("mode", settings.mode)  # settings built in code may skip Settings.validate
    check_choice("fusion", settings.fusion)
    timings: dict[str, float] = {}
    n = len(index.passages)
    depth = min(n, max(settings.candidates, settings.k))
    sparse = dense = None
    qvec = None
    if settings.mode in ("bm25", "hybrid"):
        t = time.perf_counter()
        sparse = RETRIEVERS["bm25"](index, query, None, depth)
        timings["bm25"] = _ms(t)
    if settings.mode in ("dense", "hybrid"):
        t = time.perf_counter()
        qvec = encoder.encode([query])[0]
        timings["encode"] = _ms(t)
        t = time.perf_counter()
        dense = RETRIEVERS["dense"](index, query, qvec, depth)
        timings["faiss"] = _ms(t)
    t = time.perf_counter()
    if settings.mode == "bm25":
        ranked = list(zip(sparse[0].tolist(), sparse[1].tolist()))
    elif settings.mode == "dense":
        ranked = list(zip(dense[0].tolist(), dense[1].tolist()))
    else:
        sentences = sentence_rerank(index, qvec, np.union1d(sparse[0], dense[0]))
        w = settings.dense_weight
        weights = [1 - w, w / 2, w / 2]  # BM25; the two dense signals share the dense weight
        if settings.fusion == "rrf":
            ranked = rrf([sparse[0].tolist(), dense[0].tolist(), sentences[0].tolist()], settings.rrf_k, weights)
        else:
            ranked = weighted_fusion([sparse, dense, sentences], weights)
    raw = {"bm25": dict(zip(*sparse)) if sparse else {}, "dense": dict(zip(*dense)) if dense else {}}
    hits = [
        Hit(
            row=row,
            passage=index.passages[row],
            score=float(score),
            rank=rank,
            scores={name: float(s[row]) for name, s in raw.items() if row in s},
        )
        for rank, (row, score) in enumerate(ranked[: settings.k])
    ]
    timings["fusion"] = _ms(t)
    return Retrieval(hits, qvec, timings)


def sentence_rerank(index: Index, qvec: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The candidate passages ranked by their best sentence's similarity to the query.

    Passage embeddings blur a passage's several topics; the best single sentence is a
    sharper signal of whether the passage answers the question. All candidates' sentence
    vectors are gathered at once and scored with one matrix-vector product.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return rows, np.zeros(0)
    starts = index.sentence_ptr[rows]
    lens = index.sentence_ptr[rows + 1] - starts
    firsts = np.cumsum(lens) - lens  # where each candidate's sentences start in the gathered block
    pos = np.repeat(starts - firsts, lens) + np.arange(int(lens.sum()))
    sims = np.asarray(index.sentence_vectors[index.sentence_rows[pos]], dtype=np.float32) @ qvec
    best = np.full(len(rows), -1.0)
    has = lens > 0
    if has.any():
        best[has] = np.maximum(np.maximum.reduceat(sims, firsts[has]).astype(np.float64), -1.0)
    order = np.lexsort((rows, -best))
    return rows[order], best[order]


def rrf(rankings: list[list[int]], k: int = 60, weights: list[float] | None = None) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of weight / (k + rank), rank from 1.

    Without ``weights`` every ranking weighs 1. Ties are broken by the best single rank,
    then by row, so the order is deterministic.
    """
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for ranking, weight in zip(rankings, weights if weights is not None else [1.0] * len(rankings)):
        for rank, row in enumerate(ranking, start=1):
            scores[row] = scores.get(row, 0.0) + weight / (k + rank)
            best[row] = min(best.get(row, rank), rank)
    return sorted(scores.items(), key=lambda item: (-item[1], best[item[0]], item[0]))


def weighted_fusion(
    results: list[tuple[np.ndarray, np.ndarray]], weights: list[float]
) -> list[tuple[int, float]]:
    """Weighted sum of min-max normalised scores; a passage missing from a list scores 0 there."""
    fused: dict[int, float] = {}
    for (rows, scores), weight in zip(results, weights):
        if len(rows) == 0:
            continue
        lo, hi = float(np.min(scores)), float(np.max(scores))
        norm = (scores - lo) / (hi - lo) if hi > lo else np.ones_like(scores)
        for row, s in zip(rows.tolist(), norm.tolist()):
            fused[row] = fused.get(row, 0.0) + weight * s
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def _ms(t: float) -> float:
    return (time.perf_counter() - t) * 1000.0
