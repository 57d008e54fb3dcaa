"""The trained extractive reader, run with ONNX Runtime (no torch on this path).

The model (``models/reader/reader.onnx``: ms-marco-MiniLM-L-12-v2 with a start/end head,
trained by ``training/train_reader.py``, int8; it tokenizes with the bundled embedding
model's vocabulary, which is the same) reads the question with each passage
and scores every span of every passage; :func:`read` returns the best spans with the
logits they were chosen by. The file is checked against its ``SHA256SUMS`` on load,
and its checksum is the reader's identity: a calibration made for one reader is never
applied to another.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.reader_windows import SpanScore, Window, WindowMaker, batch_arrays, best_spans
from qa.datatypes import QAError
from qa.digests import remembered_sha256

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "models" / "reader"
MODEL_FILE = "reader.onnx"


def reader_dir(path: str | os.PathLike | None = None) -> Path:
    """The reader's folder: ``path``, else ``$QA_READER``, else the shipped ``models/reader``."""
    return Path(path or os.environ.get("QA_READER") or DEFAULT_DIR)


@dataclass
class Reader:
    """A loaded reader: ``read`` scores spans of passages for a question."""

    folder: Path
    identity: str  # sha256 of reader.onnx
    maker: WindowMaker
    session: object  # onnxruntime.InferenceSession

    def logits(self, windows: list[Window]) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.session.run(None, batch_arrays(windows))
        return start, end

    def read(self, question: str, texts: list[str], *, per_window: int = 3) -> tuple[list[SpanScore], float]:
        """The best spans across ``texts`` (best first) and the milliseconds the model took."""
        if not texts:
            return [], 0.0
        windows = self.maker.make_windows(question, texts)
        t = time.perf_counter()
        start, end = self.logits(windows)
        ms = (time.perf_counter() - t) * 1000
        return best_spans(windows, start, end, per_window=per_window, texts=texts), ms


def expected_sha256(folder: Path, name: str = MODEL_FILE) -> str | None:
    """The checksum ``SHA256SUMS`` gives for ``name``, or None."""
    try:
        lines = (folder / "SHA256SUMS").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name:
            return parts[0].lower()
    return None


def load_reader(path: str | os.PathLike | None, model_dir: str, *, threads: int | None = None) -> Reader:
    """Load and verify the reader in ``path`` (see :func:`reader_dir`); its tokenizer is the base model's."""
    folder = reader_dir(path)
    onnx_path = folder / MODEL_FILE
    if not onnx_path.is_file():
        raise QAError(f"no reader model at {onnx_path} (train one: python training/train_reader.py)")
    identity = remembered_sha256(onnx_path)  # hashed once, then remembered by the file's status
    expected = expected_sha256(folder)
    if expected is None:
        raise QAError(f"{folder / 'SHA256SUMS'} is missing or names no {MODEL_FILE}: the reader cannot be verified")
    if identity != expected:
        raise QAError(f"{onnx_path} does not match its checksum in SHA256SUMS: the file is damaged or was replaced")
    import onnxruntime as ort

    from qa.cpu import cpu_count

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_count()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see qa.embed: no stolen cores
    try:
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise QAError(f"cannot load the reader {onnx_path}: {exc}") from exc
    return Reader(folder, identity, WindowMaker(model_dir), session)
