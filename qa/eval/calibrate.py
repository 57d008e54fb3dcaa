"""``qa eval --calibrate``: for the reader, fit the ranker, the confidence and the threshold; for the
heuristic answerer, choose its threshold.

On each answerable question the normal path runs (``qa.pipeline.ask``'s retrieval, the
reader on the passages it would read); every candidate span is labelled right when its
token F1 against the gold answers is at least :data:`qa.calibration.RIGHT_F1`.

The abstention threshold needs questions the documents cannot answer. Each answerable
question is asked a second time as if its answer were not in the corpus: the same ranked
list without the passages that overlap its gold region (a SQuAD paragraph; the gold
document when no region is known) or contain an accepted answer. The reader then sees
the nearest passages on the same topic that do not answer it — the hard case of a real
unanswerable question, which is asked about what the documents discuss, not about
something else (leaving out the whole gold document made it too easy: on the seed set's
unanswerable questions the reader then stayed confident). The threshold maximises
accuracy plus abstention F1 over both.

A set drawn from several articles (SQuAD's) is also scored leave-one-article-out: fitted on
all articles but one, measured on that one, in turn. Besides the two kinds above it then asks
each question a third time with only its answer cut out of the gold passage
(:func:`qa.eval.nearmiss.cut_answers`): the near miss of the seed set's unanswerable questions,
where the sentence the question was written from is there without its answer. These rows are
measured, never fitted on (fitting the threshold on them too cost the shipped reader 0.6 points
of answered-right and raised ECE 0.033 -> 0.040 for 5.8 more points of abstention on them, AMD
EPYC, 2026-12-04).

With ``--cross-fit`` the articles the reader trained on are fitted on too (:mod:`qa.eval.crossfit`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from qa.calibration import (CALIBRATION_FILE, FEATURES, ISOTONIC_MIN, RIGHT_F1, Calibration, fit_isotonic,
                            fit_logistic, fit_platt, neutral, reliability)
from qa.config import SAVED_SETTINGS_FILE, Settings
from qa.datatypes import QAError, Question
from qa.eval.metrics import abstention_prf, contains_answer, mean, token_f1
from qa.eval.run import evaluate
from qa.progress import progress as progress_bar

MISSING = FEATURES.index("missing")
LOOKAHEAD = 30  # ranked hits fetched, so that enough remain after dropping those that hold the answer
# How a question was asked: as it is, with its answer's passages left out, with only its answer cut out
ASKED, LEFT_OUT, CUT = "", "left out", "cut"
FITTED_KINDS = (ASKED, LEFT_OUT)

Row = tuple[np.ndarray, np.ndarray, str]  # candidate features, candidate right flags, how it was asked


def collect(engine, questions: list[Question], settings: Settings, *, progress: bool = True,
            cut: bool = False) -> list[Row]:
    """One row per asked question (see :data:`Row`); ``cut``: also ask each question whose
    answer spans are known with only the answer cut out (:func:`answer_cut`)."""
    from qa.answer import reader_candidates
    from qa.pipeline import ask

    unfitted = neutral(engine.calibration.reader, engine.calibration.model)
    rows = []
    for q in progress_bar(questions, desc="calibrate", unit="q", enabled=progress):
        if not q.answerable:
            continue
        result = ask(engine, q.question, settings=settings, depth=LOOKAHEAD)
        read_as = result.understood.read_as or result.understood.query  # the question as ask read it
        read = min(settings.read, settings.k)
        asked = [(result.hits[:read], ASKED)]
        if q.doc is not None:
            others = [h for h in result.hits if not holds_answer(h.passage, q)][:read]
            asked.append(([dataclasses.replace(h, rank=r) for r, h in enumerate(others)], LEFT_OUT))
        near_miss = answer_cut(result.hits[:read], q) if cut else None
        if near_miss is not None:
            asked.append((near_miss, CUT))
        for hits, kind in asked:
            cands, _ = reader_candidates(engine.reader, unfitted, read_as, hits)
            if not cands:
                continue
            feats = np.array([c.features for c in cands])
            right = np.array([kind == ASKED and token_f1(
                hits[c.hit].passage.text[c.start - hits[c.hit].passage.start : c.end - hits[c.hit].passage.start],
                q.answers) >= RIGHT_F1 for c in cands])
            rows.append((feats, right, kind))
    return rows


def answer_cut(hits: list, q: Question) -> list | None:
    """``hits`` with the question's answer spans cut out of the first hit that holds them; None
    when no hit holds them, another hit contains an accepted answer, or the cut leaves one."""
    from qa.eval.nearmiss import cut_answers

    at = None
    for i, h in enumerate(hits):
        p = h.passage
        local = [(s - p.start, e - p.start) for s, e in q.spans if p.doc == q.doc and p.start <= s and e <= p.end]
        if local and at is None:
            at = (i, local)
        elif contains_answer(p.text, q.answers):
            return None
    if at is None:
        return None
    i, local = at
    text = cut_answers(hits[i].passage.text, local, q.answers)
    if text is None:
        return None
    out = list(hits)
    out[i] = dataclasses.replace(hits[i], passage=dataclasses.replace(hits[i].passage, text=text))
    return out


def holds_answer(p, q: Question) -> bool:
    """Whether passage ``p`` overlaps the question's gold region (the gold document when no
    region is known) or contains an accepted answer."""
    if p.doc == q.doc and (q.region is None or (p.start < q.region[1] and p.end > q.region[0])):
        return True
    return contains_answer(p.text, q.answers)


def fit(rows: list[Row], reader: str, model: str, fitted_on: str) -> Calibration:
    """A Calibration from collected rows (see :func:`collect`; those asked with the answer cut out
    are left out)."""
    rows = [r for r in rows if r[2] in FITTED_KINDS]
    answerable = [r for r in rows if r[2] == ASKED]
    if not answerable:
        raise QAError("--calibrate needs answerable questions in the set")
    ranker = fit_logistic(np.vstack([f for f, _, _ in rows]), np.concatenate([y for _, y, _ in rows]))
    cal = Calibration(reader, model, ranker=[float(x) for x in ranker], platt=(1.0, 0.0), fitted_on=fitted_on)
    tops = []
    for feats, right, kind in rows:
        logits = cal.rank_logits(feats)
        best = int(np.argmax(logits))
        tops.append((float(logits[best]), bool(right[best]), kind != ASKED, bool(feats[best, MISSING])))
    # The map to P(right) is fitted on the answerable questions' best candidates (the share right
    # among shown answers is what the confidence claims); a small set whose best candidates are all
    # right (or all wrong) takes the simulated unanswerable ones too, else nothing can be fitted.
    fit_on = [t for t in tops if not t[2]]
    if len({t[1] for t in fit_on}) < 2:
        fit_on = tops
    logits, right = np.array([t[0] for t in fit_on]), np.array([t[1] for t in fit_on])
    cal.platt = fit_platt(logits, right)
    if len(answerable) >= ISOTONIC_MIN:
        cal.isotonic = fit_isotonic(logits, right)
    probs = [cal.probability(t[0], lacks=t[3]) for t in tops]
    cal.threshold = choose_threshold(probs, [t[1] for t in tops], [t[2] for t in tops])
    shown = [(p, t[1]) for p, t in zip(probs, tops) if not t[2]]
    rel = reliability([p for p, _ in shown], [r for _, r in shown])
    cal.figures = {"questions": len(answerable), "simulated_unanswerable": len(rows) - len(answerable),
                   "ece": round(rel["ece"], 4), "top_right": round(float(np.mean([r for _, r in shown])), 4)}
    return cal


def run_reader_calibration(engine, questions: list[Question], settings: Settings, *, progress: bool = True,
                           out: Path | None = None, cross_fit: list[Path] | None = None) -> int:
    """Fit on ``questions`` (hybrid mode), print what was fitted and save it with the index (or to ``out``).
    ``cross_fit``: readers of the same recipe trained on parts of the data, which score the
    articles the reader itself trained on (see the module's docstring)."""
    from qa.eval.crossfit import scorers
    from qa.pipeline import index_model

    s = settings.replace(mode="hybrid", answerer="reader", threshold=0.0, max_answers=1)
    reader, model = engine.reader.identity, index_model(engine.index)
    articles = sorted({q.article for q in questions if q.article is not None and q.answerable})
    if cross_fit and (len(articles) < 2 or any(q.article is None for q in questions if q.answerable)):
        raise QAError("--cross-fit needs a set whose questions all come from named articles (SQuAD)")
    by_engine = scorers(engine, articles, cross_fit) if cross_fit else {a: engine for a in articles}
    by_article = {}
    if len(articles) >= 2:
        by_article = {a: collect(by_engine[a], [q for q in questions if q.article == a], s, progress=progress,
                                 cut=True) for a in articles}
        rows = [r for a in articles for r in by_article[a]]
        rest = [q for q in questions if q.article not in by_article]
        rows += collect(engine, rest, s, progress=progress) if rest else []
    else:
        rows = collect(engine, questions, s, progress=progress)
    crossed: dict[str, list[str]] = {}  # cross-fitting reader's checksum: the articles it scored
    for a in articles:
        if by_engine[a] is not engine:
            crossed.setdefault(by_engine[a].reader.identity, []).append(a)
    cal = fit(rows, reader, model, f"{len(questions)} questions, hybrid ({s.fusion}), k {s.k}, read {s.read}"
              + (f"; {sum(map(len, crossed.values()))} of {len(articles)} articles scored by cross-fitting readers"
                 if crossed else ""))
    if crossed:
        cal.figures["cross_fit"] = crossed
    if by_article:
        cal.figures["leave_one_article_out"] = held = leave_one_article_out(by_article, reader, model)
    path = Path(out) if out is not None else engine.index.folder / CALIBRATION_FILE  # lives with the generation
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        cal.save(path)
    except OSError as e:
        raise QAError(f"cannot save the calibration in {path}: {e.strerror or e}") from None
    f = cal.figures
    print(f"calibrated on {f['questions']} answerable questions and {f['simulated_unanswerable']} with their answer "
          f"left out: threshold {cal.threshold:.3f}, right at the top {f['top_right']:.3f}, "
          f"ECE {f['ece']:.3f} (on the fitting questions)")
    if by_article:
        print(f"leave one article out ({len(by_article)} articles): answered right {held['answered_right']:.3f}, "
              f"right at the top {held['top_right']:.3f}, ECE {held['ece']:.3f}; abstains on "
              f"{held['abstains_left_out']:.1%} asked with their answer's passages left out and on "
              f"{held['abstains_cut']:.1%} of {held['cut']} asked with only their answer cut out")
    print(f"saved to {path}")
    return 0


def leave_one_article_out(rows: dict[str, list[Row]], reader: str, model: str) -> dict:
    """Fitted on every article but one and measured on that one, in turn (``rows`` per article):
    the share of the questions asked as they are that are answered (threshold applied) and right,
    the share right at the top, the ECE of their confidence, and the share of those asked with
    their answer left out, or only cut out, that abstain."""
    asked, shown, abstains = [], [], {LEFT_OUT: [], CUT: []}
    for held in rows:
        cal = fit([r for a in rows if a != held for r in rows[a]], reader, model, "")
        for feats, right, kind in rows[held]:
            logits = cal.rank_logits(feats)
            best = int(np.argmax(logits))
            p = cal.probability(float(logits[best]), lacks=bool(feats[best, MISSING]))
            if kind == ASKED:
                asked.append(bool(right[best]) and p >= cal.threshold)
                shown.append((p, bool(right[best])))
            else:
                abstains[kind].append(p < cal.threshold)
    return {"answered_right": round(mean(asked), 4), "top_right": round(mean([r for _, r in shown]), 4),
            "ece": round(reliability([p for p, _ in shown], [r for _, r in shown])["ece"], 4),
            "abstains_left_out": round(mean(abstains[LEFT_OUT]), 4), "abstains_cut": round(mean(abstains[CUT]), 4),
            "cut": len(abstains[CUT])}


def run_calibration(engine, questions: list[Question], settings: Settings, *, progress: bool = True) -> int:
    """Choose the abstention threshold on ``questions`` (hybrid mode), print it and save it with the index."""
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
