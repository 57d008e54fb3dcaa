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
_MD_HEADING = re.compile(r"#{1,6}\s+\S")
MAX_HEADING_CHARS = 120  # a guessed heading is at most this long ...
MAX_HEADING_WORDS = 16  # ... and has at most this many words
MAX_HEADING_CONTEXT = 200  # characters of a heading kept as a passage's context
_BULLET = re.compile(r"^\s*(?:[-*•▪‣◦]|\d+[.)])\s")


def sentence_spans(text: str, headings: list[tuple[int, int]] | tuple = ()) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, whitespace trimmed, in order. Each line of
    ``headings`` (offsets of heading lines) is a stretch of its own: a heading ends a sentence."""
    spans: list[tuple[int, int]] = []
    for block_start, block_end in _blocks(text, {s for s, _ in headings}):
        cut = block_start
        for m in _END.finditer(text, block_start, block_end):
            if _is_boundary(text, m.start(), m.end(), block_end):
                spans.extend(_trimmed(text, cut, m.end()))
                cut = m.end()
        spans.extend(_trimmed(text, cut, block_end))
    return [piece for span in spans for piece in _cap(text, *span)]


def heading_spans(doc: Document) -> list[tuple[int, int]]:
    """Offsets of the document's heading lines: those its file marked (``Document.headings``:
    HTML ``<h1>``–``<h6>``, Word heading styles), else the guessed ones (``guess_headings``)."""
    if doc.headings is not None:
        return sorted(doc.headings)
    return guess_headings(doc.text)


def guess_headings(text: str) -> list[tuple[int, int]]:
    """Heading lines of plain text: a Markdown ``#`` heading, or a short line standing alone
    (neither reading on from the line before nor into the next) that starts with a capital or
    a digit and ends without sentence punctuation, as "Executive Summary" or "Iran-Russia Drone
    Trade Routes" do (a title-cased question line counts too: "What Vulnerabilities does this pose
    to the U.S.?"). When such lines are more than a third of
    the lines, the text is a list or a table, not prose with headings: only ``#`` lines count."""
    lines = text.split("\n")
    wrapped = _hard_wrapped(lines)
    after = [len(lines)] * len(lines)  # the next non-blank line after each line (one pass: linear)
    for k in range(len(lines) - 2, -1, -1):
        after[k] = k + 1 if lines[k + 1].strip() else after[k + 1]
    marked: list[tuple[int, int]] = []
    guessed: list[tuple[int, int]] = []
    filled = 0
    pos = 0
    for k, line in enumerate(lines):
        start, pos = pos, pos + len(line) + 1
        bare = line.strip()
        if not bare:
            continue
        filled += 1
        lead = len(line) - len(line.lstrip())
        span = (start + lead, start + len(line.rstrip()))
        if _MD_HEADING.match(bare):
            marked.append(span)
        elif _standalone_heading(lines, k, bare, wrapped, after):
            guessed.append(span)
    if 3 * len(guessed) > filled:
        guessed = []
    return sorted(marked + guessed)


def _standalone_heading(lines: list[str], k: int, bare: str, wrapped: bool, after: list[int]) -> bool:
    """Whether line ``k`` (``bare``: stripped; ``after``: the next non-blank line of each) looks like a heading: short, capitalised, without
    final punctuation or an open bracket, a line of its own, and the next line (if any) starting
    with a capital, a quote or a list mark (not a digit: "(CO" then "2) is ..." is a wrapped formula)."""
    if not (len(bare) <= MAX_HEADING_CHARS and len(bare.split()) <= MAX_HEADING_WORDS
            and (bare[-1] not in _FINAL or (bare[-1] == "?" and _title_cased(bare)))
            and (bare[0].isupper() or bare[0].isdigit()) and not _BULLET.match(lines[k])
            and bare.count("(") == bare.count(")") and bare.count("[") == bare.count("]")):
        return False
    if k and _reads_on(lines[k - 1], lines[k], wrapped):
        return False
    nxt = lines[after[k]].strip() if after[k] < len(lines) else ""
    if k + 1 < len(lines) and _reads_on(lines[k], lines[k + 1], wrapped):
        return False
    return not nxt or nxt[0].isupper() or nxt[0] in "\"'“‘#*-•▪‣◦" or _BULLET.match(nxt) is not None


