"""The chat page (qa.web) against hostile web input: requests for foreign host names or from other
sites (DNS rebinding, cross-site requests), malformed ``/ask`` arguments, and file names made of
markup.

The server is the one ``python ui.py`` runs (``qa.web_server.make_server``: Gradio mounted behind
``HostGuard``), started in this process on a free loopback port around an engine that needs
no model, so these tests are fast and offline; the answering itself is replaced where a test
needs an answer. Requests are plain HTTP (http.client) and ``gradio_client``.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from markdown_it import MarkdownIt
from starlette.datastructures import Headers
from test_ui import Server, client, free_port

from qa import web, web_page, web_requests, web_server, web_uploads
from qa.config import Settings
from qa.load import load_document
from qa.pipeline import Engine
from qa.datatypes import QAError, Result

pytestmark = pytest.mark.e2e

HOSTILE = "<img src=x onerror=alert(1)>.md"
GOOD_DOC = "radar.txt"
ASK_API = "/gradio_api/call/ask"
UPLOAD_API = "/gradio_api/upload"


def fake_engine(corpus: Path, index: Path, docs: dict[str, int], skipped: list[str]) -> Engine:
    """An engine whose index is just a manifest: enough for the page, the documents panel and uploads."""
    manifest = {"docs": {d: {"title": Path(d).stem.title(), "passages": n, "sha256": f"{i:064x}"}
                         for i, (d, n) in enumerate(docs.items())},
                "skipped": {s: "0" * 64 for s in skipped}}
    return Engine(Settings(corpus=corpus, index=index), SimpleNamespace(manifest=manifest), None)


def render(markdown: str) -> str:
    """The HTML a CommonMark renderer (as the page's) makes of a Markdown message."""
    return MarkdownIt("commonmark").render(markdown)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The page served by ``web_server.make_server`` on 127.0.0.1, with an unreadable file named as markup in its corpus."""
    base = tmp_path_factory.mktemp("hostile")
    corpus, index = base / "corpus", base / "index"
    corpus.mkdir()
    (corpus / GOOD_DOC).write_text("Zorvath radar\n\nThe Zorvath-9 radar was delivered to Kazan in 2031.\n")
    (corpus / HOSTILE).write_bytes(b"\x00\x01\x02 not text")
    app = web.build_app(fake_engine(corpus, index, {GOOD_DOC: 1}, [HOSTILE]))
    server, sock = web_server.make_server(app.page(), "127.0.0.1", 0)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        url = f"http://127.0.0.1:{port}/"
        yield SimpleNamespace(port=port, server=Server(url, corpus, index, log=base / "unused.log"))  # logs: stderr
    finally:
        server.should_exit = server.force_exit = True  # no waiting for open event streams
        thread.join(timeout=30)
    assert not thread.is_alive()


def request(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None):
    """One plain HTTP request to 127.0.0.1:port with exactly these headers: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("access-control-")}


@pytest.fixture(scope="module")
def api(site):
    """A ``gradio_client`` connected to the site, as scripts use the /ask API."""
    c = client(site.server)
    yield c
    c.close()


@pytest.fixture
def no_answering(monkeypatch):
    """Fail the test if a request gets as far as answering a question."""
    calls = []
    monkeypatch.setattr(web, "ask", lambda *a, **kw: calls.append((a, kw)))
    yield calls
    assert calls == []


# ---------------------------------------------------------------- host names and origins (DNS rebinding)


ASK_BODY = b'{"data": ["When was the radar delivered?", null, null, null, null]}'
UPLOAD_TYPE = {"Content-Type": "multipart/form-data; boundary=b"}
UPLOAD_BODY = b'--b\r\nContent-Disposition: form-data; name="files"; filename="x.txt"\r\n\r\nA new fact.\r\n--b--\r\n'
FOREIGN_REQUESTS = [
    ("GET", "/", {}, None),
    ("GET", "/config", {}, None),
    ("GET", "/gradio_api/info", {}, None),
    ("POST", ASK_API, {"Content-Type": "application/json"}, ASK_BODY),
    ("POST", UPLOAD_API, UPLOAD_TYPE, UPLOAD_BODY),
    ("OPTIONS", ASK_API, {"Access-Control-Request-Method": "POST"}, None),
]


@pytest.mark.parametrize("method,path,extra,body", FOREIGN_REQUESTS,
                         ids=[f"{m} {p}" for m, p, _, _ in FOREIGN_REQUESTS])
