"""The web page, end to end: a real server (``python ui.py``) on a copy of the corpus,
driven by headless Chromium (Playwright) and by ``gradio_client``.

The browser tests need Debian's Chromium at /usr/bin/chromium; without it they fail.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
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
from qa.config import CORPUS_CHECK_S, Settings
from qa.pipeline import Engine, ask, check_question, open_engine
from qa.present import to_dict
from qa.datatypes import QAError, Result

pytestmark = pytest.mark.e2e

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
SHIPS = "How many container ships did the Port of Veranda handle in 2024?"  # the two fixture reports differ
PDF_FACT = "The Ostrava freight terminal was sold to Lindqvist Holdings in 2029."
PDF_QUESTION = "Who bought the Ostrava freight terminal?"
DOCX_FACT = "The Brindle grain silo was sold to Ketterman Shipping in 2028."
DOCX_QUESTION = "Who bought the Brindle grain silo?"
DROPPED_FACT = "The Quillon depot was moved to Yerevan in 2030."
DROPPED_QUESTION = "Where was the Quillon depot moved?"


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
    for fixture in (ROOT / "tests" / "fixtures" / "disagree").iterdir():  # two reports that disagree
        shutil.copy(fixture, corpus / fixture.name)
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
def browser(server):
    if not CHROMIUM.exists():
        pytest.fail(MISSING_CHROMIUM, pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser, server, width: int = 1280, height: int = 900):
    """A fresh page (its own session) of the server at the given screen size."""
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url.rstrip("/"))
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url)
    page.get_by_placeholder("Ask a question…").wait_for()
    return page


@pytest.fixture(scope="module")
def page(browser, server):
    page = open_page(browser, server)
    yield page
    page.context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


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


def new_conversation(page) -> None:
    from playwright.sync_api import expect

    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#chat .qa-reply")).to_have_count(0)


def in_view(page, locator) -> bool:
    """Whether the element's first line is inside the window."""
    box = locator.bounding_box()
    height = page.viewport_size["height"]
    return box is not None and 0 <= box["y"] and box["y"] + 16 <= height


def test_page_answers_with_citation_and_ref_opens_its_source(page):
    from playwright.sync_api import expect

    reply = chat_ask(page, DRONES)
    expect(reply.locator(".qa-answer mark")).to_have_text("1,700")
    expect(reply.locator(".qa-meta").first).to_contain_text("Confidence")
    ref = reply.locator(".qa-answer a.qa-ref")
    expect(ref).to_have_text("[1]")
    source = reply.locator("details.qa-src-1")
    expect(source.locator("summary")).to_contain_text("iran-russia-military-technology-axis.txt")
    passage = source.locator(".qa-passage")
    expect(passage).to_be_hidden()
    ref.click()  # [1] in the answer opens source 1 and scrolls to it
    expect(passage).to_be_visible()
    expect(passage).to_contain_text("Russia purchased approximately 1,700 drones")
    expect(passage.locator("mark")).to_contain_text("1,700 drones")
    assert in_view(page, source.locator("summary"))
    # the passages no answer quotes show a one-line snippet and their relevance, unopened
    other = reply.locator("details.qa-cite:not([open])").last
    expect(other.locator(".qa-snip")).to_be_visible()
    expect(other.locator(".qa-score")).to_contain_text("relevance")
    shot(page, "ref-opens-source.png")


def test_page_shows_when_sources_disagree(page):
    from playwright.sync_api import expect

    reply = chat_ask(page, SHIPS)
    differ = reply.locator(".qa-differ")
    expect(differ).to_contain_text("Sources differ")
    claims = differ.locator(".qa-claim")
    expect(claims).to_have_count(2)
    expect(differ).to_contain_text("4,200")
    expect(differ).to_contain_text("3,100")
    expect(differ).to_contain_text("harbour-report.txt")
    expect(differ).to_contain_text("shipping-review.txt")
    boxes = [claims.nth(i).bounding_box() for i in range(2)]
    assert abs(boxes[0]["y"] - boxes[1]["y"]) < 2 and boxes[0]["x"] < boxes[1]["x"]  # side by side
    claims.nth(1).locator("a.qa-ref").click()  # each opens its own source
    n = claims.nth(1).locator("a.qa-ref").inner_text().strip("[]")
    expect(reply.locator(f"details.qa-src-{n} .qa-passage")).to_be_visible()
    differ.scroll_into_view_if_needed()
    shot(page, "sources-differ.png")


