"""The embedding cache: vectors by text key (``qa.datatypes.text_key``), in shards under
``<index>/cache/<model key>/``, so a re-index encodes only new text and an interrupted build
resumes where it stopped (shards are written as encoding goes)."""

from __future__ import annotations

import time
import uuid
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from qa.progress import progress
from qa.protocols import TextEncoder
from qa.storage import atomic_write, writing
from qa.vectors import Plan, pooled_shard

ENCODE_RATE = 70  # texts/s, for the warning before a long build (about 70-80 on a 2-core AMD EPYC, fp32)
POOLED_RATE = 45  # passages/s, the same with pooled sentence vectors (qa.vectors; 46 on SciFact, batches of 8)
CACHE_SHARD = 512  # texts encoded between two cache writes
POOLED_SHARD = 256  # passages pooled between two cache writes (each with ~4 sentence vectors)
COMPACT_SHARD = 1 << 18  # vectors in a shard written by compaction (0.2 GB)
SHARD_PREFIX = "emb"  # a build's shards: emb-<ns>-<random>.npz
UPLOAD_PREFIX = "upload"  # an upload's, encoded ahead of its build (qa.build.warm_cache)
# An upload's shard this old was abandoned. The largest upload (20 MB of text, about 80,000 texts)
# encodes in about 20 minutes at ENCODE_RATE, so its first shard waits at most that long for its build.
ABANDONED_S = 6 * 3600
Log = Callable[[str], None]


def encode_cached(encoder: TextEncoder, texts: list[str], keys: list[str], cache_dir: Path, batch_size: int,
                  show_progress: bool, log: Log, *, upload: bool = False,
                  written: list[Path] | None = None) -> np.ndarray:
    """Embeddings for ``texts`` (float16, a row per key), taking what the cache has and adding the rest
    to it as it goes.

    Each distinct text is encoded once; the log counts repeated texts and cache hits apart.
    ``upload``: the texts are an upload's, encoded ahead of the build that adds it; its shards are
    kept by other builds' compaction (see ``compact_cache``). The shards written are appended to
    ``written`` when given."""
    table = Table(keys, int(encoder.dim))
    held = table.fill_from(cache_dir)
    missing = sorted(i for k, i in table.first.items() if k not in held)
    if missing:
        _announce(log, len(missing), len(keys), len(table.first), "texts", ENCODE_RATE)
        bar = progress(total=len(missing), desc="encoding", enabled=show_progress)
        try:
            for at in range(0, len(missing), CACHE_SHARD):
                chunk = sorted(missing[at : at + CACHE_SHARD], key=lambda i: len(texts[i]))  # less padding
                parts = []
                for b in range(0, len(chunk), batch_size):
                    batch = [texts[i] for i in chunk[b : b + batch_size]]
                    parts.append(encoder.encode(batch, batch_size=batch_size).astype(np.float16))
                    bar.update(len(batch))
                vecs = np.concatenate(parts)
                chunk_keys = [keys[i] for i in chunk]
                shard = write_shard(cache_dir, chunk_keys, vecs, prefix=UPLOAD_PREFIX if upload else SHARD_PREFIX)
                if written is not None:
                    written.append(shard)
                table.put(chunk_keys, vecs)
        finally:
            bar.close()  # an error message then starts on a line of its own
    return table.done()


def encode_pooled_cached(encoder, plan: Plan, cache_dir: Path, batch_size: int, show_progress: bool, log: Log, *,
                         upload: bool = False, written: list[Path] | None = None) -> np.ndarray:
    """The passage vectors (``plan.keys``), then the pooled vectors of every sentence row (``plan.row_keys``),
    taking what the cache has and encoding the other inputs (one forward pass each, ``qa.vectors``) into
    it, a shard of ``POOLED_SHARD`` passages at a time. ``upload`` and ``written`` as in ``encode_cached``."""
    table = Table(plan.keys + plan.row_keys, int(encoder.dim))
    missing = plan.missing(table.fill_from(cache_dir).__contains__)
    if missing:
        _announce(log, len(missing), len(plan.keys), len(plan.texts), "passages", POOLED_RATE)
        bar = progress(total=len(missing), desc="encoding", enabled=show_progress)
        try:
            for at in range(0, len(missing), POOLED_SHARD):
                chunk = missing[at : at + POOLED_SHARD]
                chunk_keys, vecs = pooled_shard(encoder, [plan.texts[j] for j in chunk],
                                                [plan.spans[j] for j in chunk], [plan.span_keys[j] for j in chunk],
                                                batch_size)
                shard = write_shard(cache_dir, chunk_keys, vecs, prefix=UPLOAD_PREFIX if upload else SHARD_PREFIX)
                if written is not None:
                    written.append(shard)
                table.put(chunk_keys, vecs)
                bar.update(len(chunk))
        finally:
            bar.close()
    return table.done()


