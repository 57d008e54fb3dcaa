"""Step 3: embed and index passages (FAISS + BM25), save atomically, load, judge staleness.

Layout of the index folder::

    CURRENT           name of the live generation (replaced atomically)
    gen-<id>/         one complete index: manifest.json, passages.json, dense.faiss,
                      sentences.npy, sentence_table.npz, bm25.npz, bm25_vocab.json
    .lock             held by the build in progress (one at a time)
    cache/<model>/    embedding cache by text hash (shards written as encoding goes,
                      so an interrupted build resumes where it stopped)
    settings.json     settings saved by calibration (abstention threshold)

A build writes a new generation folder, then points CURRENT at it: a crash at any
moment leaves the previous index intact. A reader holds a shared lock on the generation
it loads, and a build deletes an old generation only when no reader holds it; a reader
that finds its generation gone (replaced between reading CURRENT and locking it) reads
CURRENT again. Every file is checked on load; a bad one is a one-line ``QAError`` naming it.
A write that fails (disk full, read-only folder) raises a one-line ``IndexWriteError`` naming
the file, leaves no temporary file behind and keeps the previous index serving.

Staleness is judged as git judges its work tree: the manifest records each document's size,
mtime, ctime and inode as the build read it, and only files whose status differs (or has none
recorded: an older manifest, a file modified just before the build) are read and hashed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sys
import time
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from qa.bm25 import BM25, build_bm25, load_bm25, save_bm25
from qa.config import Settings
from qa.load import corpus_files, doc_id, file_hash, file_sha256, load_document
from qa.split import split_document
from qa.terms import tokenize
from qa.datatypes import Passage, QAError

FORMAT_VERSION = 2  # 2: float16 FAISS storage
CURRENT = "CURRENT"
ENCODE_RATE = 70  # texts/s, for the warning before a long build (about 70-80 on a 2-core AMD EPYC, fp32)
CACHE_SHARD = 512  # texts encoded between two cache writes
READ_ATTEMPTS = 5  # a reader re-reads CURRENT this often when builds replace the generation under it
GENERATION_FILES = ("bm25.npz", "bm25_vocab.json", "dense.faiss", "passages.json", "sentence_table.npz",
                    "sentences.npy")  # besides manifest.json, which lists their digests
GENERATION_NAME = re.compile(r"gen-[0-9A-Za-z_-]{1,100}")
PASSAGE_COLUMNS = ("doc", "ordinal", "start", "end", "line", "text", "sentences")
STAT_FIELDS = ("size", "mtime_ns", "ctime_ns", "ino")  # recorded per document: unchanged means not re-hashed
RACY_NS = 2_000_000_000  # a file modified less than this before it was read is hashed every time (see _stat_of)
BUILD_STAGES = ("list", "prepare", "load", "split", "encoder", "sentences", "encode", "faiss", "tokenize", "bm25",
                "write", "cleanup", "cache")  # reported to build_index's on_stage, in this order
Log = Callable[[str], None]
OnStage = Callable[[str, float], None]


class IndexWriteError(QAError, OSError):
    """Writing into the index folder failed (disk full, read-only, no permission): one line naming
    the file. Also an ``OSError`` with the original errno, for callers that handle those."""

    def __init__(self, path: Path | str, cause: OSError):
        code = cause.errno
        if code in (errno.ENOSPC, errno.EDQUOT):
            message = f"disk full writing {path}"
        elif code == errno.EROFS:
            message = f"read-only file system: cannot write {path}"
        elif code in (errno.EACCES, errno.EPERM):
            message = f"permission denied writing {path}"
        else:
            message = f"cannot write {path} ({cause.strerror or cause})"
        super().__init__(message)
        self.errno, self.strerror, self.filename = code, cause.strerror, str(path)

    def __str__(self) -> str:
        return str(self.args[0])


class _Laps:
    """Reports the stages of a build to ``on_stage``: each call ends a stage begun when the previous one ended."""

    def __init__(self, on_stage: OnStage | None, start: float):
        self.on_stage, self.last = on_stage, start

    def __call__(self, name: str, minus: float = 0.0) -> None:
        """End stage ``name`` now; ``minus``: seconds of it reported as another stage (``add``)."""
        now = time.perf_counter()
        self.add(name, now - self.last - minus)
        self.last = now

    def add(self, name: str, seconds: float) -> None:
        if self.on_stage is not None:
            self.on_stage(name, max(0.0, seconds))


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` into an ``IndexWriteError`` naming it."""
    try:
        yield
    except IndexWriteError:
        raise
    except OSError as e:
        raise IndexWriteError(path, e) from e


