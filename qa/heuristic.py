"""The heuristic answerer (``--answerer heuristic``), kept for comparison with the reader.

It picks the answer sentences (and short spans) out of the retrieved passages.

Each sentence of the top passages is scored on four features:

* ``sem``  — cosine similarity of question and sentence embeddings (precomputed at indexing);
* ``lex``  — share of the question's terms (weighted by idf ** 1.5) that the sentence contains;
* ``ret``  — how high retrieval ranked the sentence's passage;
* ``kind`` — whether the sentence holds the kind of thing asked for: a number for
  "how many", a date for "when", a name for "who", a place for "where".

The weighted sum of the first three, in [0, 1], cut down when the kind asked for is
missing, is the answer's confidence. Below ``settings.threshold``
the system abstains. Answers are always exact copies of passage text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from qa.config import Settings
from qa.index import Index
from qa.terms import tokenize
from qa.datatypes import Answer, Hit
from qa.vectors import sentence_vectors_alone

# Chosen by a grid search on questions/seed.jsonl (see README, "How the defaults were chosen").
WEIGHTS = {"sem": 0.50, "lex": 0.30, "ret": 0.15}
# Multiplier when the question asks for a number, date, name or place and the sentence has none.
MISSING_KIND = {"number": 0.5, "amount": 0.5, "date": 0.5, "name": 0.5, "place": 0.5}
# ``lex`` weighs each question term by idf ** this: rare terms carry the question's specifics
# (1.5 over 1.0: hybrid abstains on all 7 unanswerable seed questions, not 5–6, at the same
# accuracy; SQuAD dev accuracy moves by at most 0.4 points in any mode).
LEX_IDF_POWER = 1.5
PASSAGE_SHARE = 0.3  # share of ``sem`` taken from the whole passage's similarity (context)

NUMBER, AMOUNT, DATE, NAME, PLACE, OTHER = "number", "amount", "date", "name", "place", "other"

_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_NUM_WORD = (
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|"
    r"sixty|seventy|eighty|ninety|hundreds?|thousands?|millions?|billions?|dozens?|several|threefold|twofold)"
)
_SCALE = r"(?:\s?(?:%|percent|per cent|million|billion|trillion|thousand|hundred))"
_PATTERNS = {
    NUMBER: re.compile(
        rf"(?<![\w.-])(?:(?:US)?\$|€|£)?\d[\d,]*(?:\.\d+)?{_SCALE}*(?![\w-])|\b{_NUM_WORD}\b(?:{_SCALE})*", re.I
    ),
    DATE: re.compile(
        rf"\b(?:(?:early|mid|late)[ -])?(?:{_MONTH}\s+)?(?:\d{{1,2}},?\s+)?(?:1[0-9]\d\d|20\d\d)(?:’s|'s|s)?\b"
        rf"|\b{_MONTH}(?:\s+\d{{1,2}})?\b|\b(?:September 11|9/11)\b"
    ),
    NAME: re.compile(
        r"\b(?:al-)?(?:(?:[A-Z]\.){2,}|[A-Z][\w’'-]*)(?:\s+(?:(?:of|and|for|the|de|al|bin|von|van)\s+)*(?:al-)?(?:(?:[A-Z]\.){2,}|[A-Z][\w’'-]*))*"
    ),
}
_PATTERNS[PLACE] = _PATTERNS[NAME]
_PATTERNS[AMOUNT] = _PATTERNS[NUMBER]
_HAS_UNIT = re.compile(r"[$€£%]|percent|per cent|million|billion|trillion|thousand", re.I)
_CODE = re.compile(r"\b[A-Z][A-Za-z]*-\d+[A-Za-z]*\b|\b[A-Z]{2,}[a-z]?\b")
_YEAR = re.compile(r"^(?:1[0-9]\d\d|20\d\d)$")
# Nationalities and other capitalised words that are never the person or place asked for.
_NOT_NAMES = frozenset(
    """american americans british russian russians iranian iranians ukrainian chinese israeli israelis
    syrian turkish european western eastern northern southern soviet iraqi korean japanese indian french
    german arab arabic persian african asian islamic muslim christian jewish kurdish saudi afghan pakistani
    venezuelan cuban brazilian english west east north south us u.s. u.k. uk
    january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday""".split()
)
_WEAK_START = frozenset(
    "the a an in on at as but and however this that these those it its there so since while after "
    "besides despite moreover additionally for if when like not some both due because although though "
    "during according given following prior until unlike with without while once also then thus".split()
)

_KIND_RULES = [
    (re.compile(r"\b(how much|what (\w+ ){0,3}(percentage|percent|share|proportion|amount|sum|fraction|value|cost|price|worth)|by how much)\b", re.I), AMOUNT),
    (re.compile(r"\b(how (many|large|big|far|long)|what (\w+ ){0,3}(number|size|quantity))\b", re.I), NUMBER),
    (re.compile(r"\b(when|what (year|date|month|decade|century)|which (year|date|month|decade)|in what year|since when)\b", re.I), DATE),
    (re.compile(r"\b(where|(which|what) (\w+ ){0,2}(port|city|cities|sea|region|place|town|territory|location|waters?|capital|province))\b", re.I), PLACE),
    (re.compile(r"\b(who|whom|whose|(which|what) (\w+ ){0,2}(person|people|official|organi[sz]ations?|body|agency|group|company|leader|spokesman|committee|institution|department|ministry|country|countries|nation|state|government|event|war|revolution|treaty|operation|conflict|act|law|initiative))\b", re.I), NAME),
]
_FINAL = ".!\"”’)"
_LOCATIVE = re.compile(r"\b(in|at|to|through|via|from|near|into|across|towards?|port|city|sea|capital|province|region)\W+(the\W+)?(\w+\W+)?$", re.I)
_NAMED_AS = re.compile(r"\b(known as|called|named|dubbed|referred to as)\b", re.I)


@dataclass
class Candidate:
    hit: Hit
    start: int  # document offsets of the answer text (one or two sentences)
    end: int
    text: str
    score: float
    features: dict[str, float]
    span: tuple[int, int] | None  # document offsets of the short answer


def answer_kind(question: str) -> str:
    """What the question asks for: number, date, place, name or other."""
    for pattern, kind in _KIND_RULES:
        if pattern.search(question):
            return kind
    return OTHER


def extract(question: str, query: str, hits: list[Hit], index: Index, qvec: np.ndarray,
            settings: Settings, encoder=None) -> list[Answer]:
    """Answers, best first, empty when abstaining (below ``settings.threshold``).

    ``question`` decides the kind of answer sought; ``query`` (the question with any
    conversational context) supplies the terms to match. ``encoder``: see ``score_sentences``.
    """
    candidates = score_sentences(question, query, hits, index, qvec, encoder)
    answers: list[Answer] = []
    seen: set[str] = set()
    for cand in candidates:
        if len(answers) >= settings.max_answers or cand.score < settings.threshold:
            break
        if answers and cand.score < answers[0].score - 0.15:
            break
        norm = " ".join(cand.text.lower().split())
        if norm in seen:
            continue
        seen.add(norm)
        answers.append(_to_answer(cand, hits.index(cand.hit) + 1))
    return answers


def score_sentences(question: str, query: str, hits: list[Hit], index: Index, qvec: np.ndarray,
                    encoder=None) -> list[Candidate]:
    """Every sentence of the hits as a scored candidate answer, best first, one per sentence.

    The weights were fitted on sentences encoded on their own; an index whose sentence vectors are
    pooled from their passages (``qa.vectors``) has the hits' sentences encoded by ``encoder`` here
    instead (~20 short texts; with the pooled vectors the heuristic lost 7 of 43 seed answers, hybrid)."""
    kind = answer_kind(question)
    alone = sentence_vectors_alone(index, encoder, [h.passage for h in hits])
    q_terms = set(tokenize(query))
    q_lower = question.lower()
    weights = {t: _idf(index, t) ** LEX_IDF_POWER for t in q_terms}
    total = sum(weights.values()) or 1.0
    best: dict[tuple[str, int], Candidate] = {}
    for n, hit in enumerate(hits):
        p = hit.passage
        vecs = alone[n] if alone is not None else index.sentence_vectors_of(hit.row)
        sims = vecs @ qvec if len(vecs) else np.zeros(0)
        context = float(index.passage_vector(hit.row) @ qvec)
        for i, (s, e) in enumerate(p.sentences):
            if (p.doc, s) in best:
                continue
            e2 = p.sentences[i + 1][1] if p.text[e - p.start - 1] == ":" and i + 1 < len(p.sentences) else e
            text = p.text[s - p.start : e2 - p.start]
            terms = set(tokenize(text))
            lex = sum(w for t, w in weights.items() if t in terms) / total
            span = find_span(text, kind, q_lower, q_terms)
            features = {
                "sent": float(sims[i]),
                "context": context,
                "lex": lex,
                "rank": float(hit.rank),
                "missing": float(kind != OTHER and not span),
                "fragment": float(len(text.split()) < 5 or text.rstrip()[-1] not in _FINAL),
            }
            score = combine(features, kind)
            best[(p.doc, s)] = Candidate(
                hit, s, e2, text, min(1.0, max(0.0, score)), features,
                (s + span[0], s + span[1]) if span else None,
            )
    return sorted(best.values(), key=lambda c: (-c.score, c.hit.rank, c.start))


def combine(f: dict[str, float], kind: str) -> float:
    """Confidence in [0, 1] from a sentence's features."""
    sem = (1 - PASSAGE_SHARE) * f["sent"] + PASSAGE_SHARE * f["context"]
    ret = 1.0 / (1.0 + 0.25 * f["rank"])
    score = WEIGHTS["sem"] * max(0.0, sem) + WEIGHTS["lex"] * f["lex"] + WEIGHTS["ret"] * ret
    if f["missing"]:
        score *= MISSING_KIND[kind]
    if f["fragment"]:
        score *= 0.5  # headings and questions are not answers
    return min(1.0, max(0.0, score))


