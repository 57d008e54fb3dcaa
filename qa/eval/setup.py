"""``qa eval``'s inputs: its options, the modes and answerers compared, the sample of questions,
and where a benchmark's corpus and index go."""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import re
from pathlib import Path

from qa.config import FUSIONS, MODES, Settings, load_saved
from qa.datatypes import QAError, Question
from qa.eval.beir import load_beir
from qa.eval.datasets import CORPUS_MARK, FORMATS, load_questions, load_squad
from qa.splits import SPLITS, in_split

# The modes compared: each single retriever, and hybrid with each fusion ("hybrid-rrf").
EVAL_MODES = tuple(m for m in MODES if m != "hybrid") + tuple(f"hybrid-{f}" for f in FUSIONS)
LABELS = {m: m if "-" not in m else "{} ({})".format(*m.split("-", 1)) for m in EVAL_MODES}
EVAL_HOME = Path(".qa-eval")  # benchmarks' corpora and indexes, under the current directory


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``qa eval`` (the settings options are added separately)."""
    parser.add_argument("file", type=Path, help="question set: JSONL file, SQuAD JSON file or BEIR folder")
    parser.add_argument("--format", default="jsonl", help="jsonl (default: our question sets), squad or beir")
    parser.add_argument("--out", type=Path,
                        help="write report.md, results.json, per_question.csv and chart.png into this folder")
    parser.add_argument("--modes", help=f"comma-separated modes to compare (default: {','.join(EVAL_MODES)}; "
                        "or the one given by --mode and --fusion)")
    parser.add_argument("--limit", type=int, help="evaluate a fixed random sample of this many questions")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the --limit sample (default: 0)")
    parser.add_argument("--answerers", help="comma-separated answerers to compare (default: the --answerer in "
                        "effect; e.g. reader,heuristic)")
    parser.add_argument("--split", choices=SPLITS, help="SQuAD: only the questions of these articles "
                        "(heldout: every figure we report; train = fit + calibrate; see qa/splits.py)")
    parser.add_argument("--given-gold", action="store_true",
                        help="the reader alone: read each question with its gold paragraph, no retrieval")
    parser.add_argument("--calibrate", action="store_true",
                        help="fit the answer ranking, confidence and abstention threshold on this set (hybrid "
                        "mode) and save them with the index; a set from several articles (SQuAD) is also "
                        "scored leave-one-article-out")
    parser.add_argument("--calibration-out", type=Path,
                        help="with --calibrate: write the calibration here instead of into the index")
    parser.add_argument("--cross-fit", type=Path, nargs="+", metavar="DIR",
                        help="with --calibrate: readers of the same recipe trained on part of the articles "
                        "(train_reader.py --fold I/N); each article the reader trained on is scored by one "
                        "that did not, so those articles are fitted on too")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def parse_names(text: str, known: tuple[str, ...], what: str) -> list[str]:
    """The names in a comma-separated list, in ``known``'s order; QAError for an unknown one."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in known]
    if unknown or not names:
        raise QAError(f"unknown {what} '{unknown[0] if unknown else text}': expected some of {', '.join(known)}")
    return [m for m in known if m in names]


def parse_modes(text: str) -> list[str]:
    return parse_names(text, EVAL_MODES, "mode")


def parse_answerers(text: str) -> list[str]:
    from qa.config import ANSWERERS

    return parse_names(text, ANSWERERS, "answerer")


def normal_runs(runs: list, settings: Settings) -> list[tuple[str, str]]:
    """Runs as (mode, answerer) pairs; a mode alone takes the answerer of ``settings``."""
    return [run if isinstance(run, tuple) else (run, settings.answerer) for run in runs]


def run_key(run: tuple[str, str], runs: list[tuple[str, str]]) -> str:
    """The run's name in results: its mode, or mode/answerer when several answerers are compared."""
    return run[0] if len({a for _, a in runs}) == 1 else f"{run[0]}/{run[1]}"


def run_label(run: tuple[str, str], runs: list[tuple[str, str]]) -> str:
    label = LABELS.get(run[0], run[0])
    return label if len({a for _, a in runs}) == 1 else f"{label} · {run[1]}"


def select_split(questions: list[Question], split: str | None, path: Path) -> list[Question]:
    """The questions of a SQuAD split's articles (all when ``split`` is None)."""
    if split is None:
        return questions
    if any(q.article is None for q in questions):
        raise QAError(f"--split needs SQuAD articles with titles; {path} has questions without one")
    chosen = [q for q in questions if in_split(q.article, split)]
    if not chosen:
        raise QAError(f"--split {split}: no question of {path} is in that split's articles (see qa/splits.py)")
    return chosen


