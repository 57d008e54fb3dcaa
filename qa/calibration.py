"""From the reader's logits to a probability that the answer is right.

Two small models, fitted by ``qa eval --calibrate`` on questions the reader never trained
on (the shipped one: the ``calibrate`` articles of SQuAD dev, see :mod:`qa.splits`):

* a **ranker**, logistic regression over each candidate span's features
  (:data:`FEATURES`): the reader's span score, its margin over the window's "no answer"
  score, its share among all candidates of the question, the rank retrieval gave its
  passage, and whether the passage lacks a name, code or number the question asks about.
  (A seventh, the share of the question's terms in the candidate's sentence, was tried and
  left out: leave-one-article-out on the calibrate articles it raised top-sentence accuracy
  from 0.771 to 0.805, but it rewards questions worded like their answer sentence, which is
  how SQuAD's questions were written, and marks a paraphrased question as less likely right:
  on the seed set one more paraphrased question abstained, 11 of 12. AMD EPYC, reader v1.
  The question's dense similarity to the candidate's sentence, and whether the span is of the
  kind asked for, were tried too: abstention F1 up 0.3-2.7 points, answered-right within 0.3,
  ECE 0.027 -> 0.035-0.054; and the best single retriever's rank in place of the fused one: held
  out one point less accuracy at the same ECE; README, "Tried for the confidence".)
  It orders the candidates across passages;
* a map of the best candidate's ranker score into P(right), fitted on the best candidates
  only (the top of a list is chosen because it scored high, so its raw score overstates its
  chance): **isotonic regression** when at least :data:`ISOTONIC_MIN` answerable questions
  were fitted on, else **Platt scaling**. Leave-one-article-out on the 4 calibrate articles
  (reader v1, AMD EPYC), the expected calibration error of the left-out questions was 0.027
  isotonic against 0.049 Platt — the logistic curve is too stiff for the reader's scores —
  with the same answers and abstentions (both maps keep the order); fitted on subsamples,
  Platt stays better up to about 200 answerable questions (0.042 against 0.053 at 125).

"Right" means the span's token F1 against the best gold answer is at least 0.5
(:data:`RIGHT_F1`). The labels and the abstention threshold are probabilities too. A
calibration names the reader (checksum) and the embedding model it was fitted with and
is refused for any other.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qa.capitals import metonym
from qa.datatypes import QAError
from qa.terms import fold_accents, tokenize

FEATURES = ("score", "margin", "share", "rank", "missing")
RIGHT_F1 = 0.5
ISOTONIC_MIN = 250  # answerable questions from which the isotonic map replaces Platt scaling (see above)
ISOTONIC_CLIP = 0.01  # no answer is shown as certainly right, or certainly wrong
CALIBRATION_FILE = "calibration.json"
FORMAT = 1

_QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how is are was were do does did can could should would will "
    "has have had the a an in on of for to by from with and or i".split()
)
_TERM = re.compile(r"[A-Za-z][\w'’.-]*[\w]|\d[\d,.]*\d|\d")


@dataclass
class Calibration:
    reader: str  # sha256 of the reader it was fitted for
    model: str  # the embedding model's identity (index manifest "model") it was fitted with
    ranker: list[float]  # one weight per FEATURES, then the bias
    platt: tuple[float, float]  # P = sigmoid(a * ranker_logit + b) for the best candidate
    threshold: float = 0.3  # abstain when P(right) is below this
    high: float = 0.75  # label "high" from this P(right) up
    medium: float = 0.5  # label "medium" from this P(right) up
    fitted_on: str = ""
    figures: dict = field(default_factory=dict)  # e.g. ECE and n on the fitting questions
    format: int = FORMAT
    # (ranker logit, P(right)) knots of the isotonic map, logits increasing; when given, P is
    # interpolated between them (flat beyond the ends) and ``platt`` is not used
    isotonic: list[tuple[float, float]] = field(default_factory=list)

    def rank_logits(self, features: np.ndarray) -> np.ndarray:
        w = np.asarray(self.ranker, dtype=np.float64)
        return features @ w[:-1] + w[-1]

    def probability(self, rank_logit: float, *, lacks: bool = False, unmentioned: bool = False) -> float:
        """P(right) of a best candidate. ``lacks``: its passage lacks a name, code or number the
        question asks about ("China" in "How many drones has China bought?"): such an answer is
        never confident, whatever the fitting data says on average — at most "low".
        ``unmentioned``: no document at all mentions one of them, so the documents cannot hold
        the answer: the probability stays below the abstention threshold (only an explicit
        lower threshold, e.g. 0, shows such an answer). On the SQuAD articles we fit on this
        concerns 0.5-0.7% of the questions, mostly misspelt names."""
        if self.isotonic:
            xs, ps = zip(*self.isotonic)
            p = float(np.interp(rank_logit, xs, ps))
        else:
            a, b = self.platt
            p = float(_sigmoid(a * rank_logit + b))
        if unmentioned:
            p = min(p, max(0.0, self.threshold - 0.01))
        return min(p, self.medium - 0.01) if lacks else p

    def label(self, p: float) -> str:
        return "high" if p >= self.high else "medium" if p >= self.medium else "low"

    def save(self, path: Path) -> None:
        from qa.storage import atomic_write

        atomic_write(path, json.dumps(asdict(self), indent=2) + "\n")


class OutdatedCalibration(QAError):
    """A calibration file of an earlier format (its features differ from today's)."""


def neutral(reader: str, model: str) -> Calibration:
    """A placeholder that ranks candidates by the reader's span score alone (before fitting)."""
    return Calibration(reader, model, ranker=[1.0] + [0.0] * len(FEATURES), platt=(1.0, 0.0))


def load_calibration(path: Path) -> Calibration:
    """Read and validate a calibration file; QAError naming the file when it is not one."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise QAError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise QAError(f"{path} is not valid JSON ({exc}): delete it or run qa eval --calibrate again") from None
    try:
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        if raw.get("format") != FORMAT:
            raise OutdatedCalibration(f"{path} was fitted with another version of the answer step (format "
                                      f"{raw.get('format')!r}, now {FORMAT}): run qa eval --calibrate again")
        cal = Calibration(
            reader=str(raw["reader"]), model=str(raw["model"]),
            ranker=[float(x) for x in raw["ranker"]], platt=(float(raw["platt"][0]), float(raw["platt"][1])),
            threshold=float(raw["threshold"]), high=float(raw["high"]), medium=float(raw["medium"]),
            fitted_on=str(raw.get("fitted_on", "")), figures=dict(raw.get("figures", {})),
            isotonic=[(float(x), float(p)) for x, p in raw.get("isotonic", [])],
        )
        if len(cal.ranker) != len(FEATURES) + 1 or not all(map(math.isfinite, [*cal.ranker, *cal.platt])):
            raise ValueError("wrong number of ranker weights")
        xs = [x for x, _ in cal.isotonic]
        if not all(map(math.isfinite, xs)) or any(b <= a for a, b in zip(xs, xs[1:])) or not all(
                0.0 <= p <= 1.0 for _, p in cal.isotonic):
            raise ValueError("isotonic knots must have increasing scores and probabilities")
        if not 0.0 <= cal.threshold <= 1.0 or not 0.0 <= cal.medium <= cal.high <= 1.0:
            raise ValueError("threshold and labels must be probabilities, medium <= high")
    except OutdatedCalibration:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise QAError(f"{path} is not a valid calibration ({exc}): delete it or run qa eval --calibrate again") from None
    return cal


# ---------------------------------------------------------------- features


def specific_terms(question: str) -> list[str]:
    """Names, codes and numbers the question asks about: words with a capital (not the first
    word) or a digit ("China", "Su-57", "2019")."""
    terms = []
    for i, m in enumerate(_TERM.finditer(question)):
        word = m.group(0).rstrip(".")
        if word.endswith(("'s", "’s")):
            word = word[:-2]
        if not word or word.lower() in _QUESTION_WORDS:
            continue
        if any(c.isdigit() for c in word) or (i > 0 and word[0].isupper()):
            terms.append(word)
    return list(dict.fromkeys(terms))


def missing_terms(terms: list[str], text: str) -> list[str]:
    """The terms ``text`` does not mention. A word counts as mentioned by a word of the same stem:
    the two share their first letters, at least four and all but two of the shorter word's
    ("Iran" and "Iranian", "China" and "Chinese", "Russia" and "Russian"), and a capital by its
    country and the other way round ("Moscow" by "Russian", :mod:`qa.capitals`). Accents do not
    count ("Zurich" is mentioned by "Zürich"). Codes and numbers must appear as they are, or as
    the same term of the index's tokenizer ("1700" by "1,700", "S400" by "S-400", "Su35" by "Su-35")."""
    lower = fold_accents(text.lower())
    words = set(re.findall(r"[\w-]+", lower))
    coded = {term: tokenize(term)[:1] for term in terms if any(c.isdigit() for c in term)}  # its first term
    codes = set(tokenize(text)) if coded else set()
    return [term for term in terms
            if not _mentions(fold_accents(term.lower()), lower, words)
            and not (coded.get(term) and coded[term][0] in codes)
            and not ((other := metonym(term)) and _mentions(other, lower, words))]


def _mentions(t: str, lower: str, words: set[str]) -> bool:
    if " " in t:  # a country of several words, as a phrase
        return re.search(rf"(?<!\w){re.escape(t)}(?!\w)", lower) is not None
    if any(c.isdigit() for c in t) or len(t) < 4:
        return re.search(rf"(?<![\w]){re.escape(t)}(?![\d])", lower) is not None
    return any(_same_stem(t, w) for w in words)


def _same_stem(a: str, b: str) -> bool:
    shared = len(os.path.commonprefix([a, b]))
    return shared >= 4 and shared >= min(len(a), len(b)) - 2


def candidate_features(scores: np.ndarray, nulls: np.ndarray, ranks: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """The FEATURES matrix of a question's candidates (one row each)."""
    scores = np.asarray(scores, dtype=np.float64)
    share = scores - np.logaddexp.reduce(scores) if len(scores) else scores
    return np.column_stack([
        scores, scores - np.asarray(nulls, dtype=np.float64), share,
        1.0 / (1.0 + np.asarray(ranks, dtype=np.float64)), np.asarray(missing, dtype=np.float64),
    ]).reshape(len(scores), len(FEATURES))


# ---------------------------------------------------------------- fitting


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """Weights (then bias) of an L2-regularised logistic regression, by Newton's method.

    Features are standardised inside, so the penalty weighs them alike; the returned
    weights apply to the raw features.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(np.unique(y)) < 2:
        raise QAError("calibration needs both right and wrong answers among the questions")
    mu, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0
    z = np.column_stack([(x - mu) / sd, np.ones(len(x))])
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2 * len(x))
    penalty[-1] = 0.0
    for _ in range(iters):
        p = _sigmoid(z @ w)
        grad = z.T @ (p - y) + penalty * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    weights = w[:-1] / sd
    return np.append(weights, w[-1] - float(np.dot(weights, mu)))


def fit_platt(logits: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """Platt scaling: (a, b) with P(right) = sigmoid(a * logit + b)."""
    w = fit_logistic(np.asarray(logits, dtype=np.float64)[:, None], right, l2=1e-4)
    return float(w[0]), float(w[1])


def fit_isotonic(logits: np.ndarray, right: np.ndarray) -> list[tuple[float, float]]:
    """Knots of the isotonic (non-decreasing) regression of ``right`` on ``logits``, by pooling
    adjacent violators: one knot per pooled block, at the middle of its scores, with the block's
    share right (clipped to [ISOTONIC_CLIP, 1 - ISOTONIC_CLIP])."""
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(right, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    blocks: list[list[float]] = []  # [sum right, count, lowest score, highest score]
    for xi, yi in zip(x[order], y[order]):
        blocks.append([yi, 1.0, xi, xi])
        while len(blocks) > 1 and (blocks[-2][3] == blocks[-1][2]
                                   or blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]):
            last = blocks.pop()
            blocks[-1][0] += last[0]
            blocks[-1][1] += last[1]
            blocks[-1][3] = last[3]
    return [(float(lo + hi) / 2, float(min(max(total / n, ISOTONIC_CLIP), 1.0 - ISOTONIC_CLIP)))
            for total, n, lo, hi in blocks]


def reliability(probs: list[float], right: list[bool], bins: int = 10) -> dict:
    """Expected calibration error and the per-bin table of a reliability diagram."""
    p = np.asarray(probs, dtype=np.float64)
    r = np.asarray(right, dtype=np.float64)
    table = []
    ece = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (p >= lo) & ((p < hi) if b < bins - 1 else (p <= hi))
        n = int(inside.sum())
        if n:
            conf, acc = float(p[inside].mean()), float(r[inside].mean())
            ece += n / len(p) * abs(conf - acc)
            table.append({"lo": lo, "hi": hi, "n": n, "confidence": conf, "accuracy": acc})
    return {"ece": ece if len(p) else None, "bins": table, "n": len(p)}


def calibration_for(generation: Path, reader_folder: Path, reader: str, model: str, *, log=None) -> Calibration:
    """The calibration to use: the index generation's own (``qa eval --calibrate`` writes it into the
    live generation, and a rebuild with the same embedding model keeps it) when it was made for this
    reader and embedding model (``qa.pipeline.index_model``), else the one shipped with the reader."""
    own = Path(generation) / CALIBRATION_FILE
    if own.is_file():
        try:
            cal = load_calibration(own)
        except OutdatedCalibration as exc:
            cal = None
            if log:
                log(f"note: {exc}; the reader's own calibration is used meanwhile")
        if cal is not None and cal.reader == reader and cal.model == model:
            return cal
        if cal is not None and log:
            log(f"note: {own} was fitted for another reader or model and is not used")
    shipped = Path(reader_folder) / CALIBRATION_FILE
    if shipped.is_file():
        cal = load_calibration(shipped)
        if cal.reader == reader:
            return cal
    raise QAError(f"no calibration for the reader in {reader_folder}: run qa eval --calibrate on questions "
                  "with answers (e.g. SQuAD's calibrate split)")
