"""Step 2: split documents into sentences, and sentences into overlapping passages.

Offsets are kept exact: ``doc.text[s:e]`` is each sentence, ``doc.text[p.start:p.end]``
each passage.
"""

from __future__ import annotations

import re

from qa.datatypes import Document, Passage

MAX_PASSAGE_CHARS = 1200  # keeps passages inside the encoder's 256-token window
MAX_SENTENCE_CHARS = 1000  # longer runs without punctuation (tables, lists) are cut at spaces

# Words ending in a period that do not end a sentence.
ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft gen col lt maj capt cmdr adm sgt cpl pvt rep sen gov pres
    rev hon no nos vol vols fig figs pp p ch sec art approx est dept univ inc ltd co corp bros
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
    vs etc al e.g i.e cf viz ca""".split()
)
# Abbreviations that are also ordinary lowercase words ("no", "sun", "art").
WORD_ABBREVIATIONS = frozenset("no nos sat sun art est co ch sec p pp fig figs vol vols al ca gen col rev".split())
# After a dotted acronym such as "U.S." a sentence ends only if one of these words follows.
SENTENCE_STARTERS = frozenset(
    """the a an this that these those it its in on at but and however he she they we i there as
    for if when while after since so yet our their his her such both many most some all""".split()
)

_END = re.compile(r"""[.!?…]+["'”’)\]]*(?=\s)""")
_NEXT_WORD = re.compile(r"\s+([\"'“‘(\[]*)(\S+)")
_WORD_BEFORE = re.compile(r"(\S+)$")
_DOTTED_ACRONYM = re.compile(r"^(?:[A-Za-z]\.){2,}$")
_FINAL = ".!?:;…\"”'’)"
_BULLET = re.compile(r"^\s*(?:[-*•▪‣◦]|\d+[.)])\s")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, whitespace trimmed, in order."""
    spans: list[tuple[int, int]] = []
    for block_start, block_end in _blocks(text):
        cut = block_start
        for m in _END.finditer(text, block_start, block_end):
            if _is_boundary(text, m.start(), m.end(), block_end):
                spans.extend(_trimmed(text, cut, m.end()))
                cut = m.end()
        spans.extend(_trimmed(text, cut, block_end))
    return [piece for span in spans for piece in _cap(text, *span)]


def split_document(doc: Document, sentences_per_passage: int = 4, overlap: int = 1) -> list[Passage]:
    """Passages of up to ``sentences_per_passage`` whole sentences, neighbours sharing ``overlap``."""
    if sentences_per_passage < 1:
        raise ValueError("sentences_per_passage must be at least 1")
    if not 0 <= overlap < sentences_per_passage:
        raise ValueError("overlap must be at least 0 and less than sentences_per_passage")
    sents = sentence_spans(doc.text)
    passages: list[Passage] = []
    line, counted = 1, 0  # the line number of offset ``counted``; passages start in increasing order
    paged = "\f" in doc.text  # pages separated by form feeds (a PDF's)
    page, page_first = 1, 1  # page of offset ``counted`` and the document line its page starts on
    i = 0
    while i < len(sents):
        j = i + 1
        while (
            j < len(sents)
            and j - i < sentences_per_passage
            and sents[j][1] - sents[i][0] <= MAX_PASSAGE_CHARS
        ):
            j += 1
        start, end = sents[i][0], sents[j - 1][1]
        if paged and (feed := doc.text.rfind("\f", counted, start)) >= 0:
            page += doc.text.count("\f", counted, start)
            page_first = line + doc.text.count("\n", counted, feed)
        line += doc.text.count("\n", counted, start)
        counted = start
        passages.append(
            Passage(
                doc=doc.id,
                ordinal=len(passages),
                start=start,
                end=end,
                line=line,
                text=doc.text[start:end],
                sentences=tuple(sents[i:j]),
                page=page if paged else 0,
                page_line=line - page_first + 1 if paged else 0,
            )
        )
        if j >= len(sents):
            break
        i = max(j - overlap, i + 1)
    return passages


def _blocks(text: str) -> list[tuple[int, int]]:
    """Stretches that no sentence crosses: paragraphs, headings, list items.

    A single line break is a boundary unless the text reads on across it: the next
    line starts in lower case, or (in hard-wrapped text such as a PDF's) a long line
    without final punctuation is followed by one that is not a list item.
    """
    lines = text.split("\n")
    wrapped = _hard_wrapped(lines)
    blocks: list[tuple[int, int]] = []
    start = pos = 0
    for k, line in enumerate(lines):
        end = pos + len(line)
        nxt = lines[k + 1] if k + 1 < len(lines) else None
        if nxt is None or not _reads_on(line, nxt, wrapped):
            blocks.append((start, end))
            start = end + 1
        pos = end + 1
    return blocks


def _hard_wrapped(lines: list[str]) -> bool:
    """Whether most lines break mid-sentence (PDF text, hard-wrapped plain text)."""
    pairs = [(a.rstrip(), b) for a, b in zip(lines, lines[1:]) if a.strip() and b.strip()]
    if len(pairs) < 5:
        return False
    open_ended = sum(1 for a, _ in pairs if a[-1] not in _FINAL)
    return open_ended > 0.5 * len(pairs)


def _reads_on(line: str, nxt: str, wrapped: bool) -> bool:
    stripped = line.rstrip()
    if not stripped or not nxt.strip() or _BULLET.match(nxt) or stripped[-1] in _FINAL:
        return False
    first = nxt.lstrip()[0]
    return first.islower() or (wrapped and len(stripped) >= 60 and not first.isdigit())


def _is_boundary(text: str, dot_start: int, end: int, block_end: int) -> bool:
    nxt = _NEXT_WORD.match(text, end, block_end)
    if not nxt:
        return True
    word = nxt.group(2)
    opener = nxt.group(1)
    if not (word[0].isupper() or word[0].isdigit() or opener or not word[0].isalnum()):
        return False  # "e.g. the", "approx. five": a lowercase continuation
    if text[dot_start] != ".":
        return True
    before = _WORD_BEFORE.search(text, max(0, dot_start - 64), dot_start + 1)
    token = before.group(1) if before else ""
    bare = token.lstrip("\"'“‘([").rstrip(".")
    if _DOTTED_ACRONYM.match(token.lstrip("\"'“‘([")):
        return word.strip("\"'“‘(").lower().rstrip(",") in SENTENCE_STARTERS
    if bare.lower() in ABBREVIATIONS:
        # "said no. Russia", "the sun. It": plain words, so a sentence ends
        return bare.lower() in WORD_ABBREVIATIONS and bare.islower() and not word[0].isdigit()
    if len(bare) == 1 and bare.isupper():
        return False  # an initial, as in "J. Smith"
    return True


def _trimmed(text: str, start: int, end: int) -> list[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [(start, end)] if end > start else []


def _cap(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Cut a run longer than MAX_SENTENCE_CHARS at spaces (tables, lists without punctuation)."""
    pieces = []
    while end - start > MAX_SENTENCE_CHARS:
        cut = text.rfind(" ", start + MAX_SENTENCE_CHARS // 2, start + MAX_SENTENCE_CHARS)
        cut = cut if cut > start else start + MAX_SENTENCE_CHARS
        pieces.extend(_trimmed(text, start, cut))
        start = cut
    pieces.extend(_trimmed(text, start, end))
    return pieces