def test_a_foreign_host_gets_403_and_no_cors_header(site, no_answering, method, path, extra, body):
    evil = f"evil.example:{site.port}"
    status, headers, text = request(site.port, method, path,
                                    {"Host": evil, "Origin": f"http://{evil}", **extra}, body)
    assert (status, text) == (403, b"Forbidden: unknown host.")
    assert cors_headers(headers) == {}
    status, headers, text = request(site.port, method, path, {"Host": evil, **extra}, body)  # no Origin either
    assert (status, text, cors_headers(headers)) == (403, b"Forbidden: unknown host.", {})


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "localhost.evil.example",
                                  "evil.example@127.0.0.1", "10.0.0.8", "[::2]", "127.0.0.1 evil", ""])
def test_only_the_servers_own_host_names_are_answered(site, host):
    value = f"{host}:{site.port}" if host else ""
    status, headers, text = request(site.port, "GET", "/", {"Host": value})
    assert (status, text, cors_headers(headers)) == (403, b"Forbidden: unknown host.", {})


def test_a_request_without_a_host_header_gets_403(site):
    with socket.create_connection(("127.0.0.1", site.port), timeout=30) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")  # HTTP/1.0 may leave out Host; HTTP/1.1 must not
        reply = b"".join(iter(lambda: conn.recv(65536), b""))
    assert reply.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert reply.endswith(b"\r\n\r\nForbidden: one Host header expected.")
    assert b"access-control-" not in reply.lower()
    guard = web_server.HostGuard(None, "127.0.0.1")  # two Host headers (the HTTP parser already refuses them)
    assert guard.refusal(Headers(raw=[(b"host", b"127.0.0.1"), (b"host", b"evil.example")])) == (
        "one Host header expected")


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::1]", "LOCALHOST"])
def test_the_servers_own_host_names_get_the_page(site, name):
    host = f"{name}:{site.port}"
    status, headers, text = request(site.port, "GET", "/", {"Host": host})
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert b"Ask the documents" in text
    assert cors_headers(headers) == {}
    # a page of the server itself (same origin) may call it, and only its own origin is named
    status, headers, text = request(site.port, "GET", "/config", {"Host": host, "Origin": f"http://{host}"})
    assert (status, json.loads(text)["title"]) == (200, "Ask the documents")
    assert cors_headers(headers) == {"access-control-allow-credentials": "true",
                                     "access-control-allow-origin": f"http://{host}"}


def test_a_page_of_the_server_can_upload_and_ask(site, monkeypatch):
    monkeypatch.setattr(web, "ask", lambda engine, question, *, history=None, settings=None: Result(
        question, [], [], settings.mode, {"total": 1.0}, message="Not in the documents."))
    host = f"127.0.0.1:{site.port}"
    same_origin = {"Host": host, "Origin": f"http://{host}"}
    status, _, text = request(site.port, "POST", UPLOAD_API, {**same_origin, **UPLOAD_TYPE}, UPLOAD_BODY)
    assert status == 200 and json.loads(text)[0].endswith("/x.txt")
    status, _, text = request(site.port, "POST", ASK_API, {**same_origin, "Content-Type": "application/json"},
                              ASK_BODY)
    assert status == 200
    status, _, text = request(site.port, "GET", f"{ASK_API}/{json.loads(text)['event_id']}", same_origin)
    event, data = text.decode().strip().split("\n")
    assert (status, event) == (200, "event: complete")
    assert json.loads(data.removeprefix("data: "))[0]["message"] == "Not in the documents."


@pytest.mark.parametrize("origin", ["http://evil.example:{port}", "http://evil.example", "null", "file://",
                                    "http://localhost:{port}", "http://127.0.0.1:1", "http://127.0.0.1:{port}/x"])
def test_a_page_of_another_origin_gets_403_and_no_cors_header(site, no_answering, origin):
    headers = {"Host": f"127.0.0.1:{site.port}", "Origin": origin.format(port=site.port),
               "Content-Type": "application/json"}
    status, got, text = request(site.port, "POST", ASK_API, headers, ASK_BODY)
    assert (status, text, cors_headers(got)) == (403, b"Forbidden: cross-origin request.", {})
    preflight = {**headers, "Access-Control-Request-Method": "POST"}
    status, got, text = request(site.port, "OPTIONS", ASK_API, preflight)
    assert (status, text, cors_headers(got)) == (403, b"Forbidden: cross-origin request.", {})