def test_page_follow_up_and_new_topic(page):
    from playwright.sync_api import expect

    new_conversation(page)
    chat_ask(page, SHIPPED)
    reply = chat_ask(page, PORT_FOLLOW_UP)
    expect(reply.locator(".qa-searched")).to_contain_text(f"searched as: {PORT_FOLLOW_UP} {SHIPPED}")
    expect(reply.locator(".qa-answer")).to_contain_text("Makhachkala")
    shot(page, "follow-up.png")
    reply = chat_ask(page, "What is SEPAM?")  # a new topic, after the drones: searched on its own words
    expect(reply.locator(".qa-searched")).to_have_count(0)
    expect(reply.locator("details.qa-cite").first).to_contain_text("SEPAM")
    shot(page, "new-topic.png")


def test_page_shows_errors_as_messages(page):
    from playwright.sync_api import expect

    reply = chat_ask(page, "why " * 600)
    expect(reply.locator(".qa-error")).to_contain_text("too long")
    expect(page.locator("body")).not_to_contain_text("Traceback")


def test_page_abstains_saying_why_with_the_nearest_passage(page):
    from playwright.sync_api import expect

    reply = chat_ask(page, "Which country won the 2022 FIFA World Cup?")
    expect(reply.locator(".qa-none")).to_contain_text("no document mentions “FIFA”")
    expect(reply.locator(".qa-none")).to_contain_text("The nearest passage is [1]")
    nearest = reply.locator("details.qa-src-1")
    expect(nearest).to_have_attribute("open", "")
    expect(nearest.locator(".qa-passage")).to_be_visible()
    shot(page, "abstains.png")


def test_page_shows_where_the_best_answer_of_a_weak_match_stands(page):
    """A paraphrased question whose right span ("late 2001") the reader finds under the threshold (0.29
    against 0.38 with reader v2, AMD EPYC): the page abstains, names that span and opens its passage with
    the sentence marked. (Reader v1 did the same for "What is SEPAM?", which v2 answers.)"""
    from playwright.sync_api import expect

    reply = chat_ask(page, "When did Moscow conclude a decade-long weapons agreement with Tehran?")
    expect(reply.locator(".qa-none")).to_contain_text("the best match is too weak (the best answer found, “")
    expect(reply.locator(".qa-none")).to_contain_text("It stands in [")
    expect(reply.locator(".qa-head").first).to_have_text("Where the best answer found stands (below the confidence needed)")
    opened = reply.locator("details.qa-cite[open]")
    expect(opened).to_have_count(1)
    expect(opened.locator(".qa-passage mark")).to_have_count(1)
    expect(opened.locator(".qa-passage mark")).to_be_visible()
    shot(page, "abstains-with-lead.png")


def test_page_examples_are_buttons_and_one_way_to_clear(page):
    from playwright.sync_api import expect

    new_conversation(page)
    example = page.get_by_role("button", name=SEA)
    expect(example).to_be_visible()
    example.click()
    expect(page.locator("#chat .qa-reply .qa-answer mark")).to_contain_text("Caspian Sea")
    expect(page.locator("#chat button[aria-label='Clear']")).to_be_hidden()  # "New conversation" is the one way


