"""A sentence-transformers model folder: its settings (pooling, dimension, sequence length,
casing), its identity (a fingerprint of its content) and the paths of its cached ONNX exports; shared by the runtime encoder (qa.embed) and
the export (qa.export), without importing torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from qa.datatypes import QAError
from qa.digests import remembered_sha256

EXPORT_VERSION = 2  # bump when the exported graph changes (2: token vectors as a second output)
OPSET = 17
INT8_VERSION = 1  # bump when the quantisation recipe changes
_GENERIC_FOLDER_NAMES = {"model", "models", "snapshot", "onnx"}
IDENTITY_FILES = ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json", "vocab.txt")  # besides the weights and the modules' configurations


def check_model_dir(model_path: str) -> Path:
    """The model folder, or a QAError saying why it is not a sentence-transformers model."""
    model_dir = Path(model_path).expanduser()
    if not model_dir.is_dir():
        raise QAError(f"model folder not found: {model_path}")
    model_dir = model_dir.resolve()
    if not (model_dir / "config.json").is_file() or not (
        (model_dir / "modules.json").is_file() or (model_dir / "sentence_bert_config.json").is_file()
    ):
        raise QAError(f"not a sentence-transformers model folder (no config.json/modules.json): {model_path}")
    if weights_file(model_dir) is None:
        raise QAError(f"no model weights (model.safetensors or pytorch_model.bin) in {model_path}")
    return model_dir


def weights_file(model_dir: Path) -> Path | None:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    return None


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise QAError(f"cannot read {path}: {exc}") from exc


def model_name(model_dir: Path) -> str:
    """The folder name; its parent's for generic names like ``model`` (as in a bundled package)."""
    if model_dir.name.lower() in _GENERIC_FOLDER_NAMES and model_dir.parent.name:
        return model_dir.parent.name
    return model_dir.name


def max_seq_length(model_dir: Path) -> int:
    cfg = model_dir / "sentence_bert_config.json"
    length = read_json(cfg).get("max_seq_length") if cfg.is_file() else None
    limit = read_json(model_dir / "config.json").get("max_position_embeddings") or 512
    return int(min(length or limit, limit))


def do_lower_case(model_dir: Path) -> bool:
    cfg = model_dir / "sentence_bert_config.json"
    return bool(cfg.is_file() and read_json(cfg).get("do_lower_case"))


def pooling_config(model_dir: Path) -> dict:
    modules = model_dir / "modules.json"
    if modules.is_file():
        for module in read_json(modules):
            if str(module.get("type", "")).endswith("Pooling"):
                cfg = model_dir / module.get("path", "") / "config.json"
                if cfg.is_file():
                    return read_json(cfg)
    return {"pooling_mode_mean_tokens": True}


def pooling_mode(model_dir: Path) -> str:
    cfg = pooling_config(model_dir)
    if cfg.get("pooling_mode") in ("mean", "cls"):
        return str(cfg["pooling_mode"])
    modes = [m for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens") if cfg.get(f"pooling_mode_{m}")]
    if modes == ["mean_tokens"]:
        return "mean"
    if modes == ["cls_token"]:
        return "cls"
    raise QAError(f"pooling {modes or cfg} is not supported by the onnx backend: use --backend torch")


def embedding_dim(model_dir: Path) -> int:
    cfg = pooling_config(model_dir)
    dim = cfg.get("word_embedding_dimension") or cfg.get("embedding_dimension")
    return int(dim or read_json(model_dir / "config.json")["hidden_size"])


def model_identity(model_dir: Path) -> str:
    """The model's identity: its name and a fingerprint of the content of every file that shapes its
    vectors (weights, configurations, pooling, tokenizer). The same model copied or moved elsewhere
    (another venv) keeps it; new weights at the same path change it. The ONNX export cache, the
    index's signature, its embedding cache and its calibration all name the model by it. File digests
    are remembered by file status (``qa.digests``), so only the first use of a file hashes it."""
    h = hashlib.sha256()
    for path in identity_files(model_dir):
        h.update(f"{path.relative_to(model_dir).as_posix()} {remembered_sha256(path)}\n".encode())
    return f"{model_name(model_dir)}-{h.hexdigest()[:16]}"


def identity_files(model_dir: Path) -> list[Path]:
    """The files of the model folder that decide its vectors, in a fixed order."""
    weights = weights_file(model_dir)
    assert weights is not None
    files = [weights] + [model_dir / rel for rel in IDENTITY_FILES]
    modules = model_dir / "modules.json"
    if modules.is_file():
        files += [model_dir / m.get("path", "") / "config.json" for m in read_json(modules)
                  if isinstance(m, dict) and m.get("path")]
    return [f for f in dict.fromkeys(files) if f.is_file()]


def export_path(model_dir: Path, cache_dir: Path) -> Path:
    """Where the ONNX export of the model is cached: by its identity and the export code's version."""
    identity = model_identity(model_dir)
    code = hashlib.sha256(f"v{EXPORT_VERSION} opset{OPSET}\n{identity}".encode()).hexdigest()[:8]
    return cache_dir / "onnx" / f"{identity}-{code}.onnx"


def int8_path(export: Path) -> Path:
    """Where the int8 version of the export ``export`` is cached."""
    return export.with_name(f"{export.stem}.int8-v{INT8_VERSION}.onnx")


def is_complete(target: Path) -> bool:
    """Whether the exported model ``target`` and its weights file are both in place."""
    return target.is_file() and target.with_name(target.name + ".data").is_file()
