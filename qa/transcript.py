"""A reply, or a whole conversation, as Markdown or JSON: what the page's copy button puts on the
clipboard and its export buttons download, with every quote and its source.

Plain functions of ``qa.present.to_dict`` results (what the page keeps per conversation), so
the same text comes out of the page, and tests need no browser.
"""

from __future__ import annotations

import json
import re

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


def _where(c: dict) -> str:
    at = f"p. {c['page']}, line {c.get('page_line')}" if c.get("page") else f"line {c['line']}"
    return f"{_escape(c['title']).strip()} — `{_clean(c['doc']).replace('`', '')}`, {at}"


def _highlighted(a: dict) -> str:
    """The answer sentence with its span in bold."""
    text = a["text"]
    if a.get("span_start") is None or a.get("span_end") is None:
        return _escape(text)
    i, j = a["span_start"] - a["start"], a["span_end"] - a["start"]
    return f"{_escape(text[:i])}**{_escape(text[i:j])}**{_escape(text[j:])}"


def reply_markdown(result: dict) -> str:
    """One reply: the question, the answers with their citation numbers and confidence, any
    disagreement, then each cited source with the passage it quotes (or, when it abstained, why,
    and the nearest passage)."""
    lines = [f"**Q:** {_escape(result['question']).strip()}"]
    if result.get("followup"):
        lines.append(f"*Searched as:* {_escape(result['searched_as'])}")
    lines.append("")
    cites = {c["n"]: c for c in result.get("citations", [])}
    if not result.get("answers"):
        lines.append(f"**A:** {_escape(result.get('message', ''))}")
        shown = [n for n in [(result.get("abstention") or {}).get("nearest")] if n in cites]
    else:
        for i, a in enumerate(result["answers"]):
            head = "**A:**" if i == 0 else "*Also:*"
            lines.append(f"{head} {_highlighted(a)} [{a['citation']}] "
                         f"(confidence {a['score']:.2f}, {a['confidence']})")
        shown = sorted({a["citation"] for a in result["answers"]})
    d = result.get("disagreement")
    if d:
        said = "; ".join(f"[{a['citation']}] says “{_escape(a['span'])}”" for a in d["answers"])
        lines += ["", f"**Sources differ:** {said}."]
    if shown:
        lines.append("")
    for n in shown:
        c = cites[n]
        lines += [f"[{n}] {_where(c)}", "", _quote(c["text"]), ""]
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
