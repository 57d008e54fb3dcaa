"""Step 6: show a Result — as terminal text, as JSON, or as HTML pieces for the web page."""

from __future__ import annotations

import dataclasses
import html
import json
import textwrap

from qa.datatypes import Abstention, Answer, Citation, Disagreement, Result, Understanding

SNIPPET_CHARS = 300

# Control characters a terminal could act on: C0 but tab and line feed, DEL, and C1 (ESC
# starts the CSI/OSC sequences that move the cursor, retitle the window or write the
# clipboard; C1 holds their one-character forms). Document and question text may hold any.
_CONTROLS = [c for c in range(0x20) if c not in (0x09, 0x0A)] + [0x7F] + list(range(0x80, 0xA0))
_DROP_CONTROLS = dict.fromkeys(_CONTROLS)
_ESCAPE_CONTROLS = {c: f"\\u{c:04x}" for c in _CONTROLS}


def plain(text: str) -> str:
    """The text without the control characters a terminal would act on (tab and newline stay)."""
    return text.translate(_DROP_CONTROLS)


def confidence_label(score: float) -> str:
    """The heuristic answerer's labels (the reader's come from its calibration)."""
    return "high" if score >= 0.6 else "medium" if score >= 0.45 else "low"


def answer_label(answer: Answer) -> str:
    """high / medium / low: the calibrated label when the answerer gave one."""
    return answer.label or confidence_label(answer.score)


def lacks_note(answer: Answer) -> str:
    """Why a reader's answer is held at "low" although its score may be high: its passage does not
    mention a name, code or number the question asks about ("[1] does not mention China"); "" when
    it mentions them all."""
    if not answer.lacks:
        return ""
    names = [f"“{n}”" for n in answer.lacks]
    said = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"[{answer.citation}] does not mention {said}"


def to_json(result: Result) -> str:
    """One JSON object, the CLI's ``--json`` line: every control character (C0, DEL and C1)
    in its strings is written as a ``\\uXXXX`` escape, never raw, so the line is safe to
    show on a terminal and parses back to the same text."""
    # json.dumps escapes C0 itself; DEL and C1 (raw with ensure_ascii=False) only occur
    # inside strings, where an escape stands for the same character.
    return json.dumps(to_dict(result), ensure_ascii=False).translate(_ESCAPE_CONTROLS)


def to_dict(result: Result) -> dict:
    return {
        "question": result.question,
        "answers": [answer_dict(a) for a in result.answers],
        "citations": [
            {"n": c.n, "doc": c.doc, "title": c.title, "heading": c.heading, "passage": c.passage, "start": c.start,
             "end": c.end, "line": c.line, "page": c.page, "page_line": c.page_line, "passage_line": c.passage_line,
             "passage_end_line": c.passage_end_line,
             "passage_pages": list(c.passage_pages) if c.passage_pages else None, "text": c.text,
             "score": c.score}
            for c in result.citations
        ],
        "mode": result.mode,
        "timings_ms": result.timings_ms,
        "message": result.message,
        "searched_as": result.understood.query if result.understood else result.question,
        "followup": bool(result.understood and result.understood.followup),
        "followup_reason": result.understood.why if result.understood else "",
        "abstention": abstention_dict(result.abstention),
        "disagreement": disagreement_dict(result),
    }


def answer_dict(a: Answer) -> dict:
    return {"text": a.text, "span": a.span, "score": a.score, "confidence": answer_label(a), "citation": a.citation,
            "doc": a.doc, "start": a.start, "end": a.end, "span_start": a.span_start, "span_end": a.span_end,
            "line": a.line, "page": a.page, "page_line": a.page_line, "lacks": list(a.lacks)}


def abstention_dict(why: Abstention | None) -> dict | None:
    """The JSON of an abstention: its fields, the lead (if any) in the shape of an answer."""
    if why is None:
        return None
    return {**{f.name: getattr(why, f.name) for f in dataclasses.fields(why)},
            "lead": answer_dict(why.lead) if why.lead else None}


def disagreement_dict(result: Result) -> dict | None:
    """The JSON of ``Result.disagreement``: its kind and, per document, the span, the sentence and
    its citation."""
    d = result.disagreement
    if d is None:
        return None
    return {"kind": d.kind, "answers": [{"span": a.span, "text": a.text, "citation": a.citation, "doc": a.doc,
                                         "line": a.line, "page": a.page, "page_line": a.page_line}
                                        for a in d.answers]}


def from_dict(data: dict) -> Result:
    """A result as ``to_dict`` gave it (the page keeps a conversation so), back as a ``Result``: what
    shows one (``location``, ``quote_location``, ``differ_line``) then shows it the same way, in the
    page's copy and export too (``qa.transcript``). A key it lacks takes an empty value."""
    answers = [_answer(a) for a in data.get("answers") or []]
    citations = [_made(Citation, {**c, "passage_pages": tuple(c["passage_pages"]) if c.get("passage_pages") else None},
                       n=0, doc="", title="", passage=0, start=0, end=0, line=0, text="")
                 for c in data.get("citations") or []]
    d, why, searched = data.get("disagreement"), data.get("abstention"), data.get("searched_as")
    return Result(
        question=data.get("question", ""), answers=answers, citations=citations, mode=data.get("mode", ""),
        timings_ms=dict(data.get("timings_ms") or {}), message=data.get("message", ""),
        understood=Understanding(searched, bool(data.get("followup")), data.get("followup_reason", ""))
        if searched is not None else None,
        abstention=_made(Abstention, {**why, "lead": _answer(why["lead"]) if why.get("lead") else None},
                         reason="", text="") if why else None,
        disagreement=Disagreement(d["kind"], [_answer(a) for a in d["answers"]]) if d else None,
    )


