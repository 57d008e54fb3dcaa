"""Scores for ``qa eval``: answer quality, retrieval quality, abstention and latency.

All functions are pure and work on plain Python values.

Answer metrics follow the official SQuAD evaluation scripts. Retrieval metrics work on
ranked lists of *units*: a unit is whatever relevance is judged on (a document id, or a
gold region such as a SQuAD paragraph). Every retrieval metric first removes repeated
units with :func:`dedupe_units`, so several passages of one document count once, and
``k`` counts distinct units.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import groupby

from qa.terms import normalize_answer

__all__ = ["normalize_answer"]  # re-exported: the SQuAD normalisation the metrics use lives with the tokenizer


def _golds_or_empty(golds: Sequence[str]) -> Sequence[str]:
    return golds if golds else [""]


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals some normalised gold, else 0.0.

    No golds (an unanswerable question) counts as the single gold ``""`` (SQuAD v2.0
    convention), so an empty prediction (an abstention) scores 1.0.
    """
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _golds_or_empty(golds)))


def _f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """The best token-overlap F1 of the prediction against any gold (official SQuAD F1).

    Tokens are the whitespace-separated words of the normalised texts, counted as a
    multiset. When either side normalises to no tokens, the score is 1.0 if both do and
    0.0 otherwise (the SQuAD v2.0 rule; v1.1 agrees whenever both sides have tokens).
    No golds counts as the single gold ``""``, as in :func:`exact_match`.
    """
    return max(_f1(prediction, g) for g in _golds_or_empty(golds))


def contains_answer(text: str, golds: Sequence[str]) -> bool:
    """Whether the normalised text holds some normalised gold as a run of whole tokens.

    ``"1,700"`` is in ``"approximately 1,700 drones"``; ``"70"`` is not in ``"1,700"``.
    Golds that normalise to nothing never match; no golds gives False. Possessive
    endings are ignored first, so "al-Assad" is in "al-Assad’s regime".
    """
    tokens = normalize_answer(_drop_possessives(text)).split()
    for gold in golds:
        gold_tokens = normalize_answer(_drop_possessives(gold)).split()
        n = len(gold_tokens)
        if n and any(tokens[i : i + n] == gold_tokens for i in range(len(tokens) - n + 1)):
            return True
    return False


def _drop_possessives(text: str) -> str:
    return re.sub(r"(?<=\w)[’']s\b", "", text)


def dedupe_units(ranked: Sequence[str]) -> list[str]:
    """The ranked units with repeats removed, keeping each unit's first (best) position."""
    return list(dict.fromkeys(ranked))


def _relevant_set(relevant: Iterable[str] | Mapping[str, int]) -> set[str]:
    if isinstance(relevant, Mapping):
        return {unit for unit, grade in relevant.items() if grade > 0}
    return set(relevant)


def recall_at_k(ranked: Sequence[str], relevant: Iterable[str] | Mapping[str, int], k: int) -> float:
    """Fraction of the relevant units among the first ``k`` distinct ranked units.

    ``relevant`` is a set of units, or qrels ``{unit: grade}`` where grades > 0 count.
    With one relevant unit this is hit@k (0.0 or 1.0). No relevant units gives 0.0.
    """
    wanted = _relevant_set(relevant)
    if not wanted:
        return 0.0
    found = sum(1 for unit in dedupe_units(ranked)[:k] if unit in wanted)
    return found / len(wanted)


