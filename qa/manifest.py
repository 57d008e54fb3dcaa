"""What an index generation holds and whether it is up to date: the manifest, the index's
signature, and staleness.

``manifest.json`` (in each generation) records the signature (everything besides the
documents that the index depends on: format, model identity, split and FAISS settings), every
document's sha256, title, passage count and file status, and the sha256 of every other file of
the generation. Staleness is judged as git judges its work tree: the manifest records each
document's size, mtime, ctime and inode as the build read it, and only files whose status
differs (or has none recorded: an older manifest, a file modified just before the build) are
read and hashed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from qa.bm25 import BM25_FILES
from qa.config import FAISS_BUILT, INDEX_FIELDS, PRECISIONS, IndexSettings, Settings
from qa.digests import STAT_FIELDS, same_stat
from qa.load import corpus_files, doc_id, file_hash, file_sha256
from qa.passages import JSON_FILE, PASSAGE_FILES
from qa.storage import CURRENT, damaged, with_current

FORMAT_VERSION = 6  # 2: float16 FAISS storage; 3: passages carry pages and section headings; 4: HTML <h1>-<h6>
# are headings; 5: the passages in a memory-mapped columnar store (qa.passages) instead of passages.json;
# 6: the BM25 postings in memory-mapped .npy files
GENERATION_FILES = (*BM25_FILES, "dense.faiss", *PASSAGE_FILES, "sentence_table.npz",
                    "sentences.npy")  # besides manifest.json, which lists their digests
OLDER_GENERATION_FILES = (  # what generations of older formats hold: they open as they are
    ("bm25.npz", "bm25_vocab.json", "dense.faiss", *PASSAGE_FILES, "sentence_table.npz", "sentences.npy"),  # 5
    ("bm25.npz", "bm25_vocab.json", "dense.faiss", JSON_FILE, "sentence_table.npz", "sentences.npy"),  # 4 and older
)


def index_signature(settings: Settings) -> dict:
    """What, besides the documents, an index depends on: any change means a rebuild."""
    return {
        "format": FORMAT_VERSION,
        "model": model_key(settings),
        "sentences_per_passage": settings.sentences_per_passage,
        "overlap": settings.overlap,
        "faiss": settings.faiss,
        "hnsw_min": settings.hnsw_min if settings.faiss == "auto" else None,
        "hnsw_m": settings.hnsw_m,
        "sentence_vectors": settings.sentence_vectors,
        "dense_context": settings.dense_context,
        "bm25_k1": settings.bm25_k1,
        "bm25_b": settings.bm25_b,
    }


def model_key(settings: Settings) -> str:
    """The embedding model (by content, ``qa.models.model_identity``) and the precision an index's
    vectors come from; also the name of its embedding cache's folder."""
    from qa.models import check_model_dir, model_identity

    return f"{model_identity(check_model_dir(settings.model_path))}-{settings.precision}"


def staleness(settings: Settings) -> str | None:
    """Why the index must be (re)built, or None when it is up to date with the corpus."""
    manifest = read_manifest(Path(settings.index))
    if manifest is None:
        corpus_files(Path(settings.corpus), follow_links=settings.follow_links)  # a missing corpus is the error
        return "no index yet"
    signature = manifest["signature"]
    if signature.get("format") != FORMAT_VERSION:
        return f"the index is in format {signature.get('format')}, this version writes format {FORMAT_VERSION}"
    if signature != index_signature(settings):
        return "index settings or model changed"
    known = {**{d: meta["sha256"] for d, meta in manifest["docs"].items()}, **manifest.get("skipped", {})}
    docs = corpus_digests(settings, manifest, known)
    if known == docs:
        return None
    added = len(set(docs) - set(known))
    removed = len(set(known) - set(docs))
    changed = sum(1 for d in docs if d in known and known[d] != docs[d])
    return f"corpus changed ({added} added, {changed} changed, {removed} removed)"


def corpus_digests(settings: Settings, manifest: dict, known: dict[str, str]) -> dict[str, str]:
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
            if did in known and isinstance(was, dict) and same_stat(was, os.stat(p)):
                out[did] = known[did]
            else:
                out[did] = hash_file(p)
        except OSError:  # gone or locked since it was listed: left out like an unreadable file
            continue
    return out


def hash_file(path: Path) -> str:
    """sha256 of the raw bytes of ``path`` (the digest the manifest records)."""
    return file_hash(path.read_bytes())


def read_manifest(folder: Path) -> dict | None:
    """The live generation's manifest; None when there is no index; QAError when it is damaged."""
    return with_current(Path(folder), lambda gen: read_manifest_of(Path(folder), gen))