def test_the_guard_accepts_the_host_it_was_started_for():
    def refusal(guard: web_server.HostGuard, host: str, origin: str | None = None) -> str | None:
        raw = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
        return guard.refusal(Headers(raw=raw))

    named = web_server.HostGuard(None, "qa.internal")
    assert refusal(named, "qa.internal:7860") is None
    assert refusal(named, "QA.Internal") is None
    assert refusal(named, "qa.internal:7860", "http://qa.internal:7860") is None
    assert refusal(named, "localhost:7860") is None
    assert refusal(named, "[0:0:0:0:0:0:0:1]:7860") is None
    assert refusal(named, "qa.internal:7860", "http://evil.example") == "cross-origin request"
    assert refusal(named, "evil.example:7860") == "unknown host"
    assert refusal(named, "192.168.1.20:7860") == "unknown host"

    ip = web_server.HostGuard(None, "192.168.1.20")
    assert refusal(ip, "192.168.1.20:7860") is None
    assert refusal(ip, "192.168.1.21:7860") == "unknown host"

    everywhere = web_server.HostGuard(None, "0.0.0.0")  # reachable from other machines by address or by name
    assert refusal(everywhere, "192.168.1.20:7860") is None
    assert refusal(everywhere, "[fe80::1]:7860") is None
    assert refusal(everywhere, f"{socket.gethostname()}:7860") is None
    assert refusal(everywhere, "192.168.1.20:7860", "http://192.168.1.20:7860") is None
    assert refusal(everywhere, "192.168.1.20:7860", "http://192.168.1.66:7860") == "cross-origin request"
    assert refusal(everywhere, "evil.example:7860") == "unknown host"
    assert refusal(everywhere, "0.0.0.0.evil.example") == "unknown host"


def test_a_taken_port_is_an_oserror():
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(OSError):
            web_server.make_server(web.WebApp(fake_engine(Path("corpus"), Path("index"), {}, [])).page(), "127.0.0.1",
                                  port)


# ---------------------------------------------------------------- /ask arguments


BAD_ASKS = [
    ({"k": "abc"}, "The number of passages k must be a whole number from 1 to 20, not 'abc'."),
    ({"k": 2.5}, "The number of passages k must be a whole number from 1 to 20, not 2.5."),
    ({"k": 0}, "The number of passages k must be a whole number from 1 to 20, not 0."),
    ({"k": 21}, "The number of passages k must be a whole number from 1 to 20, not 21."),
    ({"k": True}, "The number of passages k must be a whole number from 1 to 20, not True."),
    ({"k": [3]}, "The number of passages k must be a whole number from 1 to 20, not a list."),
    ({"threshold": "high"}, "The threshold must be a number from 0 to 1, not 'high'."),
    ({"threshold": 1.5}, "The threshold must be a number from 0 to 1, not 1.5."),
    ({"threshold": "nan"}, "The threshold must be a number from 0 to 1, not 'nan'."),
    ({"mode": "psychic"}, "Unknown mode 'psychic': expected one of hybrid, bm25, dense."),
    ({"mode": ["bm25"]}, "Unknown mode a list: expected one of hybrid, bm25, dense."),
    ({"history": "What is SEPAM?"},
     "The history must be a list of earlier questions (strings), not 'What is SEPAM?'."),
    ({"history": {"q": "What is SEPAM?"}}, "The history must be a list of earlier questions (strings), not a dict."),
    ({"history": ["What is SEPAM?", 7]},
     "The history must be a list of earlier questions (strings), but item 2 is 7."),
    ({"history": [["nested"]]}, "The history must be a list of earlier questions (strings), but item 1 is a list."),
    ({"history": ["x" * 2001]}, "Item 1 of the history is too long (2,001 characters; at most 2,000)."),
    ({"history": ["Why?"] * 201}, "The history is too long (201 questions; at most 200: only the last ones matter)."),
    ({"history": [None]}, "The history must be a list of earlier questions (strings), but item 1 is None."),
    ({"threshold": [0.5]}, "The threshold must be a number from 0 to 1, not a list."),
    ({"threshold": {"v": 1}}, "The threshold must be a number from 0 to 1, not a dict."),
    ({"k": ""}, "The number of passages k must be a whole number from 1 to 20, not ''."),
    ({"k": "1e400"}, "The number of passages k must be a whole number from 1 to 20, not '1e400'."),
    ({"mode": 3}, "Unknown mode 3: expected one of hybrid, bm25, dense."),
    ({"question": 42}, "The question must be text, not 42."),
    ({"question": {"text": "hi"}}, "The question must be text, not a dict."),
]


