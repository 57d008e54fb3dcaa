"""The data that flows between the steps: load → split → index → retrieve → answer → present.

Every type here is a plain dataclass. Offsets are character offsets into the
document's text (``Document.text``), so ``doc.text[start:end]`` is always the exact
source of a passage, sentence or answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


class QAError(Exception):
    """A problem the user can fix (bad input, missing corpus, broken index): shown as one line."""


@dataclass(frozen=True)
class Document:
    """One file of the corpus, as text."""

    id: str  # path relative to the corpus folder, with forward slashes
    title: str
    text: str
    sha256: str  # hash of the file's raw bytes: what staleness is judged by
    headings: tuple[tuple[int, int], ...] | None = None  # heading lines the file marked (offsets); None: guess


@dataclass(frozen=True)
class Passage:
    """A run of whole sentences of one document."""

    doc: str  # Document.id
    ordinal: int  # position among the document's passages, from 0
    start: int  # character offsets in the document text
    end: int
    line: int  # 1-based line of the document where the passage starts
    text: str  # == document.text[start:end]
    sentences: tuple[tuple[int, int], ...]  # (start, end) of each sentence, document offsets
    page: int = 0  # 1-based page where the passage starts, for a paged document (a PDF); 0: no pages
    page_line: int = 0  # 1-based line of that page where the passage starts; 0: no pages
    heading: str = ""  # the heading of the section the passage is in: context, never part of ``text``

    def locate(self, offset: int) -> tuple[int, int, int]:
        """(line, page, line on the page) of document offset ``offset`` inside this passage;
        page and line on the page are 0 for a document without pages. Pages are separated by a
        form feed, which starts the first line of its page."""
        rel = max(0, min(offset, self.end) - self.start)
        line = self.line + self.text.count("\n", 0, rel)
        if not self.page:
            return line, 0, 0
        feed = self.text.rfind("\f", 0, rel)
        if feed < 0:
            return line, self.page, self.page_line + self.text.count("\n", 0, rel)
        return line, self.page + self.text.count("\f", 0, rel), 1 + self.text.count("\n", feed, rel)

    @property
    def key(self) -> str:
        """Content key: identical text under the same model gives the same embedding."""
        return text_key(self.text)


def text_key(text: str) -> str:
    """The content key of a text (sha1 of its UTF-8): the embedding cache stores vectors under it."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass
class Hit:
    """A passage found by retrieval for one query."""

    row: int  # the passage's row in the index
    passage: Passage
    score: float  # the score of the mode that produced the hit (fused score for hybrid)
    rank: int  # 0-based rank in the hit list
    scores: dict[str, float] = field(default_factory=dict)  # per-retriever raw scores, when known


@dataclass
class Citation:
    """A numbered reference to a passage (or to overlapping passages, merged), as shown to the user."""

    n: int
    doc: str
    title: str
    passage: int  # Passage.ordinal (the first, when overlapping passages were merged)
    start: int  # document offsets of the cited text
    end: int
    line: int  # 1-based line of the quote: where the first answer citing it starts, else ``passage_line``
    text: str  # == document.text[start:end]
    passage_line: int = 0  # 1-based line where the cited text starts
    passage_end_line: int = 0  # 1-based line where it ends
    page: int | None = None  # page of ``line`` (paged documents: PDFs), else None
    page_line: int | None = None  # line of ``line`` on that page
    passage_pages: tuple[int, int] | None = None  # first and last page of the cited text (paged documents)
    heading: str = ""  # the section heading of the cited text (context, not part of ``text``)
    score: float = 0.0  # the retrieval score of its best passage (the mode's; the fused score for hybrid)


@dataclass
class Answer:
    """A sentence (or two) copied exactly from a cited passage."""

    text: str
    span: str | None  # the short answer inside ``text``, when one can be found
    score: float  # confidence in [0, 1]
    citation: int  # Citation.n
    start: int  # document offsets of ``text``
    end: int
    span_start: int | None = None  # document offsets of ``span``
    span_end: int | None = None
    label: str = ""  # high / medium / low, from the calibrated probability
    doc: str = ""  # Document.id of the cited passage
    line: int = 0  # 1-based line of the document where ``text`` starts
    page: int | None = None  # its page, in a paged document (a PDF)
    page_line: int | None = None  # its line on that page
    # the question's names, codes or numbers that the passage it stands in (and the citation that
    # shows it) does not mention: why its confidence is held at "low" (Calibration.probability)
    lacks: list[str] = field(default_factory=list)


@dataclass
class Understanding:
    """How a question was read in its conversation: the query searched, and whether it was
    taken as a follow-up of the previous question (and why, in plain words)."""

    query: str  # what was searched: the question itself, or with the previous question beside it
    followup: bool
    why: str = ""  # empty when there was no earlier question
    read_as: str = ""  # what the reader reads, when not ``query``: a follow-up with the previous question's words


@dataclass
class Abstention:
    """Why no answer was given, in plain words, and the nearest passage offered instead."""

    reason: str  # "unmentioned": the question names something no document mentions; "weak": best match too weak
    text: str  # the explanation, one sentence
    missing: list[str] = field(default_factory=list)  # the names no document mentions
    best: float | None = None  # the best candidate's confidence, when one was found
    threshold: float | None = None  # the confidence an answer needs
    nearest: int | None = None  # Citation.n of the nearest passage (the lead's, when there is one)
    # reason "weak": the best answer found, below the confidence needed, where it stands (a lead to check)
    lead: Answer | None = None


@dataclass
class Disagreement:
    """Answers from different documents that give different numbers, dates or names."""

    kind: str  # "number", "date" or "name"
    answers: list[Answer]  # one per document, the top answer first; each cites its passage


@dataclass
class Result:
    """Everything the system says in reply to one question."""

    question: str
    answers: list[Answer]  # empty when it abstains
    citations: list[Citation]
    mode: str
    timings_ms: dict[str, float]
    message: str = ""  # e.g. the abstention message
    hits: list[Hit] = field(default_factory=list)  # the ranked hits, when asked for (``ask(depth=…)``)
    understood: Understanding | None = None  # how the question was read in its conversation
    abstention: Abstention | None = None  # why it abstained, when it did
    disagreement: Disagreement | None = None  # when the answers' documents disagree

    @property
    def abstained(self) -> bool:
        return not self.answers


@dataclass
class Question:
    """One item of a question set, for evaluation."""

    id: str
    question: str
    answers: list[str]  # accepted answers; empty: the corpus cannot answer it
    doc: str | None = None  # Document.id of the gold document, when known
    region: tuple[int, int] | None = None  # gold region (e.g. a SQuAD paragraph) in that document
    relevant: dict[str, int] = field(default_factory=dict)  # qrels: Document.id -> grade (BEIR)
    spans: list[tuple[int, int]] = field(default_factory=list)  # gold answers' document offsets, when known
    article: str | None = None  # the article's title as the data set spells it (SQuAD), for --split

    @property
    def answerable(self) -> bool:
        return bool(self.answers)
