"""Asking every question of a set in every compared run (mode and answerer) through
``qa.pipeline.ask`` itself, and judging which retrieved passages are relevant."""

from __future__ import annotations

from dataclasses import dataclass, field

from qa.config import Settings
from qa.datatypes import Answer, Citation, Question
from qa.eval.setup import mode_settings, normal_runs, run_key
from qa.progress import progress as progress_bar

DEPTH = 20  # distinct units ranked per question


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


def evaluate(engine, questions: list[Question], runs: list, settings: Settings, *,
             answers: bool = True, progress: bool = True) -> list[Outcome]:
    """Retrieve (and answer, unless ``answers`` is False) every question for every run: a
    (mode, answerer) pair, or a mode alone (with the answerer of ``settings``)."""
    runs = normal_runs(runs, settings)
    per_run = {run: mode_settings(settings, run[0]).replace(answerer=run[1]) for run in runs}
    for run in runs:  # warm-up: first-call costs are not latency
        _ask_once(engine, questions[0], per_run[run], answers)
    outcomes: list[Outcome] = []
    bar = progress_bar(total=len(questions) * len(runs), desc="eval", unit="q", enabled=progress)
    try:
        for q in questions:
            contains: dict[int, bool] = {}
            for run in runs:
                outcomes.append(_ask_once(engine, q, per_run[run], answers, contains, run_key(run, runs)))
                bar.update(1)
    finally:
        bar.close()
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
    from qa.eval.metrics import contains_answer

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
