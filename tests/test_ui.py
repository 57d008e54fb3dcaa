"""The web page, end to end: a real server (``python ui.py``) on a copy of the corpus,
driven by headless Chromium (Playwright) and by ``gradio_client``.

The browser tests need Debian's Chromium at /usr/bin/chromium; without it they fail.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from qa import web, web_uploads
from qa.cli import settings_from
from qa.config import Settings
from qa.pipeline import Engine, ask, check_question, open_engine
from qa.present import to_dict
from qa.datatypes import QAError, Result

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
MISSING_CHROMIUM = (f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
                    "(apt-get install chromium, or `make browser`); they fail rather than skip without it")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "tests" / "artifacts"
START_TIMEOUT = 300  # seconds: the server builds the index before it listens
TIMEOUT_MS = 60_000

DRONES = "How many drones has Russia purchased from Iran since 2022?"
SEA = "Through which sea are Iranian drones shipped to Russia?"
SHIPPED = "How are Iranian drones shipped to Russia?"
PORT_FOLLOW_UP = "Which port do they arrive at?"
NEW_FACT = "The Zorvath-9 radar was delivered to Kazan in 2031."
NEW_QUESTION = "Where was the Zorvath-9 radar delivered?"


@dataclass
class Server:
    url: str
    corpus: Path
    index: Path
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ui.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"ui.py did not answer at {url} within {START_TIMEOUT}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    base = tmp_path_factory.mktemp("ui")
    corpus, index, log = base / "corpus", base / "index", base / "server.log"
    shutil.copytree(ROOT / "corpus", corpus)
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, str(ROOT / "ui.py"), "--port", str(port), "--corpus", str(corpus), "--index", str(index)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=base)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, proc, log)
        yield Server(url, corpus, index, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def page(server):
    if not CHROMIUM.exists():
        pytest.fail(MISSING_CHROMIUM, pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server.url)
        page.get_by_placeholder("Ask a question…").wait_for()
        yield page
        browser.close()


def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)


def chat_ask(page, question: str):
    """Type a question, press Enter and return the new reply's locator."""
    from playwright.sync_api import expect

    replies = page.locator("#chat .qa-reply")
    before = replies.count()
    box = page.get_by_placeholder("Ask a question…")
    box.fill(question)
    box.press("Enter")
    expect(replies).to_have_count(before + 1, timeout=TIMEOUT_MS)
    return replies.last


# ---------------------------------------------------------------- the page in a browser


def test_chromium_is_installed():
    assert CHROMIUM.exists(), MISSING_CHROMIUM


def test_page_answers_with_citation(page):
    from playwright.sync_api import expect

    reply = chat_ask(page, DRONES)
    expect(reply.locator(".qa-answer mark")).to_have_text("1,700")
    expect(reply.locator(".qa-meta").first).to_contain_text("Confidence")
    source = reply.locator("details.qa-cite").first
    expect(source.locator("summary")).to_contain_text("[1]")
    expect(source.locator("summary")).to_contain_text("iran-russia-military-technology-axis.txt")
    passage = source.locator(".qa-passage")
    expect(passage).to_be_hidden()
    source.locator("summary").click()
    expect(passage).to_be_visible()
    expect(passage).to_contain_text("Russia purchased approximately 1,700 drones")
    expect(passage.locator("mark")).to_contain_text("1,700 drones")


def test_page_follow_up_uses_the_conversation(page):
    from playwright.sync_api import expect

    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#chat .qa-reply")).to_have_count(0)
    chat_ask(page, SHIPPED)
    reply = chat_ask(page, PORT_FOLLOW_UP)
    expect(reply.locator(".qa-answer")).to_contain_text("Makhachkala")


def test_page_shows_errors_as_messages(page):
    from playwright.sync_api import expect

    reply = chat_ask(page, "why " * 600)
    expect(reply.locator(".qa-error")).to_contain_text("too long")
    expect(page.locator("body")).not_to_contain_text("Traceback")


