"""The passage and sentence vectors of a build, taken from the embedding cache or encoded into it.

Hybrid retrieval ranks candidates by their best sentence too (``qa.retrieve.sentence_rerank``),
and the heuristic answerer scores sentences, so every passage needs a vector per sentence. How
they are made is ``Settings.sentence_vectors``:

- ``pooled`` (default): one forward pass per passage. The passage vector is the model's pooled
  output as ever; each sentence's vector is the mean of the passage's token outputs inside that
  sentence, less part of the passage vector (``CONTEXT_REMOVED``). A passage then costs one encoding
  instead of about two passages' worth (the passage and its ~3 own sentences, one by one), for
  0.2-0.3 points of hybrid Recall@5 on SQuAD dev (README, "Indexing speed").
  A sentence shared by two overlapping passages is pooled from the first. Its vector depends on
  the passage around it, so it is cached under the key of the passage's encoder input and its span.
- ``encoded``: every sentence encoded on its own (cached by its text), the older path.

The encoder input of a passage is the passage with its context (``Settings.dense_context``,
``qa.split.dense_text``): its document's title and section heading on a first line, or nothing.
Its vector is cached under that input's key, so another context means other vectors; the
sentence spans are shifted past the context, and pool the sentence's own tokens only (which have
seen the context).

An encoder that cannot pool (the torch backend, test doubles) encodes pooled sentences on their own,
stored under the same keys. ``qa.embcache.encode_pooled_cached`` runs a plan through the cache;
``pooled_shard`` is also what a distributed build's workers run (``qa.distributed``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qa.datatypes import Passage, text_key

# A pooled sentence vector carries its passage's context, which the passage vector already ranks by;
# this much of the (unit) passage vector is taken out of the (unit) pooled one before normalising.
# Chosen on the train articles of SQuAD dev (qa/splits.py; hybrid Recall@5, 0 / 0.3 / 0.5 / 0.7 / 1.0:
# 0.9285 / 0.9321 / 0.9328 / 0.9331 / 0.9277; separately encoded sentences 0.9349).
CONTEXT_REMOVED = 0.7
POOLING_VERSION = 1  # in the cache keys of pooled vectors: bump when how they are made changes


@dataclass
class Plan:
    """What a pooled build encodes: each distinct encoder input once (``texts``: a passage with its
    context, ``qa.split.dense_text``) with the spans, relative to it, of all its sentences and their
    cache keys; the cache key of each passage's vector (``keys``, one per passage) and of each sentence
    row of the sentence table (pooled from the first passage holding it)."""

    texts: list[str]
    spans: list[list[tuple[int, int]]]
    span_keys: list[list[str]]
    keys: list[str]
    row_keys: list[str]

    def missing(self, cached: Callable[[str], bool]) -> list[int]:
        """The items (indices into ``texts``) whose vector or any span vector is not cached."""
        return [j for j, t in enumerate(self.texts)
                if not cached(text_key(t)) or not all(cached(k) for k in self.span_keys[j])]


def span_key(input_key: str, start: int, end: int) -> str:
    """Cache key of the vector pooled over characters ``start:end`` of the encoder input whose
    ``text_key`` is ``input_key``."""
    return f"{input_key}@{POOLING_VERSION}:{start}-{end}"


def input_spans(passage: Passage, text: str) -> list[tuple[int, int]]:
    """The passage's sentences as character spans of ``text``, its encoder input, which ends with the
    passage (``qa.split.dense_text``): after the context the input puts before it."""
    shift = len(text) - len(passage.text) - passage.start
    return [(s + shift, e + shift) for s, e in passage.sentences]


def plan(passages: Sequence[Passage], inputs: Sequence[str], sentence_ptr: np.ndarray,
         sentence_rows: np.ndarray) -> Plan:
    """The pooled encoding of ``passages``, each seen by the encoder as ``inputs[i]``
    (``qa.split.dense_text``), and of their sentence table (``qa.index``'s ptr and rows)."""
    n_rows = int(sentence_rows.max()) + 1 if len(sentence_rows) else 0
    row_keys = [""] * n_rows
    item_of: dict[str, int] = {}
    texts: list[str] = []
    keys: list[str] = []
    spans: list[list[tuple[int, int]]] = []
    for i, (p, text) in enumerate(zip(passages, inputs, strict=True)):
        own = input_spans(p, text)
        key = text_key(text)
        keys.append(key)
        j = item_of.get(key)
        if j is None:
            j = item_of[key] = len(texts)
            texts.append(text)
            spans.append([])
        spans[j].extend(span for span in own if span not in spans[j])  # a text split two ways: both
        for span, row in zip(own, sentence_rows[sentence_ptr[i] : sentence_ptr[i + 1]].tolist()):
            if not row_keys[row]:
                row_keys[row] = span_key(key, *span)
    span_keys = [[span_key(text_key(t), *span) for span in sp] for t, sp in zip(texts, spans)]
    return Plan(texts, spans, span_keys, keys, row_keys)


def encode_passages(encoder, texts: list[str], spans: list[list[tuple[int, int]]],
                    batch_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The vectors of ``texts`` and of the spans ``spans[i]`` of each, pooled from one forward pass
    when the encoder can (a span past the model's window, which no token of the pass covers, is
    encoded on its own), else each span encoded on its own."""
    if getattr(encoder, "pools_spans", False):
        vectors, pooled = encoder.encode_spans(texts, spans, batch_size=batch_size)
        empty = [(i, j) for i, v in enumerate(pooled) for j in range(len(v)) if not v[j].any()]
        pooled = [_unit(v - CONTEXT_REMOVED * p[None, :]) if len(v) else v for v, p in zip(pooled, vectors)]
    else:
        vectors = encoder.encode(texts, batch_size=batch_size)
        pooled = [np.zeros((len(s), vectors.shape[1]), np.float32) for s in spans]
        empty = [(i, j) for i, s in enumerate(spans) for j in range(len(s))]
    if empty:
        alone = encoder.encode([texts[i][slice(*spans[i][j])] for i, j in empty], batch_size=batch_size)
        for (i, j), v in zip(empty, alone):
            pooled[i][j] = v
    return np.asarray(vectors, dtype=np.float32), pooled


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def pooled_shard(encoder, texts: list[str], spans: list[list[tuple[int, int]]],
                 span_keys: list[list[str]], batch_size: int) -> tuple[list[str], np.ndarray]:
    """The cache entries (keys, float16 vectors) of the encoder inputs ``texts``: each one's vector
    (under its ``text_key``), then its pooled spans."""
    vectors, pooled = encode_passages(encoder, texts, spans, batch_size)
    keys: list[str] = []
    rows: list[np.ndarray] = []
    for t, v, ks, sv in zip(texts, vectors, span_keys, pooled):
        keys.append(text_key(t))
        rows.append(v[None, :])
        keys.extend(ks)
        rows.append(sv.reshape(len(ks), -1))
    return keys, np.concatenate(rows).astype(np.float16)


def sentence_vectors_alone(index, encoder, passages: Sequence[Passage],
                           memo: dict | None = None) -> list[np.ndarray] | None:
    """Each passage's sentence vectors as if each sentence were encoded on its own, for scores whose
    limits were fitted on such vectors (the heuristic answerer, ``qa.followup``): the index's own
    vectors when it stores those (``encoded``), else the sentences encoded now by ``encoder`` (a dozen
    or two short texts; ``memo``, by text, spares encoding one twice). None when the index's own apply."""
    if index.manifest.get("settings", {}).get("sentence_vectors") != "pooled" or encoder is None:
        return None
    memo = {} if memo is None else memo
    texts = [[p.text[s - p.start : e - p.start] for s, e in p.sentences] for p in passages]
    todo = sorted({t for ts in texts for t in ts if t not in memo})
    if todo:
        memo.update(zip(todo, encoder.encode(todo)))
    dim = int(getattr(encoder, "dim", 0)) or len(next(iter(memo.values()), []))
    return [np.stack([memo[t] for t in ts]) if ts else np.zeros((0, dim), np.float32) for ts in texts]
