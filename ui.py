"""The chat web page: ask the documents, read quoted answers with their sources, add documents.

Run with ``qa serve`` or ``python ui.py [--host H] [--port P] [settings options]``.
The engine (index and query encoder) is loaded once and shared by every session; an
upload or re-scan builds a new engine and swaps it in under a lock, while each request
works on the snapshot it took when it started. Per-user state (the conversation) lives in
the browser session, never in module globals.

Besides the page, the app offers two API endpoints for scripts (``gradio_client``):
``/ask`` (question, mode, k, threshold, history → the result as a dict, as ``qa ask --json``)
and ``/documents`` (the indexed documents).

The server answers only requests addressed to a host name it was started for (127.0.0.1,
localhost, ::1 and ``--host``) and coming from no other web origin: anything else gets
HTTP 403 before Gradio sees it, which shuts out DNS rebinding and cross-site requests.
"""

from __future__ import annotations

import argparse
import html
import ipaddress
import logging
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import unicodedata
import uuid
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from starlette.datastructures import Headers  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402

from qa.options import OneLineParser, add_settings_arguments, settings_from  # noqa: E402
from qa.config import MAX_QUESTION_CHARS, MODES, Settings  # noqa: E402
from qa.index import documents_summary, stderr_log  # noqa: E402
from qa.load import SUFFIXES, file_hash, fingerprint, load_document  # noqa: E402
from qa.pipeline import Engine, ask, open_engine  # noqa: E402
from qa.pipeline import threshold as effective_threshold  # noqa: E402
from qa.present import answer_html, answer_label, passage_html, to_dict  # noqa: E402
from qa.datatypes import Citation, QAError, Result  # noqa: E402

HOST = "127.0.0.1"
PORT = 7860
CONCURRENCY = 4  # questions answered at the same time
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_NAME_CHARS = 120
MAX_K = 20
EXAMPLES = [
    "How many drones has Russia purchased from Iran since 2022?",
    "Through which sea are Iranian drones shipped to Russia?",
    "What is Iran's interbank system called?",
]
UPLOAD_TYPES = sorted(set(SUFFIXES))
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")  # always accepted as the Host of a request
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # --host values that listen on every interface

log = logging.getLogger("qa.ui")

_engine: Engine | None = None
_engine_lock = threading.Lock()  # guards reads and swaps of _engine
_update_lock = threading.Lock()  # one corpus update (upload, re-scan) at a time

