"""The chat web page: ask the documents, read quoted answers with their sources, add documents.

Run with ``qa serve`` or ``python ui.py [--host H] [--port P] [settings options]``.
A ``WebApp`` holds the engine (index and query encoder), loaded once and shared by every
session; an upload or re-scan builds a new engine and swaps it in, while each request
works on the snapshot it took when it started. Per-user state (the conversation) lives in
the browser session, never in the app.

Besides the page, the app offers two API endpoints for scripts (``gradio_client``):
``/ask`` (question, mode, k, threshold, history → the result as a dict, as ``qa ask --json``)
and ``/documents`` (the indexed documents). The page is laid out in ``qa.web_layout``, what
it shows is made in ``qa.web_page``, uploads are checked in ``qa.web_uploads``, a request's
choices in ``qa.web_requests``, and ``qa.web_server`` serves it all behind a guard against
foreign hosts and origins.
"""

from __future__ import annotations

import argparse
import html
import logging
import re
import sys
import tempfile
import threading
from pathlib import Path

from qa.web_server import check_port, launch  # first: it sets Gradio's environment before Gradio is imported

import gradio as gr  # noqa: E402

from qa.config import UPLOADS, Settings  # noqa: E402
import qa.build  # noqa: E402
from qa.build import drop_warmed, warm_cache  # noqa: E402
from qa.datatypes import Document, QAError  # noqa: E402
from qa.index import documents_summary, stderr_log  # noqa: E402
from qa.manifest import staleness  # noqa: E402
from qa.options import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, HOST, PORT, SERVE_DESCRIPTION,  # noqa: E402
                        OneLineParser, add_serve_arguments, settings_from)
from qa.pipeline import Engine, ask, open_engine  # noqa: E402
from qa.present import to_dict  # noqa: E402
from qa.transcript import conversation_json, conversation_markdown  # noqa: E402
from qa.watch import CorpusWatch  # noqa: E402
from qa.web_layout import page  # noqa: E402
from qa.web_page import (documents_summary_md, error_html, md_code, md_text, reply_html,  # noqa: E402
                         rescan_message, sentence, upload_message)
from qa.web_requests import check_history, check_question_type, request_settings  # noqa: E402
from qa.web_uploads import place_uploads, remove_upload, remove_uploads, stage_uploads, uploaded  # noqa: E402

log = logging.getLogger("qa.web")