def _answer(a: dict) -> Answer:
    return _made(Answer, {**a, "label": a.get("confidence") or ""}, text="", span=None, score=0.0, citation=0,
                 start=0, end=0)


def _made(cls, data: dict, **empty):
    """A ``cls`` of the keys of ``data`` that are its fields, ``empty`` where it lacks one."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{**empty, **{k: v for k, v in data.items() if k in names}})


def differ_line(result: Result) -> str:
    """"Sources differ: [1] says “1,700” (a.txt:9); [3] says “hundreds” (b.txt:6)." — empty when
    they do not. Plain text: the caller escapes it for its medium."""
    d = result.disagreement
    if d is None:
        return ""
    said = [f"[{a.citation}] says “{a.span}” ({quote_location(a)})" for a in d.answers]
    return f"Sources differ: {'; '.join(said)}."


def quote_location(q: Answer | Citation) -> str:
    """Where an answer's text (or a citation's quote) starts: ``report.txt:12``, or in a paged
    document (a PDF) ``brief.pdf p. 2, line 5``."""
    if q.page is not None:
        return f"{q.doc} p. {q.page}, line {q.page_line}"
    return f"{q.doc}:{q.line}"


def to_text(result: Result, *, color: bool = False) -> str:
    """Terminal text: answers with the span marked, score, then numbered citations with snippets.

    Every text taken from the question or the documents goes through :func:`plain`, so the
    only escape sequences in the output are the colours ``color`` adds."""
    bold, dim, reset = ("\033[1m", "\033[2m", "\033[0m") if color else ("", "", "")
    lines = [f"Q: {plain(result.question)}"]
    if result.understood and result.understood.followup:
        lines.append(f"   {dim}(a follow-up; searched as: {plain(result.understood.query)}){reset}")
    if result.abstained:
        lines.append(f"A: {plain(result.message)}")
    for i, a in enumerate(result.answers):
        label = "A:" if i == 0 else "  also:"
        lines.append(f"{label} {mark_span(a, '**', '**', bold, reset, clean=plain)} [{a.citation}]")
        note = f": {plain(lacks_note(a))}" if a.lacks else ""
        lines.append(f"   {dim}confidence {a.score:.2f} ({plain(answer_label(a))}){note}{reset}")
    if result.disagreement:
        lines.append(f"{bold}{plain(differ_line(result))}{reset}")
    if result.citations:
        lines.append("")
    for c in result.citations:
        lines.append(f"[{c.n}] {plain(c.title)} — {plain(location(c))}")
        if c.heading:
            lines.append(f"    {dim}§ {plain(c.heading)}{reset}")
        lines.append(textwrap.indent(textwrap.fill(plain(snippet(c)), 88), "    " + dim) + reset)
    return "\n".join(lines)


def location(c: Citation) -> str:
    """Where the quote stands, then the cited passage's extent: ``report.txt:12 (passage 10–14)``
    by lines; in a paged document (a PDF) by page and line on the page, the passage by its
    pages: ``brief.pdf p. 2, line 5 (passage p. 2)``."""
    if c.page is not None and c.passage_pages:
        first, last = c.passage_pages
        pages = f"p. {first}" if first == last else f"pp. {first}–{last}"
        return f"{quote_location(c)} (passage {pages})"
    if not c.passage_line:  # a citation made without the passage's extent
        return f"{c.doc}:{c.line}"
    lines = f"{c.passage_line}–{c.passage_end_line}" if c.passage_end_line > c.passage_line else f"{c.passage_line}"
    return f"{c.doc}:{c.line} (passage {lines})"


def mark_span(answer: Answer, left: str, right: str, on: str = "", off: str = "", *, clean=lambda t: t) -> str:
    """The answer text with its span wrapped in markers; ``clean`` is applied to the
    answer's text (each piece of it), not to the markers."""
    if answer.span_start is None or answer.span_end is None:
        return clean(answer.text)
    a = answer.span_start - answer.start
    b = answer.span_end - answer.start
    t = answer.text
    return f"{clean(t[:a])}{on}{left}{clean(t[a:b])}{right}{off}{clean(t[b:])}"


def snippet(c: Citation, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join(c.text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + " …"


def answer_html(answer: Answer) -> str:
    """The answer sentence, HTML-escaped, with its span in <mark>."""
    if answer.span_start is None or answer.span_end is None:
        return html.escape(answer.text)
    a = answer.span_start - answer.start
    b = answer.span_end - answer.start
    t = answer.text
    return f"{html.escape(t[:a])}<mark>{html.escape(t[a:b])}</mark>{html.escape(t[b:])}"


def passage_html(c: Citation, answers: list[Answer]) -> str:
    """The cited passage, HTML-escaped, with the sentences answered from it in <mark>."""
    marks = sorted((max(a.start, c.start), min(a.end, c.end)) for a in answers if a.citation == c.n)
    out, pos = [], c.start
    for s, e in marks:
        if s < pos or e <= s:
            continue
        out.append(html.escape(c.text[pos - c.start : s - c.start]))
        out.append(f"<mark>{html.escape(c.text[s - c.start : e - c.start])}</mark>")
        pos = e
    out.append(html.escape(c.text[pos - c.start :]))
    return "".join(out).replace("\n", "<br>")
