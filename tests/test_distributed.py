"""The distributed build (qa/distributed.py) on a local Ray with 2 workers: the same index as a local
build, a killed worker retried, an interrupted build resumed without re-encoding what was cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ray  # qa[ray], installed by make test
import ray.data

import qa.distributed as qd
from helpers_core import DOC_A, DOC_B, ROOT, copy_corpus, real_encoder, settings_for
from qa.cli import main
from qa.build import build_index
from qa.embcache import read_cache
from qa.index import load_index

pytestmark = pytest.mark.integration  # a local Ray cluster and the real encoder


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def local_ray():
    qd.connect("auto", workers=2, log=lambda m: None)
    yield
    qd.shutdown()


@pytest.fixture(scope="module")
def local_build(tmp_path_factory):
    """The default corpus built locally (the reference)."""
    root = tmp_path_factory.mktemp("local")
    settings = settings_for(root)
    copy_corpus(Path(settings.corpus))
    build_index(settings, log=lambda m: None, progress=False, encoder=real_encoder())
    return load_index(settings)


def corpus_at(root: Path):
    settings = settings_for(root)
    copy_corpus(Path(settings.corpus), (DOC_A, DOC_B))
    return settings


def assert_same_index(index, reference) -> None:
    # Vectors agree to float16 storage and batch padding (ONNX Runtime pads each batch to its longest
    # text): one passage of the default corpus reaches cosine 0.99990 only, so 0.9995, not 0.9999.
    assert index.passages == reference.passages
    n = len(index.passages)
    got = np.stack([index.passage_vector(r) for r in range(n)])
    want = np.stack([reference.passage_vector(r) for r in range(n)])
    assert float(np.min(np.sum(got * want, axis=1))) >= 0.9995
    assert np.array_equal(index.sentence_ptr, reference.sentence_ptr)
    a = np.asarray(index.sentence_vectors, np.float32)
    b = np.asarray(reference.sentence_vectors, np.float32)
    assert a.shape == b.shape and float(np.min(np.sum(a * b, axis=1))) >= 0.9995


def assert_built_from_the_cache(settings, reference) -> None:
    """The local build after a distributed one encodes nothing, and gives the reference's index."""
    log: list[str] = []
    build_index(settings, log=log.append, progress=False)
    assert not [m for m in log if m.startswith("index: encoding")]
    assert_same_index(load_index(settings), reference)


def test_distributed_build_is_the_local_build(local_ray, local_build, tmp_path):
    settings = corpus_at(tmp_path)
    log: list[str] = []
    manifest = qd.build_index_ray(settings, workers=2, log=log.append, progress=False)
    assert manifest["ray"]["workers"] == 2 and manifest["ray"]["passages"] == len(local_build.passages)
    assert not [m for m in log if m.startswith("index: encoding")]  # the local step encoded nothing
    assert_same_index(load_index(settings), local_build)


def test_distributed_build_encodes_the_passages_with_their_context(local_ray, tmp_path):
    """--dense-context title,heading: the workers encode what a local build encodes (its cache keys),
    so the local step after them encodes nothing and gives the local build's index."""
    settings = corpus_at(tmp_path / "ray").replace(dense_context="title,heading")
    log: list[str] = []
    qd.build_index_ray(settings, workers=2, log=log.append, progress=False)
    assert not [m for m in log if m.startswith("index: encoding")]
    local = corpus_at(tmp_path / "local").replace(dense_context="title,heading")
    build_index(local, log=lambda m: None, progress=False, encoder=real_encoder())
    assert_same_index(load_index(settings), load_index(local))


def test_a_corpus_of_many_files_is_split_by_a_bounded_pool(local_ray, tmp_path, monkeypatch):
    """Hundreds of documents: the split tasks run in a pool of one per encoder (uncapped, 5,726 files
    once started over a hundred Ray workers on 2 cores), and every passage of every file is encoded
    on Ray."""
    pools: list[int] = []
    real_pool = ray.data.TaskPoolStrategy

    def recorded_pool(size=None):
        pools.append(size)
        return real_pool(size=size)

    monkeypatch.setattr(ray.data, "TaskPoolStrategy", recorded_pool)
    settings = settings_for(tmp_path)
    corpus = Path(settings.corpus)
    corpus.mkdir(parents=True, exist_ok=True)
    for i in range(300):
        (corpus / f"note-{i:03d}.txt").write_text(
            f"Field note {i}. Convoy {i} crossed checkpoint {i % 17} at dawn. "
            f"It carried {i * 3} crates of parts for site {i % 11}.\n", encoding="utf-8")
    log: list[str] = []
    manifest = qd.build_index_ray(settings, workers=2, log=log.append, progress=False)
    assert not [m for m in log if m.startswith("index: encoding")]  # Ray encoded every passage
    assert manifest["ray"]["passages"] == len(load_index(settings).passages) >= 300
    assert pools == [2]


def test_a_killed_worker_loses_only_its_batch(local_ray, local_build, tmp_path, monkeypatch):
    settings = corpus_at(tmp_path)
    marker = tmp_path / "kill-one-worker"
    marker.write_text("the first encoder actor to see this file exits mid-batch")
    monkeypatch.setattr(qd, "ENCODE_BATCH", 8)
    stats = qd.prefill_cache(settings, workers=2, log=lambda m: None, fail_marker=str(marker))
    assert not marker.exists()  # a worker died on it; Ray restarted it and ran the batch again
    assert stats["passages"] == len(local_build.passages)
    assert_built_from_the_cache(settings, local_build)


def test_an_interrupted_build_resumes_without_re_encoding(local_ray, local_build, tmp_path, monkeypatch):
    settings = corpus_at(tmp_path)
    monkeypatch.setattr(qd, "ENCODE_BATCH", 8)
    monkeypatch.setattr(qd, "SHARD_VECTORS", 1)  # a shard per batch

    def stop(shards: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        qd.prefill_cache(settings, workers=2, log=lambda m: None, on_shard=stop)
    cache = next((Path(settings.index) / "cache").iterdir())
    first = len(list(cache.glob("emb-*.npz")))
    assert first == 1
    done = sum(1 for k in read_cache(cache) if "@" not in k)
    assert 0 < done < len(local_build.passages)
    stats = qd.prefill_cache(settings, workers=2, log=lambda m: None)
    assert stats["passages"] == len(local_build.passages) - done  # nothing cached was encoded again
    assert_built_from_the_cache(settings, local_build)


def test_qa_index_ray_through_the_cli(local_ray, local_build, tmp_path, capsys):
    settings = corpus_at(tmp_path)
    assert main(["index", "--ray", "--ray-workers", "2", "-q", "--corpus", str(settings.corpus),
                 "--index", str(settings.index)]) == 0
    assert "index: Ray encoded" in capsys.readouterr().err
    assert_same_index(load_index(settings), local_build)



def test_ray_is_never_imported_on_the_ask_path(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from qa.cli import build_parser; from qa.pipeline import ask, open_engine; "
            "build_parser(); print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_qa_eval_ray_builds_the_question_sets_index_on_ray(local_ray, local_build, tmp_path, capsys):
    index = tmp_path / "index"
    assert main(["eval", str(ROOT / "questions" / "seed.jsonl"), "--ray", "--ray-workers", "2",
                 "--corpus", str(ROOT / "corpus"), "--index", str(index),
                 "--limit", "2", "--modes", "bm25", "--answerers", "heuristic", "-q"]) == 0
    assert "index: Ray encoded" in capsys.readouterr().err
    assert_same_index(load_index(settings_for(tmp_path)), local_build)