def mrr_at_k(ranked: Sequence[str], relevant: Iterable[str] | Mapping[str, int], k: int) -> float:
    """Reciprocal rank (1-based) of the first relevant unit among the first ``k``
    distinct ranked units; 0.0 when none is there. ``relevant`` as in :func:`recall_at_k`.
    """
    wanted = _relevant_set(relevant)
    for rank, unit in enumerate(dedupe_units(ranked)[:k], start=1):
        if unit in wanted:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(
    ranked: Sequence[str],
    relevance: Mapping[str, int],
    k: int,
    scores: Sequence[float] | None = None,
) -> float:
    """Normalised discounted cumulative gain of the first ``k`` distinct ranked units.

    Conventions (as BEIR / pytrec_eval): the gain of a unit is its grade in
    ``relevance`` (linear; missing or non-positive grades give 0); the unit at 1-based
    rank ``i`` is discounted by ``log2(i + 1)``; the ideal DCG sorts all positive grades
    of ``relevance`` (not only the retrieved ones) in descending order. No positive
    grade gives 0.0.

    ``scores``, when given, are the retrieval scores parallel to ``ranked`` and must be
    non-increasing. Units with equal scores are then ranked in no particular order, and
    the tie-aware expected DCG is used (McSherry & Najork, 2008): each rank of a group of
    tied units gets the mean gain of the whole group, including members ranked below
    ``k``. Repeated units keep the score of their first occurrence.
    """
    grades = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(grades))
    if ideal == 0.0:
        return 0.0
    units = dedupe_units(ranked)
    gains = [float(max(relevance.get(unit, 0), 0)) for unit in units]
    if scores is not None:
        gains = _tie_averaged(ranked, scores, gains)
    dcg = sum(gain / math.log2(i + 2) for i, gain in enumerate(gains[:k]))
    return dcg / ideal


def _tie_averaged(ranked: Sequence[str], scores: Sequence[float], gains: list[float]) -> list[float]:
    if len(scores) != len(ranked):
        raise ValueError(f"{len(scores)} scores for {len(ranked)} ranked units")
    if any(later > earlier for earlier, later in zip(scores, scores[1:])):
        raise ValueError("scores must be non-increasing (in rank order)")
    first: dict[str, float] = {}
    for unit, score in zip(ranked, scores):
        first.setdefault(unit, score)
    unit_scores = list(first.values())
    averaged: list[float] = []
    for _, group in groupby(zip(unit_scores, gains), key=lambda pair: pair[0]):
        tied = [gain for _, gain in group]
        averaged.extend([sum(tied) / len(tied)] * len(tied))
    return averaged


def abstention_prf(
    predicted_abstain: Sequence[bool], truly_unanswerable: Sequence[bool]
) -> tuple[float, float, float]:
    """Precision, recall and F1 of abstaining, abstention being the positive class.

    precision = correct abstentions / abstentions; recall = correct abstentions /
    unanswerable questions; F1 is their harmonic mean (0.0 when both are 0).
    0/0 cases are vacuously perfect: with no abstentions precision is 1.0, with no
    unanswerable questions recall is 1.0. So never abstaining on a set with
    unanswerable questions gives F1 0.0, and a set with neither gives (1.0, 1.0, 1.0).
    """
    if len(predicted_abstain) != len(truly_unanswerable):
        raise ValueError(f"{len(predicted_abstain)} predictions for {len(truly_unanswerable)} questions")
    abstained = sum(1 for p in predicted_abstain if p)
    unanswerable = sum(1 for t in truly_unanswerable if t)
    correct = sum(1 for p, t in zip(predicted_abstain, truly_unanswerable) if p and t)
    precision = correct / abstained if abstained else 1.0
    recall = correct / unanswerable if unanswerable else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def mean(values: Iterable[float]) -> float:
    """The arithmetic mean; 0.0 for no values."""
    items = list(values)
    return sum(items) / len(items) if items else 0.0


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) with linear interpolation, like ``numpy.percentile``.

    The value at fractional position ``(n - 1) * p / 100`` of the sorted values.
    Raises ValueError for no values or ``p`` outside 0..100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is outside 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise_latency(ms: Sequence[float]) -> dict[str, float]:
    """Latency summary in milliseconds: ``n``, ``mean``, ``p50``, ``p95`` and ``max``.

    All zeros for no values.
    """
    if not ms:
        return {"n": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    return {
        "n": len(ms),
        "mean": mean(ms),
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "max": float(max(ms)),
    }