def test_page_abstains_with_nearest_passages(page):
    from playwright.sync_api import expect

    reply = chat_ask(page, "What is the boiling point of liquid nitrogen in kelvin?")
    expect(reply.locator(".qa-none")).to_contain_text("do not answer")
    expect(reply.locator("details.qa-cite").first).to_be_attached()


def test_page_upload_makes_a_document_searchable(page, server, tmp_path):
    from playwright.sync_api import expect

    doc = tmp_path / "zorvath-radar.txt"
    doc.write_text(f"Zorvath-9 radar delivery\n\n{NEW_FACT} It was built to track small drones at low altitude.\n")
    page.get_by_role("tab", name="Documents").click()
    expect(page.locator("#doc-table")).to_contain_text("iran-russia-military-technology-axis.txt")
    page.locator("#upload input[type=file]").set_input_files(str(doc))
    expect(page.locator("#upload-status")).to_contain_text("Added and indexed", timeout=TIMEOUT_MS)
    expect(page.locator("#doc-table")).to_contain_text("zorvath-radar.txt")
    assert (server.corpus / "zorvath-radar.txt").read_text() == doc.read_text()

    page.get_by_role("tab", name="Chat").click()
    reply = chat_ask(page, NEW_QUESTION)
    expect(reply.locator(".qa-answer")).to_contain_text("Kazan")
    reply.locator("details.qa-cite summary").first.click()
    expect(reply.locator(".qa-passage").first).to_contain_text(NEW_FACT)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui.png"))


# ---------------------------------------------------------------- the API (gradio_client)


def test_api_gives_the_pipelines_answer(server):
    settings = settings_from(argparse.Namespace(corpus=server.corpus, index=server.index))
    engine = open_engine(settings, build=False)
    for question, history in [(DRONES, []), (PORT_FOLLOW_UP, [SHIPPED])]:
        got = client(server).predict(question=question, history=history, api_name="/ask")
        want = to_dict(ask(engine, question, history=history))
        assert got["answers"] == want["answers"]
        assert got["citations"] == want["citations"]
        assert got["mode"] == want["mode"] == settings.mode
    assert "1,700" in client(server).predict(question=DRONES, api_name="/ask")["answers"][0]["span"]


def test_api_applies_request_settings_and_reports_errors(server):
    from gradio_client.exceptions import AppError

    c = client(server)
    got = c.predict(question=SEA, mode="bm25", k=2, threshold=0.0, api_name="/ask")
    assert got["mode"] == "bm25" and len(got["citations"]) == 2
    assert "Caspian Sea" in got["answers"][0]["span"]
    assert c.predict(question=SEA, threshold=1.0, api_name="/ask")["answers"] == []
    with pytest.raises(AppError, match="empty"):
        c.predict(question="   ", api_name="/ask")
    with pytest.raises(AppError, match="too long"):
        c.predict(question="x" * 5000, api_name="/ask")
    with pytest.raises(AppError, match="mode"):
        c.predict(question=SEA, mode="psychic", api_name="/ask")
    docs = c.predict(api_name="/documents")
    assert "russia-iran-military-ties-expansion.txt" in {d["doc"] for d in docs}


def test_api_concurrent_requests_get_their_own_answers(server):
    expected = {DRONES: "1,700", SEA: "Caspian Sea"}
    clients = [client(server), client(server)]

    def one(i: int) -> tuple[str, str]:
        question = [DRONES, SEA][i % 2]
        got = clients[i % 2].predict(question=question, api_name="/ask")
        return question, got["answers"][0]["span"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(16)))
    assert len(results) == 16
    for question, span in results:
        assert span == expected[question], question


# ---------------------------------------------------------------- handlers in-process (no server needed)


