"""The figures of ``qa eval``: per question, then per run (retrieval, answers, calibration, latency)."""

from __future__ import annotations

from qa.calibration import RIGHT_F1
from qa.config import Settings
from qa.datatypes import Answer, Question
from qa.eval.run import Outcome
from qa.eval.setup import LABELS, normal_runs, run_key, run_label

RECALL_KS = (1, 5, 10, 20)
RANK_K = 10  # cut-off of MRR and nDCG


def question_scores(o: Outcome) -> dict:
    """The per-question figures of one outcome (None where they do not apply)."""
    from qa.eval.metrics import contains_answer, exact_match, token_f1

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
    from qa.eval.metrics import contains_answer

    if q.spans and q.doc is not None:
        return a.doc == q.doc and any(a.start <= s and e <= a.end for s, e in q.spans)
    return contains_answer(a.text, q.answers)


def first_relevant_rank(ranked: list[str], relevant: dict[str, int]) -> int | None:
    """1-based rank of the first relevant distinct unit, or None."""
    from qa.eval.metrics import dedupe_units

    for rank, unit in enumerate(dedupe_units(ranked), start=1):
        if relevant.get(unit, 0) > 0:
            return rank
    return None


def summarise(outcomes: list[Outcome], runs: list[tuple[str, str]], *, answers: bool = True) -> dict:
    """Every figure per (mode, answerer): retrieval, answers (unless ``answers`` is False), latency."""
    from qa.eval.metrics import summarise_latency

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
    from qa.eval.metrics import mean, mrr_at_k, ndcg_at_k, recall_at_k

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
    from qa.eval.metrics import abstention_prf, mean

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