@pytest.mark.parametrize("args,message", BAD_ASKS, ids=[repr(a)[:40] for a, _ in BAD_ASKS])
def test_ask_api_says_what_is_wrong_with_a_bad_argument(api, no_answering, args, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as error:
        api.predict(**{"question": "When was the radar delivered?", **args}, api_name="/ask")
    assert str(error.value) == message


def test_ask_api_passes_good_arguments_on(api, monkeypatch):
    calls = []

    def fake_ask(engine, question, *, history=None, settings=None):
        calls.append((question, history, settings.mode, settings.k, settings.threshold))
        return Result(question, [], [], settings.mode, {"total": 1.0}, message="Not in the documents.")

    monkeypatch.setattr(web, "ask", fake_ask)
    got = api.predict(question="Where was it delivered?", mode="bm25", k=3, threshold=0.25,
                      history=["When was the radar delivered?"], api_name="/ask")
    api.predict(question="Where?", k=" 7 ", threshold="0.5", api_name="/ask")  # numbers as text are fine
    assert calls == [("Where was it delivered?", ["When was the radar delivered?"], "bm25", 3, 0.25),
                     ("Where?", [], "hybrid", 7, 0.5)]
    assert (got["question"], got["answers"], got["mode"], got["message"]) == (
        "Where was it delivered?", [], "bm25", "Not in the documents.")


def test_chat_settings_still_take_the_sliders_numbers():
    engine = fake_engine(Path("corpus"), Path("index"), {}, [])
    s = web_requests.request_settings(engine.settings, "dense", 4.0, 0.0)
    assert (s.mode, s.k, s.threshold) == ("dense", 4, 0.0)
    s = web_requests.request_settings(engine.settings, "", None, None)
    assert (s.mode, s.k, s.threshold) == (engine.settings.mode, engine.settings.k, engine.settings.threshold)
    with pytest.raises(QAError, match=r"^the number of passages k must be a whole number from 1 to 20, not inf$"):
        web_requests.request_settings(engine.settings, None, float("inf"), None)


# ---------------------------------------------------------------- uploads and the documents panel


def test_upload_message_names_only_the_files_of_this_upload(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / GOOD_DOC).write_text("Zorvath radar\n\nThe Zorvath-9 radar was delivered to Kazan in 2031.\n")
    (corpus / HOSTILE).write_bytes(b"\x00\x01\x02 not text")  # dropped in long ago: skipped at every update
    with pytest.raises(QAError) as unreadable:
        load_document(corpus / HOSTILE, corpus)
    reindexed = []

    def fake_open_engine(settings, *, log, **kwargs):
        """What reindexing does: note each unreadable file, return the engine of the new index."""
        files = sorted(p.relative_to(settings.corpus).as_posix() for p in settings.corpus.rglob("*") if p.is_file())
        skipped = [f for f in files if (settings.corpus / f).read_bytes().startswith(b"\x00")]
        for name in skipped:
            log(f"warning: skipped {name}: binary file, not text")
        reindexed.append(files)
        docs = {f: 1 for f in files if f not in skipped}
        return fake_engine(settings.corpus, settings.index, docs, skipped)

    monkeypatch.setattr(web, "open_engine", fake_open_engine)
    app = web.WebApp(fake_engine(corpus, tmp_path / "index", {GOOD_DOC: 1}, [HOSTILE]))
    monkeypatch.setattr(web, "stderr_log", lambda msg: None)
    assert f"warning: skipped {unreadable.value}" == f"warning: skipped {HOSTILE}: binary file, not text"

    upload = tmp_path / "upload" / "kazan-delivery.txt"
    upload.parent.mkdir()
    upload.write_text("Kazan delivery\n\nThe radar reached Kazan by rail.\n")
    message, summary, rows, cleared = app.upload_files([str(upload)], progress=lambda *a, **kw: None)
    assert message == "**Added and indexed** `uploads/kazan-delivery.txt`: you can ask about it now."
    assert reindexed == [sorted([HOSTILE, "uploads/kazan-delivery.txt", GOOD_DOC])]
    assert sorted(r[1] for r in rows) == [GOOD_DOC, "uploads/kazan-delivery.txt"] and cleared is None

    # a refused file of this upload is named; the old unreadable file still is not
    bad = tmp_path / "upload" / "notes.odt"
    bad.write_bytes(b"PK\x03\x04")
    message, *_ = app.upload_files([str(bad)], progress=lambda *a, **kw: None)
    types = ", ".join(web_uploads.UPLOAD_TYPES)
    assert render(message) == ("<p><strong>Nothing was added:</strong></p>\n<ul>\n"
                               f"<li>notes.odt: not a supported file type (use {types})</li>\n</ul>\n")


def test_upload_reports_its_own_file_when_the_index_skips_it(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "old.txt").write_text("Old\n\nAn old report.\n")

    def fake_open_engine(settings, *, log, **kwargs):
        log("warning: skipped old-unreadable.md: binary file, not text")
        log("warning: skipped uploads/odd.txt: not UTF-8 or Windows-1252 text")
        return fake_engine(settings.corpus, settings.index, {"old.txt": 1}, ["uploads/odd.txt", "old-unreadable.md"])

    monkeypatch.setattr(web, "open_engine", fake_open_engine)
    app = web.WebApp(fake_engine(corpus, tmp_path / "index", {"old.txt": 1}, []))
    monkeypatch.setattr(web, "stderr_log", lambda msg: None)
    upload = tmp_path / "odd.txt"
    upload.write_text("Odd\n\nIt reads here but the indexer disagrees.\n")
    message, *_ = app.upload_files([str(upload)], progress=lambda *a, **kw: None)
    assert render(message) == (
        "<p><strong>Nothing was added:</strong></p>\n<ul>\n<li>uploads/odd.txt: not UTF-8 or Windows-1252 text "
        "(it is in the corpus folder but was not indexed)</li>\n</ul>\n")


def test_documents_panel_shows_a_markup_file_name_escaped_once(tmp_path, monkeypatch):
    corpus = tmp_path / "a&b <i>corpus"
    corpus.mkdir()
    app = web.WebApp(fake_engine(corpus, tmp_path / "index", {GOOD_DOC: 2}, [HOSTILE]))
    summary, rows = app.documents_view()
    assert rows == [["Radar", GOOD_DOC, 2]]
    folder = str(corpus.resolve()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert render(summary) == (
        f"<p><strong>1 document</strong>, 2 passages, from the folder <code>{folder}</code>. "
        "Skipped as unreadable: <code>&lt;img src=x onerror=alert(1)&gt;.md</code>.</p>\n")


@pytest.mark.parametrize("name,shown", [
    ("a`b``c.md", "a`b``c.md"),
    ("`x`.md", "`x`.md"),
    (" spaced .md ", " spaced .md "),
    ("a\n\n<script>alert(1)</script>.md", "a\ufffd\ufffd&lt;script&gt;alert(1)&lt;/script&gt;.md"),
    ("[x](javascript:alert(1)) *b* &lt;.md", "[x](javascript:alert(1)) *b* &amp;lt;.md"),
])
def test_documents_panel_never_lets_a_file_name_become_markup(tmp_path, monkeypatch, name, shown):
    app = web.WebApp(fake_engine(tmp_path, tmp_path / "index", {GOOD_DOC: 1}, [name]))
    summary, _ = app.documents_view()
    assert render(summary).endswith(f" Skipped as unreadable: <code>{shown}</code>.</p>\n")


def test_rescan_and_upload_messages_are_literal_text(tmp_path, monkeypatch):
    text = "x.md: <b>bold</b> [link](javascript:alert(1)) &amp; *stars*\nnext"
    assert render(web_page.md_text(text)) == (
        "<p>x.md: &lt;b&gt;bold&lt;/b&gt; [link](javascript:alert(1)) &amp;amp; *stars*\ufffdnext</p>\n")
    assert render(web_page.upload_message([], [text])) == (
        "<p><strong>Nothing was added:</strong></p>\n<ul>\n<li>x.md: &lt;b&gt;bold&lt;/b&gt; "
        "[link](javascript:alert(1)) &amp;amp; *stars*\ufffdnext</li>\n</ul>\n")
