"""The ONNX encoder gives sentence-transformers' embeddings, without importing torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


from qa.config import resolve_model  # noqa: E402
from qa.embed import load_encoder  # noqa: E402
from qa.export import export_onnx, quantize_onnx  # noqa: E402
from qa.digests import default_cache_dir  # noqa: E402
from qa.models import export_path  # noqa: E402
from qa.datatypes import QAError  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
LONG = " ".join(
    f"Sentence number {i} of a long passage about the history of the Normans in northern France."
    for i in range(60)
)  # ~1000 tokens: truncated at max_seq_length
TEXTS = [
    "x",
    "What is the capital of France?",
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
    "a region in France. They were descended from Norse raiders and pirates from Denmark, Iceland "
    "and Norway who, under their leader Rollo, agreed to swear fealty to King Charles III.",
    LONG,
    "  Ünïcödé café — “quotes”, tabs\tand\nnewlines  ",
    "",
]


@pytest.fixture(scope="session")
def model_path() -> str:
    return resolve_model("")


@pytest.fixture(scope="session")
def cache(model_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh cache, seeded from the default cache when it already holds this model's export."""
    cache = tmp_path_factory.mktemp("qa-cache")
    model_dir = Path(model_path).resolve()
    existing = export_path(model_dir, default_cache_dir())
    if existing.is_file():
        target = export_path(model_dir, cache)
        target.parent.mkdir(parents=True)
        for src in existing.parent.glob(existing.stem + "*.onnx*"):
            shutil.copyfile(src, target.parent / src.name)
    export_onnx(model_path, cache)
    return cache


@pytest.fixture(scope="session")
def reference(model_path: str) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    return model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


@pytest.fixture(scope="session")
def onnx_encoder(model_path: str, cache: Path):
    return load_encoder(model_path, backend="onnx", cache_dir=cache)


def test_onnx_matches_sentence_transformers(onnx_encoder, reference: np.ndarray) -> None:
    assert (onnx_encoder.backend, onnx_encoder.precision, onnx_encoder.dim) == ("onnx", "fp32", 384)
    assert onnx_encoder.max_seq_length == 256
    got = onnx_encoder.encode(TEXTS, batch_size=4)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    cosines = (got * reference).sum(axis=1)
    assert cosines.min() >= 0.999, cosines


def test_query_encoder_gives_the_same_vectors(model_path: str, cache: Path, reference: np.ndarray) -> None:
    """The query-tuned session (every core in one run) computes the same embeddings."""
    queries = load_encoder(model_path, backend="onnx", cache_dir=cache, queries=True)
    one_by_one = np.vstack([queries.encode([t]) for t in TEXTS])
    assert (one_by_one * reference).sum(axis=1).min() >= 0.999


def test_long_text_is_truncated_like_sentence_transformers(onnx_encoder) -> None:
    longer = LONG + " And a different ending that only an untruncated model would see."
    a, b = onnx_encoder.encode([LONG, longer])
    assert float(a @ b) > 0.99999


def test_output_is_normalised_and_in_input_order(onnx_encoder) -> None:
    texts = [TEXTS[3], "short", TEXTS[2], "a bit longer query about Normandy", TEXTS[1], "short"]
    batched = onnx_encoder.encode(texts, batch_size=2)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    one_by_one = np.vstack([onnx_encoder.encode([t]) for t in texts])
    assert np.all((batched * one_by_one).sum(axis=1) > 0.99999)
    assert float(batched[1] @ batched[5]) > 0.99999
    assert float(batched[1] @ batched[0]) < 0.9


