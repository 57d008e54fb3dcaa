"""Sentence embeddings: the same vectors as sentence-transformers, fast to start.

Two backends give the same embeddings (mean pooling over the attention mask, L2
normalisation, truncation at the model's ``max_seq_length``):

- ``onnx``: an ONNX export of the model run by ONNX Runtime, tokenised by the Rust
  ``tokenizers`` package. Loading it imports neither torch nor transformers, so a
  fresh process loads it and encodes a query in about 0.3 s. The export is made once with
  torch and cached (``export_onnx``); ``int8`` is a dynamic quantisation of it.
- ``torch``: sentence-transformers itself, in fp32 or bf16.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from qa.datatypes import QAError

EXPORT_VERSION = 1  # bump when the exported graph changes
OPSET = 17
INT8_VERSION = 1  # bump when the quantisation recipe changes
_GENERIC_FOLDER_NAMES = {"model", "models", "snapshot", "onnx"}


def default_cache_dir() -> Path:
    """Where exports are cached: ``$QA_CACHE`` or ``~/.cache/qa``."""
    return Path(os.environ.get("QA_CACHE", Path.home() / ".cache" / "qa"))


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), to name beside every measured figure."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Encoder:
    """A loaded embedding model: ``encode`` turns texts into unit vectors.

    A backend supplies three functions: ``lengths`` (to sort texts and cut padding),
    ``prepare`` (a batch of texts to model inputs, run in the calling thread) and ``run``
    (model inputs to pooled vectors; called from ``workers`` threads at once when > 1).
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

    def __repr__(self) -> str:
        return f"Encoder({self.name!r}, dim={self.dim}, backend={self.backend!r}, precision={self.precision!r})"

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Embed ``texts``: float32 array (len(texts), dim), unit rows, in input order."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string")
        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort(np.asarray(self._lengths(texts)), kind="stable")
        count = -(-len(texts) // max(1, int(batch_size)))
        count = -(-count // self._workers) * self._workers  # a multiple of workers: none sits idle
        size = -(-len(texts) // count)
        batches = [order[i : i + size] for i in range(0, len(texts), size)]
        workers = min(self._workers, len(batches))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), unit="text", desc="encoding", file=sys.stderr)
        pool = ThreadPoolExecutor(workers) if workers > 1 else None
        try:
            for start in range(0, len(batches), 4 * workers):  # bounded look-ahead
                wave = batches[start : start + 4 * workers]
                inputs = [self._prepare([texts[r] for r in rows]) for rows in wave]
                results = pool.map(self._run, inputs) if pool is not None else map(self._run, inputs)
                for rows, vectors in zip(wave, results):
                    out[rows] = vectors
                    if bar is not None:
                        bar.update(len(rows))
        finally:
            if pool is not None:
                pool.shutdown()
            if bar is not None:
                bar.close()
        return _normalise(out)


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
    and sentence-transformers for bf16. ``queries``: tuned for one short text at a time
    (ONNX: each run spreads over every core) rather than for batches.
    """
    model_dir = _check_model_dir(model_path)
    if backend not in ("auto", "onnx", "torch"):
        raise QAError(f"unknown encoder backend {backend!r} (choose auto, onnx or torch)")
    if precision not in ("fp32", "bf16", "int8"):
        raise QAError(f"unknown encoder precision {precision!r} (choose fp32, bf16 or int8)")
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


def export_onnx(model_path: str, cache_dir: Path) -> Path:
    """Export the model to ONNX once (cached by model fingerprint); return the .onnx path.

    The weights go beside it in ``<name>.onnx.data``: ONNX Runtime maps that file instead
    of parsing a 90 MB protobuf, which halves the session's start-up time.
    """
    model_dir = _check_model_dir(model_path)
    target = _export_path(model_dir, Path(cache_dir))
    if _is_complete(target):
        return target
    pooling = _pooling_mode(model_dir)
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise QAError(f"exporting the model to ONNX needs torch and transformers: {exc}") from exc

    def write(path: Path) -> None:
        model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")
        module = _pooled_module(model.eval(), pooling)
        ids = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]], dtype=torch.int64)  # any ids: shapes are dynamic
        with torch.no_grad():
            torch.onnx.export(
                module,
                (ids, (ids != 0).to(torch.int64)),
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["sentence_embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    "sentence_embedding": {0: "batch"},
                },
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )

    _store_model(target, write)
    return target


def quantize_onnx(model_path: str, cache_dir: Path) -> Path:
    """The int8 version of the export (dynamic quantisation of its weight MatMuls), cached."""
    source = export_onnx(model_path, cache_dir)
    target = source.with_name(f"{source.stem}.int8-v{INT8_VERSION}.onnx")
    if _is_complete(target):
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def write(path: Path) -> None:
        quantize_dynamic(
            source,
            path,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
        )

    _store_model(target, write)
    return target


def _is_complete(target: Path) -> bool:
    return target.is_file() and target.with_name(target.name + ".data").is_file()


def _store_model(target: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` make an ONNX model, then store it atomically as ``target`` + ``target.data``."""
    import onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    data = target.name + ".data"
    logging_disabled = logging.root.manager.disable
    with tempfile.TemporaryDirectory(prefix=".export-", dir=target.parent) as tmp:
        try:
            logging.disable(logging.WARNING)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                write(Path(tmp) / "raw.onnx")
        finally:
            logging.disable(logging_disabled)
        model = onnx.load(str(Path(tmp) / "raw.onnx"))
        onnx.save_model(
            model,
            str(Path(tmp) / target.name),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data,
            size_threshold=1024,
        )
        for name in (data, target.name):  # the .onnx last: its presence means complete
            os.chmod(Path(tmp) / name, 0o644)
            os.replace(Path(tmp) / name, target.parent / name)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _check_model_dir(model_path: str) -> Path:
    """The model folder, or a QAError saying why it is not a sentence-transformers model."""
    model_dir = Path(model_path).expanduser()
    if not model_dir.is_dir():
        raise QAError(f"model folder not found: {model_path}")
    model_dir = model_dir.resolve()
    if not (model_dir / "config.json").is_file() or not (
        (model_dir / "modules.json").is_file() or (model_dir / "sentence_bert_config.json").is_file()
    ):
        raise QAError(f"not a sentence-transformers model folder (no config.json/modules.json): {model_path}")
    if _weights_file(model_dir) is None:
        raise QAError(f"no model weights (model.safetensors or pytorch_model.bin) in {model_path}")
    return model_dir


def _weights_file(model_dir: Path) -> Path | None:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise QAError(f"cannot read {path}: {exc}") from exc


def _model_name(model_dir: Path) -> str:
    """The folder name; its parent's for generic names like ``model`` (as in a bundled package)."""
    if model_dir.name.lower() in _GENERIC_FOLDER_NAMES and model_dir.parent.name:
        return model_dir.parent.name
    return model_dir.name


def _max_seq_length(model_dir: Path) -> int:
    cfg = model_dir / "sentence_bert_config.json"
    length = _read_json(cfg).get("max_seq_length") if cfg.is_file() else None
    limit = _read_json(model_dir / "config.json").get("max_position_embeddings") or 512
    return int(min(length or limit, limit))


def _do_lower_case(model_dir: Path) -> bool:
    cfg = model_dir / "sentence_bert_config.json"
    return bool(cfg.is_file() and _read_json(cfg).get("do_lower_case"))


def _pooling_config(model_dir: Path) -> dict:
    modules = model_dir / "modules.json"
    if modules.is_file():
        for module in _read_json(modules):
            if str(module.get("type", "")).endswith("Pooling"):
                cfg = model_dir / module.get("path", "") / "config.json"
                if cfg.is_file():
                    return _read_json(cfg)
    return {"pooling_mode_mean_tokens": True}


def _pooling_mode(model_dir: Path) -> str:
    cfg = _pooling_config(model_dir)
    if cfg.get("pooling_mode") in ("mean", "cls"):
        return str(cfg["pooling_mode"])
    modes = [m for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens") if cfg.get(f"pooling_mode_{m}")]
    if modes == ["mean_tokens"]:
        return "mean"
    if modes == ["cls_token"]:
        return "cls"
    raise QAError(f"pooling {modes or cfg} is not supported by the onnx backend: use --backend torch")


def _dim(model_dir: Path) -> int:
    cfg = _pooling_config(model_dir)
    dim = cfg.get("word_embedding_dimension") or cfg.get("embedding_dimension")
    return int(dim or _read_json(model_dir / "config.json")["hidden_size"])


def _fingerprint(model_dir: Path) -> str:
    """Changes whenever the model (weights, configs, pooling) or the export code changes."""
    weights = _weights_file(model_dir)
    assert weights is not None
    st = weights.stat()
    h = hashlib.sha256()
    h.update(f"v{EXPORT_VERSION} opset{OPSET}\n{model_dir}\n{weights.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    for rel in ("config.json", "modules.json", "sentence_bert_config.json"):
        path = model_dir / rel
        if path.is_file():
            h.update(rel.encode() + b"\n" + path.read_bytes())
    h.update(json.dumps(_pooling_config(model_dir), sort_keys=True).encode())
    return h.hexdigest()[:16]


def _export_path(model_dir: Path, cache_dir: Path) -> Path:
    return cache_dir / "onnx" / f"{_model_name(model_dir)}-{_fingerprint(model_dir)}.onnx"


def _load_onnx(model_dir: Path, precision: str, cache_dir: Path, queries: bool = False) -> Encoder:
    if not (model_dir / "tokenizer.json").is_file():
        raise QAError(f"no tokenizer.json in {model_dir}: the onnx backend needs a fast tokenizer (use --backend torch)")
    path = quantize_onnx(str(model_dir), cache_dir) if precision == "int8" else export_onnx(str(model_dir), cache_dir)

    import onnxruntime as ort
    from tokenizers import Tokenizer

    max_len = _max_seq_length(model_dir)
    lower = _do_lower_case(model_dir)
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

    def lengths(texts: list[str]) -> list[int]:
        return [len(ids) for i in range(0, len(texts), 1024) for ids in tokenize(texts[i : i + 1024])]

    def prepare(texts: list[str]) -> dict[str, np.ndarray]:
        rows = tokenize(texts)
        ids = np.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=np.int64)
        mask = np.zeros(ids.shape, dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(None, inputs)[0]

    return Encoder(
        _model_name(model_dir),
        _dim(model_dir),
        "onnx",
        precision,
        max_len,
        lengths=lengths,
        prepare=prepare,
        run=run,
        workers=workers,
    )


def _load_torch(model_dir: Path, precision: str) -> Encoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
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
        _model_name(model_dir),
        int(get_dim() or _dim(model_dir)),
        "torch",
        precision,
        int(model.max_seq_length),
        lengths=lambda texts: [len(t) for t in texts],
        prepare=lambda texts: texts,
        run=run,
    )


def _pooled_module(model, pooling: str):
    """``model`` followed by sentence-transformers pooling (before normalisation), as one module."""
    import inspect

    import torch

    token_types = "token_type_ids" in inspect.signature(model.forward).parameters

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            extra = {"token_type_ids": torch.zeros_like(input_ids)} if token_types else {}
            tokens = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
            if pooling == "cls":
                return tokens[:, 0]
            weights = attention_mask.unsqueeze(-1).to(tokens.dtype)
            return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    return Pooled().eval()