def _title_cased(line: str) -> bool:
    """Whether at least half the words of four or more letters are capitalised, as in the question
    heading "What Vulnerabilities does this pose to the U.S.?" (a question sentence has fewer)."""
    words = [w for w in line.split() if sum(c.isalpha() for c in w) >= 4]
    return bool(words) and 2 * sum(w[0].isupper() for w in words) >= len(words)


def heading_text(text: str) -> str:
    """A heading line as context: without Markdown's ``#`` marks, whitespace collapsed."""
    bare = text.strip().lstrip("#").strip()
    closed = bare.rstrip("#")
    if closed != bare and (not closed or closed[-1].isspace()):
        bare = closed
    return " ".join(bare.split())[:MAX_HEADING_CONTEXT]


def split_document(doc: Document, sentences_per_passage: int = 4, overlap: int = 1) -> list[Passage]:
    """Passages of up to ``sentences_per_passage`` whole sentences, neighbours sharing ``overlap``.

    Headings are not sentences of a passage: a passage stays within its section, never starts or
    ends on a heading, and carries its section's heading (unless it is the document's title) as
    ``Passage.heading``. A document that is nothing but headings is split as plain sentences.
    """
    if sentences_per_passage < 1:
        raise ValueError("sentences_per_passage must be at least 1")
    if not 0 <= overlap < sentences_per_passage:
        raise ValueError("overlap must be at least 0 and less than sentences_per_passage")
    heads = heading_spans(doc)
    sents = sentence_spans(doc.text, heads)
    sections: list[tuple[str, list[tuple[int, int]]]] = []
    heading, body, h = "", [], 0
    for span in sents:
        while h < len(heads) and heads[h][1] <= span[0]:
            h += 1
        if h < len(heads) and heads[h][0] <= span[0] < heads[h][1]:
            if body:
                sections.append((heading, body))
                body = []
            heading = heading_text(doc.text[heads[h][0] : heads[h][1]])
            heading = "" if heading == doc.title else heading
        else:
            body.append(span)
    if body:
        sections.append((heading, body))
    if not sections and sents:
        sections = [("", sents)]
    passages: list[Passage] = []
    line, counted = 1, 0  # the line number of offset ``counted``; passages start in increasing order
    paged = "\f" in doc.text  # pages separated by form feeds (a PDF's)
    page, page_first = 1, 1  # page of offset ``counted`` and the document line its page starts on
    for heading, sents in sections:
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
                    heading=heading,
                )
            )
            if j >= len(sents):
                break
            i = max(j - overlap, i + 1)
    return passages


def index_text(passage: Passage, title: str) -> str:
    """What BM25 sees of a passage: the document's title and the section heading, then the
    passage. The citation and the quote are the passage's own text only. On SciFact, BM25 with the
    title and heading in every passage scores nDCG@10 0.674 against 0.644 without them
    (benchmarks/bm25_sweep.py)."""
    return "\n".join(part for part in (title, passage.heading, passage.text) if part)


def dense_text(passage: Passage, title: str, context: str) -> str:
    """What the encoder sees of a passage (``Settings.dense_context``): ``title,heading``, a first line
    "title — heading" (either alone when the other is empty or the same), then the passage; ``none``,
    the passage alone. The passage always ends it, so its character ``o`` is the input's
    ``o + len(input) - len(passage.text)`` (``qa.vectors`` pools its sentences there)."""
    if context == "none":
        return passage.text
    head = " — ".join(dict.fromkeys(part for part in (title.strip(), passage.heading.strip()) if part))
    return f"{head}\n{passage.text}" if head else passage.text


def _blocks(text: str, heading_starts: set[int] | frozenset = frozenset()) -> list[tuple[int, int]]:
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
        if nxt is None or not _reads_on(line, nxt, wrapped) or _starts_heading(pos, line, heading_starts) \
                or _starts_heading(end + 1, nxt, heading_starts):
            blocks.append((start, end))
            start = end + 1
        pos = end + 1
    return blocks


def _starts_heading(pos: int, line: str, heading_starts: set[int] | frozenset) -> bool:
    """Whether a heading begins on the line at ``pos`` (after its leading whitespace)."""
    return bool(heading_starts) and pos + len(line) - len(line.lstrip()) in heading_starts


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
