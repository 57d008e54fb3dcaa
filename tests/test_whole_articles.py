"""``benchmarks/squad_whole_articles.py``: every article becomes one long paragraph, with every
answer still at its offset, so long documents can be evaluated through ``qa eval`` as they are."""

from __future__ import annotations

import json

import pytest
from test_bench_memory import bench_module

pytestmark = pytest.mark.unit

SQUAD = {"version": "1.1", "data": [
    {"title": "Black_Death", "paragraphs": [
        {"context": "The plague reached Europe in 1347.",
         "qas": [{"id": "a", "question": "When?", "answers": [{"text": "1347", "answer_start": 29}]}]},
        {"context": "It killed a third of Europe.",
         "qas": [{"id": "b", "question": "How many?", "answers": [{"text": "a third", "answer_start": 10}]},
                 {"id": "c", "question": "Who?", "answers": [], "is_impossible": True}]}]},
    {"title": "Mars", "paragraphs": [
        {"context": "Mars has two moons.",
         "qas": [{"id": "d", "question": "Moons?", "answers": [{"text": "two", "answer_start": 9}]}]}]},
]}


def test_articles_become_one_paragraph_with_every_answer_at_its_offset(tmp_path):
    whole = bench_module("squad_whole_articles")
    out = whole.whole_articles(SQUAD, None)
    assert [a["title"] for a in out["data"]] == ["Black_Death", "Mars"]
    (paragraph,) = out["data"][0]["paragraphs"]
    assert paragraph["context"] == "The plague reached Europe in 1347.\n\nIt killed a third of Europe."
    for qa in paragraph["qas"]:
        for a in qa["answers"]:
            assert paragraph["context"][a["answer_start"] : a["answer_start"] + len(a["text"])] == a["text"]
    assert [qa["id"] for qa in paragraph["qas"]] == ["a", "b", "c"] and paragraph["qas"][2]["is_impossible"]
    assert [a["title"] for a in whole.whole_articles(SQUAD, "heldout")["data"]] == ["Mars"]  # Black_Death calibrates

    src, dst = tmp_path / "s.json", tmp_path / "w.json"
    src.write_text(json.dumps(SQUAD), encoding="utf-8")
    assert whole.main([str(src), "--out", str(dst)]) == 0
    assert json.loads(dst.read_text()) == out
    bad = json.loads(json.dumps(SQUAD))
    bad["data"][1]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3
    src.write_text(json.dumps(bad), encoding="utf-8")
    assert whole.main([str(src), "--out", str(dst)]) == 2  # a clear error, not a wrong file
