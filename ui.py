"""The chat web page: ask the documents, read quoted answers with their sources, add documents.

Run with ``qa serve`` or ``python ui.py [--host H] [--port P] [settings options]``.
The engine (index and query encoder) is loaded once and shared by every session; an
upload or re-scan builds a new engine and swaps it in under a lock, while each request
works on the snapshot it took when it started. Per-user state (the conversation) lives in
the browser session, never in module globals.

Besides the page, the app offers two API endpoints for scripts (``gradio_client``):
``/ask`` (question, mode, k, threshold, history → the result as a dict, as ``qa ask --json``)
and ``/documents`` (the indexed documents).
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import unicodedata
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from qa.cli import OneLineParser, add_settings_arguments, settings_from  # noqa: E402
from qa.config import MODES, Settings  # noqa: E402
from qa.index import documents_summary, stderr_log  # noqa: E402
from qa.load import SUFFIXES, file_hash, fingerprint, load_document  # noqa: E402
from qa.pipeline import Engine, ask, open_engine  # noqa: E402
from qa.present import answer_html, confidence_label, passage_html, to_dict  # noqa: E402
from qa.types import Citation, QAError, Result  # noqa: E402

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
    engine = open_engine(settings, log=note, progress=True, encoder=previous.encoder if same_model else None)
    set_engine(engine)
    return engine


# ---------------------------------------------------------------- answering


def request_settings(engine: Engine, mode: str | None = None, k: int | float | None = None,
                     threshold: float | None = None) -> Settings:
    """The engine's settings with one request's choices applied; QAError when one is out of range."""
    if mode and mode not in MODES:
        raise QAError(f"unknown mode '{mode}': expected one of {', '.join(MODES)}")
    if k is not None and not 1 <= int(k) <= MAX_K:
        raise QAError(f"k must be between 1 and {MAX_K}")
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise QAError("the threshold must be between 0 and 1")
    return engine.settings.replace(
        mode=mode or None,
        k=int(k) if k is not None else None,
        threshold=float(threshold) if threshold is not None else None,
    )


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
    questions of the conversation, oldest first, for follow-up questions.
    """
    try:
        engine = current_engine()
        result = ask(engine, question, history=list(history or []),
                     settings=request_settings(engine, mode, k, threshold))
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
    parts = [f'<p class="qa-answer">{answer_html(best)}{_ref(best.citation)}</p>', _confidence(best.score)]
    for a in more:
        parts.append(f'<div class="qa-also"><p>{answer_html(a)}{_ref(a.citation)}</p>{_confidence(a.score)}</div>')
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


def _confidence(score: float) -> str:
    label = confidence_label(score)
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
        return _sentence(str(e)), []
    rows = [[d["title"], d["doc"], d["passages"]] for d in documents_summary(engine.index)]
    passages = sum(r[2] for r in rows)
    summary = (f"**{len(rows)} document{'s' * (len(rows) != 1)}**, {passages:,} passages, "
               f"from the folder `{html.escape(str(Path(engine.settings.corpus).resolve()))}`.")
    skipped = sorted(engine.index.manifest.get("skipped", {}))
    if skipped:
        summary += " Skipped as unreadable: " + ", ".join(f"`{html.escape(s)}`" for s in skipped) + "."
    return summary, rows


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
            try:
                reload_engine(settings, problems)
            except Exception as e:
                log.exception("indexing the uploads failed")
                remove_uploads(added, Path(settings.corpus))
                reason = str(e) if isinstance(e, QAError) else e.__class__.__name__
                problems.append(f"indexing failed ({reason}), so the files were not added")
                added = []
    return _upload_message(added, problems), *documents_view(), None


def rescan_corpus(progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """Index whatever changed in the corpus folder since start-up (files dropped in by hand)."""
    progress(0, desc="Scanning the corpus folder")
    notes: list[str] = []
    with _update_lock:
        try:
            reload_engine(current_engine().settings, notes)
        except QAError as e:
            return f"**Error:** {html.escape(_sentence(str(e)))}", *documents_view()
    msg = "The index is up to date with the corpus folder."
    if notes:
        msg += "\n\n**Skipped:**\n" + "\n".join(f"- {html.escape(n)}" for n in notes)
    return msg, *documents_view()


def _upload_message(added: list[str], problems: list[str]) -> str:
    parts = []
    if added:
        names = ", ".join(f"`{n}`" for n in added)
        parts.append(f"**Added and indexed** {names}: you can ask about {'it' if len(added) == 1 else 'them'} now.")
    if problems:
        head = "**Some files were not added:**" if added else "**Nothing was added:**"
        parts.append(head + "\n" + "\n".join(f"- {html.escape(p)}" for p in problems))
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
                        threshold = gr.Slider(0.0, 1.0, value=s.threshold, step=0.01, label="Abstention threshold",
                                              info="Below this confidence the answer is “not in the documents”")
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


def launch(demo: gr.Blocks, host: str = HOST, port: int = PORT, **kwargs) -> None:
    """Start serving ``demo`` (blocks until stopped unless ``prevent_thread_lock=True``)."""
    demo.queue(default_concurrency_limit=CONCURRENCY)
    demo.launch(server_name=host, server_port=port, theme=THEME, css=CSS, max_file_size=MAX_UPLOAD_BYTES,
                footer_links=["api"], show_error=False, **kwargs)


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
