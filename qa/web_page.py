"""What the chat page shows: the HTML of a reply and the Markdown of the documents panel's messages.

Plain functions of the data (no Gradio, no engine), so they are tested without a server.
"""

from __future__ import annotations

import html
import re
import uuid

from qa.datatypes import Answer, Citation, Result
from qa.present import (answer_html, answer_label, lacks_note, location, passage_html, quote_location, snippet,
                        to_dict)
from qa.transcript import reply_markdown

SNIPPET_LINE_CHARS = 160  # of a passage no answer quotes, shown on one line (cut by CSS to the width)

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
a.qa-ref { text-decoration: none; cursor: pointer; }
a.qa-ref:hover { text-decoration: underline; }
.qa-snip { display: block; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; font-size: .88em;
           color: var(--body-text-color-subdued); margin-left: 1.2em; }
.qa-score { font-size: .8em; color: var(--body-text-color-subdued); margin-left: .5em; }
.qa-differ { border: 1px solid #f59e0b; background: rgba(245, 158, 11, .08); border-radius: 6px;
             padding: .4em .6em; margin: .5em 0; }
.qa-differ-head { font-weight: 600; color: #b45309; }
.qa-claims { display: flex; flex-wrap: wrap; gap: .6em; }
.qa-claim { flex: 1 1 14em; min-width: 0; border-left: 3px solid #f59e0b; padding-left: .5em; font-size: .93em; }
.qa-claim-value { font-weight: 700; font-size: 1.1em; }
.qa-searched i { font-style: italic; }
.qa-md { display: none !important; }
.qa-copy { margin-left: .8em; font-size: .85em; padding: .05em .5em; cursor: pointer; border-radius: 4px;
           border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary);
           color: var(--body-text-color); }
details.qa-flash { outline: 2px solid var(--color-accent); }
.qa-examples { gap: .4em !important; }
.qa-examples button { flex: 0 1 auto !important; min-width: 0 !important; }
.qa-error { color: #b91c1c; }
#chat .bubble-wrap { padding-top: 12px; }
#chat button[aria-label="Clear"] { display: none; }  /* one way to clear the chat: "New conversation" */
.qa-try { flex: 0 0 auto !important; min-width: 0 !important; align-self: center; }
#doc-table * { font-family: var(--font) !important; }
"""

# The page's behaviour, one delegated listener (replies are HTML, re-rendered by Gradio):
# [n] opens source n of the same reply and scrolls to it; "Copy as Markdown" copies the reply's
# Markdown; and a new reply is scrolled so its first line (the answer) is in view, on a phone too,
# instead of the chat's own scrolling to the bottom, where the sources are.
HEAD = """<script>
(() => {
  const copyText = async (text) => {
    try { await navigator.clipboard.writeText(text); return true; } catch (e) {
      const t = document.createElement('textarea'); t.value = text; document.body.appendChild(t); t.select();
      const ok = document.execCommand('copy'); t.remove(); return ok; }
  };
  document.addEventListener('click', (e) => {
    const ref = e.target.closest && e.target.closest('a.qa-ref');
    if (ref) {
      e.preventDefault();
      const n = (ref.getAttribute('href') || '').split('-').pop();
      const reply = ref.closest('.qa-reply');
      const src = reply && reply.querySelector('details.qa-src-' + n);
      if (src) {
        src.open = true;
        src.scrollIntoView({block: 'nearest'});
        src.classList.add('qa-flash');
        setTimeout(() => src.classList.remove('qa-flash'), 1600);
      }
      return;
    }
    const copy = e.target.closest && e.target.closest('button.qa-copy');
    if (copy) {
      const md = copy.closest('.qa-reply').querySelector('.qa-md');
      copyText(md ? md.textContent : '').then((ok) => {
        copy.textContent = ok ? 'Copied' : 'Copy failed';
        setTimeout(() => { copy.textContent = 'Copy as Markdown'; }, 1600);
      });
    }
  }, true);
  let seen = 0;
  new MutationObserver(() => {
    const replies = document.querySelectorAll('#chat .qa-reply');
    if (replies.length > seen) { replies[replies.length - 1].scrollIntoView({block: 'start'}); }
    seen = replies.length;
  }).observe(document.documentElement, {childList: true, subtree: true});
})();
</script>"""


# ---------------------------------------------------------------- HTML of a reply


def reply_html(result: Result, rid: str | None = None) -> str:
    """The assistant's message: the answer first (its ``[n]`` links open and scroll to source n),
    confidence, how a follow-up was searched, a disagreement between documents side by side, the
    sources (collapsed; the other passages with a one-line snippet and their relevance), and a
    button that copies the reply as Markdown. ``rid`` makes the reply's anchors unique in the page."""
    rid = rid or uuid.uuid4().hex[:10]
    top = max((c.score for c in result.citations), default=0.0)
    if result.abstained:
        parts = [f'<p class="qa-none">{html.escape(result.message)}</p>', _searched(result)]
        nearest = result.abstention.nearest if result.abstention else None
        lead = result.abstention.lead if result.abstention else None
        near = [c for c in result.citations if c.n == nearest]
        if near:
            head = "Where the best answer found stands (below the confidence needed)" if lead else "Nearest passage"
            parts.append(f'<p class="qa-head">{head}</p>')
            parts.append(citation_html(near[0], result, rid, top, opened=True, marks=[lead] if lead else None))
        rest = [c for c in result.citations if c.n != nearest]
        if rest:
            parts.append('<p class="qa-head">Other passages found</p>')
            parts.extend(citation_html(c, result, rid, top) for c in rest)
        return _reply(parts, result)
    best, *more = result.answers
    parts = [f'<p class="qa-answer">{answer_html(best)}{_ref(best.citation, rid)}</p>', _confidence(best),
             _searched(result), differ_html(result, rid)]
    differing = result.disagreement.answers if result.disagreement else []
    for a in (a for a in more if a not in differing):  # those stand side by side above
        parts.append(f'<div class="qa-also"><p>{answer_html(a)}{_ref(a.citation, rid)}</p>{_confidence(a)}</div>')
    cited = {a.citation for a in result.answers}
    parts.append('<p class="qa-head">Sources</p>')
    parts.extend(citation_html(c, result, rid, top) for c in result.citations if c.n in cited)
    others = [c for c in result.citations if c.n not in cited]
    if others:
        parts.append('<p class="qa-head">Other passages found</p>')
        parts.extend(citation_html(c, result, rid, top) for c in others)
    return _reply(parts, result)


def citation_html(c: Citation, result: Result, rid: str = "r", top: float = 0.0, *, opened: bool = False,
                  marks: list[Answer] | None = None) -> str:
    """A numbered source that opens to the passage, with the answer sentences (or ``marks``, e.g. an
    abstention's lead) marked. A passage no answer quotes shows a one-line snippet and its relevance
    (its retrieval score against the best passage's) without being opened."""
    title = html.escape(c.title)
    where = html.escape(location(c))
    marks = result.answers if marks is None else marks
    quoted = any(a.citation == c.n for a in marks)
    extra = ""
    if not quoted:
        relevance = f"{c.score / top:.0%}" if top > 0 else "–"
        extra = (f'<span class="qa-snip">{html.escape(snippet(c, SNIPPET_LINE_CHARS))}</span>'
                 f'<span class="qa-score" title="retrieval score, against the best passage found">'
                 f'relevance {relevance}</span>')
    return (
        f'<details class="qa-cite qa-src-{c.n}" id="qa-{rid}-{c.n}"{" open" if opened else ""}>'
        f'<summary><b>[{c.n}]</b> {title} <span class="qa-file">— {where}</span>{extra}</summary>'
        f'<div class="qa-passage">{_heading(c)}{passage_html(c, marks)}</div></details>'
    )


def _heading(c: Citation) -> str:
    """The section heading the cited passage stands under, as context above it."""
    return f'<div class="qa-section">§ {html.escape(c.heading)}</div>' if c.heading else ""


def differ_html(result: Result, rid: str) -> str:
    """"Sources differ": each document's answer side by side, its value marked, with its citation."""
    d = result.disagreement
    if d is None:
        return ""
    cites = {c.n: c for c in result.citations}
    cells = []
    for a in d.answers:
        c = cites.get(a.citation)
        where = html.escape(f"{c.title} — {quote_location(a)}") if c else html.escape(quote_location(a))
        cells.append(f'<div class="qa-claim"><p class="qa-claim-value">{html.escape(a.span or "")}'
                     f'{_ref(a.citation, rid)}</p><p>{answer_html(a)}</p><p class="qa-file">{where}</p></div>')
    return (f'<div class="qa-differ"><p class="qa-differ-head">Sources differ: the documents give different '
            f'{d.kind}s</p><div class="qa-claims">{"".join(cells)}</div></div>')


def _searched(result: Result) -> str:
    u = result.understood
    if not u or not u.followup:
        return ""
    return (f'<p class="qa-meta qa-searched" title="{html.escape(u.why)}">Read as a follow-up; searched as: '
            f'<i>{html.escape(u.query)}</i></p>')


def error_html(error: Exception | str) -> str:
    """A problem with the question, as a short assistant message."""
    return f'<div class="qa-reply"><p class="qa-error">Cannot answer: {html.escape(str(error))}.</p></div>'


def _reply(parts: list[str], result: Result) -> str:
    total = result.timings_ms.get("total")
    timing = f" · {total:.0f} ms" if total is not None else ""
    parts.append(f'<p class="qa-meta qa-foot">{html.escape(result.mode)} retrieval{timing}'
                 f'<button class="qa-copy" type="button" title="Copy the answer with its citations as Markdown">'
                 f'Copy as Markdown</button></p>')
    parts.append(f'<pre class="qa-md">{html.escape(reply_markdown(to_dict(result)))}</pre>')
    return f'<div class="qa-reply">{"".join(p for p in parts if p)}</div>'


def _ref(n: int, rid: str) -> str:
    return f'<a class="qa-ref" href="#qa-{rid}-{n}" title="Open source {n}">[{n}]</a>'


def _confidence(answer) -> str:
    label, score = answer_label(answer), answer.score
    note = f": {html.escape(lacks_note(answer))}" if answer.lacks else ""
    return f'<p class="qa-meta">Confidence: <span class="qa-{label}">{label}</span> ({score:.2f}){note}</p>'


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
