"""The reader's training data (training/train_reader.py): near-miss negatives and the windows made from them."""

from __future__ import annotations

import importlib.util
import platform
import random
import subprocess
import sys
from pathlib import Path

import pytest

from qa.config import resolve_model
from qa.reader_windows import WindowMaker

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def train_reader():
    spec = importlib.util.spec_from_file_location("train_reader", ROOT / "training" / "train_reader.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONTEXT = ("The fleet was founded in 1901 by Admiral Grey. It first sailed from Portsmouth. "
           "Its flagship was the Resolute. The fleet was renamed in 1950.")


def item(qid: str, answer: str, context: str = CONTEXT) -> dict:
    start = context.index(answer)
    return {"id": qid, "question": "Where did the fleet first sail from?", "context": context,
            "spans": [(start, start + len(answer))], "answers": [answer], "para": "Fleet#0"}


def test_a_near_miss_is_the_paragraph_without_the_answer_sentences():
    tr = train_reader()
    got = tr.near_misses([item("q1", "Portsmouth")])
    assert got == {"q1": "The fleet was founded in 1901 by Admiral Grey. Its flagship was the Resolute. "
                         "The fleet was renamed in 1950."}
    # the answer also stands in a sentence that would be kept: no near miss
    assert tr.near_misses([item("q2", "fleet")]) == {}
    # fewer than two sentences left: no near miss
    assert tr.near_misses([item("q4", "Portsmouth", "It first sailed from Portsmouth. Its flagship was the Resolute.")]) == {}


def test_each_negative_gives_one_no_answer_window_and_the_default_is_unchanged():
    tr = train_reader()
    maker = WindowMaker(resolve_model(""))
    items = [item("q1", "Portsmouth")]
    negatives = {"q1": "A paragraph about something else entirely, with no port named in it."}
    misses = tr.near_misses(items)
    windows = tr.training_windows(maker, items, negatives, 1.0, random.Random(0), misses, 1.0)
    assert [w.item for w, _, _ in windows] == [0, 1, 2]
    (pos, starts, ends), *negs = windows
    assert starts != [0] and ends != [0]
    assert maker.tokenizer.decode(pos.ids[starts[0] : ends[0] + 1]).lower() == "portsmouth"
    assert all(s == [0] and e == [0] for _, s, e in negs)
    plain = tr.training_windows(maker, items, negatives, 1.0, random.Random(0))
    assert [(w.item, w.ids, s, e) for w, s, e in plain] == [(w.item, w.ids, s, e) for w, s, e in windows[:2]]


@pytest.mark.parametrize("train_embeddings", [False, True])
def test_the_word_embedding_table_trains_only_when_asked(train_embeddings):
    tr = train_reader()
    model = tr.build_model(resolve_model(""))
    params = tr.trainable(model, train_embeddings)
    table = model.bert.embeddings.word_embeddings.weight
    assert any(p is table for p in params) is train_embeddings
    assert any(p is model.head.weight for p in params)
    assert any(p is model.bert.embeddings.position_embeddings.weight for p in params)


@pytest.mark.parametrize("layer_decay", [1.0, 0.8])
def test_layer_decay_lowers_the_rate_layer_by_layer_and_one_rate_keeps_the_two_plain_groups(layer_decay):
    tr = train_reader()
    model = tr.build_model(resolve_model(""))
    params = tr.trainable(model)
    groups = tr.param_groups(model, 1e-4, layer_decay)
    grouped = [p for g in groups for p in g["params"]]
    assert sorted(map(id, grouped)) == sorted(map(id, params))

    def rate(p) -> float:
        return next(g["lr"] for g in groups if any(q is p for q in g["params"]))

    def decay(p) -> float:
        return next(g["weight_decay"] for g in groups if any(q is p for q in g["params"]))

    layers = model.bert.encoder.layer
    assert rate(model.head.weight) == pytest.approx(1e-4)
    assert decay(model.head.weight) == 0.01 and decay(model.head.bias) == 0.0
    if layer_decay == 1.0:
        assert [len(g["params"]) for g in groups] == [sum(p.ndim >= 2 for p in params), sum(p.ndim < 2 for p in params)]
        assert {g["lr"] for g in groups} == {1e-4}
    else:
        assert rate(layers[-1].output.dense.weight) == pytest.approx(0.8e-4)
        assert rate(layers[0].output.dense.weight) == pytest.approx(1e-4 * 0.8 ** 6)
        assert rate(model.bert.embeddings.position_embeddings.weight) == pytest.approx(1e-4 * 0.8 ** 7)


def test_without_bf16_units_the_default_run_trains_on_fewer_questions():
    tr = train_reader()
    assert tr.default_questions(bf16=True) == 0  # all questions: about an hour with bf16
    assert 0 < tr.default_questions(bf16=False) == tr.FP32_QUESTIONS < 4913  # all in fp32: about 84 min on AVX2


def test_training_keeps_freed_memory_where_the_c_library_is_glibc():
    code = ("import importlib.util as u, sys; s = u.spec_from_file_location('t', sys.argv[1]); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.keep_freed_memory())")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "training" / "train_reader.py")],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(platform.libc_ver()[0] == "glibc")


