"""Step 3 (building): documents -> passages -> vectors, FAISS and BM25 -> a new index generation.

``build_index`` reads only documents whose digest changed (``qa.manifest``), encodes only texts the
embedding cache lacks (``qa.embcache``), writes a new generation and switches to it atomically
(``qa.storage``); ``ensure_index`` does it when the index is missing or stale, then loads it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from qa.bm25 import BM25, bm25_from_counts, count_terms, save_bm25
from qa.calibration import CALIBRATION_FILE
from qa.config import Settings
from qa.datatypes import Document, Passage, QAError, text_key
from qa.dense import build_faiss, faiss_kind, write_faiss
from qa.embcache import compact_cache, encode_cached, encode_pooled_cached
from qa.index import Index, Log, load_index, stderr_log
from qa.load import corpus_files, doc_id, load_document
from qa.digests import STAT_FIELDS, stat_of
from qa.manifest import (FORMAT_VERSION, check_files, hash_file, index_signature, model_key, read_manifest,
                         record_files, staleness)
from qa.passages import open_passages, write_passages
from qa.split import dense_text, index_text, split_document
from qa.storage import (IndexWriteError, atomic_write, current_generation, drop_old_generations, drop_unused,
                        fsync_files, locked, publish, writing)
from qa.protocols import TextEncoder
from qa.terms import tokenize
from qa.vectors import plan

BUILD_STAGES = ("list", "prepare", "load", "split", "encoder", "sentences", "encode", "faiss", "tokenize", "bm25",
                "write", "cleanup", "cache")  # reported to build_index's on_stage, in this order
FITTED_FILES = (CALIBRATION_FILE,)  # fitted on a generation; the next one keeps them while the model stays
OnStage = Callable[[str, float], None]


class Laps:
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


def ensure_index(settings: Settings, *, log: Log = stderr_log, progress: bool = True,
                 loaded: Mapping[str, Document] | None = None) -> Index:
    """Load the index, building or updating it first when it is missing or stale.

    When the update cannot be written (read-only folder, disk full) but an index built with the
    same settings exists, that index is loaded after a one-line warning: it answers from the
    documents as they were when it was built. ``loaded``: see ``build_index``.
    """
    reason = staleness(settings)
    if reason:
        log(f"index: {reason}; building {settings.index} from {settings.corpus}")
        try:
            build_index(settings, log=log, progress=progress, loaded=loaded)
        except IndexWriteError as e:
            manifest = read_manifest(Path(settings.index))
            if manifest is None or manifest["signature"] != index_signature(settings):
                raise
            log(f"warning: the index was not updated ({e}); answering from the existing index")
    return load_index(settings)


def build_index(
    settings: Settings, *, rebuild: bool = False, log: Log = stderr_log, progress: bool = True, encoder: TextEncoder | None = None,
    on_stage: OnStage | None = None, loaded: Mapping[str, Document] | None = None,
) -> dict:
    """Build or incrementally update the index of ``settings.corpus``; returns the new manifest.

    Unchanged documents keep their passages; only passages whose text is not in the
    embedding cache are encoded. ``rebuild`` re-reads every document (the cache still applies).
    ``loaded``: documents already read, by id (an upload read while it was checked); one is used
    instead of reading its file when its digest is the file's, so it is not parsed twice.
    ``on_stage(name, seconds)`` is called as each stage of ``BUILD_STAGES`` ends, in that order, with
    its wall time; the stages cover the whole build: listing the corpus, preparing (the lock, unused
    generations, the old index to reuse), loading (reading, hashing, parsing) and splitting the documents,
    the encoder (loaded unless given), the sentence table, encoding, the FAISS index, tokenising and
    BM25, writing and switching to the new generation, deleting old ones, compacting the cache.
    """
    folder = Path(settings.index)
    corpus = Path(settings.corpus)
    t0 = time.perf_counter()
    lap = Laps(on_stage, t0)
    files = corpus_files(corpus, follow_links=settings.follow_links)  # before the lock: a bad corpus leaves no index folder behind
    if not files:
        raise QAError(f"no documents in {corpus} (expected .txt, .md, .html, .pdf or .docx files)")
    lap("list")
    with locked(folder):
        drop_unused(folder)  # room for the new generation first
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
            stat = stat_of(path)  # before the bytes: a change after it shows in the next staleness
            data_hash = hash_file(path)
            old = old_manifest["docs"].get(did) if old_manifest else None
            if old and old["sha256"] == data_hash and did in old_passages:
                docs_meta[did] = {**{k: v for k, v in old.items() if k not in STAT_FIELDS}, **stat}
                passages.extend(old_passages[did])
                continue
            try:
                doc = (loaded or {}).get(did)
                if doc is None or doc.sha256 != data_hash:
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

        encoder = encoder or indexing_encoder(settings)
        lap("encoder")
        pooled = settings.sentence_vectors == "pooled"  # a pooled build needs no sentence texts of its own
        sentence_keys, sentence_texts, sentence_ptr, sentence_rows = _sentence_table(passages, texts=not pooled)
        n_sentences = int(sentence_rows.max()) + 1 if len(sentence_rows) else 0
        lap("sentences")
        cache_dir = _cache_dir(settings)
        titles = {d: meta["title"] for d, meta in docs_meta.items()}
        vectors, live = _vectors(settings, encoder, passages, titles, sentence_keys, sentence_texts, sentence_ptr,
                                 sentence_rows, progress, log)
        del sentence_keys, sentence_texts
        lap("encode")

        t_enc = time.perf_counter()
        dense = build_faiss(vectors[: len(passages)], settings)
        sentence_vecs = vectors[len(passages) :]
        del vectors
        lap("faiss")
        # title and heading in every passage; counted as they are tokenised, no passage's tokens kept
        counts = count_terms(tokenize(index_text(p, titles[p.doc])) for p in passages)
        lap("tokenize")
        bm25 = bm25_from_counts(counts, k1=settings.bm25_k1, b=settings.bm25_b)
        del counts
        lap("bm25")
        manifest = {
            "format": FORMAT_VERSION,
            "signature": signature,
            "model": {"path": settings.model_path, "name": encoder.name, "dim": int(encoder.dim),
                      "backend": encoder.backend, "precision": encoder.precision},
            "split": {"sentences_per_passage": settings.sentences_per_passage, "overlap": settings.overlap},
            "settings": settings.index_part(),  # authoritative when the index is loaded (qa.options.settings_from)
            "faiss": faiss_kind(len(passages), settings),
            "docs": docs_meta,
            "skipped": skipped,
            "skipped_stat": skipped_stat,
            "passages": len(passages),
            "sentences": n_sentences,
            "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        def write(tmp: Path) -> None:
            write_generation(tmp, manifest, passages, dense, bm25, sentence_vecs, sentence_ptr, sentence_rows)
            keep_fitted(folder, tmp, signature["model"])

        gen = publish(folder, write)
        n_docs, n_passages = len(docs_meta), len(passages)
        del passages, dense, bm25, sentence_vecs  # not held while the cache is compacted
        lap("write")
        drop_old_generations(folder, keep=gen.name)
        lap("cleanup")
        try:
            compact_cache(cache_dir, live)
        except IndexWriteError as e:  # the new index is live; the cache keeps its (larger) old shards
            log(f"warning: {e}; the embedding cache was not compacted")
        lap("cache")
        log(
            f"index: {n_docs} documents ({n_read} read), {n_passages} passages, "
            f"{n_sentences} sentences in {time.perf_counter() - t0:.1f}s "
            f"(FAISS+BM25 {time.perf_counter() - t_enc:.1f}s)"
        )
        return manifest


def warm_cache(settings: Settings, docs: list[Document], *, encoder=None, log: Log = stderr_log,
               progress: bool = False) -> list[Path]:
    """Encode the passages and sentences of ``docs`` (read, not yet in the corpus) into the index's
    embedding cache, outside the build's lock; returns the cache shards written (none when the
    cache had every text), which ``drop_warmed`` removes if the documents are not added after all.

    The chat page does this for an upload before the upload enters the corpus, so the build that
    then adds it finds every vector in the cache: the build (one at a time) stays short however
    large the upload, and other users' uploads are not kept waiting behind its encoding."""
    passages = [p for doc in docs for p in split_document(doc, settings.sentences_per_passage, settings.overlap)]
    written: list[Path] = []
    if passages:
        _vectors(settings, encoder or indexing_encoder(settings), passages, {d.id: d.title for d in docs},
                 *_sentence_table(passages, texts=settings.sentence_vectors != "pooled"), progress, log, upload=True,
                 written=written)
    return written


