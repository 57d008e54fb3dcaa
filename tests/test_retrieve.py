"""Step 4, retrieval: fusion arithmetic and the three modes on the real corpus."""

from __future__ import annotations

import numpy as np
import pytest

from helpers_core import DRONES_QUESTION, real_encoder, settings_for, template
from qa.bm25 import bm25_scores
from qa.index import load_index
from qa.retrieve import retrieve, rrf, weighted_fusion
from qa.terms import tokenize
from qa.datatypes import QAError

pytestmark = pytest.mark.integration

# ------------------------------------------------------------------ reciprocal rank fusion


def test_rrf_hand_computed_scores_k60():
    fused = rrf([[1, 2, 3], [3, 1]], k=60)
    assert [row for row, _ in fused] == [1, 3, 2]
    scores = dict(fused)
    assert scores[1] == pytest.approx(1 / 61 + 1 / 62)
    assert scores[3] == pytest.approx(1 / 63 + 1 / 61)
    assert scores[2] == pytest.approx(1 / 62)


def test_rrf_three_rankings_and_default_k():
    fused = rrf([[7, 8], [8, 9], [9, 7, 8]])
    scores = dict(fused)
    assert scores[7] == pytest.approx(1 / 61 + 1 / 62)
    assert scores[8] == pytest.approx(1 / 62 + 1 / 61 + 1 / 63)
    assert scores[9] == pytest.approx(1 / 62 + 1 / 61)
    assert [row for row, _ in fused] == [8, 7, 9]  # 7 and 9 tie exactly: by best rank (both 1), then row


def test_rrf_small_k_changes_the_order():
    # row 5 ranks (1, 10), row 6 ranks (3, 3): k=1 favours the single top rank, k=60 consistency
    ranking1 = [5, 20, 6, 21, 22, 23, 24, 25, 26, 27]
    ranking2 = [28, 29, 6, 30, 31, 32, 33, 34, 35, 5]
    small = rrf([ranking1, ranking2], k=1)
    assert dict(small)[5] == pytest.approx(1 / 2 + 1 / 11)
    assert dict(small)[6] == pytest.approx(1 / 4 + 1 / 4)
    assert small[0][0] == 5
    large = rrf([ranking1, ranking2], k=60)
    assert dict(large)[5] == pytest.approx(1 / 61 + 1 / 70)
    assert dict(large)[6] == pytest.approx(2 / 63)
    assert large[0][0] == 6


def test_rrf_ties_are_deterministic_whatever_the_input_order():
    one = rrf([[2, 1], [1, 2]], k=60)
    two = rrf([[1, 2], [2, 1]], k=60)
    assert one == two
    assert [row for row, _ in one] == [1, 2]  # equal scores and best ranks: lower row first
    assert one[0][1] == one[1][1]
    assert rrf([[4], [3]]) == [(3, pytest.approx(1 / 61)), (4, pytest.approx(1 / 61))]


def test_rrf_weights_scale_each_ranking():
    # row 1 tops the first ranking, row 2 the second: the heavier ranking's top wins
    fused = rrf([[1, 2], [2, 1]], k=10, weights=[0.5, 0.25])
    assert dict(fused)[1] == pytest.approx(0.5 / 11 + 0.25 / 12)
    assert dict(fused)[2] == pytest.approx(0.5 / 12 + 0.25 / 11)
    assert [row for row, _ in fused] == [1, 2]
    assert [row for row, _ in rrf([[1, 2], [2, 1]], k=10, weights=[0.25, 0.5])] == [2, 1]
    assert rrf([[1, 2], [2, 1]], k=10, weights=[1.0, 1.0]) == rrf([[1, 2], [2, 1]], k=10)


def test_rrf_of_nothing():
    assert rrf([]) == []
    assert rrf([[], []]) == []


# ------------------------------------------------------------------ weighted fusion


def _res(rows, scores):
    return np.asarray(rows, dtype=np.int64), np.asarray(scores, dtype=np.float64)


def test_weighted_fusion_min_max_by_hand():
    fused = weighted_fusion(
        [_res([10, 20, 30], [1.0, 3.0, 2.0]),  # normalised: 10→0, 20→1, 30→0.5
         _res([20, 40], [5.0, 5.0]),  # all equal: every row normalises to 1
         _res([], [])],  # an empty list adds nothing
        [0.5, 0.3, 0.2],
    )
    assert [row for row, _ in fused] == [20, 40, 30, 10]
    scores = dict(fused)
    assert scores[20] == pytest.approx(0.5 * 1 + 0.3 * 1)
    assert scores[40] == pytest.approx(0.3)
    assert scores[30] == pytest.approx(0.25)
    assert scores[10] == pytest.approx(0.0)


def test_weighted_fusion_negative_scores_and_ties_by_row():
    fused = weighted_fusion([_res([3, 1, 2], [-0.2, -0.4, -0.6]), _res([2, 1], [0.9, 0.1])], [0.5, 0.5])
    scores = dict(fused)
    assert scores[3] == pytest.approx(0.5)
    assert scores[1] == pytest.approx(0.25)
    assert scores[2] == pytest.approx(0.5)
    assert [row for row, _ in fused] == [2, 3, 1]  # 2 and 3 tie at 0.5: lower row first


