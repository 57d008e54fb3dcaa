"""A slow upload keeps nobody waiting (issue 9): while one user's upload is still being read or
encoded, another user's upload is added and indexed, and questions are answered, the new
document's included.

The slow upload is made deterministic: its reading (the loader) or its encoding blocks until the
test releases it, so "still running" is a fact, not a race; the others must finish within a
generous time (they take about a second on a 2-core AMD EPYC).
"""

from __future__ import annotations

import threading
import time

import pytest

import qa.build
import qa.web_uploads
from helpers_core import real_encoder
from qa import web
from qa.pipeline import open_engine

pytestmark = pytest.mark.integration

SLOW_MARK = "Quillfeather"  # in the slow upload's text only
SLOW_TEXT = f"{SLOW_MARK} memo\n\nThe {SLOW_MARK} convoy left Astrakhan on 3 May 2031 with 40 crates.\n"
QUICK_TEXT = "Zorvath radar\n\nThe Zorvath-9 radar was delivered to Kazan in 2031.\n"
MARGIN_S = 120  # what the quick upload and the question may take at most (they take about 1 s)


class Gate:
    """Blocks the slow upload's step until released; says when that step has been reached."""

    def __init__(self):
        self.reached, self.released = threading.Event(), threading.Event()

    def hold(self) -> None:
        self.reached.set()
        assert self.released.wait(MARGIN_S * 2), "the test never released the slow upload"


@pytest.fixture
def app(idx, fast):
    return web.WebApp(open_engine(idx, progress=False, log=lambda msg: None))


def no_progress(*args, **kwargs) -> None:
    return None


@pytest.mark.parametrize("slow_step", ["reading", "encoding"])
def test_a_slow_upload_blocks_neither_other_uploads_nor_questions(app, idx, tmp_path, monkeypatch, slow_step):
    gate = Gate()
    if slow_step == "reading":
        load = qa.web_uploads.load_document

        def slow_load(path, corpus, **kwargs):
            if path.name.startswith("slow"):
                gate.hold()
            return load(path, corpus, **kwargs)

        monkeypatch.setattr(qa.web_uploads, "load_document", slow_load)
    else:
        class SlowEncoder:
            name, dim, backend, precision = (real_encoder().name, real_encoder().dim, real_encoder().backend,
                                             real_encoder().precision)

            def encode(self, texts, **kwargs):
                if any(SLOW_MARK in t for t in texts):
                    gate.hold()
                return real_encoder().encode(texts, **kwargs)

        monkeypatch.setattr(qa.build, "indexing_encoder", lambda settings: SlowEncoder())
    monkeypatch.setattr(web, "stderr_log", lambda msg: None)
    (tmp_path / "up").mkdir()
    slow, quick = tmp_path / "up" / "slow-memo.txt", tmp_path / "up" / "zorvath.txt"
    slow.write_text(SLOW_TEXT)
    quick.write_text(QUICK_TEXT)

    slow_result: list = []
    slow_thread = threading.Thread(target=lambda: slow_result.append(app.upload_files([str(slow)], no_progress)))
    slow_thread.start()
    try:
        assert gate.reached.wait(MARGIN_S), "the slow upload never started"

        # another user's upload, and questions, while the slow one is held
        t0 = time.monotonic()
        quick_result: list = []
        quick_thread = threading.Thread(target=lambda: quick_result.append(app.upload_files([str(quick)],
                                                                                             no_progress)))
        quick_thread.start()
        quick_thread.join(MARGIN_S)
        assert not quick_thread.is_alive(), "the quick upload waited for the slow one"
        assert quick_result[0][0] == "**Added and indexed** `uploads/zorvath.txt`: you can ask about it now."
        answer = app.api_ask("Where was the Zorvath-9 radar delivered?")
        assert "Kazan" in answer["answers"][0]["text"]
        assert answer["citations"][0]["doc"] == "uploads/zorvath.txt"
        drones = app.api_ask("How many drones has Russia purchased from Iran since 2022?")
        assert "1,700" in drones["answers"][0]["span"]
        assert time.monotonic() - t0 < MARGIN_S
        assert slow_thread.is_alive() and not slow_result, "the slow upload was not still running"
        assert not (idx.corpus / "uploads" / "slow-memo.txt").exists()  # it enters the corpus only once read and encoded
    finally:
        gate.released.set()
        slow_thread.join(MARGIN_S)
    assert not slow_thread.is_alive()

    assert slow_result[0][0] == "**Added and indexed** `uploads/slow-memo.txt`: you can ask about it now."
    answer = app.api_ask(f"When did the {SLOW_MARK} convoy leave Astrakhan?")
    assert "3 May 2031" in answer["answers"][0]["text"]
    docs = {d["doc"] for d in app.api_documents()}
    assert {"uploads/slow-memo.txt", "uploads/zorvath.txt"} <= docs


def test_an_upload_whose_indexing_fails_is_taken_back(app, idx, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(web, "open_engine", broken)
    monkeypatch.setattr(web, "stderr_log", lambda msg: None)
    upload = tmp_path / "zorvath.txt"
    upload.write_text(QUICK_TEXT)
    before = sorted(p for p in idx.corpus.rglob("*") if p.is_file())
    message, *_ = app.upload_files([str(upload)], no_progress)
    assert message == ("**Nothing was added:**\n- indexing failed \\(OSError\\)\\, so the files were not added")
    assert sorted(p for p in idx.corpus.rglob("*") if p.is_file()) == before
    assert "1,700" in app.api_ask("How many drones has Russia purchased from Iran since 2022?")["answers"][0]["span"]


def test_a_build_keeps_what_an_upload_encoded_ahead_and_the_uploads_build_encodes_nothing(idx, fast):
    """A build compacts only the cache shards it read or wrote: vectors an upload encoded ahead of its own
    build (``warm_cache``) while another build ran stay, and the upload's build then encodes nothing."""
    from helpers_core import CountingEncoder
    from qa.build import build_index, warm_cache
    from qa.load import load_document

    memo = idx.corpus.parent / "staging" / "memo.txt"
    memo.parent.mkdir()
    memo.write_text(SLOW_TEXT)
    warm_cache(idx, [load_document(memo, memo.parent)], log=lambda msg: None)
    (idx.corpus / "zorvath.txt").write_text(QUICK_TEXT)  # another user's upload, built meanwhile
    build_index(idx, log=lambda msg: None, progress=False)

    memo.rename(idx.corpus / "memo.txt")
    counting = CountingEncoder()
    build_index(idx, log=lambda msg: None, progress=False, encoder=counting)
    assert counting.texts == []
