"""The quality bar on questions/seed.jsonl, checked end to end through the `qa` CLI.

A top answer passes when it has at most 60 words, contains an accepted answer, is copied
verbatim from its cited passage, and its cited passage contains the accepted answer.

- The heuristic answerer (``--answerer heuristic``), as before the reader, on an index of separately
  encoded sentence vectors (``--sentence-vectors encoded``, as its weights were fitted): at least
  88% of answerable questions pass (38 of 43 since passages are indexed with their title and
  heading; 0.907 before), at least 5 of every 6 unanswerable questions abstain, and hybrid is at
  most one answer below bm25 and dense.
- The trained reader (the default), hybrid: its highlighted span matches an accepted answer
  exactly (SQuAD normalisation) for at least 58% of the answerable questions (the heuristic:
  0.28), at least 79% pass, and at least 3 of the 7 unanswerable questions abstain. Reader v1 on
  main 8d56ffd reaches 0.605, 0.814 (35 of 43) and 4 of 7; the bars leave one question of slack,
  because the int8 reader's scores may differ in the last digits on another CPU's instructions.
  The issue's bar (93%, every unanswerable question abstains, no paraphrased one does) is not
  met yet: see README, Quality.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qa.eval.metrics import contains_answer, exact_match
from qa.present import from_dict
from qa.transcript import reply_markdown
from qa.web_page import reply_html

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [json.loads(line) for line in (ROOT / "questions" / "seed.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("quality")
    shutil.copytree(ROOT / "corpus", base / "corpus")
    return base


def run_cli(workspace: Path, mode: str, answerer: str = "reader", *extra: str, index: str = "index") -> list[dict]:
    stdin = "\n".join(q["question"] for q in QUESTIONS) + "\n"
    proc = subprocess.run(
        [sys.executable, "-m", "qa.cli", "ask", "--json", "--quiet", "--mode", mode, "--answerer", answerer,
         "--corpus", str(workspace / "corpus"), "--index", str(workspace / index), *extra],
        input=stdin, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["question"] for r in lines] == [q["question"] for q in QUESTIONS]
    return lines


def score(results: list[dict]) -> tuple[float, float, list[str]]:
    """(share of answerable passed, share of unanswerable abstained, failures)."""
    passed, abstained, failures = 0, 0, []
    for q, r in zip(QUESTIONS, results):
        if not q["answers"]:
            abstained += not r["answers"]
            if r["answers"]:
                failures.append(f"{q['id']} answered: {r['answers'][0]['text'][:80]}")
            continue
        if not r["answers"]:
            failures.append(f"{q['id']} abstained")
            continue
        top = r["answers"][0]
        cited = next(c for c in r["citations"] if c["n"] == top["citation"])
        ok = (
            len(top["text"].split()) <= 60
            and contains_answer(top["text"], q["answers"])
            and cited["text"][top["start"] - cited["start"] : top["end"] - cited["start"]] == top["text"]
            and contains_answer(cited["text"], q["answers"])
        )
        passed += ok
        if not ok:
            failures.append(f"{q['id']} wrong: {top['text'][:80]}")
    n_ans = sum(1 for q in QUESTIONS if q["answers"])
    n_una = len(QUESTIONS) - n_ans
    return passed / n_ans, abstained / n_una, failures


def test_question_set_shape():
    assert len(QUESTIONS) >= 40
    assert sum(1 for q in QUESTIONS if not q["answers"]) >= 6
    assert sum(1 for q in QUESTIONS if q.get("paraphrase")) >= 8
    for q in QUESTIONS:
        if q["answers"]:
            text = (ROOT / "corpus" / q["doc"]).read_text(encoding="utf-8")
            assert all(a in text for a in q["answers"]), q["id"]


def test_quality_bar_through_cli_heuristic(workspace):
    results = {mode: run_cli(workspace, mode, "heuristic", "--sentence-vectors", "encoded", index="index-encoded")
               for mode in ("hybrid", "bm25", "dense")}
    figures = {mode: score(r) for mode, r in results.items()}
    for mode, (acc, abst, failures) in figures.items():
        print(f"{mode}: answerable {acc:.1%}, abstained {abst:.1%}; " + "; ".join(failures))
    acc, abst, failures = figures["hybrid"]
    # 0.884 (38 of 43) since passages are indexed with their title and heading (0.907 before): the
    # heuristic answerer, kept for comparison, lost one answer while the reader gained two (README)
    assert acc >= 0.88, failures
    assert abst >= 5 / 6, failures
    for other in ("bm25", "dense"):
        assert acc >= figures[other][0] - 1 / 43, f"hybrid more than one answer below {other}"
        assert abst >= figures[other][1] or acc > figures[other][0], f"hybrid below {other}"
    check_quotes(results["hybrid"])


def test_quality_bar_through_cli_reader(workspace):
    hybrid = run_cli(workspace, "hybrid")
    acc, abst, failures = score(hybrid)
    print(f"reader, hybrid: answerable {acc:.1%}, abstained {abst:.1%}; " + "; ".join(failures))
    # reader v2 (README): 41 of 43 right, 4 of 7 abstain, 36 exact spans; one question of slack each
    assert acc >= 40 / 43, failures
    assert abst >= 3 / 7, failures
    answerable = [(q, r) for q, r in zip(QUESTIONS, hybrid) if q["answers"]]
    span_em = sum(bool(r["answers"]) and exact_match(r["answers"][0]["span"] or "", q["answers"])
                  for q, r in answerable) / len(answerable)
    assert span_em >= 35 / 43, span_em
    check_quotes(hybrid)
    for r in hybrid:
        for a in r["answers"]:
            assert a["confidence"] in ("high", "medium", "low") and a["span_start"] < a["span_end"]


def check_quotes(results: list[dict]) -> None:
    """Every answer is a verbatim quote of its cited passage, with its span inside it."""
    for r in results:
        for a in r["answers"]:
            cited = next(c for c in r["citations"] if c["n"] == a["citation"])
            assert cited["text"][a["start"] - cited["start"] : a["end"] - cited["start"]] == a["text"]
            if a["span"] is not None:
                assert a["span"] in a["text"]


def test_reader_abstains_on_a_name_no_document_mentions(workspace):
    """The reader would quote Russia's 1,700 drones for Zimbabwe; no document mentions Zimbabwe,
    so it abstains and says so, unless the user lowers the threshold to 0."""
    base = [sys.executable, "-m", "qa.cli", "ask", "--json", "--quiet", "--corpus", str(workspace / "corpus"),
            "--index", str(workspace / "index"), "How many drones has Zimbabwe purchased from Iran?"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    default = json.loads(subprocess.run(base, capture_output=True, text=True, timeout=120, env=env, check=True).stdout)
    assert default["answers"] == [] and default["abstention"]["reason"] == "unmentioned"
    assert default["abstention"]["missing"] == ["Zimbabwe"]
    forced = json.loads(subprocess.run(base + ["--threshold", "0"], capture_output=True, text=True, timeout=120,
                                       env=env, check=True).stdout)
    assert forced["answers"] and forced["answers"][0]["confidence"] == "low"


def test_an_answer_whose_passage_lacks_a_name_is_low_and_says_which(workspace):
    """China is in the documents but not in the passage on the 1,700 drones Russia bought: an answer
    quoted from it is held at "low", and the output says which name it lacks."""
    base = [sys.executable, "-m", "qa.cli", "ask", "--quiet", "--corpus", str(workspace / "corpus"),
            "--index", str(workspace / "index"), "--threshold", "0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def ask(*args: str) -> str:
        return subprocess.run(base + list(args), capture_output=True, text=True, timeout=120, env=env,
                              check=True).stdout

    replies = {who: json.loads(ask("--json", f"How many drones has {who} purchased from Iran?"))
               for who in ("China", "Russia")}
    china, russia = (replies[who]["answers"][0] for who in ("China", "Russia"))
    assert russia["span"] == china["span"] == "1,700"
    assert russia["lacks"] == [] and russia["confidence"] == "high"
    assert china["lacks"] == ["China"] and china["confidence"] == "low"
    said = f"[{china['citation']}] does not mention “China”"
    assert f"(low): {said}" in ask("How many drones has China purchased from Iran?")  # the CLI
    assert f"({china['score']:.2f}): {said}</p>" in reply_html(from_dict(replies["China"]))  # the chat page
    escaped = said.replace("[", "\\[").replace("]", "\\]")
    assert f"low: {escaped})" in reply_markdown(replies["China"])  # its copy as Markdown
    assert "does not mention" not in reply_html(from_dict(replies["Russia"])) + reply_markdown(replies["Russia"])


def test_a_question_typed_in_lower_case_or_in_capitals_is_answered_as_the_cased_one(workspace):
    """The names are found as the documents write them (qa.truecase): "CHINA" in a question all in
    capitals is a name and "MANY" is not; "china" typed in lower case is still China."""
    cased = ["How many drones has China purchased from Iran?", "How many drones has Russia purchased from Iran?"]
    typed = cased + [q.lower() for q in cased] + [q.upper() for q in cased]
    run = subprocess.run([sys.executable, "-m", "qa.cli", "ask", "--json", "--quiet", "--corpus",
                          str(workspace / "corpus"), "--index", str(workspace / "index")],
                         input="\n".join(typed) + "\n", capture_output=True, text=True, timeout=180,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=True)
    replies = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["question"] for r in replies] == typed  # shown as typed

    seen = [(r["answers"][0]["span"], r["answers"][0]["confidence"], r["answers"][0]["lacks"]) for r in replies]
    assert seen[:2] == [("1,700", "low", ["China"]), ("1,700", "high", [])]
    assert seen[2:4] == seen[4:] == seen[:2]