@dataclass
class Index:
    """A loaded index, ready for queries."""

    folder: Path
    manifest: dict
    passages: list[Passage]
    dense: object  # faiss.Index over passage embeddings
    bm25: BM25
    sentence_vectors: np.ndarray  # (n_sentences, dim) float16, memory-mapped
    sentence_ptr: np.ndarray  # passage row p owns sentence rows sentence_rows[ptr[p]:ptr[p+1]]
    sentence_rows: np.ndarray

    @cached_property
    def titles(self) -> dict[str, str]:
        """Document id -> title, made once per loaded index (every citation looks one up)."""
        return {d: meta["title"] for d, meta in self.manifest["docs"].items()}

    def passage_vector(self, row: int) -> np.ndarray:
        return self.dense.reconstruct(int(row))

    def sentence_vectors_of(self, row: int) -> np.ndarray:
        rows = self.sentence_rows[self.sentence_ptr[row] : self.sentence_ptr[row + 1]]
        return np.asarray(self.sentence_vectors[rows], dtype=np.float32)


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- staleness


def index_signature(settings: Settings) -> dict:
    """What, besides the documents, an index depends on: any change means a rebuild."""
    return {
        "format": FORMAT_VERSION,
        "model": _model_key(settings),
        "sentences_per_passage": settings.sentences_per_passage,
        "overlap": settings.overlap,
        "faiss": settings.faiss,
        "hnsw_min": settings.hnsw_min if settings.faiss == "auto" else None,
        "hnsw_m": settings.hnsw_m,
    }


def staleness(settings: Settings) -> str | None:
    """Why the index must be (re)built, or None when it is up to date with the corpus."""
    manifest = read_manifest(Path(settings.index))
    if manifest is None:
        corpus_files(Path(settings.corpus), follow_links=settings.follow_links)  # a missing corpus is the error
        return "no index yet"
    if manifest.get("signature") != index_signature(settings):
        return "index settings or model changed"
    known = {**{d: meta["sha256"] for d, meta in manifest["docs"].items()}, **manifest.get("skipped", {})}
    docs = _corpus_digests(settings, manifest, known)
    if known == docs:
        return None
    added = len(set(docs) - set(known))
    removed = len(set(known) - set(docs))
    changed = sum(1 for d in docs if d in known and known[d] != docs[d])
    return f"corpus changed ({added} added, {changed} changed, {removed} removed)"


def _corpus_digests(settings: Settings, manifest: dict, known: dict[str, str]) -> dict[str, str]:
    """Document id -> sha256 of the raw bytes for every file that would be loaded, as
    ``qa.load.fingerprint`` gives it, judging by the file's status first, as git does: a file whose
    size, mtime, ctime and inode all equal what the manifest recorded when the build read it still
    holds the bytes it held then, and keeps its recorded digest unread. Any other file is hashed: a
    changed status, or a document the manifest recorded no status for (an older manifest, a racy file).
    ``known`` is the manifest's digest by document id, documents and skipped files."""
    corpus = Path(settings.corpus)
    recorded = {d: meta for d, meta in manifest["docs"].items()}
    skipped_stat = manifest.get("skipped_stat")
    if not isinstance(skipped_stat, dict):
        skipped_stat = {}
    recorded.update((d, skipped_stat.get(d)) for d in manifest.get("skipped", {}))
    out = {}
    for p in corpus_files(corpus, follow_links=settings.follow_links, warn=lambda msg: None):
        did = doc_id(p, corpus)
        try:
            was = recorded.get(did)
            if did in known and isinstance(was, dict) and _same_stat(was, os.stat(p)):
                out[did] = known[did]
            else:
                out[did] = _hash_file(p)
        except OSError:  # gone or locked since it was listed: left out like an unreadable file
            continue
    return out


def _same_stat(recorded: dict, st: os.stat_result) -> bool:
    """Whether ``st`` is the status ``_stat_of`` recorded; False when any field is missing or not an int."""
    now = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}
    return all(type(recorded.get(k)) is int and recorded[k] == now[k] for k in STAT_FIELDS)


def _stat_of(path: Path) -> dict:
    """The status of ``path`` to record in the manifest, taken before its bytes are read, or {} (it is
    then hashed by every ``staleness``) when it cannot be taken or when the file was modified less than
    ``RACY_NS`` before: a file written again within its timestamp's granularity (coarse clock ticks,
    seconds on some file systems) after the build read it could keep its mtime and size ("racily
    clean", in git's words). An older mtime always changes when the file is written."""
    now = time.time_ns()
    try:
        st = os.stat(path)
    except OSError:
        return {}
    if st.st_mtime_ns > now - RACY_NS:
        return {}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def _hash_file(path: Path) -> str:
    """sha256 of the raw bytes of ``path`` (the digest the manifest records)."""
    return file_hash(path.read_bytes())