def _vectors(settings: Settings, encoder, passages: list[Passage], titles: Mapping[str, str],
             sentence_keys: list[str], sentence_texts: list[str], sentence_ptr: np.ndarray, sentence_rows: np.ndarray,
             progress: bool, log: Log, **upload) -> tuple[np.ndarray, set[str]]:
    """The passage vectors (of each passage with its context: ``settings.dense_context``, ``titles`` by
    document), then the sentence rows' (``settings.sentence_vectors``: pooled or encoded), through the
    embedding cache; and the cache keys to keep when it is compacted."""
    cache_dir = _cache_dir(settings)
    inputs = [dense_text(p, titles[p.doc], settings.dense_context) for p in passages]
    if settings.sentence_vectors == "pooled":
        the_plan = plan(passages, inputs, sentence_ptr, sentence_rows)
        vectors = encode_pooled_cached(encoder, the_plan, cache_dir, settings.batch_size, progress, log, **upload)
        # every span pooled, whether or not it is a sentence row's, stays cached
        return vectors, set(the_plan.keys).union(*the_plan.span_keys)
    keys = [text_key(t) for t in inputs] + sentence_keys
    vectors = encode_cached(encoder, inputs + sentence_texts, keys, cache_dir, settings.batch_size, progress, log,
                            **upload)
    return vectors, set(keys)


