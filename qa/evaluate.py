"""`qa eval`: score a question set or a public benchmark, one row per retrieval mode.

For every question and mode the passages are retrieved once, deep enough for the
retrieval metrics (20 distinct units), and the top ``settings.k`` of them are answered
exactly as ``qa ask`` answers them; timings cover that normal path. Retrieval metrics
count *units* (see :mod:`qa.metrics`): a BEIR document; else the gold region (a SQuAD
paragraph) or gold document, for any passage of it that contains an accepted answer,
so several chunks of one gold region count once. Outputs go to the terminal and,
with ``--out``, into a folder that appears complete or not at all.

Top-level imports are kept to the standard library (the CLI imports this module on
every start); numpy, tqdm and matplotlib are imported where they are used.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import random
import re
import shlex
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from qa.calibration import RIGHT_F1
from qa.config import SAVED_SETTINGS_FILE, Settings, load_saved
from qa.datasets import FORMATS
from qa.splits import SPLITS, in_split
from qa.datatypes import Answer, Citation, QAError, Question

EVAL_MODES = ("bm25", "dense", "hybrid-rrf", "hybrid-weighted")
LABELS = {"bm25": "bm25", "dense": "dense", "hybrid-rrf": "hybrid (rrf)", "hybrid-weighted": "hybrid (weighted)"}
DEPTH = 20  # distinct units ranked per question
RECALL_KS = (1, 5, 10, 20)
RANK_K = 10  # cut-off of MRR and nDCG
EVAL_HOME = Path(".qa-eval")  # benchmarks' corpora and indexes, under the current directory


@dataclass
class Outcome:
    """One question asked in one mode."""

    mode: str
    question: Question
    ranked: list[str]  # unit of each retrieved passage, best first, up to DEPTH distinct units
    scores: list[float]  # retrieval score of each, parallel to ``ranked``
    relevant: dict[str, int]  # relevant units and their grades; empty: no retrieval judgement
    answered: bool | None = None  # None when answers are not scored (BEIR)
    answer: Answer | None = None  # the top answer, whether or not its confidence passed the threshold
    answerer: str = "reader"
    cited: Citation | None = None
    timings: dict[str, float] = field(default_factory=dict)


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
                        "mode) and save them with the index")
    parser.add_argument("--calibration-out", type=Path,
                        help="with --calibrate: write the calibration here instead of into the index folder")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    """``qa eval``: evaluate (or calibrate) and report; returns the exit status."""
    started = time.perf_counter()
    if args.format not in FORMATS:
        raise QAError(f"unknown format '{args.format}': expected {', '.join(FORMATS)}")
    modes = parse_modes(args.modes if args.modes is not None else _single_mode(args, settings))
    if args.limit is not None and args.limit < 1:
        raise QAError("--limit must be at least 1")
    if args.calibrate and args.out is not None:
        raise QAError("--calibrate does not write a report: run it without --out, then evaluate")
    if args.calibrate and args.format == "beir":
        raise QAError("--calibrate needs questions with answers; BEIR sets have none")
    out = _check_out(args.out) if args.out is not None else None
    path = Path(args.file)
    if not path.exists():
        raise QAError(f"question set not found: {path}")
    settings = eval_settings(args, settings)
    if args.format != "jsonl":
        _claim_corpus(Path(settings.corpus))

    from qa.datasets import load_question_set

    everything = load_question_set(path, args.format, settings.corpus)
    everything = select_split(everything, args.split, path)
    questions = sample_questions(everything, args.limit, args.seed)
    _check_questions(questions, path)
    answerers = parse_answerers(args.answerers or settings.answerer)
    if args.given_gold:
        return run_given_gold(args, settings, questions, out, started, len(everything), path)

    from qa.pipeline import open_engine

    needs_reader = "reader" in answerers and not (args.calibrate and settings.answerer == "heuristic")
    engine = open_engine(settings.replace(answerer="reader" if needs_reader else "heuristic"),
                         progress=not args.quiet, fitting=args.calibrate)
    _warn_unknown_docs(questions, engine.index)
    if args.calibrate:
        if settings.answerer == "heuristic":
            return run_calibration(engine, questions, settings, progress=not args.quiet)
        from qa.fit_calibration import run_reader_calibration

        return run_reader_calibration(engine, questions, settings, progress=not args.quiet,
                                      out=args.calibration_out)

    runs = [(m, a) for m in modes for a in answerers]
    outcomes = evaluate(engine, questions, runs, settings, answers=args.format != "beir", progress=not args.quiet)
    results = summarise(outcomes, runs, answers=args.format != "beir")
    results.update(_context(args, settings, engine, questions, len(everything), path))
    results["wall_s"] = round(time.perf_counter() - started, 1)
    print(render_tables(results))
    if out is not None:
        write_outputs(out, results, outcomes, runs)
        print(f"\nwrote {out}/ (report.md, results.json, per_question.csv, chart.png, reliability.png)", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- inputs


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


def _single_mode(args: argparse.Namespace, settings: Settings) -> str:
    """All modes, unless --mode names one (hybrid with the --fusion in effect)."""
    if getattr(args, "mode", None) is None:
        return ",".join(EVAL_MODES)
    return f"hybrid-{settings.fusion}" if args.mode == "hybrid" else args.mode


def mode_settings(settings: Settings, mode: str) -> Settings:
    """The settings of one evaluated mode."""
    if mode == "hybrid-rrf":
        return settings.replace(mode="hybrid", fusion="rrf")
    if mode == "hybrid-weighted":
        return settings.replace(mode="hybrid", fusion="weighted")
    return settings.replace(mode=mode)


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


def _claim_corpus(corpus: Path) -> None:
    """Refuse to write a benchmark's documents over a folder that holds anything else, or
    where no folder can be made. Creates nothing: the loader creates the folder (and its
    mark file) only once the whole benchmark file has been read, so a refused file leaves
    nothing behind."""
    from qa.datasets import CORPUS_MARK

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


def _check_questions(questions: list[Question], path: Path) -> None:
    from qa.pipeline import check_question

    for q in questions:
        try:
            check_question(q.question)
        except QAError as e:
            raise QAError(f"{path}: question '{q.id}': {e}") from None


def _check_out(out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise QAError(f"--out must be a folder: {out} is a file")
    return out


def _warn_unknown_docs(questions: list[Question], index) -> None:
    known = index.manifest["docs"]
    missing = sorted({q.doc for q in questions if q.doc and q.doc not in known})
    if missing:
        n = sum(1 for q in questions if q.doc in missing)
        print(f"warning: {n} questions name a document that is not in the index (e.g. '{missing[0]}'): "
              "their gold passages cannot be retrieved", file=sys.stderr)


# ---------------------------------------------------------------- running


def run_given_gold(args: argparse.Namespace, settings: Settings, questions: list[Question], out: Path | None,
                   started: float, total: int, path: Path) -> int:
    """The reader alone: each question read with its gold paragraph (SQuAD), span EM/F1 and latency."""
    from tqdm import tqdm

    from qa.metrics import exact_match, mean, summarise_latency, token_f1
    from qa.reader import load_reader

    golds = [q for q in questions if q.answerable and q.doc and q.region]
    if not golds:
        raise QAError("--given-gold needs questions with a gold paragraph (SQuAD format)")
    reader = load_reader(settings.reader or None, settings.model_path)
    texts: dict[str, str] = {}
    ems, f1s, ms = [], [], []
    for q in tqdm(golds, desc="read", unit="q", file=sys.stderr, disable=args.quiet, mininterval=0.5):
        if q.doc not in texts:
            texts[q.doc] = (Path(settings.corpus) / q.doc).read_text(encoding="utf-8")
        context = texts[q.doc][q.region[0] : q.region[1]]
        spans, took = reader.read(q.question, [context], per_window=1)
        prediction = context[spans[0].start : spans[0].end] if spans else ""
        ems.append(exact_match(prediction, q.answers))
        f1s.append(token_f1(prediction, q.answers))
        ms.append(took)
    results = {
        "command": shlex.join(["qa", *sys.argv[1:]]),
        "dataset": {"path": str(path), "questions": len(golds), "questions_in_file": total, "split": args.split},
        "reader": {"folder": str(reader.folder), "sha256": reader.identity},
        "given_gold": {"em": mean(ems), "f1": mean(f1s), "latency_ms": summarise_latency(ms)},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    g = results["given_gold"]
    print(f"Reader given the gold paragraph ({len(golds)} questions{', ' + args.split if args.split else ''})\n"
          + markdown_table(["reader", "EM", "F1", "read p50 ms", "read p95 ms"],
                           [[reader.identity[:12], _fmt(g["em"]), _fmt(g["f1"]),
                             _fmt(g["latency_ms"]["p50"], 1), _fmt(g["latency_ms"]["p95"], 1)]]))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


def evaluate(engine, questions: list[Question], runs: list, settings: Settings, *,
             answers: bool = True, progress: bool = True) -> list[Outcome]:
    """Retrieve (and answer, unless ``answers`` is False) every question for every run: a
    (mode, answerer) pair, or a mode alone (with the answerer of ``settings``)."""
    from tqdm import tqdm

    runs = normal_runs(runs, settings)
    per_run = {run: mode_settings(settings, run[0]).replace(answerer=run[1]) for run in runs}
    for run in runs:  # warm-up: first-call costs are not latency
        _ask_once(engine, questions[0], per_run[run], answers)
    outcomes: list[Outcome] = []
    bar = tqdm(total=len(questions) * len(runs), desc="eval", unit="q", file=sys.stderr,
               disable=not progress, mininterval=0.5)
    with bar:
        for q in questions:
            contains: dict[int, bool] = {}
            for run in runs:
                outcomes.append(_ask_once(engine, q, per_run[run], answers, contains, run_key(run, runs)))
                bar.update(1)
    return outcomes


def _ask_once(engine, q: Question, s: Settings, answers: bool, contains: dict[int, bool] | None = None,
              key: str = "") -> Outcome:
    """``qa.pipeline.ask`` itself, with the ranked hits taken deep enough for the metrics.

    The answer is asked for at threshold 0, so the top answer and its confidence are known
    for every question (calibration error needs them); ``answered`` applies the threshold
    in effect, exactly as ``ask`` would.
    """
    from qa.pipeline import ask, threshold

    result = ask(engine, q.question, settings=s.replace(threshold=0.0, max_answers=1), depth=DEPTH)
    ranked, scores, relevant = judge(q, result.hits, contains if contains is not None else {})
    timings = {k: v for k, v in result.timings_ms.items() if k in ("retrieve", "answer", "total", "reader")}
    outcome = Outcome(key, q, ranked, scores, relevant, timings=timings, answerer=s.answerer)
    if not answers:
        outcome.timings = {"retrieve": timings["retrieve"], "total": timings["retrieve"]}
        return outcome
    top = result.answers[0] if result.answers else None
    outcome.answer = top
    outcome.answered = top is not None and top.score >= threshold(engine, s)
    if top is not None:
        outcome.cited = result.citations[top.citation - 1]
    return outcome


def judge(q: Question, hits: list, contains: dict[int, bool]) -> tuple[list[str], list[float], dict[str, int]]:
    """The unit of each hit (up to DEPTH distinct units), their scores and the relevant units.

    With qrels (BEIR) units are documents. Otherwise a hit is relevant when it comes
    from the gold document (and overlaps the gold region, when known) and contains an
    accepted answer; all relevant hits share one unit, every other hit is its own.
    Unanswerable questions have no relevant units. ``contains`` caches answer checks
    by passage row across modes.
    """
    from qa.metrics import contains_answer

    gold = "gold:" + (q.doc or "*") + (f"#{q.region[0]}-{q.region[1]}" if q.region else "")
    ranked: list[str] = []
    scores: list[float] = []
    seen: set[str] = set()
    for hit in hits:
        p = hit.passage
        if q.relevant:
            unit = p.doc
        elif q.answerable and _in_gold(q, p):
            if hit.row not in contains:
                contains[hit.row] = contains_answer(p.text, q.answers)
            unit = gold if contains[hit.row] else f"{p.doc}#{p.ordinal}"
        else:
            unit = f"{p.doc}#{p.ordinal}"
        if unit not in seen:
            if len(seen) == DEPTH:
                break
            seen.add(unit)
        ranked.append(unit)
        scores.append(hit.score)
    if q.relevant:
        return ranked, scores, dict(q.relevant)
    return ranked, scores, ({gold: 1} if q.answerable else {})


def _in_gold(q: Question, p) -> bool:
    if q.doc is not None and p.doc != q.doc:
        return False
    return q.region is None or (p.start < q.region[1] and p.end > q.region[0])


# ---------------------------------------------------------------- scoring


def question_scores(o: Outcome) -> dict:
    """The per-question figures of one outcome (None where they do not apply)."""
    from qa.metrics import contains_answer, exact_match, token_f1

    q = o.question
    row: dict = {"relevant_rank": None, "correct": None, "span_em": None, "f1": None, "citation_ok": None,
                 "confidence": None, "right": None}
    if o.relevant:
        row["relevant_rank"] = first_relevant_rank(o.ranked, o.relevant)
    if o.answered is None:
        row["ok"] = row["relevant_rank"] is not None and row["relevant_rank"] <= RANK_K
        return row
    a = o.answer if o.answered else None
    if o.answer is not None:  # the top answer whether shown or not: what calibration is judged on
        row["confidence"] = o.answer.score
        row["right"] = q.answerable and token_f1(o.answer.span or o.answer.text, q.answers) >= RIGHT_F1
    if q.answerable:
        row["correct"] = bool(a) and sentence_ok(a, q)
        prediction = (a.span or a.text) if a else ""
        row["span_em"] = exact_match(prediction, q.answers) if a else 0.0
        row["f1"] = token_f1(prediction, q.answers) if a else 0.0
        row["citation_ok"] = bool(a) and bool(o.cited) and contains_answer(o.cited.text, q.answers) and (
            q.doc is None or o.cited.doc == q.doc)
        row["ok"] = row["correct"]
    else:
        row["ok"] = not o.answered
    return row


def sentence_ok(a: Answer, q: Question) -> bool:
    """Whether the answer sentence is right: it covers a gold answer's position when the data
    gives positions (SQuAD ``answer_start``), else it contains an accepted answer."""
    from qa.metrics import contains_answer

    if q.spans and q.doc is not None:
        return a.doc == q.doc and any(a.start <= s and e <= a.end for s, e in q.spans)
    return contains_answer(a.text, q.answers)


def first_relevant_rank(ranked: list[str], relevant: dict[str, int]) -> int | None:
    """1-based rank of the first relevant distinct unit, or None."""
    from qa.metrics import dedupe_units

    for rank, unit in enumerate(dedupe_units(ranked), start=1):
        if relevant.get(unit, 0) > 0:
            return rank
    return None


def summarise(outcomes: list[Outcome], runs: list[tuple[str, str]], *, answers: bool = True) -> dict:
    """Every figure per (mode, answerer): retrieval, answers (unless ``answers`` is False), latency."""
    from qa.metrics import summarise_latency

    results: dict = {"modes": {}}
    runs = normal_runs(runs, Settings())
    for run in runs:
        key = run_key(run, runs)
        mine = [o for o in outcomes if o.mode == key]
        stages = ("retrieve", "answer", "reader", "total") if answers else ("retrieve", "total")
        entry = {
            "label": run_label(run, runs) if answers else LABELS.get(run[0], run[0]),
            "retrieval": retrieval_metrics(mine),
            "answers": answer_metrics(mine) if answers else None,
            "latency_ms": {stage: summarise_latency([o.timings[stage] for o in mine if stage in o.timings])
                           for stage in stages if any(stage in o.timings for o in mine)},
        }
        results["modes"][key] = entry
    return results


def retrieval_metrics(outcomes: list[Outcome]) -> dict:
    """Recall@1/5/10/20, MRR@10, nDCG@10 over the questions with relevant units."""
    from qa.metrics import mean, mrr_at_k, ndcg_at_k, recall_at_k

    judged = [o for o in outcomes if o.relevant]
    figures: dict = {"n": len(judged)}
    for k in RECALL_KS:
        figures[f"recall@{k}"] = mean(recall_at_k(o.ranked, o.relevant, k) for o in judged) if judged else None
    figures[f"mrr@{RANK_K}"] = mean(mrr_at_k(o.ranked, o.relevant, RANK_K) for o in judged) if judged else None
    figures[f"ndcg@{RANK_K}"] = (
        mean(ndcg_at_k(o.ranked, o.relevant, RANK_K, o.scores) for o in judged) if judged else None
    )
    return figures


def answer_metrics(outcomes: list[Outcome]) -> dict:
    """Accuracy, span EM, F1 and citation accuracy over answerable questions; abstention
    precision/recall/F1 (None without unanswerable questions), answered rate and mean
    answer length over all."""
    from qa.metrics import abstention_prf, mean

    from qa.calibration import reliability

    rows = [question_scores(o) for o in outcomes]
    answerable = [r for o, r in zip(outcomes, rows) if o.question.answerable]
    judged = [r for r in rows if r["confidence"] is not None]
    calibration = reliability([r["confidence"] for r in judged], [bool(r["right"]) for r in judged])
    answered = [o for o in outcomes if o.answered]
    p, r, f = abstention_prf([not o.answered for o in outcomes], [not o.question.answerable for o in outcomes])
    some = bool(answerable)
    if len(answerable) == len(outcomes):
        p = r = f = None
    return {
        "n": len(outcomes),
        "answerable": len(answerable),
        "unanswerable": len(outcomes) - len(answerable),
        "accuracy": mean(float(r["correct"]) for r in answerable) if some else None,
        "span_em": mean(r["span_em"] for r in answerable) if some else None,
        "f1": mean(r["f1"] for r in answerable) if some else None,
        "citation_accuracy": mean(float(r["citation_ok"]) for r in answerable) if some else None,
        "abstention_precision": p,
        "abstention_recall": r,
        "abstention_f1": f,
        "answered_rate": len(answered) / len(outcomes) if outcomes else None,
        "mean_answer_words": mean(len(o.answer.text.split()) for o in answered) if answered else None,
        "ece": calibration["ece"],
        "reliability": calibration["bins"],
    }


def _context(args: argparse.Namespace, settings: Settings, engine, questions: list[Question], total: int,
             path: Path) -> dict:
    answerable = sum(1 for q in questions if q.answerable)
    return {
        "command": shlex.join(["qa", *sys.argv[1:]]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": {
            "path": str(path),
            "format": args.format,
            "questions": len(questions),
            "questions_in_file": total,
            "limit": args.limit,
            "seed": args.seed if args.limit is not None and args.limit < total else None,
            "answerable": answerable,
            "unanswerable": len(questions) - answerable,
            "with_retrieval_judgements": sum(1 for q in questions if q.relevant or q.answerable),
        },
        "corpus": str(settings.corpus),
        "index": str(settings.index),
        "documents": len(engine.index.manifest["docs"]),
        "passages": len(engine.index.passages),
        "model": engine.index.manifest.get("model"),
        "depth": DEPTH,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(settings).items()},
    }


# ---------------------------------------------------------------- calibration


def run_calibration(engine, questions: list[Question], settings: Settings, *, progress: bool = True) -> int:
    """Choose the abstention threshold on ``questions`` (hybrid mode), print it and save it with the index."""
    from qa.metrics import contains_answer

    if not any(q.answerable for q in questions):
        raise QAError("--calibrate needs answerable questions in the set")
    from qa.pipeline import threshold

    was_t = threshold(engine, settings.replace(answerer="heuristic"))
    s = settings.replace(mode="hybrid", threshold=0.0, answerer="heuristic")
    outcomes = evaluate(engine, questions, [("hybrid", "heuristic")], s, progress=progress)
    scores = [o.answer.score if o.answer else -1.0 for o in outcomes]
    correct = [bool(o.answer) and contains_answer(o.answer.text, o.question.answers) for o in outcomes]
    unanswerable = [not o.question.answerable for o in outcomes]
    best = choose_threshold(scores, correct, unanswerable)
    was = sweep_point(was_t, scores, correct, unanswerable)
    now = sweep_point(best, scores, correct, unanswerable)
    path = save_threshold(Path(settings.index), best)
    n_un = sum(unanswerable)
    print(f"calibrated on {len(questions)} questions ({len(questions) - n_un} answerable, {n_un} unanswerable), "
          f"hybrid ({settings.fusion})")
    for name, t, point in (("threshold", best, now), ("was", was_t, was)):
        print(f"{name} {t:.4f}: accuracy {point['accuracy']:.3f} (answerable questions, threshold applied), "
              f"abstention F1 {point['abstention_f1']:.3f} (P {point['abstention_precision']:.3f}, "
              f"R {point['abstention_recall']:.3f}), answered {point['answered_rate']:.0%}")
    if not n_un:
        print("note: no unanswerable questions in the set, so nothing argues for abstaining", file=sys.stderr)
    print(f"saved to {path}")
    return 0


def sweep_point(t: float, scores: list[float], correct: list[bool], unanswerable: list[bool]) -> dict:
    """Accuracy (over answerable questions), abstention P/R/F1 and answered rate at threshold ``t``.

    A question is answered when its top answer's score (at threshold 0) is at least ``t``.
    """
    from qa.metrics import abstention_prf

    answered = [s >= t and s >= 0 for s in scores]
    n_answerable = sum(1 for u in unanswerable if not u)
    accuracy = sum(1 for a, c, u in zip(answered, correct, unanswerable) if a and c and not u)
    p, r, f = abstention_prf([not a for a in answered], unanswerable)
    return {
        "accuracy": accuracy / n_answerable if n_answerable else 0.0,
        "abstention_precision": p,
        "abstention_recall": r,
        "abstention_f1": f,
        "answered_rate": sum(answered) / len(answered) if answered else 0.0,
    }


def choose_threshold(scores: list[float], correct: list[bool], unanswerable: list[bool]) -> float:
    """The threshold maximising accuracy + abstention F1, swept over the observed top scores.

    Candidates are 0 (answer everything that has an answer), the midpoints between
    neighbouring distinct scores, and just above the highest score (abstain always,
    when that stays within 1); the lowest of equally good thresholds wins.
    Scores below 0 stand for "no answer at all".
    """
    observed = sorted({s for s in scores if s >= 0})
    candidates = [0.0] + [(a + b) / 2 for a, b in zip(observed, observed[1:])]
    if observed and observed[-1] + 1e-4 <= 1.0:
        candidates.append(observed[-1] + 1e-4)
    best_t, best_value = 0.0, float("-inf")
    for t in candidates:
        point = sweep_point(t, scores, correct, unanswerable)
        value = point["accuracy"] + point["abstention_f1"]
        if value > best_value + 1e-12:
            best_t, best_value = t, value
    return round(best_t, 6)


def save_threshold(index: Path, threshold: float) -> Path:
    """Write ``{"threshold": t}`` (keeping other saved keys) into the index folder, atomically."""
    path = Path(index) / SAVED_SETTINGS_FILE
    try:
        saved = json.loads(path.read_text())
        if not isinstance(saved, dict):
            saved = {}
    except (OSError, ValueError):
        saved = {}
    saved["threshold"] = threshold
    from qa.storage import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(saved, indent=1) + "\n")
    except OSError as e:
        raise QAError(f"cannot save the threshold in {path}: {e.strerror or e}") from None
    return path


# ---------------------------------------------------------------- reporting


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def tables(results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables as (title, header, rows), one row per mode."""
    modes = results["modes"]
    n_judged = next(iter(modes.values()))["retrieval"]["n"] if modes else 0
    retrieval = (
        f"Retrieval ({n_judged} questions with a relevant unit; k counts distinct units)",
        ["mode", "R@1", "R@5", "R@10", "R@20", f"MRR@{RANK_K}", f"nDCG@{RANK_K}"],
        [[m["label"]] + [_fmt(m["retrieval"][key]) for key in
                         [f"recall@{k}" for k in RECALL_KS] + [f"mrr@{RANK_K}", f"ndcg@{RANK_K}"]]
         for m in modes.values()],
    )
    out = [retrieval]
    first = next(iter(modes.values()), None)
    if first and first["answers"] is not None:
        a0 = first["answers"]
        out.append((
            f"Answers ({a0['answerable']} answerable, {a0['unanswerable']} unanswerable questions)",
            ["mode", "sentence acc.", "span EM", "F1", "citation", "ECE", "abst. P", "abst. R", "abst. F1",
             "answered", "words"],
            [[m["label"]] + [_fmt(m["answers"][key]) for key in
                             ("accuracy", "span_em", "f1", "citation_accuracy", "ece", "abstention_precision",
                              "abstention_recall", "abstention_f1", "answered_rate")]
             + [_fmt(m["answers"]["mean_answer_words"], 1)] for m in modes.values()],
        ))
    stages = [s for s in ("retrieve", "reader", "answer", "total")
              if any(s in m["latency_ms"] for m in modes.values())]
    out.append((
        "Latency (ms per question)",
        ["mode"] + [f"{s} {p}" for s in stages for p in ("p50", "p95")],
        [[m["label"]] + [_fmt(m["latency_ms"][s][p] if s in m["latency_ms"] else None, 1)
                         for s in stages for p in ("p50", "p95")]
         for m in modes.values()],
    ))
    return out


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """An aligned Markdown table: the first column left, the others right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ) + " |"

    rule = "|" + "|".join((":" + "-" * (w + 1)) if i == 0 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def render_tables(results: dict) -> str:
    """The tables as terminal text (Markdown, aligned)."""
    return "\n\n".join(f"{title}\n{markdown_table(header, rows)}" for title, header, rows in tables(results))


def report_markdown(results: dict) -> str:
    """report.md: the tables, the data, the settings and the command line."""
    d = results["dataset"]
    model = results.get("model") or {}
    sample = (f"a fixed random sample (seed {d['seed']}) of {d['questions']:,} of {d['questions_in_file']:,} questions"
              if d["seed"] is not None else f"{d['questions']:,} questions")
    lines = [
        f"# qa eval: {Path(d['path']).name}",
        "",
        "```",
        results["command"],
        "```",
        "",
        f"- data: `{d['path']}` ({d['format']}), {sample}: {d['answerable']:,} answerable, "
        f"{d['unanswerable']:,} unanswerable",
        f"- corpus: `{results['corpus']}`: {results['documents']:,} documents, {results['passages']:,} passages; "
        f"index `{results['index']}`",
        f"- model: {model.get('name', '?')} ({model.get('backend', '?')}, {model.get('precision', '?')})",
        f"- run: {results['created']}, {results['wall_s']} s",
        "",
    ]
    for title, header, rows in tables(results):
        lines += [f"## {title}", "", markdown_table(header, rows), ""]
    lines += [
        "![Recall@k and answer metrics by mode](chart.png) ![Reliability of the confidence](reliability.png)",
        "",
        "## How to read it",
        "",
        f"- Retrieval: each question's passages are ranked to depth {results['depth']} distinct *units*. "
        "With qrels (BEIR) a unit is a document; otherwise every passage that comes from the gold "
        "document (and overlaps the gold paragraph, for SQuAD) and contains an accepted answer is one "
        "shared relevant unit, so several chunks of it count once. Unanswerable questions are left out.",
        "- Sentence accuracy: the top answer's sentence covers a gold answer's position when the data "
        "gives positions (SQuAD's answer_start), else contains an accepted answer (SQuAD-normalised); span EM "
        "and F1 score the short span, or the answer sentence when there is none; citation: the cited passage "
        "contains the answer and comes from the gold document. These are over answerable questions; an "
        "abstention scores 0.",
        f"- ECE: expected calibration error of the top answer's confidence (10 bins) against whether its span "
        f"is right (token F1 >= {RIGHT_F1}), over every question, shown or not; reliability.png draws it.",
        "- Abstention precision/recall/F1 treat abstaining as the positive class and unanswerable "
        "questions as its truth; answered is the share of all questions answered; words is the mean "
        "length of the answers given.",
        "- Latency: the normal `qa ask` path per question with the settings below (retrieve, answer, total).",
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(results["settings"], indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)


CSV_COLUMNS = ["id", "question", "expected", "answer", "span", "score", "cited_doc", "cited_line", "ok", "correct",
               "span_em", "f1", "citation_ok", "abstained", "answerable", "relevant_rank", "mode",
               "retrieve_ms", "answer_ms", "total_ms"]


def csv_rows(outcomes: list[Outcome], runs: list[tuple[str, str]]) -> list[dict]:
    """One row per question and run, failures first, then by run and question order."""
    runs = normal_runs(runs, Settings())
    order = {run_key(r, runs): i for i, r in enumerate(runs)}
    rows = []
    for n, o in enumerate(outcomes):
        s = question_scores(o)
        q, a = o.question, o.answer
        rows.append((int(bool(s["ok"])), order[o.mode], n, {
            "id": q.id,
            "question": q.question,
            "expected": " | ".join(q.answers) if q.answers else " | ".join(sorted(q.relevant)),
            "answer": a.text if a else "",
            "span": (a.span or "") if a else "",
            "score": f"{a.score:.4f}" if a else "",
            "cited_doc": o.cited.doc if o.cited else "",
            "cited_line": o.cited.line if o.cited else "",
            "ok": int(bool(s["ok"])),
            "correct": _flag(s["correct"]),
            "span_em": _flag(s["span_em"]),
            "f1": "" if s["f1"] is None else f"{s['f1']:.4f}",
            "citation_ok": _flag(s["citation_ok"]),
            "abstained": "" if o.answered is None else int(not o.answered),
            "answerable": int(q.answerable),
            "relevant_rank": "" if s["relevant_rank"] is None else s["relevant_rank"],
            "mode": o.mode,
            **{f"{stage}_ms": f"{o.timings[stage]:.3f}" if stage in o.timings else ""
               for stage in ("retrieve", "answer", "total")},
        }))
    rows.sort(key=lambda r: r[:3])
    return [r[3] for r in rows]


def _flag(value) -> str | int:
    return "" if value is None else int(bool(value))


def write_chart(results: dict, path: Path) -> None:
    """A PNG: Recall@k by mode, and the answer metrics by mode (when scored)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    modes = results["modes"]
    with_answers = any(m["answers"] is not None for m in modes.values())
    fig = Figure(figsize=(12 if with_answers else 6.5, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if with_answers else 1, squeeze=False)[0]
    ax = axes[0]
    for m in modes.values():
        values = [m["retrieval"][f"recall@{k}"] for k in RECALL_KS]
        if all(v is not None for v in values):
            ax.plot(RECALL_KS, values, marker="o", label=m["label"])
    ax.set_xticks(RECALL_KS)
    ax.set_xlabel("k (distinct units)")
    ax.set_ylabel("Recall@k")
    ax.set_ylim(0, 1.02)
    ax.set_title("Retrieval")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    if with_answers:
        ax = axes[1]
        keys = [("accuracy", "accuracy"), ("span_em", "span EM"), ("f1", "F1"), ("citation_accuracy", "citation"),
                ("abstention_f1", "abst. F1"), ("answered_rate", "answered")]
        keys = [(key, label) for key, label in keys if any(m["answers"][key] is not None for m in modes.values())]
        width = 0.8 / max(1, len(modes))
        for i, m in enumerate(modes.values()):
            values = [m["answers"][key] or 0.0 for key, _ in keys]
            ax.bar([j + i * width for j in range(len(keys))], values, width, label=m["label"])
        ax.set_xticks([j + width * (len(modes) - 1) / 2 for j in range(len(keys))])
        ax.set_xticklabels([label for _, label in keys])
        ax.set_ylim(0, 1.18)
        ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.set_title("Answers")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(loc="upper center", ncol=len(modes), fontsize="small")
    fig.suptitle(f"qa eval: {Path(results['dataset']['path']).name} ({results['dataset']['questions']:,} questions)")
    fig.tight_layout()
    fig.savefig(path, format="png")


def write_reliability(results: dict, path: Path) -> None:
    """A reliability diagram: per confidence bin, the share of top answers that were right."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for m in results["modes"].values():
        bins = (m["answers"] or {}).get("reliability") or []
        if bins:
            ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                    label=f"{m['label']} (ECE {m['answers']['ece']:.3f})")
    ax.set_xlabel("confidence shown (mean of the bin)")
    ax.set_ylabel(f"share right (span F1 ≥ {RIGHT_F1})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(f"Reliability: {Path(results['dataset']['path']).name}")
    fig.tight_layout()
    fig.savefig(path, format="png")


def write_outputs(out: Path, results: dict, outcomes: list[Outcome], runs: list[tuple[str, str]]) -> None:
    """Write the report folder beside ``out`` and move it into place (replacing ``out``) only when complete."""
    out = Path(out).absolute()
    tag = uuid.uuid4().hex[:8]
    tmp = out.parent / f".{out.name}.tmp-{tag}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        raise QAError(f"cannot write --out {out}: {e.strerror or e}") from None
    try:
        (tmp / "report.md").write_text(report_markdown(results), encoding="utf-8")
        (tmp / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        with open(tmp / "per_question.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(csv_rows(outcomes, runs))
        write_chart(results, tmp / "chart.png")
        if any(m["answers"] and m["answers"]["reliability"] for m in results["modes"].values()):
            write_reliability(results, tmp / "reliability.png")
        if out.exists():
            old = out.parent / f".{out.name}.old-{tag}"
            os.replace(out, old)
            try:
                os.replace(tmp, out)
            except OSError:
                os.replace(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise QAError(f"cannot write --out {out}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
