"""The `qa` command: JSON and text output, stdin mode, automatic (re)builds, and bad input.

A few tests run the installed `qa` script as a subprocess (the real thing, imports,
exit codes, no traceback); the rest call ``qa.cli.main`` in-process, which is faster.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_core import CORPUS, DOC_A, DOC_B, DRONES_QUESTION, line_of, live_generation
from qa.cli import main
from qa.manifest import staleness
from qa.load import load_corpus

pytestmark = pytest.mark.e2e

QA = Path(sys.executable).with_name("qa")
TOP_KEYS = {"question", "answers", "citations", "mode", "timings_ms", "searched_as", "followup", "followup_reason", "abstention", "disagreement"}
ANSWER_KEYS = {"text", "span", "score", "confidence", "citation", "doc", "start", "end", "span_start", "span_end",
               "line", "page", "page_line", "lacks"}
CITATION_KEYS = {"n", "doc", "title", "heading", "passage", "start", "end", "line", "page", "page_line", "passage_line",
                 "passage_end_line", "passage_pages", "text", "score"}
JET_QUESTION = "Which aircraft did Iran buy from Russia?"


def where(settings) -> list[str]:
    return ["--corpus", str(settings.corpus), "--index", str(settings.index)]


def run_qa(args: list[str], *, stdin: str | None = None, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("QA_CORPUS", "QA_INDEX", "QA_MODEL")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([str(QA), *args], input=stdin, capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=180)


def run_main(args: list[str], capsys, monkeypatch=None, stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        rc = main(args)
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def check_result(obj: dict, corpus: Path, question: str) -> None:
    """The documented --json shape, and every offset pointing at the exact document text."""
    assert TOP_KEYS <= set(obj) and set(obj) - TOP_KEYS <= {"message"}
    assert obj["question"] == question
    assert obj["mode"] in ("hybrid", "bm25", "dense")
    assert {"retrieve", "answer", "total"} <= set(obj["timings_ms"])
    assert all(isinstance(v, (int, float)) and v >= 0 for v in obj["timings_ms"].values())
    docs = {d.id: d for d in load_corpus(corpus, warn=lambda m: None)}
    cited = {}
    for n, c in enumerate(obj["citations"], start=1):
        assert set(c) == CITATION_KEYS
        assert c["n"] == n
        doc = docs[c["doc"]]
        assert c["title"] == doc.title
        assert doc.text[c["start"] : c["end"]] == c["text"]
        assert c["passage_line"] == line_of(doc.text, c["start"])
        assert c["passage_end_line"] == line_of(doc.text, c["end"])
        assert isinstance(c["passage"], int) and c["passage"] >= 0
        cited[n] = c
    for c in obj["citations"][1:]:  # overlapping passages are merged into one citation
        assert all(o["doc"] != c["doc"] or o["end"] <= c["start"] or c["end"] <= o["start"]
                   for o in obj["citations"] if o is not c)
    for c in obj["citations"]:  # a citation's line is its first answer's, else where its text starts
        quoting = [a for a in obj["answers"] if a["citation"] == c["n"]]
        assert c["line"] == (quoting[0]["line"] if quoting else c["passage_line"])
    for a in obj["answers"]:
        assert set(a) == ANSWER_KEYS
        c = cited[a["citation"]]
        assert a["line"] == line_of(docs[c["doc"]].text, a["start"])
        assert a["text"] in c["text"]  # verbatim from the cited passage
        assert docs[c["doc"]].text[a["start"] : a["end"]] == a["text"]
        assert c["start"] <= a["start"] < a["end"] <= c["end"]
        assert 0.0 <= a["score"] <= 1.0
        assert a["span"] is None or a["span"] in a["text"]
        assert isinstance(a["lacks"], list) and all(isinstance(name, str) for name in a["lacks"])


def assert_one_line_error(rc: int, err: str, *needles: str) -> str:
    """Non-zero exit; stderr ends in exactly one `error: ...` line (only index notes before it)."""
    assert rc not in (0, None)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    errors = [line for line in lines if line.startswith("error: ") or ": error: " in line]
    assert errors == [lines[-1]], f"expected one final error line, got:\n{err}"
    assert lines[-1].startswith("error: "), f"expected 'error: ...', got:\n{err}"
    assert all(line.startswith(("index: ", "warning: ")) for line in lines[:-1]), err
    for needle in needles:
        assert needle in lines[-1]
    return lines[-1]


# ------------------------------------------------------------------ the real command, as a subprocess


def test_ask_json_subprocess(idx, tmp_path):
    proc = run_qa(["ask", "--json", *where(idx), DRONES_QUESTION], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    check_result(obj, idx.corpus, DRONES_QUESTION)
    assert obj["mode"] == "hybrid"
    assert obj["answers"] and "1,700" in obj["answers"][0]["text"]
    assert len(obj["citations"]) >= 1


def test_ask_stdin_subprocess_one_json_per_question(idx, tmp_path):
    stdin = f"{DRONES_QUESTION}\n\n   \n{JET_QUESTION}\n"
    proc = run_qa(["ask", "--json", "--mode", "bm25", *where(idx)], stdin=stdin, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    objs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["question"] for o in objs] == [DRONES_QUESTION, JET_QUESTION]
    for o, q in zip(objs, [DRONES_QUESTION, JET_QUESTION]):
        check_result(o, idx.corpus, q)
        assert o["mode"] == "bm25"


def test_damaged_index_subprocess_fails_cleanly_and_keeps_the_index(idx, tmp_path):
    gen = live_generation(idx.index)
    data = (gen / "passage_texts.bin").read_bytes()
    (gen / "passage_texts.bin").write_bytes(data[: len(data) // 2])
    proc = run_qa(["ask", "--json", *where(idx), DRONES_QUESTION], cwd=tmp_path)
    assert proc.stdout == ""
    assert_one_line_error(proc.returncode, proc.stderr, "damaged", "qa index --rebuild")
    assert live_generation(idx.index) == gen and (gen / "passage_texts.bin").read_bytes() == data[: len(data) // 2]


def test_missing_index_is_built_by_ask_subprocess(tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "alabuga.md").write_text(
        "# Alabuga Plant\n\nThe Alabuga plant in Tatarstan assembles Shahed drones under licence. "
        "The Alabuga plant produced 6,000 drones in 2025. Workers there include students.\n"
    )
    index = tmp_path / "idx"
    proc = run_qa(["ask", "--json", "-q", "--corpus", str(corpus), "--index", str(index),
                   "How many drones did the Alabuga plant produce?"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "index: no index yet; building" in proc.stderr
    obj = json.loads(proc.stdout)
    check_result(obj, corpus, "How many drones did the Alabuga plant produce?")
    assert any("6,000" in c["text"] for c in obj["citations"])
    assert (index / "CURRENT").exists()


def test_unknown_mode_subprocess(idx, tmp_path):
    proc = run_qa(["ask", "--mode", "sparse", *where(idx), DRONES_QUESTION], cwd=tmp_path)
    assert proc.stdout == ""
    assert_one_line_error(proc.returncode, proc.stderr, "sparse")


# ------------------------------------------------------------------ in-process: output


def test_text_output_lists_citations_as_title_file_line(idx, fast, capsys):
    rc, out_json, _ = run_main(["ask", "--json", "-q", *where(idx), DRONES_QUESTION], capsys)
    assert rc == 0
    obj = json.loads(out_json)
    rc, out, err = run_main(["ask", "-q", *where(idx), DRONES_QUESTION], capsys)
    assert rc == 0 and "Traceback" not in err
    lines = out.splitlines()
    assert lines[0] == f"Q: {DRONES_QUESTION}"
    assert lines[1].startswith("A: ") and "1,700" in lines[1]
    assert "\033[" not in out  # no colour when not a terminal
    refs = [line for line in lines if re.match(r"^\[\d+\] ", line)]
    assert refs == [f"[{c['n']}] {c['title']} — {c['doc']}:{c['line']} (passage {c['passage_line']}"
                    + (f"–{c['passage_end_line']})" if c["passage_end_line"] > c["passage_line"] else ")")
                    for c in obj["citations"]]
    assert re.match(r"^\[1\] .+ — [^ ]+\.txt:\d+ \(passage \d+(–\d+)?\)$", refs[0])


@pytest.mark.parametrize("question, doc, line, quote", [
    (DRONES_QUESTION, DOC_A, 10, "1,700"),
    ("What is Iran's interbank system called?", DOC_B, 12, "SEPAM"),
])
def test_the_cited_line_is_the_quotes(idx, fast, capsys, question, doc, line, quote):
    """The citation names the line the answer sentence stands on, not the passage's first line."""
    rc, out, _ = run_main(["ask", "--json", "-q", *where(idx), question], capsys)
    obj = json.loads(out)
    best = obj["answers"][0]
    cited = obj["citations"][best["citation"] - 1]
    assert quote in best["span"] and best["doc"] == cited["doc"] == doc
    assert best["line"] == cited["line"] == line
    assert best["text"] in (CORPUS / doc).read_text(encoding="utf-8").split("\n")[line - 1]
    assert cited["passage_line"] <= line <= cited["passage_end_line"]
    rc, out, _ = run_main(["ask", "-q", *where(idx), question], capsys)
    assert f"{doc}:{line} (passage {cited['passage_line']}" in out