def read_manifest_of(folder: Path, gen: Path) -> dict:
    """The manifest of generation ``gen``, checked; QAError naming manifest.json when it is bad."""
    if not gen.is_dir():
        raise damaged(folder, f"{CURRENT} points nowhere")
    try:
        manifest = json.loads((gen / "manifest.json").read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise damaged(folder, "manifest.json is missing") from None
    except (OSError, ValueError, RecursionError):
        raise damaged(folder, "manifest.json is unreadable") from None
    problem = manifest_problem(manifest)
    if problem:
        raise damaged(folder, f"manifest.json {problem}")
    return manifest


def saved_index_settings(folder: Path) -> dict | None:
    """The index-shaping settings (``IndexSettings`` fields, without the folders) the index in ``folder``
    was built with; None when there is no index; QAError (damaged, naming manifest.json) when a value
    is of the wrong type. An index built before the manifest saved them gives what its signature holds."""
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    saved = manifest.get("settings")
    if saved is None:
        signature = manifest["signature"]
        saved = {k: signature[k] for k in ("sentences_per_passage", "overlap", "faiss", "hnsw_m", "hnsw_min")
                 if signature.get(k) is not None}
        if manifest["model"].get("precision") in PRECISIONS:
            saved["precision"] = manifest["model"]["precision"]
    if not isinstance(saved, dict):
        raise damaged(folder, "manifest.json has bad settings")
    defaults = IndexSettings()
    for name, value in saved.items():
        if name in INDEX_FIELDS and type(value) is not type(getattr(defaults, name)):
            raise damaged(folder, f"manifest.json has a bad setting {name}")
    return {name: saved[name] for name in INDEX_FIELDS if name in saved}


def _is_int(value) -> bool:
    return type(value) is int


def manifest_problem(m) -> str | None:
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
    if not isinstance(files, dict) or sorted(files) != sorted(generation_files(m)) or not all(
        isinstance(v, str) for v in files.values()
    ):
        return "does not list the index files"
    if m.get("faiss") not in FAISS_BUILT:
        return "has an unknown FAISS index type"
    if not _is_int(m.get("passages")) or not _is_int(m.get("sentences")):
        return "has bad passage or sentence counts"
    model = m.get("model")
    if not isinstance(model, dict) or not _is_int(model.get("dim")) or model["dim"] < 1:
        return "has a bad model entry"
    return None


def generation_files(manifest: dict) -> tuple[str, ...]:
    """The files (besides manifest.json) a generation of this manifest's format holds."""
    listed = sorted(manifest.get("files") or {})
    return next((files for files in OLDER_GENERATION_FILES if sorted(files) == listed), GENERATION_FILES)


def record_files(gen: Path) -> dict:
    """What ``manifest.json`` records of the files of generation ``gen`` (being built): ``files``, the
    sha256 of each, and ``stat``, its status (``qa.digests.STAT_FIELDS``) once written and flushed."""
    files = sorted(f for f in gen.iterdir() if f.is_file())
    for f in files:
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    stats = {f.name: os.stat(f) for f in files}
    return {"files": {f.name: file_sha256(f) for f in files},
            "stat": {name: {k: getattr(st, f"st_{k}") for k in STAT_FIELDS} for name, st in stats.items()}}


def check_files(folder: Path, gen: Path, manifest: dict, *, verify: bool = True) -> None:
    """QAError (damaged, naming the file) when a file of ``gen`` is missing or, with ``verify``, when its
    bytes are not the ones the manifest's digest names.

    A file whose status (size, mtime, ctime, inode) is still the one the build recorded is not hashed,
    as git trusts its index: a write, a copy or a restore changes it, and a generation's files are
    written only by the build, in a private folder, before their status is taken. Hashing every
    file took 0.6 s of opening 100k passages and would take ~6 s at 1M (AMD EPYC, 2 cores).
    An older manifest records no status: every file is hashed."""
    recorded = manifest.get("stat")
    recorded = recorded if isinstance(recorded, dict) else {}
    for name in generation_files(manifest):
        try:
            st = os.stat(gen / name)
            if not verify or same_stat(recorded[name] if isinstance(recorded.get(name), dict) else {}, st):
                continue
            digest = file_sha256(gen / name)
        except FileNotFoundError:
            raise damaged(folder, f"{name} is missing") from None
        except OSError as e:
            raise damaged(folder, f"{name} is unreadable: {e.strerror or e}") from None
        if digest != manifest["files"][name]:
            raise damaged(folder, f"{name} was modified")
