"""``qa eval``'s outputs: the tables (terminal and report.md), per_question.csv, chart.png and
reliability.png (or, for ``--given-gold``, report.md, results.json and per_question.csv), written into
a folder that appears complete or not at all."""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from qa.calibration import RIGHT_F1
from qa.config import Settings
from qa.cpu import machine_label
from qa.datatypes import QAError
from qa.eval.run import Outcome
from qa.eval.score import RANK_K, RECALL_KS, question_scores
from qa.eval.setup import normal_runs, run_key


def fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def tables(results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables as (title, header, rows), one row per mode."""
    modes = results["modes"]
    n_judged = next(iter(modes.values()))["retrieval"]["n"] if modes else 0
    retrieval = (
        f"Retrieval ({n_judged} questions with a relevant unit; k counts distinct units)",
        ["mode", "R@1", "R@5", "R@10", "R@20", f"MRR@{RANK_K}", f"nDCG@{RANK_K}"],
        [[m["label"]] + [fmt(m["retrieval"][key]) for key in
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
            [[m["label"]] + [fmt(m["answers"][key]) for key in
                             ("accuracy", "span_em", "f1", "citation_accuracy", "ece", "abstention_precision",
                              "abstention_recall", "abstention_f1", "answered_rate")]
             + [fmt(m["answers"]["mean_answer_words"], 1)] for m in modes.values()],
        ))
    stages = [s for s in ("retrieve", "reader", "answer", "total")
              if any(s in m["latency_ms"] for m in modes.values())]
    out.append((
        f"Latency (ms per question; {machine_label(results.get('machine'))})",
        ["mode"] + [f"{s} {p}" for s in stages for p in ("p50", "p95")],
        [[m["label"]] + [fmt(m["latency_ms"][s][p] if s in m["latency_ms"] else None, 1)
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
        f"- run: {results['created']}, {results['wall_s']} s, on {machine_label(results.get('machine'))}",
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
    """The report folder of an open run: report.md, results.json, per_question.csv and the charts."""

    def fill(folder: Path) -> None:
        (folder / "report.md").write_text(report_markdown(results), encoding="utf-8")
        write_csv(folder / "per_question.csv", CSV_COLUMNS, csv_rows(outcomes, runs))
        write_chart(results, folder / "chart.png")
        if any(m["answers"] and m["answers"]["reliability"] for m in results["modes"].values()):
            write_reliability(results, folder / "reliability.png")

    write_folder(out, results, fill)


GOLD_CSV_COLUMNS = ["id", "question", "expected", "span", "em", "f1", "read_ms"]


def write_given_gold(out: Path, results: dict, table: str, rows: list[dict]) -> None:
    """The report folder of a ``--given-gold`` run: report.md, results.json and per_question.csv (one row a
    question: the reader's span, its EM and F1, the read's milliseconds)."""
    d = results["dataset"]
    report = "\n".join([f"# qa eval --given-gold: {Path(d['path']).name}", "", "```", results["command"], "```", "",
                        f"- data: `{d['path']}`, {d['questions']:,} questions with a gold paragraph"
                        + (f" (split {d['split']})" if d["split"] else ""),
                        f"- reader: `{results['reader']['folder']}`, sha256 {results['reader']['sha256']}",
                        f"- run: {results['wall_s']} s, on {machine_label(results.get('machine'))}", "", table,
                        ""])

    def fill(folder: Path) -> None:
        (folder / "report.md").write_text(report, encoding="utf-8")
        write_csv(folder / "per_question.csv", GOLD_CSV_COLUMNS, rows)

    write_folder(out, results, fill)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_folder(out: Path, results: dict, fill: Callable[[Path], None]) -> None:
    """Write ``results`` (results.json) and let ``fill`` write the rest of a folder beside ``out``, then
    move it into place (replacing ``out``) only when complete: a report folder appears whole or not at all."""
    out = Path(out).absolute()
    tag = uuid.uuid4().hex[:8]
    tmp = out.parent / f".{out.name}.tmp-{tag}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        raise QAError(f"cannot write --out {out}: {e.strerror or e}") from None
    try:
        (tmp / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        fill(tmp)
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