def find_span(sentence: str, kind: str, question_lower: str, q_terms: set[str]) -> tuple[int, int] | None:
    """Offsets (in ``sentence``) of the short answer of the asked kind, nearest the question's words."""
    if kind == OTHER:
        named = _NAMED_AS.search(sentence)
        if not named:
            return None
        options = [m for m in _CODE.finditer(sentence, named.end())] + [
            m for m in _PATTERNS[NAME].finditer(sentence, named.end())
        ]
        options = [m for m in options if m.group(0).lower() not in question_lower]
        return (options[0].start(), options[0].end()) if options else None
    anchors = [m.start() for m in re.finditer(r"\w+", sentence) if tokenize(m.group(0)) and set(tokenize(m.group(0))) & q_terms]
    options = []
    for m in list(_PATTERNS[kind].finditer(sentence)) + (list(_CODE.finditer(sentence)) if kind == NAME else []):
        start, end, text = m.start(), m.end(), m.group(0)
        if kind in (NAME, PLACE):
            start, end, text = _trim_name(sentence, start, end)
            if not text or all(w in _NOT_NAMES for w in re.split(r"[\s-]+", text.lower()) if w not in ("and", "of", "the")):
                continue
        if kind == PLACE and not _LOCATIVE.search(sentence[max(0, start - 40) : start]):
            continue
        if kind in (NUMBER, AMOUNT) and _YEAR.match(text.strip()) and "year" not in question_lower:
            continue
        if kind == AMOUNT and not _HAS_UNIT.search(text):
            continue
        if _all_in_question(text, question_lower):
            continue
        distance = min((abs(a - start) for a in anchors), default=len(sentence))
        options.append((distance, -(end - start), start, end))
    if not options:
        return None
    _, _, start, end = min(options)
    return start, end


