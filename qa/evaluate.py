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

from qa.config import SAVED_SETTINGS_FILE, Settings, load_saved
from qa.datasets import FORMATS
from qa.types import Answer, Citation, QAError, Question

EVAL_MODES = ("bm25", "dense", "hybrid-rrf", "hybrid-weighted")
LABELS = {"bm25": "bm25", "dense": "dense", "hybrid-rrf": "hybrid (rrf)", "hybrid-weighted": "hybrid (weighted)"}
DEPTH = 20  # distinct units ranked per question
RECALL_KS = (1, 5, 10, 20)
RANK_K = 10  # cut-off of MRR and nDCG
EVAL_HOME = Path(".qa-eval")  # benchmarks' corpora and indexes, under the current directory
CORPUS_MARK = ".qa-eval-corpus"  # marks a corpus folder written by qa eval (safe to overwrite)


@dataclass
class Outcome:
    """One question asked in one mode."""

    mode: str
    question: Question
    ranked: list[str]  # unit of each retrieved passage, best first, up to DEPTH distinct units
    scores: list[float]  # retrieval score of each, parallel to ``ranked``
    relevant: dict[str, int]  # relevant units and their grades; empty: no retrieval judgement
    answered: bool | None = None  # None when answers are not scored (BEIR)
    answer: Answer | None = None
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
    parser.add_argument("--calibrate", action="store_true",
                        help="choose the abstention threshold on this set (hybrid mode) and save it with the index")
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
    questions = sample_questions(everything, args.limit, args.seed)
    _check_questions(questions, path)

    from qa.pipeline import open_engine

    engine = open_engine(settings, progress=not args.quiet)
    _warn_unknown_docs(questions, engine.index)
    if args.calibrate:
        return run_calibration(engine, questions, settings, progress=not args.quiet)

    outcomes = evaluate(engine, questions, modes, settings, answers=args.format != "beir", progress=not args.quiet)
    results = summarise(outcomes, modes, answers=args.format != "beir")
    results.update(_context(args, settings, engine, questions, len(everything), path))
    results["wall_s"] = round(time.perf_counter() - started, 1)
    print(render_tables(results))
    if out is not None:
        write_outputs(out, results, outcomes, modes)
        print(f"\nwrote {out}/ (report.md, results.json, per_question.csv, chart.png)", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- inputs


def parse_modes(text: str) -> list[str]:
    """The modes named in a comma-separated list, in the standard order; QAError for unknown ones."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in EVAL_MODES]
    if unknown or not names:
        raise QAError(f"unknown mode '{unknown[0] if unknown else text}': expected some of {', '.join(EVAL_MODES)}")
    return [m for m in EVAL_MODES if m in names]


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
    """The settings with a benchmark's own corpus and index folders (``.qa-eval/<name>/``),
    unless given, and the threshold saved with that index unless --threshold is given."""
    if args.format == "jsonl":
        return settings
    home = EVAL_HOME / dataset_name(args.file)
    corpus = args.corpus if args.corpus is not None else home / "corpus"
    index = args.index if args.index is not None else home / "index"
    threshold = args.threshold
    if threshold is None:
        threshold = load_saved(Settings().replace(index=index)).threshold
    return settings.replace(corpus=Path(corpus), index=Path(index), threshold=threshold)


def _claim_corpus(corpus: Path) -> None:
    """Refuse to write a benchmark's documents over a folder that holds anything else."""
    mark = corpus / CORPUS_MARK
    if corpus.exists() and not corpus.is_dir():
        raise QAError(f"corpus for the benchmark is not a folder: {corpus}")
    if corpus.is_dir() and not mark.exists() and any(corpus.iterdir()):
        raise QAError(f"{corpus} already holds other files: give --corpus a new or empty folder for the benchmark")
    try:
        corpus.mkdir(parents=True, exist_ok=True)
        mark.touch()
    except OSError as e:
        raise QAError(f"cannot write corpus folder {corpus}: {e.strerror or e}") from None


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


def evaluate(engine, questions: list[Question], modes: list[str], settings: Settings, *,
             answers: bool = True, progress: bool = True) -> list[Outcome]:
    """Retrieve (and answer, unless ``answers`` is False) every question in every mode."""
    from tqdm import tqdm

    per_mode = {mode: mode_settings(settings, mode) for mode in modes}
    for mode in modes:  # warm-up: first-call costs are not latency
        _ask_once(engine, questions[0], per_mode[mode], answers)
    outcomes: list[Outcome] = []
    bar = tqdm(total=len(questions) * len(modes), desc="eval", unit="q", file=sys.stderr,
               disable=not progress, mininterval=0.5)
    with bar:
        for q in questions:
            contains: dict[int, bool] = {}
            for mode in modes:
                outcomes.append(_ask_once(engine, q, per_mode[mode], answers, contains, mode))
                bar.update(1)
    return outcomes


def _ask_once(engine, q: Question, s: Settings, answers: bool, contains: dict[int, bool] | None = None,
              mode: str = "") -> Outcome:
    """What ``qa.pipeline.ask`` does, with the retrieval taken deep enough for the metrics.

    The top ``s.k`` hits of the deeper list are exactly those ``ask`` would get as long as
    the retrievers' depth is unchanged (``max(candidates, k)``); when it would change, the
    answer's own retrieval is run separately so answers and timings stay those of ``ask``.
    """
    from qa.answer import extract
    from qa.retrieve import retrieve

    normal = max(s.candidates, s.k)
    deep_k = max(DEPTH, normal)
    t0 = time.perf_counter()
    deep = retrieve(engine.index, engine.encoder, q.question, s.replace(k=deep_k))
    t1 = time.perf_counter()
    found, t_found = deep, t1 - t0
    if deep_k != normal:
        t0 = time.perf_counter()
        found = retrieve(engine.index, engine.encoder, q.question, s)
        t1 = time.perf_counter()
        t_found = t1 - t0
    ranked, scores, relevant = judge(q, deep.hits, contains if contains is not None else {})
    outcome = Outcome(mode, q, ranked, scores, relevant, timings={"retrieve": t_found * 1000})
    if not answers:
        outcome.timings["total"] = outcome.timings["retrieve"]
        return outcome
    hits = found.hits[: s.k]
    qvec = found.query_vector
    if qvec is None:
        qvec = engine.encoder.encode([q.question])[0]
    got, citations = extract(q.question, q.question, hits, engine.index, qvec, s)
    t2 = time.perf_counter()
    outcome.timings["answer"] = (t2 - t1) * 1000
    outcome.timings["total"] = outcome.timings["retrieve"] + outcome.timings["answer"]
    outcome.answered = bool(got)
    if got:
        outcome.answer = got[0]
        outcome.cited = citations[got[0].citation - 1]
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
    row: dict = {"relevant_rank": None, "correct": None, "span_em": None, "f1": None, "citation_ok": None}
    if o.relevant:
        row["relevant_rank"] = first_relevant_rank(o.ranked, o.relevant)
    if o.answered is None:
        row["ok"] = row["relevant_rank"] is not None and row["relevant_rank"] <= RANK_K
        return row
    if q.answerable:
        a = o.answer
        row["correct"] = bool(a) and contains_answer(a.text, q.answers)
        prediction = (a.span or a.text) if a else ""
        row["span_em"] = exact_match(prediction, q.answers) if a else 0.0
        row["f1"] = token_f1(prediction, q.answers) if a else 0.0
        row["citation_ok"] = bool(o.cited) and contains_answer(o.cited.text, q.answers) and (
            q.doc is None or o.cited.doc == q.doc)
        row["ok"] = row["correct"]
    else:
        row["ok"] = not o.answered
    return row


def first_relevant_rank(ranked: list[str], relevant: dict[str, int]) -> int | None:
    """1-based rank of the first relevant distinct unit, or None."""
    from qa.metrics import dedupe_units

    for rank, unit in enumerate(dedupe_units(ranked), start=1):
        if relevant.get(unit, 0) > 0:
            return rank
    return None


def summarise(outcomes: list[Outcome], modes: list[str], *, answers: bool = True) -> dict:
    """Every figure per mode: retrieval, answers (unless ``answers`` is False), latency."""
    from qa.metrics import summarise_latency

    results: dict = {"modes": {}}
    for mode in modes:
        mine = [o for o in outcomes if o.mode == mode]
        entry = {
            "label": LABELS[mode],
            "retrieval": retrieval_metrics(mine),
            "answers": answer_metrics(mine) if answers else None,
            "latency_ms": {stage: summarise_latency([o.timings[stage] for o in mine if stage in o.timings])
                           for stage in (("retrieve", "answer", "total") if answers else ("retrieve", "total"))},
        }
        results["modes"][mode] = entry
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

    rows = [question_scores(o) for o in outcomes]
    answerable = [r for o, r in zip(outcomes, rows) if o.question.answerable]
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
    s = settings.replace(mode="hybrid", threshold=0.0)
    outcomes = evaluate(engine, questions, ["hybrid"], s, progress=progress)
    scores = [o.answer.score if o.answer else -1.0 for o in outcomes]
    correct = [bool(o.answer) and contains_answer(o.answer.text, o.question.answers) for o in outcomes]
    unanswerable = [not o.question.answerable for o in outcomes]
    best = choose_threshold(scores, correct, unanswerable)
    was = sweep_point(settings.threshold, scores, correct, unanswerable)
    now = sweep_point(best, scores, correct, unanswerable)
    path = save_threshold(Path(settings.index), best)
    n_un = sum(unanswerable)
    print(f"calibrated on {len(questions)} questions ({len(questions) - n_un} answerable, {n_un} unanswerable), "
          f"hybrid ({settings.fusion})")
    for name, t, point in (("threshold", best, now), ("was", settings.threshold, was)):
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
    from qa.index import atomic_write

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
            ["mode", "accuracy", "span EM", "F1", "citation", "abst. P", "abst. R", "abst. F1", "answered", "words"],
            [[m["label"]] + [_fmt(m["answers"][key]) for key in
                             ("accuracy", "span_em", "f1", "citation_accuracy", "abstention_precision",
                              "abstention_recall", "abstention_f1", "answered_rate")]
             + [_fmt(m["answers"]["mean_answer_words"], 1)] for m in modes.values()],
        ))
    stages = [s for s in ("retrieve", "answer", "total") if first and s in first["latency_ms"]]
    out.append((
        "Latency (ms per question)",
        ["mode"] + [f"{s} {p}" for s in stages for p in ("p50", "p95")],
        [[m["label"]] + [_fmt(m["latency_ms"][s][p], 1) for s in stages for p in ("p50", "p95")]
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
        "![Recall@k and answer metrics by mode](chart.png)",
        "",
        "## How to read it",
        "",
        f"- Retrieval: each question's passages are ranked to depth {results['depth']} distinct *units*. "
        "With qrels (BEIR) a unit is a document; otherwise every passage that comes from the gold "
        "document (and overlaps the gold paragraph, for SQuAD) and contains an accepted answer is one "
        "shared relevant unit, so several chunks of it count once. Unanswerable questions are left out.",
        "- Accuracy: the top answer's text contains an accepted answer (SQuAD-normalised); span EM and F1 "
        "score the short span, or the answer sentence when there is none; citation: the cited passage "
        "contains the answer and comes from the gold document. These are over answerable questions; an "
        "abstention scores 0.",
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


def csv_rows(outcomes: list[Outcome], modes: list[str]) -> list[dict]:
    """One row per question and mode, failures first, then by mode and question order."""
    order = {m: i for i, m in enumerate(modes)}
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


def write_outputs(out: Path, results: dict, outcomes: list[Outcome], modes: list[str]) -> None:
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
            writer.writerows(csv_rows(outcomes, modes))
        write_chart(results, tmp / "chart.png")
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
