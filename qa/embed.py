"""Sentence embeddings: the same vectors as sentence-transformers, fast to start.

Two backends give the same embeddings (mean pooling over the attention mask, L2
normalisation, truncation at the model's ``max_seq_length``):

- ``onnx``: an ONNX export of the model run by ONNX Runtime, tokenised by the Rust
  ``tokenizers`` package. Loading it imports neither torch nor transformers, so a
  fresh process loads it and encodes a query in about 0.3 s. The export is made once with
  torch and cached (``qa.export``); ``int8`` is a dynamic quantisation of it.
- ``torch``: sentence-transformers itself, in fp32 or bf16.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from qa.config import check_choice
from qa.cpu import cpu_count, resolve_precision
from qa.datatypes import QAError
from qa.digests import default_cache_dir
from qa.progress import progress as progress_bar
from qa.models import (check_model_dir, do_lower_case, embedding_dim, export_path, int8_path,
                       is_complete, max_seq_length, model_name)


class Encoder:
    """A loaded embedding model: ``encode`` turns texts into unit vectors.

    A backend supplies three functions: ``lengths`` (to sort texts and cut padding),
    ``prepare`` (a batch of texts to model inputs, run in the calling thread) and ``run``
    (model inputs to pooled vectors; called from ``workers`` threads at once when > 1).
    A backend that can also pool spans of a text from the same forward pass (``encode_spans``)
    supplies ``prepare_spans`` (texts and their character spans to model inputs and one
    (spans, tokens) weight matrix per text) and ``run_spans`` (those to text and span vectors).
    """

    def __init__(
        self,
        name: str,
        dim: int,
        backend: str,
        precision: str,
        max_seq_length: int,
        *,
        lengths: Callable[[list[str]], Sequence[int]],
        prepare: Callable[[list[str]], Any],
        run: Callable[[Any], np.ndarray],
        workers: int = 1,
        prepare_spans: Callable[[list[str], list[list[tuple[int, int]]]], Any] | None = None,
        run_spans: Callable[[Any], tuple[np.ndarray, list[np.ndarray]]] | None = None,
    ) -> None:
        self.name = name
        self.dim = dim
        self.backend = backend
        self.precision = precision
        self.max_seq_length = max_seq_length
        self._lengths = lengths
        self._prepare = prepare
        self._run = run
        self._workers = max(1, workers)
        self._prepare_spans = prepare_spans
        self._run_spans = run_spans

    @property
    def pools_spans(self) -> bool:
        """Whether ``encode_spans`` pools span vectors out of the text's own forward pass."""
        return self._run_spans is not None

    def __repr__(self) -> str:
        return f"Encoder({self.name!r}, dim={self.dim}, backend={self.backend!r}, precision={self.precision!r})"

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Embed ``texts``: float32 array (len(texts), dim), unit rows, in input order."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string")
        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)

        def store(rows: np.ndarray, vectors: np.ndarray) -> None:
            out[rows] = vectors

        self._batches(texts, lambda rows: self._prepare([texts[r] for r in rows]), self._run, store,
                      batch_size, progress)
        return _normalise(out)

    def encode_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], *, batch_size: int = 32,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Embed ``texts`` and, from the same forward pass, the character spans ``spans[i]`` of
        ``texts[i]`` (mean of the output vectors of the tokens inside each span): the text vectors
        (as ``encode``) and one (len(spans[i]), dim) array of unit rows per text. A span with no token
        inside the model's window (past ``max_seq_length``) is a zero row: encode it on its own.
        Only backends with ``pools_spans``."""
        if self._run_spans is None or self._prepare_spans is None:
            raise QAError(f"the {self.backend} backend cannot pool spans (use the onnx backend)")
        texts = [str(t) for t in texts]
        if len(spans) != len(texts):
            raise ValueError("one list of spans per text")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        pooled: list[np.ndarray] = [np.zeros((len(s), self.dim), np.float32) for s in spans]
        prepare_spans = self._prepare_spans

        def store(rows: np.ndarray, result: tuple[np.ndarray, list[np.ndarray]]) -> None:
            vectors, span_vectors = result
            out[rows] = vectors
            for r, v in zip(rows, span_vectors):
                pooled[r] = _normalise(v)

        self._batches(texts, lambda rows: prepare_spans([texts[r] for r in rows], [list(spans[r]) for r in rows]),
                      self._run_spans, store, batch_size, False)
        return _normalise(out), pooled

    def _batches(self, texts: list[str], prepare: Callable[[np.ndarray], Any], run: Callable[[Any], Any],
                 store: Callable[[np.ndarray, Any], None], batch_size: int, progress: bool) -> None:
        """Cut ``texts`` (sorted by length: less padding) into batches, ``prepare`` each in this thread,
        ``run`` them on ``workers`` threads, and ``store(rows, result)`` in order."""
        if not texts:
            return
        order = np.argsort(np.asarray(self._lengths(texts)), kind="stable")
        count = -(-len(texts) // max(1, int(batch_size)))
        count = -(-count // self._workers) * self._workers  # a multiple of workers: none sits idle
        size = -(-len(texts) // count)
        batches = [order[i : i + size] for i in range(0, len(texts), size)]
        workers = min(self._workers, len(batches))
        bar = progress_bar(total=len(texts), desc="encoding", enabled=progress)
        pool = ThreadPoolExecutor(workers) if workers > 1 else None
        try:
            for start in range(0, len(batches), 4 * workers):  # bounded look-ahead
                wave = batches[start : start + 4 * workers]
                inputs = [prepare(rows) for rows in wave]
                results = pool.map(run, inputs) if pool is not None else map(run, inputs)
                for rows, result in zip(wave, results):
                    store(rows, result)
                    bar.update(len(rows))
        finally:
            if pool is not None:
                pool.shutdown()
            bar.close()


def load_encoder(
    model_path: str,
    backend: str = "auto",
    precision: str = "fp32",
    cache_dir: Path | None = None,
    *,
    queries: bool = False,
) -> Encoder:
    """Load the sentence-transformers model at ``model_path`` with the given backend.

    ``auto`` picks ONNX Runtime (exporting the model on first use) for fp32 and int8,
    and sentence-transformers for bf16. Precision ``auto``: the one this CPU's flags choose
    (``qa.cpu.choose_precision``). ``queries``: tuned for one short text at a time
    (ONNX: each run spreads over every core) rather than for batches.
    """
    model_dir = check_model_dir(model_path)
    check_choice("backend", backend, what="encoder backend")
    check_choice("precision", precision, what="encoder precision")
    precision = resolve_precision(precision, backend)
    if backend == "auto":
        backend = "torch" if precision == "bf16" else "onnx"
    if backend == "onnx" and precision == "bf16":
        raise QAError("bf16 encoding needs the torch backend (use --backend torch or auto)")
    if backend == "torch" and precision == "int8":
        raise QAError("int8 encoding needs the onnx backend (use --backend onnx or auto)")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if backend == "onnx":
        return _load_onnx(model_dir, precision, cache, queries)
    return _load_torch(model_dir, precision)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _load_onnx(model_dir: Path, precision: str, cache_dir: Path, queries: bool = False) -> Encoder:
    if not (model_dir / "tokenizer.json").is_file():
        raise QAError(f"no tokenizer.json in {model_dir}: the onnx backend needs a fast tokenizer (use --backend torch)")
    path = export_path(model_dir, cache_dir)
    if precision == "int8":
        path = int8_path(path)
    if not is_complete(path):  # the first use of this model: export it (torch, once)
        from qa.export import export_onnx, quantize_onnx

        path = quantize_onnx(str(model_dir), cache_dir) if precision == "int8" else export_onnx(str(model_dir), cache_dir)

    import onnxruntime as ort
    from tokenizers import Tokenizer

    max_len = max_seq_length(model_dir)
    lower = do_lower_case(model_dir)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    pad_id = int(tokenizer.padding["pad_id"]) if tokenizer.padding else 0  # masked out anyway
    tokenizer.enable_truncation(max_length=max_len)
    tokenizer.no_padding()

    # Batches: one single-threaded run per core, on different batches, scales better than
    # splitting each matrix product across threads. Queries: one text at a time, so each run
    # uses every core (a 14-token query: 6.2 -> 4.3 ms on 2 cores).
    workers = 1 if queries else cpu_count()
    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_count() if queries else 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Threads sleep between runs instead of spinning: a spinning thread steals the core
    # another process (or the other encoding thread) needs, doubling query latency under load.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a damaged cache file: the user can delete it
        raise QAError(f"cannot load the ONNX model {path} ({exc}); delete it to re-export") from exc

    def tokenize(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tokenizer.encode_batch([t.lower() if lower else t for t in texts])]

    def batch(rows: list[list[int]]) -> dict[str, np.ndarray]:
        ids = np.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=np.int64)
        mask = np.zeros(ids.shape, dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def lengths(texts: list[str]) -> list[int]:
        return [len(ids) for i in range(0, len(texts), 1024) for ids in tokenize(texts[i : i + 1024])]

    def prepare(texts: list[str]) -> dict[str, np.ndarray]:
        return batch(tokenize(texts))

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(["sentence_embedding"], inputs)[0]

    def prepare_spans(texts: list[str], spans: list[list[tuple[int, int]]]):
        encodings = tokenizer.encode_batch([t.lower() if lower else t for t in texts])
        inputs = batch([e.ids for e in encodings])
        weights = []
        for e, text_spans in zip(encodings, spans):
            # a token belongs to the span holding its first character; special tokens ([CLS],
            # [SEP]: empty offsets) to none
            starts = np.array([a if b > a else -1 for a, b in e.offsets], dtype=np.int64)
            w = np.zeros((len(text_spans), inputs["input_ids"].shape[1]), dtype=np.float32)
            for j, (a, b) in enumerate(text_spans):
                w[j, : len(starts)] = (starts >= a) & (starts < b)
            weights.append(w / np.maximum(w.sum(1, keepdims=True), 1.0))
        return inputs, weights

    def run_spans(prepared) -> tuple[np.ndarray, list[np.ndarray]]:
        inputs, weights = prepared
        vectors, tokens = session.run(["sentence_embedding", "token_embeddings"], inputs)
        return vectors, [w @ t for w, t in zip(weights, tokens)]

    return Encoder(
        model_name(model_dir),
        embedding_dim(model_dir),
        "onnx",
        precision,
        max_len,
        lengths=lengths,
        prepare=prepare,
        run=run,
        workers=workers,
        prepare_spans=prepare_spans,
        run_spans=run_spans,
    )


def _load_torch(model_dir: Path, precision: str) -> Encoder:
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise QAError(f"the torch backend needs sentence-transformers: {exc}") from exc

    torch.set_num_threads(cpu_count())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = SentenceTransformer(str(model_dir), device="cpu")
        except Exception as exc:
            raise QAError(f"cannot load the sentence-transformers model {model_dir}: {exc}") from exc
    if precision == "bf16":
        model = model.to(torch.bfloat16)

    def run(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            emb = model.encode(texts, batch_size=len(texts), convert_to_tensor=True, normalize_embeddings=True)
        return emb.float().numpy()

    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return Encoder(
        model_name(model_dir),
        int(get_dim() or embedding_dim(model_dir)),
        "torch",
        precision,
        int(model.max_seq_length),
        lengths=lambda texts: [len(t) for t in texts],
        prepare=lambda texts: texts,
        run=run,
    )