def _trim_name(sentence: str, start: int, end: int) -> tuple[int, int, str]:
    """Drop weak leading words ("The", "In") that a capitalised run picks up at a sentence start."""
    words = sentence[start:end].split(" ")
    while words and words[0].lower().strip("’'") in _WEAK_START:
        start += len(words[0]) + 1
        words = words[1:]
    text = " ".join(words)
    if text.endswith(("’s", "'s")):
        text = text[:-2]
    return start, start + len(text), text


def _all_in_question(text: str, question_lower: str) -> bool:
    """Whether every word of a candidate is already in the question ("Russia" for "Russian" too)."""
    q_words = re.findall(r"[\w$%-]+", question_lower)
    words = [w for w in re.findall(r"[\w$%-]+", text.lower()) if w not in ("the", "of", "and")]
    return bool(words) and all(
        any(w == q or (min(len(w), len(q)) >= 4 and (q.startswith(w) or w.startswith(q))) for q in q_words)
        for w in words
    )


def _idf(index: Index, term: str) -> float:
    n = index.bm25.n_docs
    tid = index.bm25.vocab.get(term)
    df = 0 if tid is None else int(index.bm25.indptr[tid + 1] - index.bm25.indptr[tid])
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


def _to_answer(cand: Candidate, n: int) -> Answer:
    span_text = None
    if cand.span:
        span_text = cand.text[cand.span[0] - cand.start : cand.span[1] - cand.start]
    return Answer(
        text=cand.text,
        span=span_text,
        score=round(cand.score, 4),
        citation=n,
        start=cand.start,
        end=cand.end,
        span_start=cand.span[0] if cand.span else None,
        span_end=cand.span[1] if cand.span else None,
        doc=cand.hit.passage.doc,
    )