def test_json_in_process_for_every_mode(idx, fast, capsys):
    for mode in ("bm25", "dense", "hybrid"):
        rc, out, _ = run_main(["ask", "--json", "-q", "--mode", mode, "-k", "3", *where(idx), DRONES_QUESTION], capsys)
        assert rc == 0
        obj = json.loads(out)
        check_result(obj, idx.corpus, DRONES_QUESTION)
        assert obj["mode"] == mode and len(obj["citations"]) <= 3
        assert obj["answers"] and "1,700" in obj["answers"][0]["text"]


def test_question_words_are_joined(idx, fast, capsys):
    rc, out, _ = run_main(["ask", "--json", "-q", *where(idx), "How", "many", "drones", "has", "Russia",
                           "purchased", "from", "Iran", "since", "2022?"], capsys)
    assert rc == 0 and json.loads(out)["question"] == DRONES_QUESTION


def test_stdin_with_one_bad_question_answers_the_others(idx, fast, capsys, monkeypatch):
    stdin = f"{DRONES_QUESTION}\n{'x' * 10_000}\n\n{JET_QUESTION}\n"
    rc, out, err = run_main(["ask", "--json", "-q", *where(idx)], capsys, monkeypatch, stdin)
    assert [json.loads(line)["question"] for line in out.splitlines()] == [DRONES_QUESTION, JET_QUESTION]
    assert_one_line_error(rc, err, "too long")