class WebApp:
    """The page's shared state: the live engine, and the locks that guard its swaps.

    Every handler of the page and of the API is a method; ``page()`` lays them out.
    """

    def __init__(self, engine: Engine):
        self._engine = engine
        self._engine_lock = threading.Lock()  # guards reads and swaps of _engine
        self._update_lock = threading.Lock()  # one index update (upload, re-scan) at a time
        self._indexing_encoder = None  # (model, backend, precision), the encoder: for uploads, loaded on first use
        self._encoder_lock = threading.Lock()  # guards loading it (questions never wait for that)
        self.watch = CorpusWatch()
        self._export_dir = Path(tempfile.mkdtemp(prefix="qa-export-"))

    # ------------------------------------------------------------ the shared engine

    @property
    def engine(self) -> Engine:
        """The live engine: a snapshot a request keeps until it is done."""
        with self._engine_lock:
            return self._engine

    def set_engine(self, engine: Engine) -> None:
        """Make ``engine`` the one new requests use."""
        with self._engine_lock:
            self._engine = engine

    def reload(self, settings: Settings, notes: list[str] | None = None,
               loaded: dict[str, Document] | None = None) -> Engine:
        """Update the index of the corpus (incrementally) and swap in a fresh engine.

        ``loaded``: documents already read, by id, which the build need not read again."""

        def note(msg: str) -> None:
            stderr_log(msg)
            if notes is not None and msg.startswith("warning:"):
                notes.append(msg.removeprefix("warning:").strip())

        previous = self.engine
        same_model = (previous.settings.model, previous.settings.backend) == (settings.model, settings.backend)
        same_reader = previous.settings.reader == settings.reader
        engine = open_engine(settings, log=note, progress=True, encoder=previous.encoder if same_model else None,
                             reader=previous.reader if same_reader else None, loaded=loaded)
        self.set_engine(engine)
        return engine

    # ------------------------------------------------------------ answering

    def respond(self, message: str, chat: list[dict], questions: list[str], transcript: list[dict], mode: str,
                k: float, threshold: float) -> tuple[str, list[dict], list[str], list[dict]]:
        """Chat handler: answer ``message`` in the context of this session's earlier questions.

        ``questions`` holds each earlier question as it was searched (a follow-up with its
        context), ``transcript`` each reply as ``qa ask --json`` gives it (for the export)."""
        question = (message or "").strip()
        if not question:
            gr.Warning("Type a question first.")
            return message, chat, questions, transcript
        shown = question if len(question) <= 300 else question[:300] + " …"
        chat = list(chat or []) + [{"role": "user", "content": html.escape(shown)}]
        try:
            self.refresh()
            engine = self.engine
            result = ask(engine, question, history=list(questions or []),
                         settings=request_settings(engine.settings, mode, k, threshold))
        except QAError as e:
            return "", chat + [{"role": "assistant", "content": error_html(e)}], questions, transcript
        except Exception:
            log.exception("answering %r failed", question)
            reply = error_html("something went wrong while answering; the error was logged on the server")
            return "", chat + [{"role": "assistant", "content": reply}], questions, transcript
        searched = result.understood.query if result.understood else question
        return ("", chat + [{"role": "assistant", "content": reply_html(result)}],
                list(questions or []) + [searched], list(transcript or []) + [to_dict(result)])

    def turn(self, message: str, chat: list[dict], questions: list[str], transcript: list[dict], mode: str,
             k: float, threshold: float, request: gr.Request | None = None) -> tuple:
        """One turn of the page's chat: ``respond``, then the export buttons made for the new
        conversation, in one event (so an export never lags behind the last reply)."""
        box, chat, questions, transcript = self.respond(message, chat, questions, transcript, mode, k, threshold)
        return box, chat, questions, transcript, *self.exports(transcript, request)

    def exports(self, transcript: list[dict], request: gr.Request | None = None) -> tuple:
        """The export buttons: the conversation as Markdown and as JSON files (none while it is empty)."""
        if not transcript:
            return gr.update(value=None, interactive=False), gr.update(value=None, interactive=False)
        session = re.sub(r"\W", "", getattr(request, "session_hash", "") or "") or "session"
        folder = self._export_dir / session
        folder.mkdir(parents=True, exist_ok=True)
        md, js = folder / "conversation.md", folder / "conversation.json"
        md.write_text(conversation_markdown(transcript), encoding="utf-8")
        js.write_text(conversation_json(transcript), encoding="utf-8")
        return gr.update(value=str(md), interactive=True), gr.update(value=str(js), interactive=True)

    def refresh(self) -> None:
        """Index what changed in the corpus folder since the last look (files added, changed or
        removed by hand), before a question is answered; at most every ``CORPUS_CHECK_S`` seconds
        (a stat of each file, as git does). The question that notices waits for the update; while
        an update runs (an upload's, a re-scan's, another question's) the others are answered from
        the index as it is, instead of queueing behind it. A failed update keeps the index as it was."""
        settings = self.engine.settings
        if not self.watch.changed(settings) or not self._update_lock.acquire(blocking=False):
            return
        try:
            if staleness(settings):
                self.reload(settings)
        except QAError as e:
            log.warning("the corpus folder changed but could not be indexed: %s", e)
        finally:
            self._update_lock.release()

    def api_ask(self, question: str, mode: str | None = None, k: int | None = None, threshold: float | None = None,
                history: list[str] | None = None) -> dict:
        """Answer one question; returns the result as `qa ask --json` does (answers, citations, mode, timings).

        mode, k and threshold default to the server's settings; history holds earlier
        questions of the conversation, oldest first, for follow-up questions. A bad value gets
        an error saying what is wrong with it.
        """
        try:
            check_question_type(question)
            history = check_history(history)
            self.refresh()
            engine = self.engine
            result = ask(engine, question, history=history,
                         settings=request_settings(engine.settings, mode, k, threshold))
        except QAError as e:
            raise gr.Error(sentence(str(e))) from e
        return to_dict(result)

    def api_documents(self) -> list[dict]:
        """The documents in the index: doc (file), title, passages."""
        return documents_summary(self.engine.index)

    # ------------------------------------------------------------ documents and uploads

    def documents_view(self) -> tuple[str, list[list]]:
        """The documents panel: a summary line and one row per indexed document."""
        engine = self.engine
        rows = [[d["title"], d["doc"], d["passages"]] for d in documents_summary(engine.index)]
        folder = str(Path(engine.settings.corpus).resolve())
        return documents_summary_md(rows, folder, sorted(engine.index.manifest.get("skipped", {}))), rows

    def upload_files(self, files: list[str] | None, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
        """Upload handler: check and read the files, encode them, then add them to the corpus and the index.

        Only the last step holds the update lock, and by then every vector is in the embedding cache
        and every document read, so it is short whatever the size of the upload: a large upload
        never keeps another user's upload waiting for its reading or encoding, and questions are
        answered from the current index all along.
        """
        paths = [str(f) for f in files or []]
        if not paths:
            return gr.update(), *self.documents_view(), None
        progress(0, desc="Checking the files")
        settings = self.engine.settings
        corpus = Path(settings.corpus)
        added: list[str] = []
        warmed: list[list[Path]] = []  # the cache shards of each staged file
        with tempfile.TemporaryDirectory(prefix="qa-upload-") as tmp:
            staged, problems = stage_uploads(paths, corpus, corpus / UPLOADS, Path(tmp))
            try:
                if staged:
                    progress(0.1, desc="Encoding")
                    for item in staged:
                        warmed.append(warm_cache(settings, [item.doc], encoder=self._indexer(settings),
                                                 log=stderr_log, progress=True))
                    progress(0.9, desc="Indexing")
                    with self._update_lock:
                        added, more, loaded = place_uploads(staged, corpus, corpus / UPLOADS, self._indexed_digests())
                        problems += more
                        if added:
                            notes: list[str] = []
                            try:
                                engine = self.reload(settings, notes, loaded=loaded)
                            except BaseException:
                                remove_uploads(added, corpus)
                                raise
                            added = _indexed_uploads(added, engine, notes, problems)
            except Exception as e:
                log.exception("indexing the uploads failed")
                reason = str(e) if isinstance(e, QAError) else e.__class__.__name__
                problems.append(f"indexing failed ({reason}), so the files were not added")
                added = []
            indexed = {meta["sha256"] for meta in self.engine.index.manifest["docs"].values()}
            for item, shards in zip(staged, warmed):
                if item.doc.sha256 not in indexed:  # refused, or the build failed: its vectors are not needed
                    drop_warmed(shards)
        return upload_message(added, problems), *self.documents_view(), None

    def _indexed_digests(self) -> dict[str, str]:
        """sha256 -> document id of every file the live index holds (or skipped)."""
        manifest = self.engine.index.manifest
        return {**{v: k for k, v in manifest.get("skipped", {}).items()},
                **{meta["sha256"]: doc for doc, meta in manifest["docs"].items()}}

    def _indexer(self, settings: Settings):
        """The encoder that indexes (the index's model, backend and precision), loaded once."""
        key = (settings.model, settings.backend, settings.precision)
        with self._encoder_lock:
            if self._indexing_encoder is None or self._indexing_encoder[0] != key:
                self._indexing_encoder = (key, qa.build.indexing_encoder(settings))
            return self._indexing_encoder[1]

    def rescan_corpus(self, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
        """Index whatever changed in the corpus folder since start-up (files dropped in by hand)."""
        progress(0, desc="Scanning the corpus folder")
        notes: list[str] = []
        with self._update_lock:
            try:
                self.reload(self.engine.settings, notes)
            except QAError as e:
                return f"**Error:** {md_text(sentence(str(e)))}", *self.documents_view()
        return rescan_message(notes), *self.documents_view()

    def remove_document(self, doc: str | None) -> tuple:
        """Confirmed removal of an uploaded document: delete the file and update the index at once."""
        if not doc:
            return "Choose an uploaded document to remove first.", *self.documents_view(), *self.removal_view()
        with self._update_lock:
            settings = self.engine.settings
            try:
                remove_upload(doc, Path(settings.corpus))
                self.reload(settings)
            except QAError as e:
                return f"**Not removed:** {md_text(sentence(str(e)))}", *self.documents_view(), *self.removal_view()
        return (f"**Removed** {md_code(doc)}: it is no longer in the corpus folder or the index.",
                *self.documents_view(), *self.removal_view())

    def removal_view(self) -> tuple:
        """The removal controls: the uploaded documents to choose from; the confirmation hidden."""
        docs = uploaded([d["doc"] for d in documents_summary(self.engine.index)])
        return gr.update(choices=docs, value=None, interactive=bool(docs)), gr.update(visible=False)

    # ------------------------------------------------------------ the page

    def page(self) -> gr.Blocks:
        """The page and its API (laid out in ``qa.web_layout``)."""
        return page(self)


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


def build_app(engine_or_settings: Engine | Settings) -> WebApp:
    """The app around an engine; given settings, loads the engine first (building the index if needed)."""
    engine = engine_or_settings
    if isinstance(engine, Settings):
        engine = open_engine(engine, progress=True)
    return WebApp(engine)


def main(args: argparse.Namespace | None = None) -> int:
    """Load the engine (building the index if needed) and serve the page; ``qa serve`` calls this."""
    args = args if args is not None else build_parser().parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    host = getattr(args, "host", None) or HOST
    port = PORT if getattr(args, "port", None) is None else args.port
    try:
        check_port(host, port)  # before the engine loads: that can take a while
        demo = build_app(settings_from(args)).page()
        launch(demo, host, port)
    except OSError as e:  # the port is taken, a full disk (IndexWriteError), ...: not the input's fault
        print(f"error: cannot start the server: {e if isinstance(e, QAError) else e.strerror or e}", file=sys.stderr)
        return EXIT_FAILED
    except QAError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def build_parser(prog: str = "ui.py") -> argparse.ArgumentParser:
    """The options of ``python ui.py``: those of ``qa serve``."""
    parser = OneLineParser(prog=prog, description=SERVE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="exit statuses: as `qa --help` lists them\n\nexamples:\n"
                                  "  python ui.py                                  # http://127.0.0.1:7860/\n"
                                  "  python ui.py --port 8080 --corpus reports/ --index reports-index/")
    add_serve_arguments(parser)
    return parser
