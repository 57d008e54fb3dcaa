"""Step 3: embed and index passages (FAISS + BM25), save atomically, load, judge staleness.

Layout of the index folder::

    CURRENT           name of the live generation (replaced atomically)
    gen-<id>/         one complete index: manifest.json, passages.json, dense.faiss,
                      sentences.npy, bm25.npz, bm25_vocab.json
    cache/<model>/    embedding cache by text hash (shards written as encoding goes,
                      so an interrupted build resumes where it stopped)
    settings.json     settings saved by calibration (abstention threshold)

A build writes a new generation folder, then points CURRENT at it: a crash at any
moment leaves the previous index intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from qa.bm25 import BM25, build_bm25, load_bm25, save_bm25
from qa.config import Settings
from qa.load import corpus_files, doc_id, fingerprint, load_document
from qa.split import split_document
from qa.tokenize import tokenize
from qa.types import Passage, QAError

FORMAT_VERSION = 2  # 2: float16 FAISS storage
CURRENT = "CURRENT"
CACHE_SHARD = 512  # texts encoded between two cache writes
Log = Callable[[str], None]


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

    @property
    def titles(self) -> dict[str, str]:
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
    docs = fingerprint(Path(settings.corpus), follow_links=settings.follow_links)
    known = {**{d: meta["sha256"] for d, meta in manifest["docs"].items()}, **manifest.get("skipped", {})}
    if known == docs:
        return None
    added = len(set(docs) - set(known))
    removed = len(set(known) - set(docs))
    changed = sum(1 for d in docs if d in known and known[d] != docs[d])
    return f"corpus changed ({added} added, {changed} changed, {removed} removed)"


def read_manifest(folder: Path) -> dict | None:
    """The live generation's manifest; None when there is no index; QAError when it is damaged."""
    gen = _current_generation(folder)
    if gen is None:
        return None
    try:
        manifest = json.loads((gen / "manifest.json").read_text())
        manifest["docs"]
        manifest["signature"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise QAError(f"index in {folder} is damaged (manifest unreadable): run `qa index --rebuild`") from e
    return manifest


def _current_generation(folder: Path) -> Path | None:
    pointer = Path(folder) / CURRENT
    if not pointer.exists():
        return None
    name = pointer.read_text().strip()
    gen = Path(folder) / name
    if not name.startswith("gen-") or "/" in name or not gen.is_dir():
        raise QAError(f"index in {folder} is damaged ({CURRENT} points nowhere): run `qa index --rebuild`")
    return gen


# ---------------------------------------------------------------- building


def ensure_index(settings: Settings, *, log: Log = stderr_log, progress: bool = True) -> Index:
    """Load the index, building or updating it first when it is missing or stale."""
    reason = staleness(settings)
    if reason:
        log(f"index: {reason}; building {settings.index} from {settings.corpus}")
        build_index(settings, log=log, progress=progress)
    return load_index(settings)


def build_index(
    settings: Settings, *, rebuild: bool = False, log: Log = stderr_log, progress: bool = True, encoder=None
) -> dict:
    """Build or incrementally update the index of ``settings.corpus``; returns the new manifest.

    Unchanged documents keep their passages; only passages whose text is not in the
    embedding cache are encoded. ``rebuild`` re-reads every document (the cache still applies).
    """
    folder = Path(settings.index)
    corpus = Path(settings.corpus)
    t0 = time.perf_counter()
    files = corpus_files(corpus, follow_links=settings.follow_links)  # before the lock: a bad corpus leaves no index folder behind
    if not files:
        raise QAError(f"no documents in {corpus} (expected .txt, .md, .html or .pdf files)")
    with _locked(folder):
        signature = index_signature(settings)
        old_manifest, old_passages = _reusable(folder, signature, rebuild)

        docs_meta: dict[str, dict] = {}
        skipped: dict[str, str] = {}
        passages: list[Passage] = []
        n_read = 0
        for path in files:
            did = doc_id(path, corpus)
            data_hash = hashlib.sha256(path.read_bytes()).hexdigest()
            old = old_manifest["docs"].get(did) if old_manifest else None
            if old and old["sha256"] == data_hash and did in old_passages:
                docs_meta[did] = old
                passages.extend(old_passages[did])
                continue
            try:
                doc = load_document(path, corpus)
            except QAError as e:
                log(f"warning: skipped {e}")
                skipped[did] = data_hash
                continue
            n_read += 1
            doc_passages = split_document(doc, settings.sentences_per_passage, settings.overlap)
            docs_meta[did] = {"sha256": doc.sha256, "title": doc.title, "passages": len(doc_passages), "chars": len(doc.text)}
            passages.extend(doc_passages)
        if not passages:
            raise QAError(f"no readable documents in {corpus}")

        encoder = encoder or _indexing_encoder(settings)
        sentence_keys, sentence_texts, sentence_ptr, sentence_rows = _sentence_table(passages)
        texts = [p.text for p in passages] + sentence_texts
        keys = [p.key for p in passages] + sentence_keys
        cache_dir = folder / "cache" / _model_key(settings)
        vectors = _encode_cached(encoder, texts, keys, cache_dir, settings.batch_size, progress, log)
        passage_vecs = vectors[: len(passages)].astype(np.float32)
        sentence_vecs = vectors[len(passages) :].astype(np.float16)

        t_enc = time.perf_counter()
        dense = _build_faiss(passage_vecs, settings)
        bm25 = build_bm25([tokenize(p.text) for p in passages])
        manifest = {
            "format": FORMAT_VERSION,
            "signature": signature,
            "model": {"path": settings.model_path, "name": encoder.name, "dim": int(encoder.dim),
                      "backend": encoder.backend, "precision": encoder.precision},
            "split": {"sentences_per_passage": settings.sentences_per_passage, "overlap": settings.overlap},
            "faiss": _faiss_kind(len(passages), settings),
            "docs": docs_meta,
            "skipped": skipped,
            "passages": len(passages),
            "sentences": len(sentence_texts),
            "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        gen = folder / f"gen-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
        tmp = folder / f".tmp-{gen.name}"
        tmp.mkdir(parents=True)
        try:
            _write_generation(tmp, manifest, passages, dense, bm25, sentence_vecs, sentence_ptr, sentence_rows)
            os.replace(tmp, gen)
            atomic_write(folder / CURRENT, gen.name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _drop_old_generations(folder, keep=gen.name)
        _compact_cache(cache_dir, set(keys))
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
        if _file_digest(gen / "passages.json") != manifest["files"]["passages.json"]:
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


def _indexing_encoder(settings: Settings):
    from qa.embed import load_encoder

    return load_encoder(settings.model_path, backend=settings.backend, precision=settings.precision)


def _model_key(settings: Settings) -> str:
    path = Path(settings.model_path)
    return f"{path.name}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}-{settings.precision}"


def _encode_cached(encoder, texts: list[str], keys: list[str], cache_dir: Path, batch_size: int,
                   progress: bool, log: Log) -> np.ndarray:
    """Embeddings for ``texts``, taking what the cache has and adding the rest to it as it goes."""
    cache = _read_cache(cache_dir)
    missing = sorted({k: i for i, k in reversed(list(enumerate(keys))) if k not in cache}.values())
    if missing:
        done = len(keys) - len(missing)
        log(f"index: encoding {len(missing)} texts" + (f" ({done} from cache)" if done else ""))
        bar = _progress(len(missing), progress)
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
        bar(0, close=True)
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


def _read_cache(cache_dir: Path) -> dict[str, np.ndarray]:
    cache: dict[str, np.ndarray] = {}
    for shard in sorted(cache_dir.glob("emb-*.npz")) if cache_dir.exists() else []:
        try:
            with np.load(shard) as data:
                cache.update(zip(data["keys"].tolist(), data["vecs"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            shard.unlink(missing_ok=True)  # a torn shard from a crash: its texts are encoded again
    return cache


def _write_shard(cache_dir: Path, keys: list[str], vecs: np.ndarray) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"emb-{time.time_ns()}-{uuid.uuid4().hex[:6]}.npz"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, keys=np.asarray(keys), vecs=vecs)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


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
    (folder / "passages.json").write_text(json.dumps(columns, ensure_ascii=False))
    faiss.write_index(dense, str(folder / "dense.faiss"))
    np.save(folder / "sentences.npy", sentence_vecs)
    np.savez(folder / "sentence_table.npz", ptr=sentence_ptr, rows=sentence_rows)
    save_bm25(bm25, folder)
    manifest["files"] = {f.name: _file_digest(f) for f in sorted(folder.iterdir())}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    for f in folder.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def _drop_old_generations(folder: Path, keep: str) -> None:
    for old in folder.glob("gen-*"):
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)
    for tmp in folder.glob(".tmp-gen-*"):
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One build at a time per index folder (other processes wait)."""
    import fcntl

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise QAError(f"cannot create the index folder {folder}: {e.strerror}") from e
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---------------------------------------------------------------- loading


def load_index(settings: Settings, *, verify: bool = True) -> Index:
    """Load the live generation; QAError (one line) when it is missing or damaged."""
    folder = Path(settings.index)
    manifest = read_manifest(folder)
    if manifest is None:
        raise QAError(f"no index in {folder}: run `qa index`")
    gen = _current_generation(folder)
    damaged = f"index in {folder} is damaged"
    try:
        if verify:
            for name, digest in manifest["files"].items():
                if _file_digest(gen / name) != digest:
                    raise QAError(f"{damaged} ({name} was modified): run `qa index --rebuild`")
        import faiss

        passages = _read_passages(gen)
        dense = faiss.read_index(str(gen / "dense.faiss"))
        if manifest["faiss"] == "hnsw":
            dense.hnsw.efSearch = settings.hnsw_ef_search
        elif manifest["faiss"] == "ivf":
            dense.nprobe = max(8, dense.nlist // 8)
        bm25 = load_bm25(gen)
        sentence_vecs = np.load(gen / "sentences.npy", mmap_mode="r")
        with np.load(gen / "sentence_table.npz") as table:
            ptr, rows = table["ptr"], table["rows"]
    except QAError:
        raise
    except FileNotFoundError as e:
        raise QAError(f"{damaged} ({Path(e.filename).name} is missing): run `qa index --rebuild`") from e
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise QAError(f"{damaged} ({e.__class__.__name__}): run `qa index --rebuild`") from e
    if not (len(passages) == dense.ntotal == bm25.n_docs == len(ptr) - 1):
        raise QAError(f"{damaged} (its parts disagree): run `qa index --rebuild`")
    return Index(gen, manifest, passages, dense, bm25, sentence_vecs, ptr, rows)


def _read_passages(gen: Path) -> list[Passage]:
    """The passages, sharing equal values: one doc-id string per document, one (start, end)
    tuple per sentence (neighbours overlap by a sentence), one int object per offset."""
    c = json.loads((gen / "passages.json").read_text())
    docs: dict[str, str] = {}
    ints: dict[int, int] = {}
    spans: dict[tuple, tuple[int, int]] = {}
    same = ints.setdefault
    out = []
    for doc, ordinal, start, end, line, text, sents in zip(
        c["doc"], c["ordinal"], c["start"], c["end"], c["line"], c["text"], c["sentences"]
    ):
        doc = docs.setdefault(doc, doc)
        sentences = tuple(spans.setdefault((doc, s, e), (same(s, s), same(e, e))) for s, e in sents)
        out.append(Passage(doc, same(ordinal, ordinal), same(start, start), same(end, end), same(line, line),
                           text, sentences))
    return out


def documents_summary(index: Index) -> list[dict]:
    """One row per indexed document: id, title, passages."""
    return [{"doc": d, "title": m["title"], "passages": m["passages"]} for d, m in sorted(index.manifest["docs"].items())]