def test_chat_passes_the_sessions_questions_as_history(monkeypatch):
    calls = []

    def fake_ask(engine, question, *, history=None, settings=None):
        calls.append((check_question(question), list(history), settings))
        return Result(question, [], [], settings.mode, {"total": 1.0}, message="Not in the documents.")

    monkeypatch.setattr(web, "ask", fake_ask)
    app = web.WebApp(Engine(Settings(), None, None))
    box, chat, questions = app.respond(SHIPPED, [], [], "bm25", 3, 0.5)
    assert (box, questions) == ("", [SHIPPED])
    box, chat, questions = app.respond(PORT_FOLLOW_UP, chat, questions, "hybrid", 5, 0.35)
    assert [c[:2] for c in calls] == [(SHIPPED, []), (PORT_FOLLOW_UP, [SHIPPED])]
    assert (calls[0][2].mode, calls[0][2].k, calls[0][2].threshold) == ("bm25", 3, 0.5)
    assert questions == [SHIPPED, PORT_FOLLOW_UP]
    assert [m["role"] for m in chat] == ["user", "assistant"] * 2

    box, chat, questions = app.respond("why " * 600, chat, questions, "hybrid", 5, 0.35)
    assert "too long" in chat[-1]["content"] and questions == [SHIPPED, PORT_FOLLOW_UP]
    with pytest.warns(UserWarning, match="Type a question"):
        assert app.respond("   ", chat, questions, "hybrid", 5, 0.35) == ("   ", chat, questions)
    _, chat, _ = app.respond("<script>alert(1)</script>?", chat, questions, "hybrid", 5, 0.35)
    assert "<script>" not in chat[-2]["content"]




def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_upload_refuses_bad_files_and_changes_nothing(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "corpus", corpus)
    before = _snapshot(corpus)
    up = tmp_path / "uploads"
    up.mkdir()
    bad = {
        "garbage.txt": os.urandom(4096) + b"\x00" * 16,
        "broken.pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\nthis is not really a pdf\n%%EOF",
        "notes.docx": b"PK\x03\x04 a word file",
        "program.exe": b"MZ\x90\x00",
        ".hidden.txt": b"a hidden file",
        "empty.md": b"   \n\n",
        "same-as-existing.txt": (ROOT / "corpus" / "russia-iran-military-ties-expansion.txt").read_bytes(),
    }
    for name, data in bad.items():
        (up / name).write_bytes(data)
    big = up / "big.txt"
    with open(big, "wb") as f:
        f.truncate(web_uploads.MAX_UPLOAD_BYTES + 1)
    added, problems = web_uploads.add_uploads([str(up / n) for n in bad] + [str(big)], corpus)
    assert added == []
    assert len(problems) == len(bad) + 1
    text = "\n".join(problems)
    for expected in ("garbage.txt", "broken.pdf", "not a supported file type", "too large", "no text found",
                     "already in the corpus"):
        assert expected in text
    assert _snapshot(corpus) == before


def test_upload_names_are_sanitised_and_never_overwrite(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "report.txt").write_text("The first report. It says one thing.")
    for name in ["..", ".", "../", ".env", "", "   ", "..\\..", "/"]:
        with pytest.raises(QAError):
            web_uploads.safe_name(name)
    assert web_uploads.safe_name("../../etc/passwd.txt") == "passwd.txt"
    assert web_uploads.safe_name("C:\\Users\\me\\Q3 report.md") == "Q3 report.md"
    assert web_uploads.safe_name("a<b>|c?.txt") == "a_b_c_.txt"
    assert len(web_uploads.safe_name("x" * 500 + ".txt")) <= web_uploads.MAX_NAME_CHARS

    up = tmp_path / "up"
    up.mkdir()
    (up / "report.txt").write_text("A different report. It says another thing.")
    added, problems = web_uploads.add_uploads([str(up / "report.txt")], corpus)
    assert (added, problems) == (["report-2.txt"], [])
    assert (corpus / "report.txt").read_text() == "The first report. It says one thing."
    assert (corpus / "report-2.txt").read_text() == "A different report. It says another thing."
    assert sorted(p.name for p in corpus.iterdir()) == ["report-2.txt", "report.txt"]