class Table:
    """The float16 vectors of ``keys``, a row each, filled in place as the cache's shards are read and
    new vectors encoded: the cache is never held whole beside them (at 1M passages that was ~4 GB more),
    and a key repeated is filled once and copied at the end (``done``)."""

    def __init__(self, keys: list[str], dim: int):
        self.keys = keys
        self.first: dict[str, int] = {}  # each distinct key's first row
        for i, k in enumerate(keys):
            self.first.setdefault(k, i)
        self.vecs = np.zeros((len(keys), dim), np.float16)

    def fill_from(self, cache_dir: Path) -> set[str]:
        """Fill the rows the cache has; returns every key it holds (whether a row's or not)."""
        held: set[str] = set()
        for shard in cache_shards(cache_dir):
            keys, vecs = _read_shard(shard, self.vecs.shape[1])
            held.update(keys)
            self.put(keys, vecs)
        return held

    def put(self, keys: list[str], vecs: np.ndarray) -> None:
        """Fill the rows of those of ``keys`` that are rows' with their ``vecs``."""
        pairs = [(i, j) for j, k in enumerate(keys) if (i := self.first.get(k)) is not None]
        if pairs:
            rows, src = np.asarray(pairs, dtype=np.int64).T
            self.vecs[rows] = vecs[src]

    def done(self) -> np.ndarray:
        """The table, each repeated key's rows copied from its first."""
        if len(self.first) < len(self.keys):
            first = np.fromiter(map(self.first.__getitem__, self.keys), dtype=np.int64, count=len(self.keys))
            again = np.flatnonzero(first != np.arange(len(self.keys)))
            self.vecs[again] = self.vecs[first[again]]
        return self.vecs


def _announce(log: Log, missing: int, total: int, distinct: int, unit: str, rate: float) -> None:
    """Say how many of ``total`` items (``distinct`` of them different) will be encoded, counting repeats
    and cache hits apart, and how long it will take when that is minutes."""
    duplicates, cached = total - distinct, distinct - missing
    counts = [f"{duplicates} duplicates"] if duplicates else []
    if duplicates or cached:
        counts.append(f"{cached} from cache")
    log(f"index: encoding {missing} {unit}" + (f" ({', '.join(counts)})" if counts else ""))
    minutes = missing / rate / 60
    if minutes >= 2:
        log(f"index: this will take about {minutes:.0f} minutes; an interrupted build resumes where it "
            "stopped, and `qa ask --no-build` answers from the existing index meanwhile")


def cache_shards(cache_dir: Path) -> list[Path]:
    """The shards of the cache: the builds' (oldest first), then the uploads'."""
    if not cache_dir.is_dir():
        return []
    return sorted(cache_dir.glob(f"{SHARD_PREFIX}-*.npz")) + sorted(cache_dir.glob(f"{UPLOAD_PREFIX}-*.npz"))


def read_cache(cache_dir: Path, dim: int | None = None) -> dict[str, np.ndarray]:
    """The cached embeddings by text key. A shard that is torn (a crash) or not a shard of
    ``dim``-wide vectors (hand-edited) is deleted: its texts are encoded again."""
    cache: dict[str, np.ndarray] = {}
    for shard in cache_shards(cache_dir):
        keys, vecs = _read_shard(shard, dim)
        cache.update(zip(keys, vecs))
    return cache


def cached_keys(cache_dir: Path, dim: int | None = None) -> set[str]:
    """The keys ``read_cache`` would return, without holding every vector at once."""
    held: set[str] = set()
    for shard in cache_shards(cache_dir):
        held.update(_read_shard(shard, dim)[0])
    return held