def test_empty_input(onnx_encoder) -> None:
    out = onnx_encoder.encode([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_progress_bar_on_stderr(onnx_encoder, capsys: pytest.CaptureFixture[str]) -> None:
    onnx_encoder.encode(["one", "two", "three"], batch_size=2, progress=True)
    captured = capsys.readouterr()
    assert "3/3" in captured.err and captured.out == ""


def test_query_path_does_not_import_torch(model_path: str, cache: Path, onnx_encoder) -> None:
    script = (
        "import json, sys\n"
        "from qa.embed import load_encoder\n"
        f"enc = load_encoder({model_path!r}, cache_dir={str(cache)!r})\n"
        "vec = enc.encode(['What is the capital of France?'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "print(json.dumps({'backend': enc.backend, 'heavy': heavy, 'vec': vec[0].tolist()}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "onnx"
    assert result["heavy"] == []
    expected = onnx_encoder.encode(["What is the capital of France?"])[0]
    assert float(np.dot(result["vec"], expected)) > 0.99999


def test_int8_agrees_with_fp32(model_path: str, cache: Path, reference: np.ndarray) -> None:
    encoder = load_encoder(model_path, backend="auto", precision="int8", cache_dir=cache)
    assert (encoder.backend, encoder.precision) == ("onnx", "int8")
    weights = [p.with_name(p.name + ".data").stat().st_size for p in (quantize_onnx(model_path, cache), export_onnx(model_path, cache))]
    assert weights[0] < 0.75 * weights[1]
    real = slice(1, 5)  # int8 is for indexing passages; one- or zero-token texts drift to ~0.97
    cosines = (encoder.encode(TEXTS[real]) * reference[real]).sum(axis=1)
    assert cosines.min() >= 0.98, cosines


def test_torch_backend_matches_reference(model_path: str, reference: np.ndarray) -> None:
    encoder = load_encoder(model_path, backend="torch")
    assert (encoder.backend, encoder.precision, encoder.dim) == ("torch", "fp32", 384)
    cosines = (encoder.encode(TEXTS, batch_size=3) * reference).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines


def test_export_is_cached_and_atomic(model_path: str, cache: Path) -> None:
    path = export_onnx(model_path, cache)
    mtime = path.stat().st_mtime_ns
    assert export_onnx(model_path, cache) == path and path.stat().st_mtime_ns == mtime
    assert path.with_name(path.name + ".data").stat().st_size > 50_000_000
    assert not list(path.parent.glob(".export-*"))


def test_cache_key_follows_the_models_content_not_its_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("QA_CACHE", str(tmp_path / "cache"))  # digests remembered here
    model = tmp_path / "tiny-model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "modules.json").write_text("[]")
    weights = model / "model.safetensors"
    weights.write_bytes(b"0" * 10)
    first = export_path(model, tmp_path / "cache")
    assert first.parent == tmp_path / "cache" / "onnx" and first.name.startswith("tiny-model-")
    assert export_path(model, tmp_path / "cache") == first
    os.utime(weights, ns=(1, 1))  # touched, same bytes: the same model
    assert export_path(model, tmp_path / "cache") == first
    moved = tmp_path / "venv2" / "tiny-model"  # the same files elsewhere (a moved venv): the same model
    shutil.copytree(model, moved)
    assert export_path(moved, tmp_path / "cache") == first
    weights.write_bytes(b"1" * 10)  # new weights at the same path, same size: another model
    os.utime(weights, ns=(1, 1))
    second = export_path(model, tmp_path / "cache")
    assert second != first
    (model / "config.json").write_text('{"hidden_size": 16}')
    assert export_path(model, tmp_path / "cache") not in (first, second)


def test_file_digests_are_remembered_by_status(tmp_path: Path) -> None:
    from qa.digests import remembered_sha256
    from qa.load import file_sha256

    weights = tmp_path / "w.bin"
    weights.write_bytes(b"a" * 1000)
    os.utime(weights, ns=(10**18, 10**18))  # old enough not to be racy
    assert remembered_sha256(weights, tmp_path / "cache") == file_sha256(weights)
    stored = json.loads((tmp_path / "cache" / "digests.json").read_text())
    assert stored[str(weights.resolve())]["sha256"] == file_sha256(weights)
    stored[str(weights.resolve())]["sha256"] = "remembered"  # proves the next call reads it, not the file
    (tmp_path / "cache" / "digests.json").write_text(json.dumps(stored))
    assert remembered_sha256(weights, tmp_path / "cache") == "remembered"
    weights.write_bytes(b"b" * 1000)  # a new status: hashed again
    os.utime(weights, ns=(10**18 + 1, 10**18 + 1))
    assert remembered_sha256(weights, tmp_path / "cache") == file_sha256(weights)
    (tmp_path / "cache" / "digests.json").write_text("{not json")  # a damaged cache only costs the hashing
    assert remembered_sha256(weights, tmp_path / "cache") == file_sha256(weights)


def test_user_errors_are_qa_errors(tmp_path: Path, model_path: str) -> None:
    with pytest.raises(QAError, match="not found"):
        load_encoder(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(QAError, match="not a sentence-transformers model"):
        load_encoder(str(tmp_path))
    with pytest.raises(QAError, match="backend"):
        load_encoder(model_path, backend="gpu")
    with pytest.raises(QAError, match="torch backend"):
        load_encoder(model_path, backend="onnx", precision="bf16")
