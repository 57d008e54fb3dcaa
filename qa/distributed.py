"""A build spread over a Ray cluster (``qa index --ray [ADDRESS]``, ``qa eval --ray``): optional, ``qa[ray]``.

Ray Data reads and splits the documents in Ray tasks, then encodes the passages the embedding cache
lacks with ``map_batches`` over an actor pool, each actor holding one ONNX encoder (one actor per
core it is given). The vectors stream back to this process, which writes them into the index
folder's embedding cache a shard at a time, exactly the entries a local build writes
(``qa.vectors.pooled_shard``); then the local ``build_index`` assembles the index from the full
cache, encoding nothing. So the index is the same as a local build's and ``qa ask``, the page and
``qa eval`` use it unchanged; an interrupted build resumes from the shards written; an actor that
dies loses only the batch it held, which Ray runs again on a restarted actor.

The documents are read by path: on a cluster of several machines the corpus folder must be on a
shared file system at the same path on every node (as the index folder needs to be only here).
Nothing here is imported on the ``qa ask`` path.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qa.config import Settings
from qa.datatypes import QAError
from qa.index import Log, stderr_log

ENCODE_BATCH = 64  # passages per actor call: two encoder batches, so Ray's per-call overhead is spread thin
SPLIT_BATCH = 16  # documents per split call
SPLIT_BLOCKS_PER_WORKER = 16  # input blocks of document paths: enough to keep every split task busy
SHARD_VECTORS = 4 * 256  # cache entries per shard written: ~256 passages and their sentences, as a local build


def connect(address: str | None = "auto", *, workers: int | None = None, log: Log = stderr_log) -> None:
    """Join the Ray cluster at ``address``; with ``auto`` and no cluster running, start a local Ray on
    this machine (``workers`` CPUs, default all). A QAError (one line) when Ray is missing or the
    cluster cannot be reached."""
    try:
        import ray
    except ImportError:
        raise QAError("--ray needs Ray: pip install 'qa[ray]' (or 'ray[data]')") from None
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    quiet = {"log_to_driver": False, "include_dashboard": False, "configure_logging": True,
             "logging_level": "ERROR"}
    address = address or "auto"
    try:
        ray.init(address=address, **quiet)
        log(f"index: joined the Ray cluster at {address} ({int(ray.cluster_resources().get('CPU', 0))} CPUs)")
        return
    except ConnectionError:
        if address != "auto":
            raise QAError(f"no Ray cluster at {address} (start one with `ray start --head`)") from None
    except Exception as e:  # a bad address, a version mismatch: one line
        raise QAError(f"cannot join the Ray cluster at {address}: {str(e).splitlines()[0] if str(e) else e}") from None
    ray.init(num_cpus=workers, **quiet)
    log(f"index: no Ray cluster running: started a local one ({int(ray.cluster_resources().get('CPU', 0))} CPUs)")


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


_KEYS: dict = {}  # this worker's copy of the cache's keys, by object ref: fetched once, not per batch


def _cached_keys(ref) -> frozenset:
    import ray

    if ref.hex() not in _KEYS:
        _KEYS.clear()
        _KEYS[ref.hex()] = ray.get(ref)
    return _KEYS[ref.hex()]


def _split(batch: dict, corpus: str, sentences_per_passage: int, overlap: int, context: str, cached_ref) -> dict:
    """Ray task: a batch of document paths -> the encoder inputs of the passages (as ``qa.split`` cuts
    them, with their ``context``: ``qa.split.dense_text``) whose vectors, or any of whose pooled sentence
    vectors, the cache (the set of keys in ``cached_ref``) lacks."""
    from qa.datatypes import text_key
    from qa.load import load_document
    from qa.split import dense_text, split_document
    from qa.vectors import input_spans, span_key

    cached = _cached_keys(cached_ref[0])  # in a list: Ray passes a bare ObjectRef argument of a UDF as is
    rows: dict[str, list] = {"text": [], "spans": []}
    for path in batch["path"].tolist():
        try:
            doc = load_document(Path(path), Path(corpus))
        except QAError:
            continue  # skipped with a warning by the local build that follows
        for p in split_document(doc, sentences_per_passage, overlap):
            text = dense_text(p, doc.title, context)
            spans, key = input_spans(p, text), text_key(text)
            if key in cached and all(span_key(key, a, b) in cached for a, b in spans):
                continue
            rows["text"].append(text)
            rows["spans"].append(json.dumps(spans))
    return {k: np.asarray(v, dtype=object) for k, v in rows.items()}


class _Encoder:
    """Ray actor: one ONNX encoder; a batch of passages -> their cache entries (passage and pooled
    sentence vectors, as ``qa.vectors.pooled_shard`` makes them)."""

    def __init__(self, settings: dict, fail_marker: str | None = None):
        from qa.embed import load_encoder

        s = Settings(**settings)
        self.encoder = load_encoder(s.model_path, backend=s.backend, precision=s.precision)
        self.batch_size = s.batch_size
        self.fail_marker = fail_marker

    def __call__(self, batch: dict) -> dict:
        from qa.datatypes import text_key
        from qa.vectors import pooled_shard, span_key

        texts = batch["text"].tolist()
        if self.fail_marker and os.path.exists(self.fail_marker):  # tests: this worker dies mid-batch, once
            os.unlink(self.fail_marker)
            os._exit(1)
        spans = [[tuple(s) for s in json.loads(js)] for js in batch["spans"].tolist()]
        keys, vecs = pooled_shard(self.encoder, texts, spans,
                                  [[span_key(text_key(t), *s) for s in sp] for t, sp in zip(texts, spans)],
                                  self.batch_size)
        return {"key": np.asarray(keys, dtype=object), "vec": vecs}


def prefill_cache(settings: Settings, *, workers: int | None = None, log: Log = stderr_log,
                  on_shard: Callable[[int], None] | None = None, fail_marker: str | None = None) -> dict:
    """Encode on the Ray cluster every passage of ``settings.corpus`` the index folder's embedding
    cache lacks, writing the vectors into that cache; returns counts. ``workers``: encoder actors
    (default: the cluster's CPUs). ``on_shard(n)`` is called after each shard written (tests)."""
    from qa.load import corpus_files
    from qa.storage import locked

    if settings.sentence_vectors != "pooled":
        raise QAError("--ray builds pooled sentence vectors only (--sentence-vectors pooled)")
    corpus = Path(settings.corpus)
    files = corpus_files(corpus, follow_links=settings.follow_links)
    if not files:
        raise QAError(f"no documents in {corpus} (expected .txt, .md, .html or .pdf files)")
    with locked(Path(settings.index)):  # no local build compacts the cache meanwhile
        return _prefill(settings, corpus, files, workers, log, on_shard, fail_marker)


def _prefill(settings: Settings, corpus: Path, files: list[Path], workers: int | None, log: Log,
             on_shard: Callable[[int], None] | None, fail_marker: str | None) -> dict:
    import ray

    from qa.embcache import cached_keys
    from qa.manifest import model_key

    cache_dir = Path(settings.index) / "cache" / model_key(settings)
    cached = ray.put(frozenset(cached_keys(cache_dir)))
    n_workers = max(1, int(workers or ray.cluster_resources().get("CPU", 1)))
    t0 = time.perf_counter()
    # Blocks of about ENCODE_BATCH passages (~1 KB each), so that a large document's passages
    # spread over every actor and each block written back is a resumable step.
    ray.data.DataContext.get_current().target_max_block_size = ENCODE_BATCH * 2048
    ds = ray.data.from_items([{"path": str(p)} for p in files],
                             override_num_blocks=min(len(files), SPLIT_BLOCKS_PER_WORKER * n_workers))
    # Reading and splitting are light next to encoding (~25,000 against ~20 passages/s a core): tasks
    # that reserve no CPU, so they run beside the encoder actors, which hold one CPU each, but at most
    # one per encoder at a time. Uncapped, a 100k-passage corpus (5,726 files, a block each) started
    # 5,726 such tasks at once: Ray spawned over 100 worker processes on 2 cores (load average 66)
    # and the encoder actors were still pending a minute later (AMD EPYC, 2 cores).
    ds = ds.map_batches(_split, fn_args=(str(corpus), settings.sentences_per_passage, settings.overlap,
                                          settings.dense_context, [cached]),
                        batch_size=SPLIT_BATCH, batch_format="numpy", num_cpus=0,
                        compute=ray.data.TaskPoolStrategy(size=n_workers))
    # Ray Data restarts a dead actor and retries its batch (max_restarts and max_task_retries -1
    # are its defaults for actor pools): a worker lost mid-build costs only the batch it held.
    ds = ds.map_batches(_Encoder, fn_constructor_args=(_settings_dict(settings), fail_marker),
                        batch_size=ENCODE_BATCH, batch_format="numpy", num_cpus=1,
                        compute=ray.data.ActorPoolStrategy(size=n_workers))
    written = vectors = 0
    passages = 0
    keys: list[str] = []
    vecs: list[np.ndarray] = []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
        keys.extend(batch["key"].tolist())
        vecs.append(np.asarray(batch["vec"], dtype=np.float16))
        if len(keys) >= SHARD_VECTORS:
            passages += _flush(cache_dir, keys, vecs)
            written += 1
            vectors += len(keys)
            keys, vecs = [], []
            if on_shard is not None:
                on_shard(written)
    if keys:
        passages += _flush(cache_dir, keys, vecs)
        written += 1
        vectors += len(keys)
        if on_shard is not None:
            on_shard(written)
    seconds = time.perf_counter() - t0
    log(f"index: Ray encoded {passages} passages ({vectors} vectors) on {n_workers} workers in {seconds:.1f}s")
    return {"passages": passages, "vectors": vectors, "shards": written, "seconds": seconds, "workers": n_workers}


def _flush(cache_dir: Path, keys: list[str], vecs: list[np.ndarray]) -> int:
    from qa.embcache import write_shard

    write_shard(cache_dir, keys, np.concatenate(vecs))
    return sum(1 for k in keys if "@" not in k)


def _settings_dict(settings: Settings) -> dict:
    import dataclasses

    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def build_index_ray(settings: Settings, address: str | None = "auto", *, workers: int | None = None,
                    rebuild: bool = False, log: Log = stderr_log, progress: bool = True) -> dict:
    """``build_index`` with the encoding done on a Ray cluster first (see the module's docstring)."""
    from qa.build import build_index

    connect(address, workers=workers, log=log)
    stats = prefill_cache(settings, workers=workers, log=log)
    manifest = build_index(settings, rebuild=rebuild, log=log, progress=progress)
    manifest["ray"] = stats
    return manifest