def _read_shard(shard: Path, dim: int | None = None) -> tuple[list[str], np.ndarray]:
    """The keys and vectors of one shard; none (and the shard deleted) when it is torn or not a shard."""
    try:
        with np.load(shard) as data:
            keys, vecs = data["keys"], data["vecs"]
        if not (keys.ndim == 1 and (keys.dtype.kind == "U" or not len(keys)) and vecs.ndim == 2
                and len(vecs) == len(keys) and vecs.dtype.kind == "f" and dim in (None, vecs.shape[1])):
            raise ValueError(f"{shard.name} is not a cache shard")
        return keys.tolist(), vecs.astype(np.float16, copy=False)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        shard.unlink(missing_ok=True)
        return [], np.zeros((0, dim or 0), np.float16)


def _shard_keys(shard: Path) -> list[str] | None:
    """The keys of a shard, without its vectors; None when they cannot be read."""
    try:
        with np.load(shard) as data:
            keys = data["keys"]
        return keys.tolist() if keys.ndim == 1 and keys.dtype.kind == "U" else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def write_shard(cache_dir: Path, keys: list[str], vecs: np.ndarray, prefix: str = SHARD_PREFIX) -> Path:
    """Write one shard of ``vecs`` under ``keys`` (atomically: a torn shard is never left behind)."""
    path = cache_dir / f"{prefix}-{time.time_ns()}-{uuid.uuid4().hex[:6]}.npz"
    with writing(cache_dir):
        cache_dir.mkdir(parents=True, exist_ok=True)
    with writing(path):
        atomic_write(path, lambda f: np.savez(f, keys=np.asarray(keys), vecs=vecs))
    return path


def compact_cache(cache_dir: Path, live: set[str]) -> None:
    """Keep only the embeddings of live texts, in shards of up to ``COMPACT_SHARD`` vectors.

    A build's shard already that large whose texts are all live is left as it is, so compacting after a
    small change rewrites little; the others are read one at a time and their live vectors written anew,
    so the cache is never held whole (at 1M passages, 4.5M vectors). A text in two shards is kept once.
    An upload's shard whose texts are not all live is kept as it is: the upload was encoded ahead
    of its build (``qa.build.warm_cache``) while this build ran, and its build needs them; the
    build that adds it finds them all live and folds them in. One older than
    ``ABANDONED_S`` belongs to an upload that was never built (the server stopped meanwhile) and goes."""
    shards = cache_shards(cache_dir)
    if len(shards) <= 1:
        return
    seen: set[str] = set()
    done: list[Path] = []
    out_keys: list[str] = []
    out_vecs: list[np.ndarray] = []
    dropped = written = False
    for shard in shards:
        if shard.name.startswith(SHARD_PREFIX):
            keys = _shard_keys(shard)
            if keys is not None and len(keys) >= COMPACT_SHARD and live.issuperset(keys):
                seen.update(keys)  # its vectors are not read (0.2 GB): the build read and checked them
                continue
        keys, vecs = _read_shard(shard)
        if shard.name.startswith(UPLOAD_PREFIX) and not live.issuperset(keys) and not _abandoned(shard):
            continue
        keep = [j for j, k in enumerate(keys) if k in live and k not in seen]
        dropped |= len(keep) < len(keys)
        seen.update(keys[j] for j in keep)
        out_keys.extend(keys[j] for j in keep)
        out_vecs.append(vecs[keep])
        done.append(shard)
        if len(out_keys) >= COMPACT_SHARD:
            write_shard(cache_dir, out_keys, np.concatenate(out_vecs))
            out_keys, out_vecs, written = [], [], True
    if len(done) <= 1 and not dropped and not written:
        return  # one shard to fold, all of it live: nothing to gain
    if out_keys:
        write_shard(cache_dir, out_keys, np.concatenate(out_vecs))
    for shard in done:
        shard.unlink(missing_ok=True)


def _abandoned(shard: Path) -> bool:
    try:
        return time.time() - shard.stat().st_mtime > ABANDONED_S
    except OSError:
        return True