def read_manifest(folder: Path) -> dict | None:
    """The live generation's manifest; None when there is no index; QAError when it is damaged."""
    folder = Path(folder)
    for attempt in range(READ_ATTEMPTS):
        name = _read_current(folder)
        if name is None:
            return None
        try:
            return _read_manifest_of(folder, folder / name)
        except QAError:
            if attempt + 1 < READ_ATTEMPTS and _moved(folder, name):
                continue  # a build replaced the generation meanwhile: read the new one
            raise
    raise AssertionError("unreachable")


def _damaged(folder: Path, what: str) -> QAError:
    return QAError(f"index in {folder} is damaged ({what}): run `qa index --rebuild`")


def _read_current(folder: Path) -> str | None:
    """The generation name CURRENT holds; None when there is no CURRENT; QAError when it holds
    anything but a generation name (hand-edited, binary, a folder, unreadable)."""
    folder = Path(folder)
    try:
        with open(folder / CURRENT, "rb") as f:
            raw = f.read(1024)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise _damaged(folder, f"{CURRENT} is unreadable: {e.strerror or e}") from None
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        name = ""
    if not GENERATION_NAME.fullmatch(name):
        raise _damaged(folder, f"{CURRENT} does not name a generation")
    return name


def _moved(folder: Path, name: str) -> bool:
    """Whether CURRENT names another generation than ``name`` now."""
    try:
        return _read_current(folder) not in (None, name)
    except QAError:
        return False


def _current_generation(folder: Path) -> Path | None:
    name = _read_current(folder)
    if name is None:
        return None
    gen = Path(folder) / name
    if not gen.is_dir():
        raise _damaged(folder, f"{CURRENT} points nowhere")
    return gen


