"""The reader's base encoders (training/bases.py): int8 ONNX dequantised into a BERT that computes the same."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from qa.config import resolve_model

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def bases():
    sys.path.insert(0, str(ROOT / "training"))
    spec = importlib.util.spec_from_file_location("bases", ROOT / "training" / "bases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_dequantised_encoder_computes_what_its_int8_onnx_computes(tmp_path):
    """bge-small (the same package's int8 ONNX, whose output is the hidden states): the BERT built from
    the dequantised weights gives the same token vectors, up to the int8 rounding of activations."""
    import onnxruntime as ort
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer
    import torch
    from transformers import BertConfig, BertModel

    module = bases()
    src = module.vectrix_models() / "bge_small_en"
    state = module.dequantise(src / "model.onnx", prefix="")
    save_file(state, str(tmp_path / "model.safetensors"))
    BertConfig.from_json_file(str(src / "config.json")).save_pretrained(tmp_path)
    model, info = BertModel.from_pretrained(str(tmp_path), output_loading_info=True)
    assert not info["unexpected_keys"] and set(info["missing_keys"]) <= {"pooler.dense.weight", "pooler.dense.bias"}
    enc = Tokenizer.from_file(str(src / "tokenizer.json")).encode(
        "Where is the drone plant?", "Iran and Russia agreed to build a drone plant on Russian soil in 2022.")
    feed = {"input_ids": np.array([enc.ids]), "attention_mask": np.ones((1, len(enc.ids)), dtype=np.int64),
            "token_type_ids": np.array([enc.type_ids])}
    want = ort.InferenceSession(str(src / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, feed)[0][0]
    with torch.inference_mode():
        got = model.eval()(**{k: torch.from_numpy(v) for k, v in feed.items()}).last_hidden_state[0].numpy()
    cos = (want * got).sum(-1) / np.linalg.norm(want, axis=-1) / np.linalg.norm(got, axis=-1)
    assert cos.min() > 0.98, cos


def test_the_shipped_base_loads_whole_with_the_bundled_vocabulary():
    from transformers import BertModel

    folder = bases().base_dir("msmarco-l12", resolve_model(""))
    model, info = BertModel.from_pretrained(folder, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert model.config.num_hidden_layers == 12 and model.config.vocab_size == 30522


def test_an_unknown_base_is_refused():
    with pytest.raises(ValueError, match="unknown base"):
        bases().base_dir("gpt", resolve_model(""))
