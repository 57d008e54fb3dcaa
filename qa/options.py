"""The command line's shared pieces: the settings as options, the one-line parser, exit statuses.

Used by `qa` (``qa.cli``) and by the chat page (``qa.web``), so neither imports the other.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qa.config import ANSWERERS, BACKENDS, FAISS_KINDS, FUSIONS, MODES, PRECISIONS, Settings, load_saved
from qa.datatypes import QAError

EXIT_OK = 0  # done; `qa ask`: every question answered, or found not answered by the documents
EXIT_FAILED = 1  # something went wrong that is not the input's fault (an OSError, an unexpected failure)
EXIT_BAD_INPUT = 2  # usage error or bad input: an unknown option, a bad question, a missing corpus, ...
EXIT_INTERRUPTED = 130  # Ctrl-C

HOST = "127.0.0.1"  # the chat page's address: this machine only
PORT = 7860


def add_settings_arguments(parser: argparse.ArgumentParser, *, retrieval: bool = True) -> None:
    """The knobs of ``Settings`` as options (defaults shown by --help)."""
    d = Settings()
    g = parser.add_argument_group("corpus and index")
    g.add_argument("--corpus", type=Path, help=f"folder of documents (default: {d.corpus})")
    g.add_argument("--index", type=Path, help=f"index folder (default: {d.index})")
    g.add_argument("--follow-links", action="store_true", default=None,
                   help="read links that point outside the corpus folder (default: skip them with a warning)")
    g.add_argument("--model", help="local sentence-transformers model folder (default: bundled all-MiniLM-L6-v2)")
    g.add_argument("--backend", choices=BACKENDS, help=f"encoder runtime (default: {d.backend})")
    g.add_argument("--precision", choices=PRECISIONS, help=f"indexing precision (default: {d.precision})")
    g.add_argument("--batch-size", type=int, help=f"encoding batch size (default: {d.batch_size})")
    g.add_argument("--sentences", dest="sentences_per_passage", type=int,
                   help=f"sentences per passage (default: {d.sentences_per_passage})")
    g.add_argument("--overlap", type=int, help=f"sentences shared by neighbouring passages (default: {d.overlap})")
    g.add_argument("--faiss", choices=FAISS_KINDS, help=f"dense index type (default: {d.faiss}: exact below "
                   f"{d.hnsw_min:,} passages, HNSW above)")
    g.add_argument("--hnsw-min", type=int, help=f"passages from which auto picks HNSW (default: {d.hnsw_min})")
    g.add_argument("--hnsw-m", type=int, help=f"HNSW graph degree (default: {d.hnsw_m})")
    g.add_argument("--ef-search", dest="hnsw_ef_search", type=int, help=f"HNSW search depth (default: {d.hnsw_ef_search})")
    if not retrieval:
        return
    g = parser.add_argument_group("retrieval and answers")
    g.add_argument("--mode", choices=MODES, help=f"retrieval mode (default: {d.mode})")
    g.add_argument("--fusion", choices=FUSIONS, help=f"hybrid fusion method (default: {d.fusion})")
    g.add_argument("--rrf-k", type=int, help=f"reciprocal rank fusion constant (default: {d.rrf_k})")
    g.add_argument("--dense-weight", type=float, help=f"hybrid: share of the dense signals against BM25 (default: {d.dense_weight})")
    g.add_argument("--candidates", type=int, help=f"hits taken from each retriever before fusion (default: {d.candidates})")
    g.add_argument("-k", dest="k", type=int, help=f"passages retrieved and cited (default: {d.k})")
    g.add_argument("--answerer", choices=ANSWERERS, help=f"what picks the answer (default: {d.answerer}: the "
                   "trained span reader; heuristic: the older sentence scorer, for comparison)")
    g.add_argument("--reader", help="reader model folder (default: the shipped models/reader)")
    g.add_argument("--read", type=int, help=f"top passages the reader reads (default: {d.read})")
    g.add_argument("--threshold", type=float, help="abstain below this confidence, a probability for the reader "
                   "(default: the calibrated value)")
    g.add_argument("--max-answers", type=int, help=f"most answers shown (default: {d.max_answers})")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of serving the chat page (``qa serve``, ``python ui.py``): where to listen, and the settings."""
    parser.add_argument("--host", default=HOST, help=f"address to bind (default: {HOST}; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=PORT, help=f"port (default: {PORT})")
    add_settings_arguments(parser)


def settings_from(args: argparse.Namespace) -> Settings:
    """Defaults, then what calibration saved in the index folder, then the command line."""
    base = Settings()
    base = base.replace(corpus=getattr(args, "corpus", None), index=getattr(args, "index", None))
    names = [f for f in vars(Settings()) if f not in ("corpus", "index")]
    settings = load_saved(base.replace(**{n: getattr(args, n, None) for n in names}))
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    if s.k < 1 or s.candidates < 1:
        raise QAError("-k and --candidates must be at least 1")
    if s.sentences_per_passage < 1 or not 0 <= s.overlap < s.sentences_per_passage:
        raise QAError("--sentences must be at least 1 and --overlap between 0 and sentences - 1")
    if s.threshold is not None and not 0.0 <= s.threshold <= 1.0:
        raise QAError("--threshold must be between 0 and 1")
    if s.answerer not in ANSWERERS:
        raise QAError(f"unknown answerer '{s.answerer}': expected one of {', '.join(ANSWERERS)}")
    if s.read < 1:
        raise QAError("--read must be at least 1")
    if not 0.0 <= s.dense_weight <= 1.0:
        raise QAError("--dense-weight must be between 0 and 1")
    if s.batch_size < 1 or s.max_answers < 1 or s.rrf_k < 1:
        raise QAError("--batch-size, --max-answers and --rrf-k must be at least 1")
    if s.hnsw_m < 2 or s.hnsw_ef_search < 1 or s.hnsw_min < 1:
        raise QAError("--hnsw-m must be at least 2, --ef-search and --hnsw-min at least 1")
    if s.model and not Path(s.model).is_dir():
        raise QAError(f"model folder not found: {s.model}")


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error."""

    def error(self, message: str):
        from qa.present import plain

        self.exit(EXIT_BAD_INPUT, f"error: {' '.join(plain(message).split(chr(10)))} (see `{self.prog} --help`)\n")
