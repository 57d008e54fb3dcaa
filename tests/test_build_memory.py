"""What lets a build of a million passages fit in memory (issue 12): the embedding cache is compacted
one shard at a time, encoded vectors go straight into one table, BM25 counts terms as the passages are
tokenised, FAISS adds float16 vectors a chunk at a time; and each gives what it gave before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import qa.dense
import qa.embcache as ec
from qa.bm25 import bm25_scores, build_bm25, count_terms
from qa.config import Settings
from qa.terms import tokenize

pytestmark = pytest.mark.unit


def shard(cache_dir: Path, keys: list[str], prefix: str = ec.SHARD_PREFIX) -> Path:
    vecs = np.stack([np.full(4, float(len(k)), np.float16) + i for i, k in enumerate(keys)]) if keys else np.zeros((0, 4))
    return ec.write_shard(cache_dir, keys, vecs.astype(np.float16), prefix=prefix)


def test_compaction_keeps_large_live_shards_and_folds_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr(ec, "COMPACT_SHARD", 4)
    big = shard(tmp_path, ["a", "b", "c", "d"])  # large enough, all live: left as it is
    small = [shard(tmp_path, ["e", "dead1"]), shard(tmp_path, ["f", "a"]), shard(tmp_path, ["g"])]
    upload = shard(tmp_path, ["h", "not-yet-live"], prefix=ec.UPLOAD_PREFIX)  # its build has not run
    before = ec.read_cache(tmp_path)
    live = {"a", "b", "c", "d", "e", "f", "g", "h"}
    read = []
    real_read = ec._read_shard
    monkeypatch.setattr(ec, "_read_shard", lambda shard, *a: read.append(shard) or real_read(shard, *a))
    ec.compact_cache(tmp_path, live)
    assert big not in read  # its keys decide; its vectors are not read
    after = ec.read_cache(tmp_path)
    assert big.exists() and upload.exists() and not any(s.exists() for s in small)
    assert set(after) == live | {"not-yet-live"}
    assert all(np.array_equal(after[k], before[k]) for k in after if k != "a")
    new = [s for s in ec.cache_shards(tmp_path) if s not in (big, upload)]
    assert len(new) == 1  # e, f, g: "a" is in the big shard already, so it is not written twice
    assert sorted(ec._read_shard(new[0])[0]) == ["e", "f", "g"]


def test_compaction_writes_shards_of_bounded_size(tmp_path, monkeypatch):
    monkeypatch.setattr(ec, "COMPACT_SHARD", 3)
    for i in range(7):
        shard(tmp_path, [f"k{i}"])
    ec.compact_cache(tmp_path, {f"k{i}" for i in range(7)})
    sizes = sorted(len(ec._read_shard(s)[0]) for s in ec.cache_shards(tmp_path))
    assert sizes == [1, 3, 3]
    assert set(ec.read_cache(tmp_path)) == {f"k{i}" for i in range(7)}


def test_a_lone_live_shard_is_left_and_a_dead_key_is_dropped(tmp_path):
    only = shard(tmp_path, ["a", "b"])
    ec.compact_cache(tmp_path, {"a", "b"})
    assert ec.cache_shards(tmp_path) == [only]
    upload = shard(tmp_path, ["c"], prefix=ec.UPLOAD_PREFIX)
    ec.compact_cache(tmp_path, {"a", "c"})  # b is dead now, and the upload's build has run
    (one,) = ec.cache_shards(tmp_path)
    assert one not in (only, upload) and sorted(ec.read_cache(tmp_path)) == ["a", "c"]


def test_table_fills_rows_from_cache_and_new_vectors_and_repeats(tmp_path):
    shard(tmp_path, ["x", "y"])
    cached = ec.read_cache(tmp_path)
    table = ec.Table(["y", "new", "x", "y", "new"], dim=4)
    held = table.fill_from(tmp_path)
    assert held == {"x", "y"}
    fresh = np.arange(8, dtype=np.float16).reshape(2, 4)
    table.put(["unrelated", "new"], fresh)
    out = table.done()
    assert out.dtype == np.float16 and out.shape == (5, 4)
    for row, want in enumerate([cached["y"], fresh[1], cached["x"], cached["y"], fresh[1]]):
        assert np.array_equal(out[row], want)
    assert set(ec.cached_keys(tmp_path)) == {"x", "y"}


def test_terms_are_counted_from_a_stream_seen_once():
    docs = ["Iran bought Su-35 jets from Russia", "", "Russia Russia Iran drones", "drones drones"]
    once = iter([tokenize(d) for d in docs])
    counts = count_terms(once)
    assert list(once) == []
    assert list(counts.vocab) == list(dict.fromkeys(t for d in docs for t in tokenize(d)))  # rank_bm25's idf order
    assert len(counts.vocab) >= 5
    streamed = build_bm25(tokenize(d) for d in docs)
    listed = build_bm25([tokenize(d) for d in docs])
    for q in ("russia drones", "iran jets"):
        assert np.array_equal(bm25_scores(streamed, tokenize(q)), bm25_scores(listed, tokenize(q)))
    assert list(counts.doc_len) == [len(tokenize(d)) for d in docs]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_faiss_adds_float16_vectors_in_chunks_with_the_same_results(kind, monkeypatch):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((300, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    settings = Settings(faiss=kind)
    whole = qa.dense.build_faiss(vecs, settings)
    monkeypatch.setattr(qa.dense, "ADD_CHUNK", 64)
    chunked = qa.dense.build_faiss(vecs.astype(np.float16), settings)
    assert chunked.ntotal == whole.ntotal == 300
    queries = vecs[:20]
    _, want = whole.search(queries, 5)
    _, got = chunked.search(queries, 5)
    if kind == "flat":
        assert np.array_equal(got, want)
    else:  # another insertion order makes another graph; each vector still finds itself
        assert (got[:, 0] == np.arange(20)).all()
