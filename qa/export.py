"""The one-off ONNX export of the embedding model (torch and transformers; never on the query
path): the model and its pooling as one graph, cached under ``$QA_CACHE/onnx`` by the model's
identity, and its int8 dynamic quantisation."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from qa.datatypes import QAError
from qa.models import OPSET, check_model_dir, export_path, int8_path, is_complete, pooling_mode


def export_onnx(model_path: str, cache_dir: Path) -> Path:
    """Export the model to ONNX once (cached by model fingerprint); return the .onnx path.

    The weights go beside it in ``<name>.onnx.data``: ONNX Runtime maps that file instead
    of parsing a 90 MB protobuf, which halves the session's start-up time.
    """
    model_dir = check_model_dir(model_path)
    target = export_path(model_dir, Path(cache_dir))
    if is_complete(target):
        return target
    pooling = pooling_mode(model_dir)
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
                output_names=["sentence_embedding", "token_embeddings"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    "sentence_embedding": {0: "batch"},
                    "token_embeddings": {0: "batch", 1: "sequence"},
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
    target = int8_path(source)
    if is_complete(target):
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


def _pooled_module(model, pooling: str):
    """``model`` followed by sentence-transformers pooling (before normalisation), as one module
    whose outputs are the pooled vectors and the token vectors they were pooled from."""
    import inspect

    import torch

    token_types = "token_type_ids" in inspect.signature(model.forward).parameters

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
            extra = {"token_type_ids": torch.zeros_like(input_ids)} if token_types else {}
            tokens = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
            if pooling == "cls":
                return tokens[:, 0], tokens
            weights = attention_mask.unsqueeze(-1).to(tokens.dtype)
            return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9), tokens

    return Pooled().eval()
