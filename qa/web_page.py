"""What the chat page shows: the HTML of a reply and the Markdown of the documents panel's messages.

Plain functions of the data (no Gradio, no engine), so they are tested without a server.
"""

from __future__ import annotations

import html
import re

from qa.datatypes import Citation, Result
from qa.present import answer_html, answer_label, location, passage_html

CSS = """
.qa-reply p { margin: 0 0 .35em 0; }
.qa-answer { font-size: 1.02em; line-height: 1.5; }
.qa-reply mark { background: #fde68a; color: #1f2937; padding: 0 .15em; border-radius: 3px; }
.qa-ref { font-size: .8em; font-weight: 600; color: var(--color-accent); vertical-align: super; margin-left: .1em; }
.qa-meta { font-size: .85em; color: var(--body-text-color-subdued); }
.qa-high { color: #15803d; font-weight: 600; }
.qa-medium { color: #b45309; font-weight: 600; }
.qa-low { color: #b91c1c; font-weight: 600; }
.qa-also { margin-top: .5em; padding-left: .75em; border-left: 3px solid var(--border-color-primary); font-size: .95em; }
.qa-head { margin-top: .8em !important; font-size: .8em; font-weight: 600; letter-spacing: .04em;
           text-transform: uppercase; color: var(--body-text-color-subdued); }
.qa-reply details { margin: .3em 0; border: 1px solid var(--border-color-primary); border-radius: 6px;
                    padding: .3em .6em; background: var(--background-fill-secondary); }
.qa-reply summary { cursor: pointer; font-size: .92em; }
.qa-file { color: var(--body-text-color-subdued); font-size: .9em; }
.qa-section { font-size: .85em; opacity: .75; }
.qa-passage { margin: .5em 0 .2em 0; font-size: .92em; line-height: 1.5; }
.qa-none { font-weight: 600; }
.qa-error { color: #b91c1c; }
#chat .bubble-wrap { padding-top: 36px; }
#doc-table * { font-family: var(--font) !important; }
"""


# ---------------------------------------------------------------- HTML of a reply


def reply_html(result: Result) -> str:
    """The assistant's message: answers with spans marked, confidence, and collapsible sources."""
    if result.abstained:
        parts = [f'<p class="qa-none">{html.escape(result.message)}</p>']
        if result.citations:
            parts.append('<p class="qa-head">Nearest passages</p>')
            parts.extend(citation_html(c, result) for c in result.citations)
        return _reply(parts, result)
    best, *more = result.answers
    parts = [f'<p class="qa-answer">{answer_html(best)}{_ref(best.citation)}</p>', _confidence(best)]
    for a in more:
        parts.append(f'<div class="qa-also"><p>{answer_html(a)}{_ref(a.citation)}</p>{_confidence(a)}</div>')
    cited = {a.citation for a in result.answers}
    parts.append('<p class="qa-head">Sources</p>')
    parts.extend(citation_html(c, result) for c in result.citations if c.n in cited)
    others = [c for c in result.citations if c.n not in cited]
    if others:
        parts.append('<p class="qa-head">Other passages found</p>')
        parts.extend(citation_html(c, result) for c in others)
    return _reply(parts, result)


def citation_html(c: Citation, result: Result) -> str:
    """A numbered source that opens to the passage, with the answer sentences marked."""
    title = html.escape(c.title)
    where = html.escape(location(c))
    return (
        f'<details class="qa-cite"><summary><b>[{c.n}]</b> {title} <span class="qa-file">— {where}</span></summary>'
        f'<div class="qa-passage">{_heading(c)}{passage_html(c, result.answers)}</div></details>'
    )


def _heading(c: Citation) -> str:
    """The section heading the cited passage stands under, as context above it."""
    return f'<div class="qa-section">§ {html.escape(c.heading)}</div>' if c.heading else ""


def error_html(error: Exception | str) -> str:
    """A problem with the question, as a short assistant message."""
    return f'<div class="qa-reply"><p class="qa-error">Cannot answer: {html.escape(str(error))}.</p></div>'


def _reply(parts: list[str], result: Result) -> str:
    total = result.timings_ms.get("total")
    timing = f" · {total:.0f} ms" if total is not None else ""
    parts.append(f'<p class="qa-meta">{html.escape(result.mode)} retrieval{timing}</p>')
    return f'<div class="qa-reply">{"".join(parts)}</div>'


def _ref(n: int) -> str:
    return f'<span class="qa-ref">[{n}]</span>'


def _confidence(answer) -> str:
    label, score = answer_label(answer), answer.score
    return f'<p class="qa-meta">Confidence: <span class="qa-{label}">{label}</span> ({score:.2f})</p>'


def sentence(text: str) -> str:
    """``text`` as a sentence: capitalised, one full stop."""
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


# ---------------------------------------------------------------- Markdown of the documents panel

# The Markdown of the documents panel shows file names and messages that anyone who can put a
# file in the corpus chooses: they go in as literal text, which the page's Markdown renderer
# escapes exactly once (so `<img …>` shows as typed and never becomes markup).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def md_code(text: str) -> str:
    """``text`` as a Markdown code span, shown literally whatever backticks or markup it holds."""
    text = _CONTROL.sub("\ufffd", str(text))  # a line break could end the span, or the paragraph
    fence = "`" * (max(map(len, re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[:1] in ("`", " ") or text[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_text(text: str) -> str:
    """``text`` as literal Markdown text: every ASCII punctuation mark backslash-escaped."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", _CONTROL.sub("\ufffd", str(text)))


def upload_message(added: list[str], problems: list[str]) -> str:
    """What an upload did: the files added, then those refused with the reason."""
    parts = []
    if added:
        names = ", ".join(md_code(n) for n in added)
        parts.append(f"**Added and indexed** {names}: you can ask about {'it' if len(added) == 1 else 'them'} now.")
    if problems:
        head = "**Some files were not added:**" if added else "**Nothing was added:**"
        parts.append(head + "\n" + "\n".join(f"- {md_text(p)}" for p in problems))
    return "\n\n".join(parts)


def rescan_message(notes: list[str]) -> str:
    """What a re-scan of the corpus folder did."""
    msg = "The index is up to date with the corpus folder."
    if notes:
        msg += "\n\n**Skipped:**\n" + "\n".join(f"- {md_text(n)}" for n in notes)
    return msg


def documents_summary_md(rows: list[list], folder: str, skipped: list[str]) -> str:
    """The documents panel's summary line: how many documents and passages, from which folder, what was skipped."""
    passages = sum(r[2] for r in rows)
    summary = (f"**{len(rows)} document{'s' * (len(rows) != 1)}**, {passages:,} passages, "
               f"from the folder {md_code(folder)}.")
    if skipped:
        summary += " Skipped as unreadable: " + ", ".join(md_code(s) for s in skipped) + "."
    return summary