def test_page_copy_and_export_with_quotes_and_sources(page):
    from playwright.sync_api import expect

    new_conversation(page)
    reply = chat_ask(page, DRONES)
    reply.get_by_role("button", name="Copy as Markdown").click()
    expect(reply.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith(f"**Q:** {DRONES}") and "**1,700**" in copied
    # each source named as `qa ask` names it: file, the quote's line, the passage's lines
    assert re.search(r"— `iran-russia-military-technology-axis\.txt:\d+ \(passage \d+", copied) and "\n> " in copied
    chat_ask(page, SHIPS)
    exported = {}
    for name, button in (("md", "#export-md"), ("json", "#export-json")):
        expect(page.locator(button)).to_be_enabled()
        with page.expect_download() as download:
            page.locator(button).click()
        exported[name] = Path(download.value.path()).read_text(encoding="utf-8")
    assert f"## 1. {DRONES}" in exported["md"] and f"## 2. {SHIPS}" in exported["md"]
    assert "**Sources differ:**" in exported["md"]
    replies = json.loads(exported["json"])["replies"]
    assert [r["question"] for r in replies] == [DRONES, SHIPS]
    assert all(c["text"] for r in replies for c in r["citations"])


@pytest.mark.parametrize("width,height,name", [(1280, 800, "laptop"), (420, 860, "phone")])
def test_a_new_reply_keeps_its_answer_in_view(browser, server, width, height, name):
    from playwright.sync_api import expect

    page = open_page(browser, server, width, height)
    try:
        chat_ask(page, SEA)
        reply = chat_ask(page, DRONES)
        answer = reply.locator(".qa-answer")
        expect(answer).to_contain_text("1,700")
        page.wait_for_timeout(300)  # after the page's own scrolling has settled
        assert in_view(page, answer), answer.bounding_box()
        shot(page, f"answer-in-view-{name}.png")
    finally:
        page.context.close()


def test_page_upload_then_remove_it(page, server, tmp_path):
    from playwright.sync_api import expect

    doc = tmp_path / "zorvath-radar.txt"
    doc.write_text(f"Zorvath-9 radar delivery\n\n{NEW_FACT} It was built to track small drones at low altitude.\n")
    page.get_by_role("tab", name="Documents").click()
    expect(page.locator("#upload-where")).to_contain_text("uploads")
    expect(page.locator("#doc-table")).to_contain_text("iran-russia-military-technology-axis.txt")
    page.locator("#upload input[type=file]").set_input_files(str(doc))
    expect(page.locator("#upload-status")).to_contain_text("Added and indexed", timeout=TIMEOUT_MS)
    expect(page.locator("#doc-table")).to_contain_text("uploads/zorvath-radar.txt")
    assert (server.corpus / "uploads" / "zorvath-radar.txt").read_text() == doc.read_text()

    page.get_by_role("tab", name="Chat").click()
    reply = chat_ask(page, NEW_QUESTION)
    expect(reply.locator(".qa-answer")).to_contain_text("Kazan")
    reply.locator(".qa-answer a.qa-ref").click()
    expect(reply.locator("details.qa-src-1 .qa-passage")).to_contain_text(NEW_FACT)
    shot(page, "ui.png")

    page.get_by_role("tab", name="Documents").click()
    page.locator("#remove-choice input").click()
    page.get_by_role("option", name="uploads/zorvath-radar.txt").click()
    page.locator("#remove").click()
    expect(page.locator("#remove-confirm")).to_contain_text("uploads/zorvath-radar.txt")
    shot(page, "remove-confirm.png")
    page.locator("#remove-yes").click()
    expect(page.locator("#upload-status")).to_contain_text("Removed", timeout=TIMEOUT_MS)
    expect(page.locator("#doc-table")).not_to_contain_text("zorvath-radar.txt")
    assert not (server.corpus / "uploads" / "zorvath-radar.txt").exists()

    page.get_by_role("tab", name="Chat").click()
    reply = chat_ask(page, NEW_QUESTION)
    expect(reply.locator(".qa-none")).to_contain_text("do not answer")
    expect(reply).not_to_contain_text(NEW_FACT)
    shot(page, "upload-removed.png")


def upload_and_open_source(page, path: Path, question: str, answer: str):
    """Upload ``path`` on the Documents tab, ask ``question`` in the chat, check the marked answer
    holds ``answer``, follow its ``[1]`` and return the opened source's locator."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Documents").click()
    page.locator("#upload input[type=file]").set_input_files(str(path))
    # this upload's own message: an earlier upload's also says "Added and indexed"
    expect(page.locator("#upload-status")).to_contain_text(
        re.compile(rf"Added and indexed.*{re.escape(path.name)}"), timeout=TIMEOUT_MS)
    page.get_by_role("tab", name="Chat").click()
    reply = chat_ask(page, question)
    expect(reply.locator(".qa-answer mark")).to_contain_text(answer)
    reply.locator(".qa-answer a.qa-ref").click()
    return reply.locator("details.qa-src-1")


def test_page_cites_a_pdf_by_the_quotes_page_and_line(page, tmp_path):
    from playwright.sync_api import expect

    from helpers_core import make_pdf

    pdf = make_pdf(tmp_path / "brief.pdf", [
        ["Quarterly brief", "The harbour authority met in March.", "Nothing else was decided."],
        ["Shipping", "Cargo volumes rose slightly.", PDF_FACT, "The sale closed in June."],
    ], title="Quarterly brief")
    source = upload_and_open_source(page, pdf, PDF_QUESTION, "Lindqvist")
    expect(source.locator("summary")).to_contain_text("uploads/brief.pdf p. 2, line 3")  # the quote's page and line
    expect(source.locator(".qa-passage mark")).to_have_text(PDF_FACT)
    shot(page, "pdf-page-line.png")


def test_page_cites_a_docx_at_the_quotes_line_under_its_heading(page, tmp_path):
    from playwright.sync_api import expect

    from helpers_core import make_docx

    memo = make_docx(tmp_path / "memo.docx", [
        (0, "Harbour memo"),  # line 1
        "Prepared for the port desk.",  # 2
        (1, "Silo sales"),  # 3
        [("Silo", "Capacity"), ("Brindle", "40,000 t")],  # 4, 5: a table, one line a row
        "Grain prices fell in May.",  # 6
        DOCX_FACT,  # 7
        "The sale closed in June.",  # 8
    ])
    source = upload_and_open_source(page, memo, DOCX_QUESTION, "Ketterman")
    expect(source.locator("summary")).to_contain_text("uploads/memo.docx:7")  # the quote's line, not the passage's
    expect(source.locator("summary")).not_to_contain_text("p. ")  # a Word file has no pages to cite
    expect(source.locator(".qa-section")).to_have_text("§ Silo sales")  # the section it stands under
    expect(source.locator(".qa-passage mark")).to_have_text(DOCX_FACT)
    shot(page, "docx-line.png")


def test_a_file_dropped_into_the_corpus_is_answerable_without_restart(page, server):
    from playwright.sync_api import expect

    dropped = server.corpus / "dropped-report.txt"
    dropped.write_text(f"Quillon depot report\n\n{DROPPED_FACT} The depot stores spare parts.\n")
    time.sleep(CORPUS_CHECK_S + 0.2)
    reply = chat_ask(page, DROPPED_QUESTION)
    expect(reply.locator(".qa-answer mark")).to_contain_text("Yerevan")
    shot(page, "dropped-file.png")
    dropped.unlink()  # and a file removed by hand is no longer answered from
    time.sleep(CORPUS_CHECK_S + 0.2)
    reply = chat_ask(page, DROPPED_QUESTION)
    expect(reply.locator(".qa-none")).to_contain_text("do not answer")


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
    monkeypatch.setattr(web.WebApp, "refresh", lambda self: None)
    app = web.WebApp(Engine(Settings(), None, None))
    box, chat, questions, transcript = app.respond(SHIPPED, [], [], [], "bm25", 3, 0.5)
    assert (box, questions) == ("", [SHIPPED])
    box, chat, questions, transcript = app.respond(PORT_FOLLOW_UP, chat, questions, transcript, "hybrid", 5, 0.35)
    assert [c[:2] for c in calls] == [(SHIPPED, []), (PORT_FOLLOW_UP, [SHIPPED])]
    assert (calls[0][2].mode, calls[0][2].k, calls[0][2].threshold) == ("bm25", 3, 0.5)
    assert questions == [SHIPPED, PORT_FOLLOW_UP]
    assert [m["role"] for m in chat] == ["user", "assistant"] * 2
    assert [r["question"] for r in transcript] == [SHIPPED, PORT_FOLLOW_UP]

    box, chat, questions, transcript = app.respond("why " * 600, chat, questions, transcript, "hybrid", 5, 0.35)
    assert "too long" in chat[-1]["content"] and questions == [SHIPPED, PORT_FOLLOW_UP] and len(transcript) == 2
    with pytest.warns(UserWarning, match="Type a question"):
        assert app.respond("   ", chat, questions, transcript, "hybrid", 5, 0.35) == ("   ", chat, questions, transcript)
    _, chat, _, _ = app.respond("<script>alert(1)</script>?", chat, questions, transcript, "hybrid", 5, 0.35)
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
    assert (added, problems) == (["uploads/report.txt"], [])
    (up / "report.txt").write_text("A third report. It says a third thing.")
    added, problems = web_uploads.add_uploads([str(up / "report.txt")], corpus)
    assert (added, problems) == (["uploads/report-2.txt"], [])
    assert (corpus / "report.txt").read_text() == "The first report. It says one thing."
    assert (corpus / "uploads" / "report.txt").read_text() == "A different report. It says another thing."
    assert (corpus / "uploads" / "report-2.txt").read_text() == "A third report. It says a third thing."
    assert sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*")) == [
        "report.txt", "uploads", "uploads/report-2.txt", "uploads/report.txt"]
