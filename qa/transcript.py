"""A reply, or a whole conversation, as Markdown or JSON: what the page's copy button puts on the
clipboard and its export buttons download, with every quote and its source.

Plain functions of ``qa.present.to_dict`` results (what the page keeps per conversation), read back
with ``qa.present.from_dict``, so that a source's location, an answer's highlight and "Sources
differ" are worded by the functions ``qa ask`` and the page use; tests need no browser.
"""

from __future__ import annotations

import json
import re

from qa.present import answer_label, differ_line, from_dict, lacks_note, location, mark_span

FORMAT = 1

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _clean(text: str) -> str:
    """Text fit for a Markdown line: no control characters, whitespace runs as one space."""
    return " ".join(_CONTROL.sub(" ", str(text)).split())


def _quote(text: str) -> str:
    """``text`` as a Markdown block quote (one paragraph)."""
    return "> " + _escape(text).strip()


def _escape(text: str) -> str:
    """Text that Markdown shows literally: its markup characters backslash-escaped; whitespace runs
    as one space (kept at the ends, so the pieces around a highlighted span keep their spaces)."""
    return re.sub(r"([\\`*_{}\[\]<>#|~])", r"\\\1", re.sub(r"\s+", " ", _CONTROL.sub(" ", str(text))))


def _code(text: str) -> str:
    """``text`` as a Markdown code span: shown literally, whatever it holds (backticks too)."""
    text = _clean(text)
    fence = "`" * (max(map(len, re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def reply_markdown(data: dict) -> str:
    """One reply (as ``qa.present.to_dict`` gives it): the question, the answers with their citation
    numbers and confidence, any disagreement, then each cited source — where it is as ``qa ask`` says
    it (``qa.present.location``: file, line or page and line, the passage's extent), its section
    heading, and the passage it quotes (or, when it abstained, why, and the nearest passage)."""
    result = from_dict(data)
    lines = [f"**Q:** {_escape(result.question).strip()}"]
    if result.understood and result.understood.followup:
        lines.append(f"*Searched as:* {_escape(result.understood.query)}")
    lines.append("")
    cites = {c.n: c for c in result.citations}
    if not result.answers:
        lines.append(f"**A:** {_escape(result.message)}")
        shown = [n for n in [result.abstention.nearest if result.abstention else None] if n in cites]
    else:
        for i, a in enumerate(result.answers):
            head = "**A:**" if i == 0 else "*Also:*"
            note = _escape(": " + lacks_note(a)) if a.lacks else ""
            lines.append(f"{head} {mark_span(a, '**', '**', clean=_escape)} [{a.citation}] "
                         f"(confidence {a.score:.2f}, {answer_label(a)}{note})")
        shown = sorted({a.citation for a in result.answers})
    if result.disagreement:
        head, _, said = differ_line(result).partition(": ")
        lines += ["", f"**{head}:** {_escape(said)}"]
    if shown:
        lines.append("")
    for n in shown:
        c = cites[n]
        lines += [f"[{n}] {_escape(c.title).strip()} — {_code(location(c))}", ""]
        if c.heading:
            lines += [f"§ {_escape(c.heading).strip()}", ""]
        lines += [_quote(c.text), ""]
    return "\n".join(lines).rstrip() + "\n"


def conversation_markdown(results: list[dict]) -> str:
    """The whole conversation, reply after reply, each with its quotes and sources."""
    parts = ["# Conversation with the documents", ""]
    for i, r in enumerate(results, 1):
        parts += [f"## {i}. {_escape(r['question'])}", "", reply_markdown(r)]
    return "\n".join(parts).rstrip() + "\n"


def conversation_json(results: list[dict]) -> str:
    """The whole conversation as JSON: every reply as ``qa ask --json`` gives it (answers,
    citations with their passage text, abstention, disagreement, how it was searched)."""
    return json.dumps({"format": FORMAT, "replies": results}, ensure_ascii=False, indent=2) + "\n"
