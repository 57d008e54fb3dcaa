"""`qa eval`: score a question set or a public benchmark, one row per retrieval mode.

For every question and mode the passages are retrieved once, deep enough for the
retrieval metrics (20 distinct units), and the top ``settings.k`` of them are answered
exactly as ``qa ask`` answers them; timings cover that normal path. Retrieval metrics
count *units* (see :mod:`qa.eval.metrics`): a BEIR document; else the gold region (a SQuAD
paragraph) or gold document, for any passage of it that contains an accepted answer,
so several chunks of one gold region count once. Outputs go to the terminal and,
with ``--out``, into a folder that appears complete or not at all.

Top-level imports are kept to the standard library and qa's own light modules (``qa.eval.setup``
is imported on every CLI start, to build the parser); numpy, tqdm and matplotlib are imported
where they are used.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path

from qa.config import Settings
from qa.cpu import machine, machine_label
from qa.datatypes import QAError, Question
from qa.eval.datasets import FORMATS
from qa.eval.report import fmt, markdown_table, render_tables, write_given_gold, write_outputs
from qa.eval.run import DEPTH, evaluate
from qa.eval.score import summarise
from qa.eval.setup import (check_out, check_questions, claim_corpus, eval_settings, load_question_set, parse_answerers,
                           parse_modes, sample_questions, select_split, single_mode)
from qa.progress import progress


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    """``qa eval``: evaluate (or calibrate) and report; returns the exit status."""
    started = time.perf_counter()
    if args.format not in FORMATS:
        raise QAError(f"unknown format '{args.format}': expected {', '.join(FORMATS)}")
    modes = parse_modes(args.modes if args.modes is not None else single_mode(args, settings))
    if args.limit is not None and args.limit < 1:
        raise QAError("--limit must be at least 1")
    if args.calibrate and args.out is not None:
        raise QAError("--calibrate does not write a report: run it without --out, then evaluate")
    if args.cross_fit and not (args.calibrate and settings.answerer == "reader"):
        raise QAError("--cross-fit goes with --calibrate, for the reader")
    if args.calibrate and args.format == "beir":
        raise QAError("--calibrate needs questions with answers; BEIR sets have none")
    out = check_out(args.out) if args.out is not None else None
    path = Path(args.file)
    if not path.exists():
        raise QAError(f"question set not found: {path}")
    settings = eval_settings(args, settings)
    if args.format != "jsonl":
        claim_corpus(Path(settings.corpus))

    everything = load_question_set(path, args.format, settings.corpus)
    everything = select_split(everything, args.split, path)
    questions = sample_questions(everything, args.limit, args.seed)
    check_questions(questions, path)
    answerers = parse_answerers(args.answerers or settings.answerer)
    if args.given_gold:
        return run_given_gold(args, settings, questions, out, started, len(everything), path)

    from qa.pipeline import open_engine

    if getattr(args, "ray", None) is not None:  # the benchmark's corpus encoded on a Ray cluster first
        from qa.distributed import build_index_ray
        from qa.manifest import staleness

        if staleness(settings):
            build_index_ray(settings, args.ray, workers=args.ray_workers, progress=not args.quiet)
    needs_reader = "reader" in answerers and not (args.calibrate and settings.answerer == "heuristic")
    engine = open_engine(settings.replace(answerer="reader" if needs_reader else "heuristic"),
                         progress=not args.quiet, fitting=args.calibrate)
    _warn_unknown_docs(questions, engine.index)
    if args.calibrate:
        if settings.answerer == "heuristic":
            from qa.eval.calibrate import run_calibration

            return run_calibration(engine, questions, settings, progress=not args.quiet)
        from qa.eval.calibrate import run_reader_calibration

        return run_reader_calibration(engine, questions, settings, progress=not args.quiet,
                                      out=args.calibration_out, cross_fit=args.cross_fit)

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


def _warn_unknown_docs(questions: list[Question], index) -> None:
    known = index.manifest["docs"]
    missing = sorted({q.doc for q in questions if q.doc and q.doc not in known})
    if missing:
        n = sum(1 for q in questions if q.doc in missing)
        print(f"warning: {n} questions name a document that is not in the index (e.g. '{missing[0]}'): "
              "their gold passages cannot be retrieved", file=sys.stderr)


def run_given_gold(args: argparse.Namespace, settings: Settings, questions: list[Question], out: Path | None,
                   started: float, total: int, path: Path) -> int:
    """The reader alone: each question read with its gold paragraph (SQuAD), span EM/F1 and latency."""
    from qa.eval.metrics import exact_match, mean, summarise_latency, token_f1
    from qa.reader import load_reader
    from qa.reader_windows import best_span

    golds = [q for q in questions if q.answerable and q.doc and q.region]
    if not golds:
        raise QAError("--given-gold needs questions with a gold paragraph (SQuAD format)")
    reader = load_reader(settings.reader or None, settings.model_path)
    texts: dict[str, str] = {}
    ems, f1s, ms, rows = [], [], [], []
    for q in progress(golds, desc="read", unit="q", enabled=not args.quiet):
        if q.doc not in texts:
            texts[q.doc] = (Path(settings.corpus) / q.doc).read_text(encoding="utf-8")
        context = texts[q.doc][q.region[0] : q.region[1]]
        spans, took = reader.read(q.question, [context], per_window=1)
        best = best_span(spans)
        prediction = context[best.start : best.end] if best else ""
        ems.append(exact_match(prediction, q.answers))
        f1s.append(token_f1(prediction, q.answers))
        ms.append(took)
        rows.append({"id": q.id, "question": q.question, "expected": " | ".join(q.answers), "span": prediction,
                     "em": int(ems[-1]), "f1": round(f1s[-1], 4), "read_ms": round(took, 2)})
    results = {
        "command": shlex.join(["qa", *sys.argv[1:]]),
        "dataset": {"path": str(path), "questions": len(golds), "questions_in_file": total, "split": args.split},
        "reader": {"folder": str(reader.folder), "sha256": reader.identity},
        "given_gold": {"em": mean(ems), "f1": mean(f1s), "latency_ms": summarise_latency(ms)},
        "machine": machine(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    g = results["given_gold"]
    table = markdown_table(["reader", "EM", "F1", "read p50 ms", "read p95 ms"],
                           [[reader.identity[:12], fmt(g["em"]), fmt(g["f1"]),
                             fmt(g["latency_ms"]["p50"], 1), fmt(g["latency_ms"]["p95"], 1)]])
    print(f"Reader given the gold paragraph ({len(golds)} questions{', ' + args.split if args.split else ''}; "
          f"{machine_label(results['machine'])})\n" + table)
    if out is not None:
        write_given_gold(out, results, table, rows)
        print(f"\nwrote {out}/ (report.md, results.json, per_question.csv)", file=sys.stderr)
    return 0


def _context(args: argparse.Namespace, settings: Settings, engine, questions: list[Question], total: int,
             path: Path) -> dict:
    answerable = sum(1 for q in questions if q.answerable)
    return {
        "command": shlex.join(["qa", *sys.argv[1:]]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
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
