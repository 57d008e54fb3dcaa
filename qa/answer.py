"""Step 5: the answer, read out of the retrieved passages.

The default answerer is the trained reader (:mod:`qa.reader`): it reads the question
with the top passages in one batch and scores every span; the calibration
(:mod:`qa.calibration`) ranks the spans across passages and turns the best one's score
into P(right). The answer shown is the sentence (or two) holding the span, copied
exactly from the passage; the span is what the reader chose. Below the calibrated
threshold the system abstains. ``--answerer heuristic`` keeps the older sentence scorer
(:mod:`qa.heuristic`) for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from qa.calibration import Calibration, candidate_features, missing_terms, specific_terms
from qa.index import Index
from qa.terms import normalize_answer
from qa.protocols import SpanReader
from qa.datatypes import Answer, Citation, Hit, Passage

@dataclass
class Candidate:
    """One span the reader proposed, with its features and calibrated scores."""

    hit: int  # index into the hits read
    start: int  # document offsets of the span
    end: int
    features: np.ndarray
    rank_logit: float = 0.0
    probability: float = 0.0
    lacks: tuple[str, ...] = ()  # the question's names, codes or numbers its passage does not mention


def cite(hits: list[Hit], answers: list[Answer], index: Index) -> tuple[list[Citation], list[Answer]]:
    """The numbered citations of ``hits`` and the ``answers`` pointing at them.

    Hits whose passages overlap in one document (neighbours share a sentence) become one
    citation of their joined text, so the same lines are never listed twice; citations are
    numbered by their best hit's rank. Each answer (whose ``citation`` numbers a hit, from 1)
    gets its citation's number and the line (and page) where its text starts; a citation's
    ``line`` is that of the best answer quoting it, else of its text's start. An answer ``lacks``
    only what its whole citation does not mention (a neighbour joined to its passage may).
    """
    groups = _overlapping(hits)
    number = {i: n for n, group in enumerate(groups, start=1) for i in group}
    out: list[Answer] = []
    for a in answers:
        line, page, page_line = hits[a.citation - 1].passage.locate(a.start)
        out.append(replace(a, citation=number[a.citation - 1], line=line, page=page or None,
                           page_line=page_line or None))
    citations = []
    for n, group in enumerate(groups, start=1):
        parts = sorted((hits[i].passage for i in group), key=lambda p: (p.start, p.end))
        first, text, end = parts[0], parts[0].text, parts[0].end
        for p in parts[1:]:
            if p.end > end:
                text += p.text[end - p.start :]
                end = p.end
        last = max(parts, key=lambda p: p.end)
        quoted = next((a for a in out if a.citation == n), None)
        if quoted is not None:
            line, page, page_line = quoted.line, quoted.page or 0, quoted.page_line or 0
        else:
            line, page, page_line = first.locate(first.start)
        end_line, end_page, _ = last.locate(end)
        citations.append(Citation(
            n=n, doc=first.doc, title=index.titles.get(first.doc, first.doc), passage=first.ordinal,
            start=first.start, end=end, line=line, text=text, passage_line=first.line, passage_end_line=end_line,
            page=page or None, page_line=page_line or None,
            passage_pages=(first.page, end_page) if first.page else None, heading=first.heading,
            score=round(float(hits[group[0]].score), 6),
        ))
    out = [replace(a, lacks=missing_terms(a.lacks, citations[a.citation - 1].text)) if a.lacks else a for a in out]
    return citations, out


def _overlapping(hits: list[Hit]) -> list[list[int]]:
    """Hit positions grouped by overlapping text (transitively, within a document), each group in
    rank order, the groups ordered by their first hit."""
    parent = list(range(len(hits)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, a in enumerate(hits):
        for j in range(i):
            b = hits[j].passage
            if b.doc == a.passage.doc and b.start < a.passage.end and a.passage.start < b.end:
                parent[max(root(i), root(j))] = min(root(i), root(j))
    groups: dict[int, list[int]] = {}
    for i in range(len(hits)):
        groups.setdefault(root(i), []).append(i)
    return [groups[r] for r in sorted(groups)]


def reader_candidates(reader: SpanReader, calibration: Calibration, question: str, hits: list[Hit], *,
                      unmentioned: bool = False, early_exit: float = 0.0) -> tuple[list[Candidate], float]:
    """Every span the reader proposes in ``hits``, best first by the calibrated ranker,
    one per stretch of document text; and the reader's milliseconds. ``unmentioned``: the
    question names something no document mentions (:func:`qa.abstain.unmentioned`), which
    keeps every candidate's probability below the abstention threshold. ``early_exit`` (0: off):
    the first read is the top hit and the best hit of each other document (:func:`first_read`);
    the remaining hits are read only when the best candidate's probability is below
    ``early_exit``, and then every candidate is ranked as if all had been read at once."""
    first = first_read(hits) if early_exit > 0 else list(range(len(hits)))
    spans, ms = reader.read(question, [hits[i].passage.text for i in first])
    cands = _candidates(calibration, question, hits, first, spans, unmentioned)
    rest = [i for i in range(len(hits)) if i not in first]
    if not rest or (cands and cands[0].probability >= early_exit):
        return cands, ms
    more, more_ms = reader.read(question, [hits[i].passage.text for i in rest])
    spans = spans + [replace(s, item=s.item + len(first)) for s in more]
    return _candidates(calibration, question, hits, first + rest, spans, unmentioned), ms + more_ms


def first_read(hits: list[Hit]) -> list[int]:
    """The positions the early exit reads first: the top hit and the first hit of each other
    document, so that an answer from every document among the hits is seen before stopping
    (a disagreement between documents, :mod:`qa.disagree`, needs both)."""
    seen: set[str] = set()
    out = []
    for i, h in enumerate(hits):
        if h.passage.doc not in seen:
            seen.add(h.passage.doc)
            out.append(i)
    return out


def _candidates(calibration: Calibration, question: str, hits: list[Hit], which: list[int], spans: list,
                unmentioned: bool) -> list[Candidate]:
    """The ranked candidates of the reader's ``spans`` over the hits at positions ``which``."""
    if not spans:
        return []
    terms = specific_terms(question)
    lacking = [tuple(missing_terms(terms, hits[i].passage.text)) for i in which]
    feats = candidate_features(np.array([s.score for s in spans]), np.array([s.null for s in spans]),
                               np.array([hits[which[s.item]].rank for s in spans]),
                               np.array([bool(lacking[s.item]) for s in spans]))
    logits = calibration.rank_logits(feats)
    cands = []
    for s, f, z in zip(spans, feats, logits):
        start = hits[which[s.item]].passage.start
        prob = calibration.probability(float(z), lacks=bool(lacking[s.item]), unmentioned=unmentioned)
        cands.append(Candidate(which[s.item], start + s.start, start + s.end, f, float(z), prob, lacking[s.item]))
    return _ranked(cands, hits)