def _read_manifest_of(folder: Path, gen: Path) -> dict:
    """The manifest of generation ``gen``, checked; QAError naming manifest.json when it is bad."""
    if not gen.is_dir():
        raise _damaged(folder, f"{CURRENT} points nowhere")
    try:
        manifest = json.loads((gen / "manifest.json").read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise _damaged(folder, "manifest.json is missing") from None
    except (OSError, ValueError, RecursionError):
        raise _damaged(folder, "manifest.json is unreadable") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise _damaged(folder, f"manifest.json {problem}")
    return manifest


def _is_int(value) -> bool:
    return type(value) is int


def _manifest_problem(m) -> str | None:
    """What is wrong with a manifest read from disk, or None."""
    if not isinstance(m, dict):
        return "is not a JSON object"
    if not isinstance(m.get("signature"), dict):
        return "has no signature"
    docs = m.get("docs")
    if not isinstance(docs, dict) or not all(
        isinstance(meta, dict) and isinstance(meta.get("sha256"), str) and isinstance(meta.get("title"), str)
        and _is_int(meta.get("passages")) for meta in docs.values()
    ):
        return "has a bad list of documents"
    skipped = m.get("skipped", {})
    if not isinstance(skipped, dict) or not all(isinstance(v, str) for v in skipped.values()):
        return "has a bad list of skipped files"
    files = m.get("files")
    if not isinstance(files, dict) or sorted(files) != sorted(GENERATION_FILES) or not all(
        isinstance(v, str) for v in files.values()
    ):
        return "does not list the index files"
    if m.get("faiss") not in ("flat", "hnsw", "ivf"):
        return "has an unknown FAISS index type"
    if not _is_int(m.get("passages")) or not _is_int(m.get("sentences")):
        return "has bad passage or sentence counts"
    model = m.get("model")
    if not isinstance(model, dict) or not _is_int(model.get("dim")) or model["dim"] < 1:
        return "has a bad model entry"
    return None


# ---------------------------------------------------------------- building


def open_existing(settings: Settings, *, log: Log = stderr_log) -> Index:
    """Load the index as it is, without building: a stale one with a warning line saying why."""
    if read_manifest(Path(settings.index)) is None:
        raise QAError(f"no index in {settings.index} yet: build it first with `qa index`")
    reason = staleness(settings)
    if reason:
        log(f"warning: the index is stale ({reason}); answering from it as it is (`qa index` updates it)")
    return load_index(settings)


def ensure_index(settings: Settings, *, log: Log = stderr_log, progress: bool = True) -> Index:
    """Load the index, building or updating it first when it is missing or stale.

    When the update cannot be written (read-only folder, disk full) but an index built with the
    same settings exists, that index is loaded after a one-line warning: it answers from the
    documents as they were when it was built.
    """
    reason = staleness(settings)
    if reason:
        log(f"index: {reason}; building {settings.index} from {settings.corpus}")
        try:
            build_index(settings, log=log, progress=progress)
        except IndexWriteError as e:
            manifest = read_manifest(Path(settings.index))
            if manifest is None or manifest["signature"] != index_signature(settings):
                raise
            log(f"warning: the index was not updated ({e}); answering from the existing index")
    return load_index(settings)


def build_index(
    settings: Settings, *, rebuild: bool = False, log: Log = stderr_log, progress: bool = True, encoder=None,
    on_stage: OnStage | None = None,
) -> dict:
    """Build or incrementally update the index of ``settings.corpus``; returns the new manifest.

    Unchanged documents keep their passages; only passages whose text is not in the
    embedding cache are encoded. ``rebuild`` re-reads every document (the cache still applies).
    ``on_stage(name, seconds)`` is called as each stage of ``BUILD_STAGES`` ends, in that order, with
    its wall time; the stages cover the whole build: listing the corpus, preparing (the lock, unused
    generations, the old index to reuse), loading (reading, hashing, parsing) and splitting the documents,
    the encoder (loaded unless given), the sentence table, encoding, the FAISS index, tokenising and
    BM25, writing and switching to the new generation, deleting old ones, compacting the cache.
    """
    folder = Path(settings.index)
    corpus = Path(settings.corpus)
    t0 = time.perf_counter()
    lap = _Laps(on_stage, t0)
    files = corpus_files(corpus, follow_links=settings.follow_links)  # before the lock: a bad corpus leaves no index folder behind
    if not files:
        raise QAError(f"no documents in {corpus} (expected .txt, .md, .html or .pdf files)")
    lap("list")
    with _locked(folder):
        _drop_unused(folder)  # room for the new generation first
        signature = index_signature(settings)
        old_manifest, old_passages = _reusable(folder, signature, rebuild)
        lap("prepare")

        docs_meta: dict[str, dict] = {}
        skipped: dict[str, str] = {}
        skipped_stat: dict[str, dict] = {}
        passages: list[Passage] = []
        n_read = 0
        split_s = 0.0
        for path in files:
            did = doc_id(path, corpus)
            stat = _stat_of(path)  # before the bytes: a change after it shows in the next staleness
            data_hash = _hash_file(path)
            old = old_manifest["docs"].get(did) if old_manifest else None
            if old and old["sha256"] == data_hash and did in old_passages:
                docs_meta[did] = {**{k: v for k, v in old.items() if k not in STAT_FIELDS}, **stat}
                passages.extend(old_passages[did])
                continue
            try:
                doc = load_document(path, corpus)
            except QAError as e:
                log(f"warning: skipped {e}")
                skipped[did] = data_hash
                if stat:
                    skipped_stat[did] = stat
                continue
            n_read += 1
            t_split = time.perf_counter()
            doc_passages = split_document(doc, settings.sentences_per_passage, settings.overlap)
            split_s += time.perf_counter() - t_split
            docs_meta[did] = {"sha256": doc.sha256, "title": doc.title, "passages": len(doc_passages),
                              "chars": len(doc.text), **stat}
            passages.extend(doc_passages)
        lap("load", minus=split_s)
        lap.add("split", split_s)
        if not passages:
            raise QAError(f"no readable documents in {corpus}")

        encoder = encoder or _indexing_encoder(settings)
        lap("encoder")
        sentence_keys, sentence_texts, sentence_ptr, sentence_rows = _sentence_table(passages)
        lap("sentences")
        texts = [p.text for p in passages] + sentence_texts
        keys = [p.key for p in passages] + sentence_keys
        cache_dir = folder / "cache" / _model_key(settings)
        vectors = _encode_cached(encoder, texts, keys, cache_dir, settings.batch_size, progress, log)
        passage_vecs = vectors[: len(passages)].astype(np.float32)
        sentence_vecs = vectors[len(passages) :].astype(np.float16)
        lap("encode")

        t_enc = time.perf_counter()
        dense = _build_faiss(passage_vecs, settings)
        lap("faiss")
        tokens = [tokenize(p.text) for p in passages]
        lap("tokenize")
        bm25 = build_bm25(tokens)
        del tokens  # not held while the generation is written
        lap("bm25")
        manifest = {
            "format": FORMAT_VERSION,
            "signature": signature,
            "model": {"path": settings.model_path, "name": encoder.name, "dim": int(encoder.dim),
                      "backend": encoder.backend, "precision": encoder.precision},
            "split": {"sentences_per_passage": settings.sentences_per_passage, "overlap": settings.overlap},
            "faiss": _faiss_kind(len(passages), settings),
            "docs": docs_meta,
            "skipped": skipped,
            "skipped_stat": skipped_stat,
            "passages": len(passages),
            "sentences": len(sentence_texts),
            "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        gen = folder / f"gen-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
        tmp = folder / f".tmp-{gen.name}"
        try:
            with _writing(tmp):
                tmp.mkdir(parents=True)
            _write_generation(tmp, manifest, passages, dense, bm25, sentence_vecs, sentence_ptr, sentence_rows)
            with _writing(gen):
                os.replace(tmp, gen)
            with _writing(folder / CURRENT):
                atomic_write(folder / CURRENT, gen.name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        lap("write")
        _drop_old_generations(folder, keep=gen.name)
        lap("cleanup")
        try:
            _compact_cache(cache_dir, set(keys))
        except IndexWriteError as e:  # the new index is live; the cache keeps its (larger) old shards
            log(f"warning: {e}; the embedding cache was not compacted")
        lap("cache")
        log(
            f"index: {len(docs_meta)} documents ({n_read} read), {len(passages)} passages, "
            f"{len(sentence_texts)} sentences in {time.perf_counter() - t0:.1f}s "
            f"(FAISS+BM25 {time.perf_counter() - t_enc:.1f}s)"
        )
        return manifest


def _reusable(folder: Path, signature: dict, rebuild: bool) -> tuple[dict | None, dict[str, list[Passage]]]:
    """The old manifest and passages by document, when they can seed an incremental update."""
    if rebuild:
        return None, {}
    try:
        manifest = read_manifest(folder)
        if manifest is None or manifest.get("signature") != signature:
            return None, {}
        gen = _current_generation(folder)
        if file_sha256(gen / "passages.json") != manifest["files"]["passages.json"]:
            return None, {}  # damaged: never carry its passages into a new generation
        by_doc: dict[str, list[Passage]] = {}
        for p in _read_passages(gen):
            by_doc.setdefault(p.doc, []).append(p)
        return manifest, by_doc
    except (QAError, OSError, ValueError, KeyError, TypeError):
        return None, {}


def _sentence_table(passages: list[Passage]) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Unique sentences (overlapping passages share them) and each passage's sentence rows."""
    row_of: dict[tuple[str, int, int], int] = {}
    keys: list[str] = []
    texts: list[str] = []
    ptr = np.zeros(len(passages) + 1, dtype=np.int64)
    rows: list[int] = []
    for i, p in enumerate(passages):
        for s, e in p.sentences:
            ident = (p.doc, s, e)
            row = row_of.get(ident)
            if row is None:
                row = row_of[ident] = len(texts)
                text = p.text[s - p.start : e - p.start]
                texts.append(text)
                keys.append(hashlib.sha1(text.encode("utf-8")).hexdigest())
            rows.append(row)
        ptr[i + 1] = len(rows)
    return keys, texts, ptr, np.asarray(rows, dtype=np.int32)


def indexing_encoder(settings: Settings):
    """The encoder ``build_index`` loads when it is given none: the settings' model, backend and precision
    (for callers that wrap it, as the benchmark does to time each call)."""
    return _indexing_encoder(settings)


def _indexing_encoder(settings: Settings):
    from qa.embed import load_encoder

    return load_encoder(settings.model_path, backend=settings.backend, precision=settings.precision)


def _model_key(settings: Settings) -> str:
    path = Path(settings.model_path)
    return f"{path.name}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}-{settings.precision}"


def _encode_cached(encoder, texts: list[str], keys: list[str], cache_dir: Path, batch_size: int,
                   progress: bool, log: Log) -> np.ndarray:
    """Embeddings for ``texts``, taking what the cache has and adding the rest to it as it goes.

    Each distinct text is encoded once; the log counts repeated texts and cache hits apart."""
    cache = _read_cache(cache_dir, dim=int(encoder.dim))
    first = {k: i for i, k in reversed(list(enumerate(keys)))}  # each distinct text's first position
    missing = sorted(i for k, i in first.items() if k not in cache)
    if missing:
        duplicates = len(keys) - len(first)
        cached = len(first) - len(missing)
        counts = [f"{duplicates} duplicates"] if duplicates else []
        if duplicates or cached:
            counts.append(f"{cached} from cache")
        log(f"index: encoding {len(missing)} texts" + (f" ({', '.join(counts)})" if counts else ""))
        minutes = len(missing) / ENCODE_RATE / 60
        if minutes >= 2:
            log(f"index: this will take about {minutes:.0f} minutes; an interrupted build resumes where it "
                "stopped, and `qa ask --no-build` answers from the existing index meanwhile")
        bar = _progress(len(missing), progress)
        try:
            for at in range(0, len(missing), CACHE_SHARD):
                chunk = sorted(missing[at : at + CACHE_SHARD], key=lambda i: len(texts[i]))  # less padding
                parts = []
                for b in range(0, len(chunk), batch_size):
                    batch = [texts[i] for i in chunk[b : b + batch_size]]
                    parts.append(encoder.encode(batch, batch_size=batch_size).astype(np.float16))
                    bar(len(batch))
                vecs = np.concatenate(parts)
                chunk_keys = [keys[i] for i in chunk]
                _write_shard(cache_dir, chunk_keys, vecs)
                cache.update(zip(chunk_keys, vecs))
        finally:
            bar(0, close=True)  # an error message then starts on a line of its own
    return np.stack([cache[k] for k in keys]) if keys else np.zeros((0, encoder.dim), np.float16)


def _progress(total: int, enabled: bool):
    if not enabled:
        return lambda n, close=False: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="text", desc="encoding", file=sys.stderr, mininterval=0.5)

    def update(n: int, close: bool = False) -> None:
        bar.update(n)
        if close:
            bar.close()

    return update


def _read_cache(cache_dir: Path, dim: int | None = None) -> dict[str, np.ndarray]:
    """The cached embeddings by text key. A shard that is torn (a crash) or not a shard of
    ``dim``-wide vectors (hand-edited) is deleted: its texts are encoded again."""
    cache: dict[str, np.ndarray] = {}
    for shard in sorted(cache_dir.glob("emb-*.npz")) if cache_dir.is_dir() else []:
        try:
            with np.load(shard) as data:
                keys, vecs = data["keys"], data["vecs"]
            if not (keys.ndim == 1 and (keys.dtype.kind == "U" or not len(keys)) and vecs.ndim == 2
                    and len(vecs) == len(keys) and vecs.dtype.kind == "f" and dim in (None, vecs.shape[1])):
                raise ValueError(f"{shard.name} is not a cache shard")
            cache.update(zip(keys.tolist(), vecs.astype(np.float16, copy=False)))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            shard.unlink(missing_ok=True)
    return cache


def _write_shard(cache_dir: Path, keys: list[str], vecs: np.ndarray) -> Path:
    path = cache_dir / f"emb-{time.time_ns()}-{uuid.uuid4().hex[:6]}.npz"
    tmp = path.with_suffix(".tmp")
    try:
        with _writing(cache_dir):
            cache_dir.mkdir(parents=True, exist_ok=True)
        with _writing(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, keys=np.asarray(keys), vecs=vecs)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        _remove(tmp)  # a torn shard (disk full) is not left behind
    return path


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _compact_cache(cache_dir: Path, live: set[str]) -> None:
    """Keep only the embeddings of live texts, in one shard."""
    shards = sorted(cache_dir.glob("emb-*.npz"))
    if len(shards) <= 1:
        return
    cache = {k: v for k, v in _read_cache(cache_dir).items() if k in live}
    if cache:
        keep = _write_shard(cache_dir, list(cache), np.stack(list(cache.values())))
        shards = [s for s in shards if s != keep]
    for shard in shards:
        shard.unlink(missing_ok=True)


def _faiss_kind(n: int, settings: Settings) -> str:
    if settings.faiss != "auto":
        return settings.faiss
    return "hnsw" if n >= settings.hnsw_min else "flat"


def _build_faiss(vecs: np.ndarray, settings: Settings):
    """The dense index over ``vecs``, its vectors stored as float16.

    The vectors come out of the float16 embedding cache, so float16 storage loses nothing
    and halves the memory and the bytes each search reads.
    """
    import faiss

    dim = vecs.shape[1]
    kind = _faiss_kind(len(vecs), settings)
    fp16, ip = faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        index = faiss.IndexScalarQuantizer(dim, fp16, ip)
    elif kind == "hnsw":
        index = faiss.IndexHNSWSQ(dim, fp16, settings.hnsw_m, ip)
        index.hnsw.efConstruction = 80
    elif kind == "ivf":
        nlist = max(1, min(int(4 * np.sqrt(len(vecs))), len(vecs) // 39 or 1))
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist, fp16, ip)
        index.make_direct_map()
    else:
        raise QAError(f"unknown FAISS index type '{kind}': expected one of auto, flat, hnsw, ivf")
    index.train(vecs)
    index.add(vecs)
    return index


def _write_generation(folder: Path, manifest: dict, passages: list[Passage], dense, bm25: BM25,
                      sentence_vecs: np.ndarray, sentence_ptr: np.ndarray, sentence_rows: np.ndarray) -> None:
    import faiss

    columns = {
        "doc": [p.doc for p in passages],
        "ordinal": [p.ordinal for p in passages],
        "start": [p.start for p in passages],
        "end": [p.end for p in passages],
        "line": [p.line for p in passages],
        "text": [p.text for p in passages],
        "sentences": [[list(s) for s in p.sentences] for p in passages],
    }
    with _writing(folder / "passages.json"):
        (folder / "passages.json").write_text(json.dumps(columns, ensure_ascii=False), encoding="utf-8")
    with _writing(folder / "dense.faiss"):  # serialised here so that a write error is an OSError with its errno
        with open(folder / "dense.faiss", "wb") as f:
            f.write(faiss.serialize_index(dense).tobytes())
    with _writing(folder / "sentences.npy"):
        np.save(folder / "sentences.npy", sentence_vecs)
    with _writing(folder / "sentence_table.npz"):
        np.savez(folder / "sentence_table.npz", ptr=sentence_ptr, rows=sentence_rows)
    try:
        save_bm25(bm25, folder)  # bm25.npz, then bm25_vocab.json
    except OSError as e:
        vocab = folder / "bm25_vocab.json"
        raise IndexWriteError(vocab if vocab.exists() else folder / "bm25.npz", e) from e
    manifest["files"] = {f.name: file_sha256(f) for f in sorted(folder.iterdir())}
    with _writing(folder / "manifest.json"):
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    for f in folder.iterdir():
        with _writing(f), open(f, "rb") as fh:
            os.fsync(fh.fileno())


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file, never a torn one."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _drop_unused(folder: Path) -> None:
    """Delete what no reader can use: generations CURRENT does not name (a build that failed
    before switching to its generation, old ones a reader held), leftovers of killed builds."""
    try:
        live = _read_current(folder)
    except QAError:
        return  # which generation is live is unknown: keep them all
    _drop_old_generations(folder, keep=live)


def _drop_old_generations(folder: Path, keep: str | None) -> None:
    """Delete every generation but ``keep`` that no reader holds (see ``_reading``); one still
    held is deleted by a later build. Leftovers of killed builds go too."""
    import fcntl

    for old in folder.glob("gen-*"):
        if old.name == keep:
            continue
        try:
            fd = os.open(old, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a reader is loading it
            except OSError:
                pass  # no locks on this file system: readers whose generation vanishes read CURRENT again
            trash = folder / f".del-{old.name}"
            try:
                os.rename(old, trash)  # gone from its name at once: a reader now waiting for it retries
            except OSError:
                continue
        finally:
            os.close(fd)
        shutil.rmtree(trash, ignore_errors=True)
    for tmp in [*folder.glob(".tmp-gen-*"), *folder.glob(".del-gen-*")]:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One build at a time per index folder (other processes wait)."""
    import fcntl

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise QAError(f"cannot create the index folder {folder}: {e.strerror}") from e
    with _writing(folder / ".lock"):
        lock = open(folder / ".lock", "a")
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---------------------------------------------------------------- loading


def load_index(settings: Settings, *, verify: bool = True) -> Index:
    """Load the live generation; QAError (one line, naming the bad file) when it is missing or damaged.

    The generation is held (shared lock) while it is read, so no build deletes it meanwhile; when a
    build replaced it between reading CURRENT and taking the lock, CURRENT is read again."""
    folder = Path(settings.index)
    for attempt in range(READ_ATTEMPTS):
        name = _read_current(folder)
        if name is None:
            raise QAError(f"no index in {folder}: run `qa index`")
        try:
            with _reading(folder, folder / name):
                manifest = _read_manifest_of(folder, folder / name)
                return _load_generation(folder, folder / name, manifest, settings, verify)
        except QAError:
            if attempt + 1 < READ_ATTEMPTS and _moved(folder, name):
                continue  # a build replaced the generation meanwhile: load the new one
            raise
    raise AssertionError("unreachable")


@contextmanager
def _reading(folder: Path, gen: Path) -> Iterator[None]:
    """Hold a shared lock on generation ``gen`` while it is read: builds delete no generation a
    reader holds. QAError when ``gen`` is not there (any more)."""
    import fcntl

    try:
        fd = os.open(gen, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        raise _damaged(folder, f"{CURRENT} points nowhere") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError:
            pass  # no locks on this file system: load_index still reads CURRENT again when files vanish
        try:
            still_there = os.path.samestat(os.fstat(fd), os.stat(gen))
        except OSError:
            still_there = False
        if not still_there:  # deleted while we waited for the lock
            raise _damaged(folder, f"{CURRENT} points nowhere")
        yield
    finally:
        os.close(fd)


def _load_generation(folder: Path, gen: Path, manifest: dict, settings: Settings, verify: bool) -> Index:
    """Read and check every file of ``gen``; QAError naming the first bad one."""
    if verify:
        for name in GENERATION_FILES:
            try:
                digest = file_sha256(gen / name)
            except FileNotFoundError:
                raise _damaged(folder, f"{name} is missing") from None
            except OSError as e:
                raise _damaged(folder, f"{name} is unreadable: {e.strerror or e}") from None
            if digest != manifest["files"][name]:
                raise _damaged(folder, f"{name} was modified")
    else:
        for name in GENERATION_FILES:
            if not (gen / name).is_file():
                raise _damaged(folder, f"{name} is missing")
    import faiss

    name = "passages.json"
    try:
        passages = _read_passages(gen)
        if len(passages) != manifest["passages"] or any(p.doc not in manifest["docs"] for p in passages):
            raise ValueError("passages.json does not match manifest.json")
        name = "dense.faiss"
        dense = faiss.read_index(str(gen / name))
        if dense.ntotal != len(passages) or dense.d != manifest["model"]["dim"]:
            raise ValueError("dense.faiss does not match passages.json")
        if manifest["faiss"] == "hnsw":
            dense.hnsw.efSearch = settings.hnsw_ef_search
        elif manifest["faiss"] == "ivf":
            dense.nprobe = max(8, dense.nlist // 8)
        name = "bm25.npz"
        try:
            bm25 = load_bm25(gen)
        except QAError:
            raise ValueError("bm25.npz or bm25_vocab.json is unreadable") from None
        if bm25.n_docs != len(passages):
            raise ValueError("bm25.npz does not match passages.json")
        name = "sentences.npy"
        sentence_vecs = np.load(gen / name, mmap_mode="r")
        if sentence_vecs.shape != (manifest["sentences"], dense.d) or sentence_vecs.dtype != np.float16:
            raise ValueError("sentences.npy does not match manifest.json")
        name = "sentence_table.npz"
        with np.load(gen / name) as table:
            ptr, rows = table["ptr"], table["rows"]
        if not (ptr.ndim == rows.ndim == 1 and ptr.dtype.kind == rows.dtype.kind == "i"
                and len(ptr) == len(passages) + 1 and ptr[0] == 0 and ptr[-1] == len(rows)
                and bool(np.all(np.diff(ptr) >= 0))
                and (not len(rows) or 0 <= int(rows.min()) <= int(rows.max()) < len(sentence_vecs))
                and np.array_equal(np.diff(ptr), [len(p.sentences) for p in passages])):
            raise ValueError("sentence_table.npz does not match passages.json")
    except QAError:
        raise
    except FileNotFoundError:
        raise _damaged(folder, f"{name} is missing") from None
    except ValueError as e:
        what = str(e)
        raise _damaged(folder, what if what.startswith(name) else f"{name} is unreadable") from None
    except (OSError, KeyError, TypeError, RuntimeError, EOFError, IndexError, AttributeError, RecursionError,
            zipfile.BadZipFile):
        raise _damaged(folder, f"{name} is unreadable") from None
    return Index(gen, manifest, passages, dense, bm25, sentence_vecs, ptr, rows)


def _read_passages(gen: Path) -> list[Passage]:
    """The passages, sharing equal values: one doc-id string per document, one (start, end)
    tuple per sentence (neighbours overlap by a sentence), one int object per offset.
    ValueError when passages.json is not the columns a build writes."""
    c = json.loads((gen / "passages.json").read_bytes().decode("utf-8"))
    if not isinstance(c, dict) or not all(isinstance(c.get(k), list) for k in PASSAGE_COLUMNS) \
            or len({len(c[k]) for k in PASSAGE_COLUMNS}) != 1:
        raise ValueError("passages.json does not hold the passage columns")
    docs: dict[str, str] = {}
    ints: dict[int, int] = {}
    spans: dict[tuple, tuple[int, int]] = {}
    same = ints.setdefault
    out = []
    for doc, ordinal, start, end, line, text, sents in zip(*(c[k] for k in PASSAGE_COLUMNS)):
        if not (type(doc) is str and type(text) is str and type(ordinal) is int and type(start) is int
                and type(end) is int and type(line) is int and type(sents) is list
                and 0 <= start and end - start == len(text)):
            raise ValueError("passages.json holds a malformed passage")
        sents = [(s, e) for s, e in sents]
        if not all(type(s) is int and type(e) is int and start <= s <= e <= end for s, e in sents):
            raise ValueError("passages.json holds a malformed passage")
        doc = docs.setdefault(doc, doc)
        sentences = tuple(spans.setdefault((doc, s, e), (same(s, s), same(e, e))) for s, e in sents)
        out.append(Passage(doc, same(ordinal, ordinal), same(start, start), same(end, end), same(line, line),
                           text, sentences))
    return out


def documents_summary(index: Index) -> list[dict]:
    """One row per indexed document: id, title, passages."""
    return [{"doc": d, "title": m["title"], "passages": m["passages"]} for d, m in sorted(index.manifest["docs"].items())]