def test_stale_index_is_rebuilt_by_ask(idx, fast, capsys):
    path = Path(idx.corpus) / DOC_B
    path.write_text(path.read_text() + "\nThe zeppelin fleet of the Caspian flotilla numbered 4,321 airships.\n")
    assert "1 changed" in staleness(idx)
    question = "How many airships did the zeppelin fleet of the Caspian flotilla number?"
    rc, out, err = run_main(["ask", "--json", "-q", *where(idx), question], capsys)
    assert rc == 0, err
    assert "index: corpus changed (0 added, 1 changed, 0 removed); building" in err
    obj = json.loads(out)
    check_result(obj, idx.corpus, question)
    assert any("4,321" in c["text"] for c in obj["citations"])
    assert staleness(idx) is None


def test_index_command_up_to_date_then_rebuild_repairs_damage(idx, fast, capsys):
    rc, out, err = run_main(["index", "-q", *where(idx)], capsys)
    assert rc == 0 and "up to date" in err
    gen = live_generation(idx.index)
    (gen / "dense.faiss").write_bytes(b"garbage")
    rc, _, err = run_main(["ask", "-q", *where(idx), DRONES_QUESTION], capsys)
    assert_one_line_error(rc, err, "damaged", "rebuild")
    rc, _, err = run_main(["index", "--rebuild", "-q", *where(idx)], capsys)
    assert rc == 0 and "Traceback" not in err
    rc, out, _ = run_main(["ask", "--json", "-q", *where(idx), DRONES_QUESTION], capsys)
    assert rc == 0 and "1,700" in json.loads(out)["answers"][0]["text"]


# ------------------------------------------------------------------ in-process: bad input


@pytest.mark.parametrize("question,needle", [
    ("", "empty"),
    ("   \t ", "empty"),
    ("why " * 2500, "too long"),  # 10,000 characters
])
def test_bad_question(idx, fast, capsys, question, needle):
    rc, out, err = run_main(["ask", "--json", *where(idx), question], capsys)
    assert out == ""
    assert_one_line_error(rc, err, needle)


def test_missing_corpus_folder(tmp_path, fast, capsys):
    rc, out, err = run_main(["ask", "--corpus", str(tmp_path / "nope"), "--index", str(tmp_path / "idx"),
                             DRONES_QUESTION], capsys)
    assert out == ""
    assert_one_line_error(rc, err, "not found", "nope")
    assert not (tmp_path / "idx").exists()  # nothing written for a corpus that is not there
    assert "building" not in err  # the missing corpus is the news, not the missing index


def test_missing_corpus_folder_with_an_existing_index(idx, fast, capsys, tmp_path):
    rc, out, err = run_main(["ask", "--corpus", str(tmp_path / "gone"), "--index", str(idx.index),
                             DRONES_QUESTION], capsys)
    assert out == ""
    assert_one_line_error(rc, err, "not found")
    assert (Path(idx.index) / "CURRENT").exists()


def test_empty_corpus_folder(tmp_path, fast, capsys):
    (tmp_path / "empty").mkdir()
    rc, out, err = run_main(["ask", "--corpus", str(tmp_path / "empty"), "--index", str(tmp_path / "idx"),
                             DRONES_QUESTION], capsys)
    assert out == ""
    assert_one_line_error(rc, err, "no documents")