THEME = gr.themes.Soft(
    primary_hue="blue",
    font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
)

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
.qa-passage { margin: .5em 0 .2em 0; font-size: .92em; line-height: 1.5; }
.qa-none { font-weight: 600; }
.qa-error { color: #b91c1c; }
#chat .bubble-wrap { padding-top: 36px; }
#doc-table * { font-family: var(--font) !important; }
"""


# ---------------------------------------------------------------- the shared engine


def current_engine() -> Engine:
    """The live engine: a snapshot a request keeps until it is done."""
    with _engine_lock:
        if _engine is None:
            raise QAError("no index loaded yet")
        return _engine


def set_engine(engine: Engine) -> None:
    """Make ``engine`` the one new requests use."""
    global _engine
    with _engine_lock:
        _engine = engine


def reload_engine(settings: Settings, notes: list[str] | None = None) -> Engine:
    """Update the index of the corpus (incrementally) and swap in a fresh engine."""

    def note(msg: str) -> None:
        stderr_log(msg)
        if notes is not None and msg.startswith("warning:"):
            notes.append(msg.removeprefix("warning:").strip())

    with _engine_lock:
        previous = _engine
    same_model = previous is not None and (previous.settings.model, previous.settings.backend) == (
        settings.model, settings.backend)
    same_reader = previous is not None and previous.settings.reader == settings.reader
    engine = open_engine(settings, log=note, progress=True, encoder=previous.encoder if same_model else None,
                         reader=previous.reader if same_reader else None)
    set_engine(engine)
    return engine


# ---------------------------------------------------------------- answering


def request_settings(engine: Engine, mode: str | None = None, k: int | float | None = None,
                     threshold: float | None = None) -> Settings:
    """The engine's settings with one request's choices applied; QAError saying what is wrong with a bad one.

    None (and an empty mode) keeps the server's setting; k is a whole number from 1 to MAX_K
    and the threshold a number from 0 to 1 (numbers, or text holding one).
    """
    if mode is not None and mode != "" and (not isinstance(mode, str) or mode not in MODES):
        raise QAError(f"unknown mode {_shown(mode)}: expected one of {', '.join(MODES)}")
    return engine.settings.replace(
        mode=mode or None,
        k=_whole_number(k, "the number of passages k", 1, MAX_K),
        threshold=_fraction(threshold, "the threshold"),
    )


def _whole_number(value, what: str, low: int, high: int) -> int | None:
    number = _number(value)
    if number is None:
        return None
    if not (math.isfinite(number) and number == int(number) and low <= number <= high):
        raise QAError(f"{what} must be a whole number from {low} to {high}, not {_shown(value)}")
    return int(number)


def _fraction(value, what: str) -> float | None:
    number = _number(value)
    if number is None:
        return None
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise QAError(f"{what} must be a number from 0 to 1, not {_shown(value)}")
    return float(number)


def _number(value) -> float | None:
    """A request's number: None when not given, NaN when it is not a number at all."""
    if value is None:
        return None
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return math.nan
    return math.nan


def _shown(value) -> str:
    """A request's bad value, short, for an error message."""
    if value is None or isinstance(value, (str, int, float)):
        text = repr(value)
        return text if len(text) <= 40 else text[:39] + "…"
    return f"a {type(value).__name__}"


def check_history(history) -> list[str]:
    """The earlier questions of an API request (a list of strings, oldest first); QAError when malformed."""
    if history is None:
        return []
    if not isinstance(history, (list, tuple)):
        raise QAError(f"the history must be a list of earlier questions (strings), not {_shown(history)}")
    for i, item in enumerate(history, 1):
        if not isinstance(item, str):
            raise QAError(f"the history must be a list of earlier questions (strings), "
                          f"but item {i} is {_shown(item)}")
        if len(item) > MAX_QUESTION_CHARS:
            raise QAError(f"item {i} of the history is too long ({len(item):,} characters; "
                          f"at most {MAX_QUESTION_CHARS:,})")
    return list(history)


def respond(message: str, chat: list[dict], questions: list[str], mode: str, k: float,
            threshold: float) -> tuple[str, list[dict], list[str]]:
    """Chat handler: answer ``message`` in the context of this session's earlier questions."""
    question = (message or "").strip()
    if not question:
        gr.Warning("Type a question first.")
        return message, chat, questions
    shown = question if len(question) <= 300 else question[:300] + " …"
    chat = list(chat or []) + [{"role": "user", "content": html.escape(shown)}]
    try:
        engine = current_engine()
        result = ask(engine, question, history=list(questions or []),
                     settings=request_settings(engine, mode, k, threshold))
    except QAError as e:
        return "", chat + [{"role": "assistant", "content": error_html(e)}], questions
    except Exception:
        log.exception("answering %r failed", question)
        reply = error_html("something went wrong while answering; the error was logged on the server")
        return "", chat + [{"role": "assistant", "content": reply}], questions
    return "", chat + [{"role": "assistant", "content": reply_html(result)}], list(questions or []) + [question]


def respond_example(evt: gr.SelectData, chat: list[dict], questions: list[str], mode: str, k: float,
                    threshold: float) -> tuple[str, list[dict], list[str]]:
    """Answer the example question that was clicked."""
    value = evt.value if isinstance(evt.value, dict) else {"text": str(evt.value)}
    return respond(value.get("text", ""), chat, questions, mode, k, threshold)


def api_ask(question: str, mode: str | None = None, k: int | None = None, threshold: float | None = None,
            history: list[str] | None = None) -> dict:
    """Answer one question; returns the result as `qa ask --json` does (answers, citations, mode, timings).

    mode, k and threshold default to the server's settings; history holds earlier
    questions of the conversation, oldest first, for follow-up questions. A bad value gets
    an error saying what is wrong with it.
    """
    try:
        if question is not None and not isinstance(question, str):
            raise QAError(f"the question must be text, not {_shown(question)}")
        history = check_history(history)
        engine = current_engine()
        result = ask(engine, question, history=history, settings=request_settings(engine, mode, k, threshold))
    except QAError as e:
        raise gr.Error(_sentence(str(e))) from e
    return to_dict(result)


def api_documents() -> list[dict]:
    """The documents in the index: doc (file), title, passages."""
    return documents_summary(current_engine().index)


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
    where = html.escape(f"{c.doc}, line {c.line}")
    return (
        f'<details class="qa-cite"><summary><b>[{c.n}]</b> {title} <span class="qa-file">— {where}</span></summary>'
        f'<div class="qa-passage">{passage_html(c, result.answers)}</div></details>'
    )


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


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


# ---------------------------------------------------------------- documents and uploads


def safe_name(name: str) -> str:
    """A plain file name for an uploaded file (no folders, no hidden names); QAError when none is left."""
    base = unicodedata.normalize("NFC", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip()
    cleaned = re.sub(r"[^\w.\- ()]+", "_", base).strip(" .")
    if not cleaned or base.startswith(".") or set(cleaned) <= {".", "_", " "}:
        raise QAError(f"'{name}': not an acceptable file name")
    stem, suffix = os.path.splitext(cleaned)
    return stem[: MAX_NAME_CHARS - len(suffix)] + suffix


def add_uploads(paths: list[str], corpus: Path) -> tuple[list[str], list[str]]:
    """Copy the readable files among ``paths`` into ``corpus``: (names added, problems).

    Each file is checked first (name, type, size, readable as a document, not already
    in the corpus) on a temporary copy; a refused file leaves the corpus untouched. An
    existing document is never overwritten: a different file of the same name gets a
    numbered name.
    """
    corpus = Path(corpus)
    known = {digest: doc for doc, digest in fingerprint(corpus).items()}
    added: list[str] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="qa-upload-") as tmp:
        for i, path in enumerate(map(Path, paths)):
            try:
                name = _check_upload(path, Path(tmp) / str(i))
                digest = file_hash(path.read_bytes())
                if digest in known:
                    raise QAError(f"{name}: already in the corpus as {known[digest]}")
            except QAError as e:
                problems.append(str(e))
                continue
            target = _free_target(corpus, name)
            staged = corpus / f".upload-{uuid.uuid4().hex}.tmp"
            shutil.copyfile(path, staged)
            os.replace(staged, target)
            known[digest] = target.name
            added.append(target.name)
    return added, problems


def remove_uploads(names: list[str], corpus: Path) -> None:
    """Take back files that ``add_uploads`` added (when indexing them failed)."""
    for name in names:
        (Path(corpus) / name).unlink(missing_ok=True)


def _check_upload(path: Path, folder: Path) -> str:
    name = safe_name(path.name)
    if Path(name).suffix.lower() not in SUFFIXES:
        raise QAError(f"{name}: not a supported file type (use {', '.join(UPLOAD_TYPES)})")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise QAError(f"{name}: the upload could not be read") from e
    if size > MAX_UPLOAD_BYTES:
        raise QAError(f"{name}: too large ({size / 2**20:.1f} MB; at most {MAX_UPLOAD_BYTES // 2**20} MB)")
    folder.mkdir()
    copy = folder / name
    shutil.copyfile(path, copy)
    try:
        load_document(copy, folder)
    except QAError:
        raise
    except Exception as e:  # a parser choking on a damaged file: refuse it like any unreadable file
        raise QAError(f"{name}: unreadable ({e.__class__.__name__})") from e
    return name


def _free_target(corpus: Path, name: str) -> Path:
    stem, suffix = os.path.splitext(name)
    target, n = corpus / name, 1
    while target.exists():
        n += 1
        target = corpus / f"{stem}-{n}{suffix}"
    return target


def documents_view() -> tuple[str, list[list]]:
    """The documents panel: a summary line and one row per indexed document."""
    try:
        engine = current_engine()
    except QAError as e:
        return md_text(_sentence(str(e))), []
    rows = [[d["title"], d["doc"], d["passages"]] for d in documents_summary(engine.index)]
    passages = sum(r[2] for r in rows)
    summary = (f"**{len(rows)} document{'s' * (len(rows) != 1)}**, {passages:,} passages, "
               f"from the folder {md_code(str(Path(engine.settings.corpus).resolve()))}.")
    skipped = sorted(engine.index.manifest.get("skipped", {}))
    if skipped:
        summary += " Skipped as unreadable: " + ", ".join(md_code(s) for s in skipped) + "."
    return summary, rows


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


def upload_files(files: list[str] | None, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """Upload handler: check the files, copy the good ones into the corpus, update the index."""
    paths = [str(f) for f in files or []]
    if not paths:
        return gr.update(), *documents_view(), None
    progress(0, desc="Checking the files")
    with _update_lock:
        settings = current_engine().settings
        try:
            added, problems = add_uploads(paths, Path(settings.corpus))
        except QAError as e:
            added, problems = [], [str(e)]
        if added:
            progress(0.1, desc="Indexing")
            notes: list[str] = []
            try:
                engine = reload_engine(settings, notes)
            except Exception as e:
                log.exception("indexing the uploads failed")
                remove_uploads(added, Path(settings.corpus))
                reason = str(e) if isinstance(e, QAError) else e.__class__.__name__
                problems.append(f"indexing failed ({reason}), so the files were not added")
                added = []
            else:
                added = _indexed_uploads(added, engine, notes, problems)
    return _upload_message(added, problems), *documents_view(), None


def _indexed_uploads(added: list[str], engine: Engine, notes: list[str], problems: list[str]) -> list[str]:
    """The uploaded files the new index holds; one problem for each it skipped.

    Notes about other files (say a file dropped into the folder long ago that the index
    skips at every update) are not this upload's business and are left out.
    """
    skipped = set(engine.index.manifest.get("skipped", {}))
    for name in added:
        if name in skipped:
            why = next((n.removeprefix("skipped ") for n in notes if n.startswith(f"skipped {name}: ")),
                       f"{name}: unreadable")
            problems.append(f"{why} (it is in the corpus folder but was not indexed)")
    return [name for name in added if name not in skipped]


def rescan_corpus(progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """Index whatever changed in the corpus folder since start-up (files dropped in by hand)."""
    progress(0, desc="Scanning the corpus folder")
    notes: list[str] = []
    with _update_lock:
        try:
            reload_engine(current_engine().settings, notes)
        except QAError as e:
            return f"**Error:** {md_text(_sentence(str(e)))}", *documents_view()
    msg = "The index is up to date with the corpus folder."
    if notes:
        msg += "\n\n**Skipped:**\n" + "\n".join(f"- {md_text(n)}" for n in notes)
    return msg, *documents_view()


def _upload_message(added: list[str], problems: list[str]) -> str:
    parts = []
    if added:
        names = ", ".join(md_code(n) for n in added)
        parts.append(f"**Added and indexed** {names}: you can ask about {'it' if len(added) == 1 else 'them'} now.")
    if problems:
        head = "**Some files were not added:**" if added else "**Nothing was added:**"
        parts.append(head + "\n" + "\n".join(f"- {md_text(p)}" for p in problems))
    return "\n\n".join(parts)


# ---------------------------------------------------------------- the page


def build_app(engine_or_settings: Engine | Settings) -> gr.Blocks:
    """The page and its API; loads the engine (building the index if needed) when given settings."""
    engine = engine_or_settings
    if isinstance(engine, Settings):
        engine = open_engine(engine, progress=True)
    set_engine(engine)
    s = engine.settings

    with gr.Blocks(title="Ask the documents", analytics_enabled=False) as demo:
        gr.Markdown("## Ask the documents\nAnswers are quoted word for word from the documents, "
                    "with numbered sources you can open.")
        questions = gr.State([])
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chatbot = gr.Chatbot(
                    show_label=False,
                    height=620,
                    render_markdown=False,
                    sanitize_html=True,
                    feedback_options=None,
                    buttons=[],
                    placeholder="**Ask a question about the documents.** Follow-up questions "
                                "(“Which port do they arrive at?”) take the conversation into account.",
                    examples=[{"text": q} for q in EXAMPLES],
                    elem_id="chat",
                )
                with gr.Row():
                    question = gr.Textbox(placeholder="Ask a question…", show_label=False, lines=1,
                                          submit_btn="Ask", scale=8, elem_id="question", autofocus=True)
                    new_chat = gr.Button("New conversation", scale=0, min_width=220, variant="secondary")
                with gr.Accordion("Settings", open=False):
                    with gr.Row():
                        mode = gr.Radio(list(MODES), value=s.mode, label="Retrieval mode",
                                        info="hybrid: keywords and meaning; bm25: keywords; dense: meaning")
                        k = gr.Slider(1, MAX_K, value=s.k, step=1, label="Passages retrieved (k)")
                        threshold = gr.Slider(0.0, 1.0, value=effective_threshold(engine, s), step=0.01,
                                              label="Abstention threshold",
                                              info="Below this probability of being right, the answer is "
                                                   "“not in the documents” (default: the calibrated value)")
            with gr.Tab("Documents", id="documents"):
                summary = gr.Markdown(elem_id="doc-summary")
                docs = gr.Dataframe(headers=["Title", "File", "Passages"], datatype=["str", "str", "number"],
                                    interactive=False, wrap=True, elem_id="doc-table")
                upload = gr.File(label=f"Add documents: .txt, .md, .html or .pdf, up to "
                                       f"{MAX_UPLOAD_BYTES // 2**20} MB each",
                                 file_count="multiple", file_types=UPLOAD_TYPES, type="filepath", elem_id="upload")
                status = gr.Markdown(elem_id="upload-status")
                rescan = gr.Button("Re-scan the corpus folder", variant="secondary")

        chat_inputs = [question, chatbot, questions, mode, k, threshold]
        chat_outputs = [question, chatbot, questions]
        question.submit(respond, chat_inputs, chat_outputs, api_visibility="private")
        chatbot.example_select(respond_example, chat_inputs[1:], chat_outputs, api_visibility="private")
        new_chat.click(lambda: ("", [], []), None, chat_outputs, api_visibility="private", queue=False)
        chatbot.clear(lambda: [], None, questions, api_visibility="private", queue=False)
        demo.load(documents_view, None, [summary, docs], api_visibility="private")
        upload.upload(upload_files, upload, [status, summary, docs, upload], api_visibility="private",
                      concurrency_limit=1, concurrency_id="corpus", show_progress_on=upload)
        rescan.click(rescan_corpus, None, [status, summary, docs], api_visibility="private",
                     concurrency_limit=1, concurrency_id="corpus", show_progress_on=status)
        gr.api(api_ask, api_name="ask")
        gr.api(api_documents, api_name="documents")
    return demo


def launch(demo: gr.Blocks, host: str = HOST, port: int = PORT) -> None:
    """Serve ``demo`` on ``host``:``port`` until stopped (Ctrl+C or SIGTERM); OSError when the port is taken."""
    server, sock = make_server(demo, host, port)
    print(f"* Running on local URL:  {local_url(host, sock.getsockname()[1])}", flush=True)
    server.run(sockets=[sock])


def make_server(demo: gr.Blocks, host: str = HOST, port: int = PORT) -> tuple[uvicorn.Server, socket.socket]:
    """A server for ``demo`` and its socket, already bound (port 0: any free port); OSError when taken.

    Run it with ``server.run(sockets=[sock])``; set ``server.should_exit`` to stop it.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    config = uvicorn.Config(asgi_app(demo, host, port), log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=3)  # then open event streams (browser tabs) are cut
    return uvicorn.Server(config), sock


def asgi_app(demo: gr.Blocks, host: str = HOST, port: int = PORT) -> HostGuard:
    """The page as an ASGI app: Gradio mounted at / of a FastAPI app, behind the HostGuard."""
    demo.queue(default_concurrency_limit=CONCURRENCY)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    gr.mount_gradio_app(app, demo, "/", server_name=host, server_port=port, theme=THEME, css=CSS,
                        max_file_size=MAX_UPLOAD_BYTES, footer_links=["api"], show_error=False)
    return HostGuard(app, host)


def local_url(host: str, port: int) -> str:
    """The address to open the page at, for the log."""
    name = "localhost" if host in WILDCARD_HOSTS else host
    return f"http://[{name}]:{port}/" if ":" in name else f"http://{name}:{port}/"


class HostGuard:
    """ASGI middleware: HTTP 403, before the app sees it, for a request this server must not answer.

    The Host header must name this server: 127.0.0.1, localhost, ::1 or the host it was
    started for (any port). A page on another site whose name an attacker points at this
    machine (DNS rebinding) sends its own name as Host, so it is shut out. When the server
    listens on every interface (--host 0.0.0.0 or ::), the machine's own name and any IP
    address are accepted too: rebinding needs a DNS name, and the page must stay reachable
    from other machines. A request that carries an Origin header (browsers send one with
    cross-site and most same-site requests) must come from a page of this very server, so
    no other site gets an answer or a CORS header allowing it to read one.
    """

    def __init__(self, app, host: str = HOST):
        self.app = app
        self.names = {_normal_host(n) for n in (*LOOPBACK_NAMES, host) if n not in WILDCARD_HOSTS}
        self.any_ip = host in WILDCARD_HOSTS
        if self.any_ip:
            self.names.add(_normal_host(socket.gethostname()))

    def refusal(self, headers: Headers) -> str | None:
        """Why a request with these headers is refused; None when it is accepted."""
        hosts = headers.getlist("host")
        if len(hosts) != 1:
            return "one Host header expected"
        host = hosts[0].strip().lower()
        name = _host_name(host)
        if name is None or not (name in self.names or (self.any_ip and _is_ip(name))):
            return "unknown host"
        for origin in headers.getlist("origin"):
            parts = _split_origin(origin)
            if parts is None or parts[1] != host:
                return "cross-origin request"
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            why = self.refusal(Headers(scope=scope))
            if why is not None:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await PlainTextResponse(f"Forbidden: {why}.", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


_HOST_HEADER = re.compile(r"(\[[0-9a-f:.]+\]|[^\s/\\?#@:\[\]]+)(?::[0-9]{1,5})?")


def _host_name(host: str) -> str | None:
    """The host name of a Host header value (lower-case, IPv6 without brackets); None when malformed."""
    m = _HOST_HEADER.fullmatch(host.lower())
    return _normal_host(m.group(1)) if m else None


def _normal_host(name: str) -> str:
    name = name.lower().strip("[]")
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _split_origin(origin: str) -> tuple[str, str] | None:
    """(scheme, host[:port]) of an Origin header, lower-case; None for "null" or anything malformed."""
    try:
        parts = urlsplit(origin.strip().lower())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query or parts.fragment:
        return None
    return parts.scheme, parts.netloc


def main(args: argparse.Namespace | None = None) -> int:
    """Load the engine (building the index if needed) and serve the page; ``qa serve`` calls this."""
    args = args if args is not None else build_parser().parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        demo = build_app(settings_from(args))
    except QAError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        launch(demo, getattr(args, "host", None) or HOST, getattr(args, "port", None) or PORT)
    except OSError as e:  # e.g. the port is taken
        print(f"error: cannot start the server: {e}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python ui.py``: those of ``qa serve``."""
    parser = OneLineParser(prog="ui.py", description="Serve the question-answering chat page.")
    parser.add_argument("--host", default=HOST, help=f"address to bind (default: {HOST}; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=PORT, help=f"port (default: {PORT})")
    add_settings_arguments(parser)
    return parser


if __name__ == "__main__":
    sys.exit(main())