def drop_warmed(shards: list[Path]) -> None:
    """Remove the cache shards ``warm_cache`` wrote for documents that were not added after all."""
    for shard in shards:
        shard.unlink(missing_ok=True)


def _cache_dir(settings: Settings) -> Path:
    return Path(settings.index) / "cache" / model_key(settings)


def _reusable(folder: Path, signature: dict, rebuild: bool) -> tuple[dict | None, dict[str, list[Passage]]]:
    """The old manifest and passages by document, when they can seed an incremental update."""
    if rebuild:
        return None, {}
    try:
        manifest = read_manifest(folder)
        if manifest is None or manifest.get("signature") != signature:
            return None, {}
        gen = current_generation(folder)
        check_files(folder, gen, manifest)  # damaged: never carry its passages into a new generation
        by_doc: dict[str, list[Passage]] = {}
        for p in open_passages(gen, manifest["docs"]):
            by_doc.setdefault(p.doc, []).append(p)
        return manifest, by_doc
    except (QAError, OSError, ValueError, KeyError, TypeError):
        return None, {}


def _sentence_table(passages: list[Passage], texts: bool = True) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Unique sentences (overlapping passages share them): their keys and texts (none unless ``texts``),
    and each passage's sentence rows."""
    row_of: dict[tuple[str, int, int], int] = {}
    keys: list[str] = []
    sentences: list[str] = []
    ptr = np.zeros(len(passages) + 1, dtype=np.int64)
    rows: list[int] = []
    for i, p in enumerate(passages):
        for s, e in p.sentences:
            ident = (p.doc, s, e)
            row = row_of.get(ident)
            if row is None:
                row = row_of[ident] = len(row_of)
                if texts:
                    text = p.text[s - p.start : e - p.start]
                    sentences.append(text)
                    keys.append(text_key(text))
            rows.append(row)
        ptr[i + 1] = len(rows)
    return keys, sentences, ptr, np.asarray(rows, dtype=np.int32)


def indexing_encoder(settings: Settings):
    """The encoder ``build_index`` loads when it is given none: the settings' model, backend and precision
    (for callers that wrap it, as the benchmark does to time each call)."""
    from qa.embed import load_encoder

    return load_encoder(settings.model_path, backend=settings.backend, precision=settings.precision)


def keep_fitted(folder: Path, gen: Path, model: str) -> None:
    """Copy into the new generation ``gen`` what was fitted on the live one (its calibration) when both
    come from the embedding model ``model``: a calibration never outlives a model change."""
    try:
        manifest = read_manifest(folder)
        live = current_generation(folder)
    except QAError:
        return
    if manifest is None or live is None or manifest["signature"].get("model") != model:
        return
    for name in FITTED_FILES:
        try:
            data = (live / name).read_bytes()
        except OSError:
            continue
        with writing(gen / name):
            atomic_write(gen / name, data)


def write_generation(folder: Path, manifest: dict, passages: list[Passage], dense, bm25: BM25,
                     sentence_vecs: np.ndarray, sentence_ptr: np.ndarray, sentence_rows: np.ndarray) -> None:
    write_passages(folder, passages)
    with writing(folder / "dense.faiss"):
        write_faiss(dense, folder / "dense.faiss")
    with writing(folder / "sentences.npy"):
        np.save(folder / "sentences.npy", sentence_vecs)
    with writing(folder / "sentence_table.npz"):
        np.savez(folder / "sentence_table.npz", ptr=sentence_ptr, rows=sentence_rows)
    save_bm25(bm25, folder)
    with writing(folder):
        manifest.update(record_files(folder))
    with writing(folder / "manifest.json"):
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    fsync_files(folder)