def test_corpus_of_only_binary_files(tmp_path, fast, capsys):
    corpus = tmp_path / "bin"
    corpus.mkdir()
    (corpus / "a.txt").write_bytes(bytes(range(256)) * 16)
    (corpus / "b.md").write_bytes(b"\x00\x01\x02" * 100)
    (corpus / "c.pdf").write_bytes(b"\x00not a pdf")
    rc, out, err = run_main(["ask", "--corpus", str(corpus), "--index", str(tmp_path / "idx"), DRONES_QUESTION],
                            capsys)
    assert out == ""
    assert_one_line_error(rc, err, "no readable documents")
    assert sum(line.startswith("warning: skipped") for line in err.splitlines()) == 3


def _undecodable_ok(rc, out, err):
    """Undecodable bytes in a question (argv and stdin are decoded with surrogateescape) must
    not crash: either the question is answered or it is refused with one error line."""
    assert "Traceback" not in err
    if rc == 0:
        obj = json.loads(out)
        assert "drones" in obj["question"] and obj["citations"]
    else:
        assert_one_line_error(rc, err)


def test_question_with_undecodable_bytes_as_argument(idx, fast, capsys):
    question = "How many drones \udcff\udcfe has Russia bought?"  # what Python makes of b"\xff\xfe"
    rc, out, err = run_main(["ask", "--json", "-q", *where(idx), question], capsys)
    _undecodable_ok(rc, out, err)


def test_question_with_undecodable_bytes_on_stdin_subprocess(idx, tmp_path):
    proc = subprocess.run([str(QA), "ask", "--json", "-q", *where(idx)],
                          input=b"How many drones \xff\xfe has Russia bought?\n", capture_output=True, cwd=tmp_path,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=180)
    _undecodable_ok(proc.returncode, proc.stdout.decode(), proc.stderr.decode("utf-8", "replace"))


def test_index_path_that_is_a_file(idx, fast, capsys, tmp_path):
    (tmp_path / "not-a-folder").write_text("x")
    rc, out, err = run_main(["ask", "--corpus", str(idx.corpus), "--index", str(tmp_path / "not-a-folder"),
                             DRONES_QUESTION], capsys)
    assert out == ""
    assert_one_line_error(rc, err, "not-a-folder")


@pytest.mark.parametrize("damage", ["passage_strings.json", "manifest.json", "CURRENT"])
def test_damaged_index_in_process(idx, fast, capsys, damage):
    target = Path(idx.index) / "CURRENT" if damage == "CURRENT" else live_generation(idx.index) / damage
    target.write_text("gen-nowhere" if damage == "CURRENT" else "{not json")
    rc, out, err = run_main(["ask", "--json", *where(idx), DRONES_QUESTION], capsys)
    assert out == ""
    assert_one_line_error(rc, err, "damaged", "rebuild")
    assert target.exists()


@pytest.mark.parametrize("args,needle", [
    (["--mode", "sparse"], "sparse"),
    (["--fusion", "max"], "max"),
    (["-k", "0"], "-k"),
    (["--sentences", "2", "--overlap", "2"], "--overlap"),
    (["--threshold", "1.5"], "--threshold"),
])
def test_bad_options(idx, fast, capsys, args, needle):
    rc, out, err = run_main(["ask", *args, *where(idx), DRONES_QUESTION], capsys)
    assert out == ""
    assert_one_line_error(rc, err, needle)


def test_ask_no_build_answers_from_a_stale_index_and_says_so(idx, fast, capsys):
    gen = live_generation(idx.index)
    (Path(idx.corpus) / "new.txt").write_text("Zorvath-9 radars were delivered to Kazan in 2031.\n")
    rc, out, err = run_main(["ask", "--no-build", "--json", "-q", *where(idx), DRONES_QUESTION], capsys)
    assert rc == 0, err
    assert err.splitlines() == ["warning: the index is stale (corpus changed (1 added, 0 changed, 0 removed)); "
                                "answering from it as it is (`qa index` updates it)"]
    assert "1,700" in json.loads(out)["answers"][0]["span"]
    assert live_generation(idx.index) == gen  # nothing was built


def test_ask_no_build_without_an_index_is_one_line(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Some text.\n")
    rc, out, err = run_main(["ask", "--no-build", "--corpus", str(corpus), "--index", str(tmp_path / "index"),
                             "What?"], capsys)
    assert rc == 2 and out == ""
    assert err == f"error: no index in {tmp_path / 'index'} yet: build it first with `qa index`\n"
    assert not (tmp_path / "index").exists()