def test_an_answer_cut_leaves_its_sentence_without_the_answer_and_the_words_leading_into_it():
    from qa.eval.nearmiss import cut_answers

    def cut(answer: str, text: str = CONTEXT) -> str | None:
        start = text.index(answer)
        return cut_answers(text, [(start, start + len(answer))], [answer])

    assert cut("1901").startswith("The fleet was founded by Admiral Grey. It first sailed")
    assert cut("Admiral Grey").startswith("The fleet was founded in 1901. It first sailed")
    assert "It first sailed. Its flagship" in cut("Portsmouth.")  # the sentence keeps its full stop
    assert cut("the Resolute") == ("The fleet was founded in 1901 by Admiral Grey. It first sailed from Portsmouth. "
                                   "Its flagship was. The fleet was renamed in 1950.")
    assert cut("fleet") is None  # named again elsewhere: what is left still answers
    # two annotators' overlapping spans are cut as one
    start = CONTEXT.index("Admiral")
    assert cut_answers(CONTEXT, [(start, start + 7), (start, start + 12)], ["Admiral", "Admiral Grey"]) == cut("Admiral Grey")


def test_answer_cut_near_misses_train_as_no_answer_windows():
    tr = train_reader()
    maker = WindowMaker(resolve_model(""))
    items = [item("q1", "Portsmouth"), item("q2", "fleet")]
    misses = tr.answers_removed(items)
    assert list(misses) == ["q1"] and "Portsmouth" not in misses["q1"] and "It first sailed." in misses["q1"]
    windows = tr.training_windows(maker, items[:1], {}, 0.0, random.Random(0), misses, 1.0)
    assert [w.item for w, _, _ in windows] == [0, 1]
    assert windows[0][1] != [0] and windows[1][1:] == ([0], [0])


SWAP_CONTEXT = ("In 2019 Russia bought drones from Iran. Exports from China fell by 31 percent in 2021. "
                "The Shahed factory stands in Alabuga. The Super Bowl 50 was held in Santa Clara.")


def swap_span(answer: str) -> list[tuple[int, int]]:
    start = SWAP_CONTEXT.index(answer)
    return [(start, start + len(answer))]


def test_a_name_of_the_question_is_swapped_for_one_its_answer_sentence_lacks():
    from qa.eval.nearmiss import swap_name
    from qa.split import sentence_spans

    sentences = sentence_spans(SWAP_CONTEXT)
    question = "What did Russia buy from Iran's factories?"
    got = {swap_name(question, SWAP_CONTEXT, swap_span("drones"), sentences, random.Random(seed)) for seed in range(40)}
    # a name (or a number, for a number) of another sentence: never one of the answer sentence, never
    # part of a longer name ("Super Bowl 50", "Santa Clara"), never a sentence's first word ("Exports")
    assert got == {"What did China buy from Iran's factories?", "What did Shahed buy from Iran's factories?",
                   "What did Alabuga buy from Iran's factories?", "What did Russia buy from China's factories?",
                   "What did Russia buy from Shahed's factories?", "What did Russia buy from Alabuga's factories?"}
    numbers = {swap_name("How many drones did Iran sell in 2019?", SWAP_CONTEXT, swap_span("drones"), sentences,
                         random.Random(seed)) for seed in range(40)}
    assert "How many drones did Iran sell in 2021?" in numbers and not any("in China" in q for q in numbers)
    # nothing to swap: the question names nothing of its answer sentence, or no other name is left
    assert swap_name("What fell by 31 percent?", SWAP_CONTEXT, swap_span("Exports"), sentences, random.Random(0)) is None
    assert swap_name("Where does Shahed build?", "Shahed builds in Alabuga.", [(18, 25)],
                     sentence_spans("Shahed builds in Alabuga."), random.Random(0)) is None


def test_swapped_questions_train_as_no_answer_windows_of_their_own_paragraph():
    tr = train_reader()
    maker = WindowMaker(resolve_model(""))
    items = [item("q1", "1901", "The fleet sailed from Portsmouth to Malta in 1901. Its flagship was the Resolute.")]
    items[0]["question"] = "When did the fleet sail from Portsmouth?"
    swaps = tr.names_swapped(items, random.Random(0))
    assert swaps == {"q1": "When did the fleet sail from Resolute?"}  # the only name its answer sentence lacks
    windows = tr.training_windows(maker, items, {}, 0.0, random.Random(0), swaps=swaps, swap_share=1.0)
    assert len(windows) == 2 and windows[0][1:] == ([0], [0]) and windows[1][1] != [0]
    assert maker.tokenizer.decode(windows[0][0].ids).count("resolute") == 2  # asked of its own paragraph
    assert tr.training_windows(maker, items, {}, 0.0, random.Random(0), swaps=swaps, swap_share=0.0) == windows[1:]


def test_folds_leave_out_interleaved_fit_articles_that_together_cover_them_all():
    from qa.splits import FIT

    tr = train_reader()
    assert tr.fit_articles(None) == FIT
    halves = [tr.fit_articles(f"{i}/2") for i in range(2)]
    assert set(halves[0]).isdisjoint(halves[1]) and set(halves[0]) | set(halves[1]) == set(FIT)
    assert halves[0] == FIT[1::2] and len(tr.fit_articles("1/4")) == len(FIT) - len(FIT[1::4])
    for bad in ("2/2", "1", "a/b", "0/11"):
        with pytest.raises(SystemExit, match="--fold"):
            tr.fit_articles(bad)
