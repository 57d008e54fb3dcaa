"""Hostile and malformed inputs at the edges: terminal escapes in what `qa ask` prints, exit
statuses, and `qa eval` runs that fail or are refused (they leave nothing they created).

No test here answers a real question: `qa ask` runs with the engine and the answering step
replaced by stubs (its argument, stdin and exit-status handling are what is tested), and
`qa eval` runs stop at the engine, after its input file has been read and written out.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

import qa.pipeline
from qa.cli import main
from qa.config import MAX_QUESTION_CHARS, MODES, Settings
from qa.eval.datasets import CORPUS_MARK
from qa.eval.setup import claim_corpus, eval_settings
from qa.present import to_json, to_text
from qa.datatypes import Answer, Citation, QAError, Result


OSC52 = "\x1b]52;c;aGVsbG8=\x07"  # writes "hello" to the clipboard
CSI_CLEAR = "\x1b[2J\x1b[H"
C1_CSI = "\x9b31m"  # CSI as one C1 character
TERMINAL_CONTROLS = [chr(c) for c in range(0x20) if c not in (0x09, 0x0A)] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)]


def hostile_result() -> Result:
    text = f"Drones{OSC52} were shipped{C1_CSI} across the Caspian\r Sea."
    span_at = text.index("Caspian")
    answer = Answer(text=text, span="Caspian", score=0.8, citation=1, start=100, end=100 + len(text),
                    span_start=100 + span_at, span_end=100 + span_at + len("Caspian"), label="high\x1b[5m", doc="a.txt")
    cite = Citation(n=1, doc="evil\x1b]0;pwned\x07.txt", title=f"Title{CSI_CLEAR}\x00\x08", passage=0, start=90,
                    end=200, line=3, text=f"Before. {text} After\x7f.")
    return Result(question=f"Which sea?{OSC52}\x85", answers=[answer], citations=[cite], mode="hybrid",
                  timings_ms={"total": 1.0})


# ------------------------------------------------------------------ present: text and JSON


@pytest.mark.unit
def test_to_text_strips_every_terminal_control_from_question_answer_titles_and_snippets():
    # Without its ESC/BEL/ST the rest of a sequence is inert text, shown as it is.
    assert to_text(hostile_result()) == (
        "Q: Which sea?]52;c;aGVsbG8=\n"
        "A: Drones]52;c;aGVsbG8= were shipped31m across the **Caspian** Sea. [1]\n"
        "   confidence 0.80 (high[5m)\n"
        "\n"
        "[1] Title[2J[H — evil]0;pwned.txt:3\n"
        "    Before. Drones]52;c;aGVsbG8= were shipped31m across the Caspian Sea. After."
    )


@pytest.mark.unit
def test_to_text_in_colour_holds_only_its_own_escapes():
    text = to_text(hostile_result(), color=True)
    own = ("\033[1m", "\033[2m", "\033[0m")
    for escape in own:
        text = text.replace(escape, "")
    assert not any(ch in text for ch in TERMINAL_CONTROLS)
    assert "\033[1m**Caspian**\033[0m" in to_text(hostile_result(), color=True)


@pytest.mark.unit
def test_to_text_of_an_abstention_strips_the_question():
    result = Result(question="Who?\x1b]52;c;eA==\x07\x9d", answers=[], citations=[], mode="bm25", timings_ms={},
                    message="The documents do not answer this question.")
    assert to_text(result) == "Q: Who?]52;c;eA==\nA: The documents do not answer this question."


@pytest.mark.unit
def test_to_json_escapes_every_control_and_round_trips():
    result = hostile_result()
    line = to_json(result)
    assert not any(ch in line for ch in TERMINAL_CONTROLS + ["\n", "\t"])
    assert "\\u001b]52;c;aGVsbG8=\\u0007" in line and "\\u009b31m" in line and "After\\u007f." in line
    assert "\\u0085" in line  # NEL, a C1 control that ensure_ascii=False would leave raw
    back = json.loads(line)
    assert back["question"] == result.question
    assert back["answers"][0]["text"] == result.answers[0].text
    assert back["citations"][0]["title"] == result.citations[0].title
    assert back["citations"][0]["text"] == result.citations[0].text
    assert "Caspian Sea — ü" in to_json(Result(question="Caspian Sea — ü", answers=[], citations=[], mode="bm25",
                                               timings_ms={}))  # other text stays as it is


# ------------------------------------------------------------------ qa ask: exit statuses


@pytest.fixture
def stub_ask(monkeypatch):
    """`qa ask` with no engine to open: questions containing 'boom' fail unexpectedly, the
    others get the hostile answer above (with their own question)."""
    opened = []

    def open_engine(settings, **kwargs):
        opened.append(settings)
        return object()

    def ask(engine, question, **kwargs):
        question = qa.pipeline.check_question(question)
        if "boom" in question:
            raise RuntimeError("the reader crashed")
        result = hostile_result()
        result.question = question
        return result

    monkeypatch.setattr(qa.pipeline, "open_engine", open_engine)
    monkeypatch.setattr(qa.pipeline, "ask", ask)
    return opened


def run(args, capsys, monkeypatch, stdin=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


TOO_LONG = "x" * (MAX_QUESTION_CHARS + 1)
TOO_LONG_ERROR = (f"error: the question is too long ({MAX_QUESTION_CHARS + 1:,} characters; "
                  f"at most {MAX_QUESTION_CHARS:,})\n")


@pytest.mark.unit
def test_a_bad_question_exits_2_as_argument_and_on_stdin(stub_ask, tmp_path, capsys, monkeypatch):
    where = ["--index", tmp_path / "index", "--json"]
    code, out, err = run(["ask", *where, TOO_LONG], capsys, monkeypatch)
    assert (code, out, err) == (2, "", TOO_LONG_ERROR)
    assert stub_ask == []  # refused before any engine is opened

    code, out, err = run(["ask", *where], capsys, monkeypatch, stdin=f"Where?\n{TOO_LONG}\nWhen?\n")
    assert (code, err) == (2, TOO_LONG_ERROR)
    assert [json.loads(line)["question"] for line in out.splitlines()] == ["Where?", "When?"]


@pytest.mark.unit
def test_an_empty_question_argument_exits_2_and_blank_stdin_lines_are_skipped(stub_ask, tmp_path, capsys,
                                                                              monkeypatch):
    code, out, err = run(["ask", "--index", tmp_path / "index", " \t "], capsys, monkeypatch)
    assert (code, out, err) == (2, "", "error: the question is empty\n")
    code, out, err = run(["ask", "--index", tmp_path / "index", "--json"], capsys, monkeypatch, stdin="\n \t \nWhere?\n")
    assert (code, err) == (0, "")
    assert [json.loads(line)["question"] for line in out.splitlines()] == ["Where?"]


@pytest.mark.unit
def test_a_question_that_fails_unexpectedly_exits_1_and_the_others_are_answered(stub_ask, tmp_path, capsys,
                                                                                monkeypatch):
    code, out, err = run(["ask", "--index", tmp_path / "index", "--json"], capsys, monkeypatch,
                         stdin="Where?\nboom?\nWhen?\n")
    assert code == 1
    assert [json.loads(line)["question"] for line in out.splitlines()] == ["Where?", "When?"]
    assert err == "error: could not answer the question: RuntimeError: the reader crashed\n"


@pytest.mark.unit
def test_bad_input_and_a_failure_together_exit_2(stub_ask, tmp_path, capsys, monkeypatch):
    code, out, err = run(["ask", "--index", tmp_path / "index", "--json"], capsys, monkeypatch,
                         stdin="boom?\n \n\nWhere?\n" + TOO_LONG + "\nboom again?\n")
    assert code == 2
    assert [json.loads(line)["question"] for line in out.splitlines()] == ["Where?"]
    assert err.splitlines() == ["error: could not answer the question: RuntimeError: the reader crashed",
                                TOO_LONG_ERROR.strip(),
                                "error: could not answer the question: RuntimeError: the reader crashed"]


@pytest.mark.unit
def test_good_questions_exit_0_and_text_output_has_no_terminal_controls(stub_ask, tmp_path, capsys, monkeypatch):
    code, out, err = run(["ask", "--index", tmp_path / "index", f"Which{OSC52} sea?"], capsys, monkeypatch)
    assert (code, err) == (0, "")
    assert out.startswith("Q: Which]52;c;aGVsbG8= sea?\nA: Drones]52;c;aGVsbG8= were shipped31m across the "
                          "**Caspian** Sea. [1]\n")
    assert not any(ch in out for ch in TERMINAL_CONTROLS)


@pytest.mark.unit
def test_an_os_error_exits_1_with_one_line(monkeypatch, tmp_path, capsys):
    def open_engine(settings, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "index" / "x.npz"))

    monkeypatch.setattr(qa.pipeline, "open_engine", open_engine)
    code, out, err = run(["ask", "--index", tmp_path / "index", "Where?"], capsys, monkeypatch)
    assert (code, out, err) == (1, "", f"error: No space left on device: {tmp_path / 'index' / 'x.npz'}\n")


@pytest.mark.unit
def test_error_lines_carry_no_terminal_controls(tmp_path, capsys, monkeypatch):
    model = tmp_path / f"model{OSC52}\r\x9b2J"
    code, out, err = run(["ask", "--index", tmp_path / "index", "--model", model, "Where?"], capsys, monkeypatch)
    assert (code, out) == (2, "")
    assert err == f"error: model folder not found: {tmp_path}/model]52;c;aGVsbG8=2J\n"


@pytest.mark.e2e
def test_the_installed_command_reports_bad_input_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("QA_CORPUS", "QA_INDEX", "QA_MODEL")}
    env["HF_HUB_OFFLINE"] = "1"
    qa_command = Path(sys.executable).with_name("qa")
    proc = subprocess.run([str(qa_command), "ask", "--index", str(tmp_path / "index"), " \t "],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", "error: the question is empty\n")
    assert tree(tmp_path) == []


@pytest.mark.unit
def test_usage_errors_exit_2_with_one_line(capsys, monkeypatch):
    code, out, err = run(["ask", "--mode", "psychic", "Where?"], capsys, monkeypatch)
    assert (code, out) == (2, "")
    choices = ", ".join(f"'{m}'" for m in MODES)
    assert err == f"error: argument --mode: invalid choice: 'psychic' (choose from {choices}) (see `qa ask --help`)\n"
    code, out, err = run(["frobnicate"], capsys, monkeypatch)
    assert (code, out) == (2, "")
    assert err.startswith("error: argument COMMAND: invalid choice: 'frobnicate'") and err.count("\n") == 1


@pytest.mark.unit
def test_help_documents_the_exit_statuses(capsys, monkeypatch):
    statuses = [
        "exit status (every error is one `error: ...` line on stderr):",
        "  0    success; for `ask`, every question was answered (or found not to be answered by the documents)",
        "  1    a failure that is not the input's fault: an operating-system error (e.g. a full disk, or",
        "  2    usage error or bad input: an unknown option or bad value, an empty or too long question",
        "  130  interrupted (Ctrl-C)",
    ]
    code, out, err = run(["--help"], capsys, monkeypatch)
    assert (code, err) == (0, "")
    assert all(line in out.splitlines() for line in statuses), out
    for command in ("index", "ask", "serve", "eval"):  # each names where the statuses are documented
        code, out, err = run([command, "--help"], capsys, monkeypatch)
        assert (code, err) == (0, "")
        assert "exit statuses: see `qa --help`" in out.splitlines()
    assert "  beside that index named <index name>-corpus (--index runs/squad -> runs/squad-corpus); else" in (
        out.splitlines())


# ------------------------------------------------------------------ qa eval: SQuAD inputs and the folders it writes

UNTITLED_SQUAD = {
    "version": "1.1",
    "data": [{"paragraphs": [{"context": "The Eiffel Tower is in Paris. It is 330 metres tall.",
                              "qas": [{"id": 56, "question": "Where is the tower?",
                                       "answers": [{"text": "Paris", "answer_start": 23}]},
                                      {"id": 57, "question": "How tall is it?",
                                       "answers": [{"text": "330 metres", "answer_start": 36}]}]}]}],
}


@pytest.fixture
def stop_at_engine(monkeypatch):
    """`qa eval` stops where it would open the engine (index, encoder, reader), with an error;
    what it had written by then is recorded."""
    seen = {}

    def open_engine(settings, **kwargs):
        corpus = Path(settings.corpus)
        seen.update(corpus=corpus, index=Path(settings.index),
                    files=sorted(p.name for p in corpus.iterdir()) if corpus.is_dir() else None)
        raise QAError("stopped before the engine")

    monkeypatch.setattr(qa.pipeline, "open_engine", open_engine)
    return seen


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.unit
def test_eval_reads_squad_without_titles_with_integer_ids(stop_at_engine, tmp_path, capsys, monkeypatch):
    path = tmp_path / "untitled.json"
    path.write_text(json.dumps(UNTITLED_SQUAD), encoding="utf-8")
    code, out, err = run(["eval", path, "--format", "squad", "--index", tmp_path / "runs" / "idx", "-q"],
                         capsys, monkeypatch)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"note: {path}: 1 of 1 articles have no title, so each is titled by its first line, or 'Article <n>' "
        "(data[0]); 2 question ids are not strings, read as text (e.g. 56 as '56')",
        "error: stopped before the engine",
    ]
    assert stop_at_engine == {"corpus": tmp_path / "runs" / "idx-corpus", "index": tmp_path / "runs" / "idx",
                              "files": [CORPUS_MARK, "the-eiffel-tower-is-in-paris-it-is-330-metres-tall.txt"]}
    assert tree(tmp_path) == ["untitled.json"]  # the failed run removed what it had created


@pytest.mark.unit
def test_eval_with_only_index_writes_the_corpus_beside_it_not_in_the_current_folder(stop_at_engine, tmp_path,
                                                                                     capsys, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = tmp_path / "set.json"
    path.write_text(json.dumps(UNTITLED_SQUAD), encoding="utf-8")
    (tmp_path / "idx").mkdir()
    code, _, _ = run(["eval", path, "--format", "squad", "--index", tmp_path / "idx", "-q"], capsys, monkeypatch)
    assert code == 2 and stop_at_engine["corpus"] == tmp_path / "idx-corpus"
    assert stop_at_engine["files"] == [CORPUS_MARK, "the-eiffel-tower-is-in-paris-it-is-330-metres-tall.txt"]
    assert tree(elsewhere) == []
    assert tree(tmp_path) == ["cwd", "idx", "set.json"]  # the existing index folder stays, the new corpus goes


@pytest.mark.unit
def test_eval_settings_places_a_benchmark_corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dev-v1.1.json").write_text("{}")

    def chosen(**given):
        args = Namespace(format="squad", file=tmp_path / "dev-v1.1.json", corpus=None, index=None, threshold=None)
        vars(args).update(given)
        s = eval_settings(args, Settings())
        return s.corpus, s.index

    assert chosen() == (Path(".qa-eval/dev-v1.1/corpus"), Path(".qa-eval/dev-v1.1/index"))
    assert chosen(index=Path("runs/squad")) == (Path("runs/squad-corpus"), Path("runs/squad"))
    assert chosen(index=Path("runs/squad/")) == (Path("runs/squad-corpus"), Path("runs/squad"))
    assert chosen(index=Path(".")) == (tmp_path.parent / f"{tmp_path.name}-corpus", Path("."))
    assert chosen(index=Path("a/..")) == (tmp_path.parent / f"{tmp_path.name}-corpus", Path("a/.."))
    assert chosen(corpus=Path("c"), index=Path("i")) == (Path("c"), Path("i"))
    assert chosen(corpus=Path("c")) == (Path("c"), Path(".qa-eval/dev-v1.1/index"))
    jsonl = Namespace(format="jsonl", file=tmp_path / "q.jsonl", corpus=None, index=Path("i"), threshold=None)
    assert eval_settings(jsonl, Settings(corpus=Path("docs"), index=Path("i"))).corpus == Path("docs")


@pytest.mark.parametrize("content, message", [
    ('{"data": [', "bad JSON"),
    (json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [{"id": [1]}]}]}]}),
     "not SQuAD JSON: data[0].paragraphs[0].qas[0] has a list as 'id' (expected a string or number)"),
    (json.dumps({"data": []}), "no questions"),
])
@pytest.mark.parametrize("where", [[], ["--index", "runs/idx"], ["--corpus", "new/corpus"]])
@pytest.mark.unit
def test_a_refused_eval_leaves_no_folder_behind(stop_at_engine, tmp_path, capsys, monkeypatch, content, message,
                                                where):
    monkeypatch.chdir(tmp_path)
    Path("set.json").write_text(content, encoding="utf-8")
    code, out, err = run(["eval", "set.json", "--format", "squad", *where, "-q"], capsys, monkeypatch)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("error: set.json: ") and message in err
    assert stop_at_engine == {}
    assert tree(tmp_path) == ["set.json"]


@pytest.mark.unit
def test_a_failed_eval_keeps_an_existing_benchmark_corpus(stop_at_engine, tmp_path, capsys, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / CORPUS_MARK).touch()
    (corpus / "old-article.txt").write_text("from an earlier run")
    path = tmp_path / "set.json"
    path.write_text(json.dumps(UNTITLED_SQUAD), encoding="utf-8")
    code, _, err = run(["eval", path, "--format", "squad", "--corpus", corpus, "--index", tmp_path / "index", "-q"],
                       capsys, monkeypatch)
    assert code == 2 and err.endswith("error: stopped before the engine\n")
    assert tree(tmp_path) == ["corpus", f"corpus/{CORPUS_MARK}",
                              "corpus/the-eiffel-tower-is-in-paris-it-is-330-metres-tall.txt", "set.json"]


@pytest.mark.unit
def test_claim_corpus_checks_and_creates_nothing(tmp_path):
    claim_corpus(tmp_path / "a" / "b" / "corpus")
    assert tree(tmp_path) == []
    taken = tmp_path / "reports"
    taken.mkdir()
    (taken / "memo.txt").write_text("mine")
    with pytest.raises(QAError) as caught:
        claim_corpus(taken)
    assert str(caught.value) == (f"{taken} already holds other files: give --corpus a new or empty folder "
                                 "for the benchmark")
    (tmp_path / "file").write_text("x")
    with pytest.raises(QAError) as caught:
        claim_corpus(tmp_path / "file")
    assert str(caught.value) == f"corpus for the benchmark is not a folder: {tmp_path / 'file'}"
    with pytest.raises(QAError) as caught:
        claim_corpus(tmp_path / "file" / "sub" / "corpus")
    assert str(caught.value) == (f"cannot write corpus folder {tmp_path / 'file' / 'sub' / 'corpus'}: "
                                 f"{tmp_path / 'file'} is not a folder")
    assert tree(tmp_path) == ["file", "reports", "reports/memo.txt"]
    (tmp_path / "empty").mkdir()
    claim_corpus(tmp_path / "empty")
    assert os.listdir(tmp_path / "empty") == []