def test_weighted_fusion_all_empty():
    assert weighted_fusion([_res([], []), _res([], [])], [0.5, 0.5]) == []


# ------------------------------------------------------------------ follow-up questions


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    settings = settings_for(template(tmp_path_factory))
    return settings, load_index(settings)


MODES = [("bm25", "rrf"), ("dense", "rrf"), ("hybrid", "rrf"), ("hybrid", "weighted")]


@pytest.mark.parametrize("mode,fusion", MODES)
@pytest.mark.parametrize("k", [1, 5, 8])
def test_each_mode_returns_k_ranked_hits(built, mode, fusion, k):
    settings, index = built
    found = retrieve(index, real_encoder(), DRONES_QUESTION, settings.replace(mode=mode, fusion=fusion, k=k))
    hits = found.hits
    assert len(hits) == k
    assert [h.rank for h in hits] == list(range(k))
    assert len({h.row for h in hits}) == k
    for h in hits:
        assert h.passage == index.passages[h.row]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert "1,700" in hits[0].passage.text
    if mode != "bm25":
        assert found.query_vector is not None and found.query_vector.shape == (index.dense.d,)
        assert all("dense" in h.scores for h in hits if mode == "dense")
    else:
        assert found.query_vector is None
        assert all(h.scores["bm25"] == pytest.approx(h.score) for h in hits)


def test_hybrid_rrf_matches_a_hand_fusion_of_the_three_rankings(built):
    """Recompute BM25, dense and best-sentence rankings by brute force and fuse them by hand."""
    settings, index = built
    enc = real_encoder()
    q = enc.encode([DRONES_QUESTION])[0]
    n = len(index.passages)
    assert n <= settings.candidates  # every passage is a candidate for each retriever
    bm = bm25_scores(index.bm25, tokenize(DRONES_QUESTION))
    bm_rank = [r for r in sorted(range(n), key=lambda r: (-bm[r], r)) if bm[r] > 0]
    dense = np.array([index.passage_vector(r) @ q for r in range(n)])
    dense_rank = sorted(range(n), key=lambda r: -dense[r])
    best = {r: float(np.max(index.sentence_vectors_of(r) @ q)) for r in set(bm_rank) | set(dense_rank)}
    sent_rank = sorted(best, key=lambda r: (-best[r], r))
    fused: dict[int, float] = {}
    w, k = settings.dense_weight, settings.rrf_k  # BM25 weighs 1 - w; the two dense rankings w / 2 each
    for ranking, weight in ((bm_rank, 1 - w), (dense_rank, w / 2), (sent_rank, w / 2)):
        for rank, row in enumerate(ranking, start=1):
            fused[row] = fused.get(row, 0.0) + weight / (k + rank)
    want = sorted(fused, key=lambda r: -fused[r])[:5]
    hits = retrieve(index, enc, DRONES_QUESTION, settings.replace(mode="hybrid", fusion="rrf", k=5)).hits
    assert [h.row for h in hits] == want
    for h in hits:
        assert h.score == pytest.approx(fused[h.row], rel=1e-6)
        assert h.scores["bm25"] == pytest.approx(bm[h.row], rel=1e-6)
        assert h.scores["dense"] == pytest.approx(dense[h.row], abs=1e-4)


def test_k_larger_than_the_index(built):
    settings, index = built
    n = len(index.passages)
    hits = retrieve(index, real_encoder(), DRONES_QUESTION, settings.replace(mode="dense", k=n + 10)).hits
    assert len(hits) == n and sorted(h.row for h in hits) == list(range(n))
    hits = retrieve(index, real_encoder(), DRONES_QUESTION, settings.replace(mode="hybrid", k=n + 10)).hits
    assert sorted(h.row for h in hits) == list(range(n))


def test_query_without_known_words(built):
    settings, index = built
    query = "zxqv wvutsr"
    assert retrieve(index, real_encoder(), query, settings.replace(mode="bm25")).hits == []
    for mode in ("dense", "hybrid"):
        hits = retrieve(index, real_encoder(), query, settings.replace(mode=mode)).hits
        assert len(hits) == settings.k and [h.rank for h in hits] == list(range(settings.k))


def test_retrieval_is_deterministic(built):
    settings, index = built
    for mode in ("bm25", "dense", "hybrid"):
        s = settings.replace(mode=mode, k=10)
        a = retrieve(index, real_encoder(), "Su-35 fighter jets for Iran", s).hits
        b = retrieve(index, real_encoder(), "Su-35 fighter jets for Iran", s).hits
        assert [(h.row, h.score) for h in a] == [(h.row, h.score) for h in b]


@pytest.mark.parametrize("change,word", [({"mode": "sparse"}, "mode"), ({"fusion": "max"}, "fusion")])
def test_unknown_mode_or_fusion_is_a_qaerror(built, change, word):
    settings, index = built
    with pytest.raises(QAError) as e:
        retrieve(index, real_encoder(), DRONES_QUESTION, settings.replace(**change))
    assert word in str(e.value) and "\n" not in str(e.value)
