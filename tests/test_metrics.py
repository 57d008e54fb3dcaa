import math

import pytest

from qa.eval.metrics import (
    abstention_prf,
    contains_answer,
    dedupe_units,
    exact_match,
    mean,
    mrr_at_k,
    ndcg_at_k,
    normalize_answer,
    percentile,
    recall_at_k,
    summarise_latency,
    token_f1,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The  Eiffel Tower!", "eiffel tower"),
        ("An apple, a day", "apple day"),
        ("theatre of the absurd", "theatre of absurd"),
        ("U.S.A.", "usa"),
        ("  1,700\tdrones ", "1700 drones"),
        ("The", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match():
    assert exact_match("the Eiffel tower.", ["Paris", "Eiffel Tower"]) == 1.0
    assert exact_match("Tower", ["Eiffel Tower"]) == 0.0
    assert exact_match("", []) == 1.0
    assert exact_match("Paris", []) == 0.0


def test_token_f1_partial_overlap():
    assert token_f1("the big red dog", ["red dog barks"]) == pytest.approx(2 / 3)
    assert token_f1("red red dog", ["red dog"]) == pytest.approx(0.8)
    assert token_f1("red dog", ["cat", "red dog barks"]) == pytest.approx(0.8)
    assert token_f1("Red Dog!", ["red dog"]) == 1.0
    assert token_f1("cat", ["red dog"]) == 0.0


def test_token_f1_empty_sides():
    assert token_f1("the", ["a"]) == 1.0
    assert token_f1("dog", ["the"]) == 0.0
    assert token_f1("", []) == 1.0
    assert token_f1("dog", []) == 0.0


def test_contains_answer():
    assert contains_answer("approximately 1,700 drones", ["1,700"])
    assert not contains_answer("approximately 1,700 drones", ["70"])
    assert not contains_answer("drones", ["drone"])
    assert contains_answer("The Eiffel Tower is tall.", ["nothing", "the eiffel tower"])
    assert not contains_answer("The Eiffel Tower is tall.", ["tower eiffel"])
    assert not contains_answer("The tower", ["the"])
    assert not contains_answer("anything", [])


def test_dedupe_units_keeps_first_occurrence():
    assert dedupe_units(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]
    assert dedupe_units([]) == []


def test_recall_counts_distinct_units():
    chunks = ["d1", "d1", "d1", "d2", "d3"]
    assert recall_at_k(chunks, {"d3"}, 2) == 0.0
    assert recall_at_k(chunks, {"d3"}, 3) == 1.0
    assert recall_at_k(chunks, {"d2", "d3", "d9"}, 3) == pytest.approx(2 / 3)
    assert recall_at_k(["d1", "d1", "d1"], {"d1", "d2"}, 3) == 0.5
    assert recall_at_k(chunks, {"d2": 1, "d1": 0}, 2) == 1.0
    assert recall_at_k(chunks, set(), 5) == 0.0


def test_mrr_counts_distinct_units():
    assert mrr_at_k(["d1", "d1", "d2"], {"d2"}, 2) == 0.5
    assert mrr_at_k(["d1", "d1", "d2"], {"d2"}, 1) == 0.0
    assert mrr_at_k(["d1", "d2", "d3"], {"d3": 1, "d2": 2}, 3) == 0.5
    assert mrr_at_k(["d1", "d2"], {"d1": 0}, 2) == 0.0


def test_ndcg_graded():
    # DCG = 0 + 2/log2(3) + 1/log2(4); ideal from the qrels [3, 2, 1]: 3 + 2/log2(3) + 1/2
    expected = (2 / math.log2(3) + 0.5) / (3 + 2 / math.log2(3) + 0.5)
    assert expected == pytest.approx(0.369995, abs=1e-6)
    assert ndcg_at_k(["a", "b", "c", "d"], {"b": 2, "c": 1, "e": 3}, 3) == pytest.approx(expected)
    assert ndcg_at_k(["e", "b", "c"], {"b": 2, "c": 1, "e": 3}, 3) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "b"], {"a": 0}, 2) == 0.0


def test_ndcg_duplicate_chunks_count_once():
    assert ndcg_at_k(["b", "b", "c"], {"b": 1, "c": 1}, 2) == pytest.approx(1.0)
    # without deduplication the second "b" would be a gain at rank 2
    assert ndcg_at_k(["b", "b", "x"], {"b": 1, "c": 1}, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_ndcg_tied_scores_average_the_group_gain():
    relevance = {"c": 1}
    assert ndcg_at_k(["a", "b", "c"], relevance, 3) == pytest.approx(0.5)
    tied = 0.5 / math.log2(3) + 0.5 / 2
    assert tied == pytest.approx(0.565465, abs=1e-6)
    assert ndcg_at_k(["a", "b", "c"], relevance, 3, [0.9, 0.5, 0.5]) == pytest.approx(tied)
    assert ndcg_at_k(["a", "c", "b"], relevance, 3, [0.9, 0.5, 0.5]) == pytest.approx(tied)
    # the tie straddles the cut-off: rank 2 still gets half of c's gain
    assert ndcg_at_k(["a", "b", "c"], relevance, 2) == 0.0
    assert ndcg_at_k(["a", "b", "c"], relevance, 2, [0.9, 0.5, 0.5]) == pytest.approx(0.5 / math.log2(3))
    assert ndcg_at_k(["a", "b", "c"], relevance, 3, [0.9, 0.6, 0.5]) == pytest.approx(0.5)


def test_ndcg_ties_with_duplicate_chunks():
    ranked = ["a", "a", "b", "c"]
    scores = [0.9, 0.9, 0.5, 0.5]
    assert ndcg_at_k(ranked, {"c": 1}, 3, scores) == pytest.approx(0.5 / math.log2(3) + 0.5 / 2)


def test_ndcg_rejects_bad_scores():
    with pytest.raises(ValueError):
        ndcg_at_k(["a", "b"], {"a": 1}, 2, [1.0])
    with pytest.raises(ValueError):
        ndcg_at_k(["a", "b"], {"a": 1}, 2, [0.1, 0.2])


def test_abstention_prf():
    assert abstention_prf([True, True, False, False], [True, False, True, False]) == (0.5, 0.5, 0.5)
    precision, recall, f1 = abstention_prf([True, False, False], [True, True, False])
    assert (precision, recall) == (1.0, 0.5)
    assert f1 == pytest.approx(2 / 3)


def test_abstention_prf_zero_division_cases():
    assert abstention_prf([False, False], [True, False]) == (1.0, 0.0, 0.0)
    assert abstention_prf([True, False], [False, False]) == (0.0, 1.0, 0.0)
    assert abstention_prf([False, False], [False, False]) == (1.0, 1.0, 1.0)
    assert abstention_prf([], []) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        abstention_prf([True], [True, False])


def test_percentile_interpolates_linearly():
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarise_latency():
    summary = summarise_latency([50.0, 10.0, 30.0, 20.0, 40.0])
    assert summary == {"n": 5, "mean": 30.0, "p50": 30.0, "p95": pytest.approx(48.0), "max": 50.0}
    assert summarise_latency([]) == {"n": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}


def test_mean():
    assert mean([]) == 0.0
    assert mean([1.0, 2.0]) == 1.5
    assert mean(x for x in [1.0, 0.0, 0.0, 1.0]) == 0.5
