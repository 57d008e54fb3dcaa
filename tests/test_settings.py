"""Settings of two lifetimes (issue 11) and the commands' help and options (issue 10).

Index-shaping settings are chosen by `qa index`, saved in the manifest and authoritative when the
index is read: `qa ask` takes them from the index, and an index-shaping option that differs is a
one-line error saying to run `qa index` (the shared index is never rebuilt by a question). The
options are generated from the fields, so every field has one, with its help, choices and range.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
from dataclasses import fields
from pathlib import Path

import pytest

from helpers_core import DRONES_QUESTION, live_generation
from qa.cli import build_parser
from qa.config import ASK_FIELDS, INDEX_FIELDS, LOCATION, Settings, option_flag
from qa.datatypes import QAError
from qa.index import load_index
from qa.manifest import saved_index_settings
from qa.options import port_number, settings_from
from test_cli import run_main, where

pytestmark = pytest.mark.integration

QUESTION_OPTIONS = ["--mode", "-k", "--threshold", "--json", "--corpus", "--index", "--answerer", "--no-build"]
INDEX_OPTIONS = ["--sentences", "--overlap", "--model", "--precision", "--faiss", "--batch-size", "--hnsw-m",
                 "--hnsw-min", "--backend", "--follow-links"]


def help_of(command: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def listed(text: str, flag: str) -> bool:
    return re.search(rf"(^|[\s\[]){re.escape(flag)}[\s\]]", text) is not None


def test_ask_help_lists_only_what_a_question_needs(capsys):
    text = help_of(["ask"], capsys)
    assert all(listed(text, flag) for flag in QUESTION_OPTIONS)
    assert not any(listed(text, flag) for flag in INDEX_OPTIONS), text
    assert "belong to `qa index --help`" in text
    text = help_of(["index"], capsys)
    assert all(listed(text, flag) for flag in INDEX_OPTIONS + ["--corpus", "--index", "--rebuild"])
    assert not any(listed(text, flag) for flag in ["--mode", "-k", "--threshold", "--json", "--answerer"])


@pytest.mark.parametrize("command", ["index", "ask", "serve", "eval"])
def test_each_commands_help_starts_with_one_line_and_ends_with_two_examples(capsys, command):
    lines = help_of([command], capsys).rstrip("\n").split("\n")
    description = lines[lines.index("") + 1]  # after the usage lines
    assert description.endswith(".") and lines[lines.index("") + 2] == ""
    assert lines[-3] == "examples:"
    assert all(line.startswith(("  qa ", "  printf ")) for line in lines[-2:]), lines[-3:]


def test_every_setting_is_an_option_with_help_generated_from_its_field(capsys):
    text = help_of(["eval"], capsys)  # eval shows every setting
    for f in fields(Settings):
        assert listed(text, option_flag(f)), f.name
        assert f.metadata["help"].split()[0] in text
    assert set(INDEX_FIELDS) | set(ASK_FIELDS) | set(LOCATION) == {f.name for f in fields(Settings)}
    assert not set(INDEX_FIELDS) & set(ASK_FIELDS)


@pytest.mark.parametrize("args,message", [
    (["--read", "0"], "--read must be at least 1, not 0"),
    (["--dense-weight", "1.5"], "--dense-weight must be between 0 and 1, not 1.5"),
    (["--threshold", "-0.1"], "--threshold must be between 0 and 1, not -0.1"),
    (["--max-answers", "0"], "--max-answers must be at least 1, not 0"),
    (["--ef-search", "0"], "--ef-search must be at least 1, not 0"),
])
def test_a_bad_value_is_one_line_naming_its_option(idx, capsys, args, message):
    rc, out, err = run_main(["ask", *args, *where(idx), DRONES_QUESTION], capsys)
    assert (rc, out, err) == (2, "", f"error: {message}\n")


def test_validate_checks_programmatic_settings_too():
    with pytest.raises(QAError, match=r"^unknown --mode 'psychic': expected one of hybrid, bm25, dense$"):
        Settings(mode="psychic").validate()
    with pytest.raises(QAError, match=r"^--hnsw-m must be at least 2, not 1$"):
        Settings(hnsw_m=1).validate()
    with pytest.raises(QAError, match=r"^--overlap must be less than --sentences"):
        Settings(sentences_per_passage=2, overlap=2).validate()
    assert Settings().validate() == Settings()


def test_the_manifest_saves_the_index_settings(idx):
    assert saved_index_settings(idx.index) == Settings().index_part()
    assert saved_index_settings(idx.index.parent / "nowhere") is None


def test_ask_with_a_different_index_setting_is_an_error_and_rebuilds_nothing(idx, fast, capsys):
    gen = live_generation(idx.index)
    rc, out, err = run_main(["ask", "--sentences", "3", "--precision", "int8", *where(idx), DRONES_QUESTION], capsys)
    assert (rc, out) == (2, "")
    assert err == (f"error: the index in {idx.index} was built with --sentences 4, --precision fp32; a question "
                   "cannot change it: run `qa index --sentences 3 --precision int8` to rebuild it (every later "
                   "question then uses it)\n")
    assert live_generation(idx.index) == gen
    # the same value as the index's is no change
    rc, out, err = run_main(["ask", "--json", "-q", "--sentences", "4", *where(idx), DRONES_QUESTION], capsys)
    assert rc == 0 and "1,700" in json.loads(out)["answers"][0]["span"]
    assert live_generation(idx.index) == gen


def test_the_index_settings_are_authoritative_once_built(idx, fast, capsys):
    rc, out, err = run_main(["index", "-q", "--sentences", "3", "--overlap", "0", *where(idx)], capsys)
    assert rc == 0, err
    gen = live_generation(idx.index)
    assert saved_index_settings(idx.index)["sentences_per_passage"] == 3
    # a plain question and a plain `qa index` use the index's settings: nothing is rebuilt
    rc, out, err = run_main(["ask", "--json", "-q", *where(idx), DRONES_QUESTION], capsys)
    assert rc == 0 and "1,700" in json.loads(out)["answers"][0]["span"], err
    rc, out, err = run_main(["index", *where(idx)], capsys)
    assert rc == 0 and err == f"index in {idx.index} is up to date with {idx.corpus}\n"
    assert live_generation(idx.index) == gen
    settings = settings_from(argparse.Namespace(corpus=idx.corpus, index=idx.index, policy="read"))
    assert (settings.sentences_per_passage, settings.overlap) == (3, 0)
    assert max(len(p.sentences) for p in load_index(settings).passages) == 3


def test_an_index_without_saved_settings_gives_those_of_its_signature(idx):
    manifest_path = live_generation(idx.index) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["settings"]
    manifest_path.write_text(json.dumps(manifest))
    assert saved_index_settings(idx.index) == {"sentences_per_passage": 4, "overlap": 1, "faiss": "auto",
                                               "hnsw_m": 32, "hnsw_min": 50_000, "precision": "fp32"}
    manifest["settings"] = {"sentences_per_passage": "four"}
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(QAError, match="damaged .manifest.json has a bad setting sentences_per_passage"):
        saved_index_settings(idx.index)


def test_gradio_server_port_sets_the_default_port(monkeypatch, capsys):
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8123")
    assert build_parser().parse_args(["serve"]).port == 8123
    assert build_parser().parse_args(["serve", "--port", "9000"]).port == 9000
    monkeypatch.setenv("GRADIO_SERVER_PORT", "eighty")
    rc, out, err = run_main(["serve"], capsys)
    assert (rc, out) == (2, "")
    assert err.startswith("error: argument --port: not a port number (0 to 65535): 'eighty' (from --port or "
                          "GRADIO_SERVER_PORT)") and err.count("\n") == 1
    with pytest.raises(argparse.ArgumentTypeError):
        port_number("70000")


def test_a_taken_port_says_how_to_use_another(capsys):
    from qa.web_server import PortInUse, check_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse) as error:
            check_port("127.0.0.1", port)
        free = int(re.search(r"`--port (\d+)`", str(error.value)).group(1))
        assert free != port
        assert str(error.value) == (f"port {port} is in use (another `qa serve`?): start on another port with "
                                    f"`--port {free}` (`make run ARGS=\"--port {free}\"`, or GRADIO_SERVER_PORT={free})")
        rc, out, err = run_main(["serve", "--port", str(port), "--index", "/nonexistent/index"], capsys)
    assert (rc, out) == (1, "")
    assert err == f"error: cannot start the server: {error.value}\n"


def test_eval_of_a_question_set_uses_the_index_settings_and_a_benchmark_the_options(idx, fast, capsys, monkeypatch,
                                                                                    tmp_path):
    import qa.eval.command

    rc, out, err = run_main(["index", "-q", "--sentences", "3", "--overlap", "0", *where(idx)], capsys)
    assert rc == 0, err
    seen = []
    monkeypatch.setattr(qa.eval.command, "run_eval", lambda args, settings: seen.append(settings) or 0)
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"id": "q1", "question": "Why?", "answers": ["Because"]}\n')
    assert run_main(["eval", str(questions), *where(idx)], capsys)[0] == 0
    assert run_main(["eval", str(questions), "--sentences", "5", *where(idx)], capsys)[0] == 0
    assert run_main(["eval", str(questions), "--format", "squad", *where(idx)], capsys)[0] == 0
    assert [s.sentences_per_passage for s in seen] == [3, 5, 4]


def test_ask_takes_a_batch_size_it_changes_nothing_in_the_index_with(idx, fast, capsys):
    rc, out, err = run_main(["ask", "--json", "-q", "--batch-size", "64", *where(idx), DRONES_QUESTION], capsys)
    assert rc == 0 and "1,700" in json.loads(out)["answers"][0]["span"], err