def _ranked(cands: list[Candidate], hits: list[Hit]) -> list[Candidate]:
    """Best first by the ranker, one per stretch of document text (overlapping passages hold the same text)."""
    out: dict[tuple[str, int, int], Candidate] = {}
    for c in cands:
        key = (hits[c.hit].passage.doc, c.start, c.end)
        if key not in out or out[key].rank_logit < c.rank_logit:
            out[key] = c
    return sorted(out.values(), key=lambda c: (-c.rank_logit, c.hit, c.start))


def reader_answers(reader: SpanReader, calibration: Calibration, question: str, hits: list[Hit], *,
                   threshold: float, max_answers: int) -> tuple[list[Answer], dict[str, float]]:
    """Distinct answers (best first, empty when abstaining) and the reader's timings."""
    ranked, ms = reader_candidates(reader, calibration, question, hits)
    return select_answers(ranked, hits, calibration, threshold=threshold, max_answers=max_answers), \
        {"reader": round(ms, 3)}


def select_answers(ranked: list[Candidate], hits: list[Hit], calibration: Calibration, *, threshold: float,
                   max_answers: int) -> list[Answer]:
    """The distinct answers among the ranked candidates at or above ``threshold``, best first:
    one per sentence and per normalised span."""
    answers: list[Answer] = []
    seen: set[str] = set()
    for cand in ranked:
        if len(answers) >= max_answers or cand.probability < threshold:
            break
        p = hits[cand.hit].passage
        norm = normalize_answer(p.text[cand.start - p.start : cand.end - p.start])
        if not norm or norm in seen or any(_same_sentence(a, p, cand) for a in answers):
            continue
        seen.add(norm)
        answers.append(to_answer(cand, p, calibration))
    return answers


def _same_sentence(answer: Answer, p: Passage, cand: Candidate) -> bool:
    """Whether the candidate stands in the sentences of an answer already given: a second span
    of the same sentence is not a second answer."""
    return answer.doc == p.doc and cand.start < answer.end and cand.end > answer.start


def answer_sentences(p: Passage, start: int, end: int) -> tuple[int, int]:
    """Document offsets of the passage's sentences that hold ``[start, end)``."""
    inside = [(s, e) for s, e in p.sentences if s < end and e > start]
    if not inside:
        return p.start, p.end
    return min(start, inside[0][0]), max(end, inside[-1][1])


def to_answer(cand: Candidate, p: Passage, calibration: Calibration) -> Answer:
    s, e = answer_sentences(p, cand.start, cand.end)
    return Answer(
        text=p.text[s - p.start : e - p.start],
        span=p.text[cand.start - p.start : cand.end - p.start],
        score=round(cand.probability, 4),
        citation=cand.hit + 1,
        start=s,
        end=e,
        span_start=cand.start,
        span_end=cand.end,
        label=calibration.label(cand.probability),
        doc=p.doc,
        lacks=list(cand.lacks),
    )