def single_mode(args: argparse.Namespace, settings: Settings) -> str:
    """All modes, unless --mode names one (hybrid with the --fusion in effect)."""
    if getattr(args, "mode", None) is None:
        return ",".join(EVAL_MODES)
    return f"hybrid-{settings.fusion}" if args.mode == "hybrid" else args.mode


def mode_settings(settings: Settings, mode: str) -> Settings:
    """The settings of one evaluated mode (``hybrid-rrf``: mode hybrid, fusion rrf)."""
    mode, _, fusion = mode.partition("-")
    return settings.replace(mode=mode, fusion=fusion or None)


def dataset_name(path: Path) -> str:
    """A folder name for a benchmark: the file's stem, or the folder's name."""
    path = Path(path).resolve()
    stem = path.stem if path.is_file() else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "dataset"


def eval_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """The settings with a benchmark's own corpus and index folders, and the threshold saved
    with that index unless --threshold is given.

    The corpus a benchmark's documents are written into is ``--corpus`` if given; else, with
    ``--index`` given, the folder beside that index named ``<index name>-corpus`` (``--index
    runs/squad`` -> ``runs/squad-corpus``); else ``.qa-eval/<name>/corpus`` under the current
    folder. The index is ``--index`` if given, else ``.qa-eval/<name>/index``."""
    if args.format == "jsonl":
        return settings
    home = EVAL_HOME / dataset_name(args.file)
    if args.corpus is not None:
        corpus = Path(args.corpus)
    elif args.index is not None:
        beside = Path(args.index)
        if beside.name in ("", ".."):  # "." or "..": name the folder they stand for
            beside = Path(os.path.abspath(beside))
        corpus = beside.parent / f"{beside.name or 'index'}-corpus"
    else:
        corpus = home / "corpus"
    index = args.index if args.index is not None else home / "index"
    chosen = dataclasses.replace(settings, corpus=Path(corpus), index=Path(index), threshold=args.threshold)
    return load_saved(chosen)


def claim_corpus(corpus: Path) -> None:
    """Refuse to write a benchmark's documents over a folder that holds anything else, or
    where no folder can be made. Creates nothing: the loader creates the folder (and its
    mark file) only once the whole benchmark file has been read, so a refused file leaves
    nothing behind."""
    try:
        if corpus.exists() and not corpus.is_dir():
            raise QAError(f"corpus for the benchmark is not a folder: {corpus}")
        if corpus.is_dir():
            if not (corpus / CORPUS_MARK).exists() and any(corpus.iterdir()):
                raise QAError(f"{corpus} already holds other files: give --corpus a new or empty folder "
                              "for the benchmark")
            writable = corpus
        else:
            writable = Path(os.path.abspath(corpus)).parent
            while not writable.exists():
                writable = writable.parent
            if not writable.is_dir():
                raise QAError(f"cannot write corpus folder {corpus}: {writable} is not a folder")
    except OSError as e:
        raise QAError(f"cannot read corpus folder {corpus}: {e.strerror or e}") from None
    if not os.access(writable, os.W_OK | os.X_OK):
        raise QAError(f"cannot write corpus folder {corpus}: {writable} is not writable")


def sample_questions(questions: list[Question], limit: int | None, seed: int) -> list[Question]:
    """A fixed random sample of ``limit`` questions (all when None or more), in file order."""
    if limit is None or limit >= len(questions):
        return list(questions)
    keep = sorted(random.Random(seed).sample(range(len(questions)), limit))
    return [questions[i] for i in keep]


def check_questions(questions: list[Question], path: Path) -> None:
    from qa.pipeline import check_question

    for q in questions:
        try:
            check_question(q.question)
        except QAError as e:
            raise QAError(f"{path}: question '{q.id}': {e}") from None


def check_out(out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise QAError(f"--out must be a folder: {out} is a file")
    return out


def load_question_set(path: Path, fmt: str, corpus_dir: Path | None) -> list[Question]:
    """Load a question set of format ``jsonl``, ``squad`` or ``beir``.

    ``squad`` and ``beir`` write their documents into corpus_dir, which they need;
    ``jsonl`` ignores it.
    """
    if fmt not in FORMATS:
        raise QAError(f"unknown format '{fmt}': expected jsonl, squad or beir")
    if fmt == "jsonl":
        return load_questions(Path(path))
    if corpus_dir is None:
        raise QAError(f"format '{fmt}' needs a corpus folder to write its documents into")
    if fmt == "squad":
        return load_squad(Path(path), Path(corpus_dir))
    return load_beir(Path(path), Path(corpus_dir))
