"""How long an index of N times the passages takes to open, without building one: every file of an
existing generation is tiled N times (the documents, passages, texts, sentence vectors, BM25
postings and the HNSW graph repeated, row numbers shifted), then ``qa.index.load_index`` is timed in
fresh processes, with the files in the page cache (warm) and evicted from it (cold,
``posix_fadvise(DONTNEED)`` on this index's files only).

    python benchmarks/tiled_open.py --index benchmarks/out/work/100k/index --times 10 --out /tmp/tiled-1M
    python benchmarks/tiled_open.py --reuse --out /tmp/tiled-1M     # time it again, after a change to qa/

The tiled index is a real format-6 index (``load_index`` checks every file of it) whose content
repeats, and whose HNSW copies are not linked to each other (a search stays in the first copy):
what it measures is the open, not retrieval. Needs ~N times the generation's size
on disk (5 GB for 100k x 10).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.bm25 import load_bm25, save_bm25, BM25  # noqa: E402
from qa.manifest import FORMAT_VERSION, read_manifest, record_files  # noqa: E402
from qa.passages import ROWS, SPANS, STRINGS, TEXTS, open_passages  # noqa: E402
from qa.storage import current_generation  # noqa: E402


def tile_store(src: Path, dst: Path, docs: dict, times: int) -> None:
    store = open_passages(src, docs)
    n, n_docs, n_spans = len(store.rows), len(store.docs), len(store.spans)
    rows = np.concatenate([np.asarray(store.rows)] * times)
    for k in range(times):
        part = rows[k * n:(k + 1) * n]
        part["doc"] += k * n_docs
        part["text_end"] += k * len(store.texts)
        part["spans_end"] += k * n_spans
    np.save(dst / ROWS, rows)
    np.save(dst / SPANS, np.concatenate([np.asarray(store.spans)] * times))
    with open(dst / TEXTS, "wb") as f:
        for _ in range(times):
            f.write(store.texts[:])
    names = [f"{d}#{k}" if k else d for k in range(times) for d in store.docs]
    (dst / STRINGS).write_text(json.dumps({"docs": names, "headings": store.headings}, ensure_ascii=False))


def tile_bm25(src: Path, dst: Path, times: int) -> None:
    bm = load_bm25(src)
    counts = np.diff(bm.indptr)
    term_of = np.repeat(np.arange(len(counts)), counts)
    docs = np.concatenate([np.asarray(bm.docs) + k * bm.n_docs for k in range(times)]).astype(np.int32)
    weights = np.concatenate([np.asarray(bm.weights)] * times)
    order = np.argsort(np.tile(term_of, times), kind="stable")  # by term, then copy, then row
    indptr = np.zeros_like(bm.indptr)
    np.cumsum(counts * times, out=indptr[1:])
    save_bm25(BM25(bm.vocab, indptr, docs[order], weights[order], bm.n_docs * times, bm.k1, bm.b, bm.epsilon), dst)


def tile_faiss(src: Path, dst: Path, times: int) -> None:
    import faiss

    from qa.dense import write_faiss

    read = faiss.read_index(str(src))
    index = faiss.downcast_index(read)  # ``read`` owns it: kept alive to the end
    if not isinstance(index, faiss.IndexHNSWSQ):
        raise SystemExit(f"tiling is written for the HNSW index of large sizes, not {type(index).__name__}")
    n = index.ntotal
    vecs = faiss.downcast_index(index.storage).reconstruct_n(0, n)
    hnsw = index.hnsw
    levels = faiss.vector_to_array(hnsw.levels)
    offsets = faiss.vector_to_array(hnsw.offsets)
    neighbors = faiss.vector_to_array(hnsw.neighbors)
    out = faiss.IndexHNSWSQ(index.d, faiss.ScalarQuantizer.QT_fp16, hnsw.nb_neighbors(1), index.metric_type)
    storage = faiss.downcast_index(out.storage)
    storage.train(vecs)
    for _ in range(times):
        storage.add(vecs)
    tiled = [np.where(neighbors >= 0, neighbors + k * n, -1) for k in range(times)]
    faiss.copy_array_to_vector(np.tile(levels, times), out.hnsw.levels)
    faiss.copy_array_to_vector(np.concatenate([offsets[:-1] + k * offsets[-1] for k in range(times)]
                                              + [offsets[-1:] * times]).astype(offsets.dtype), out.hnsw.offsets)
    faiss.copy_array_to_vector(np.concatenate(tiled).astype(neighbors.dtype), out.hnsw.neighbors)
    out.hnsw.entry_point, out.hnsw.max_level = hnsw.entry_point, hnsw.max_level
    out.ntotal = n * times
    write_faiss(out, dst)


def tile(index: Path, out: Path, times: int) -> Path:
    gen = current_generation(index)
    manifest = read_manifest(index)
    if manifest["format"] != FORMAT_VERSION:
        raise SystemExit(f"{index} is in format {manifest['format']}: rebuild it with this version first")
    dst = out / "gen-tiled"
    dst.mkdir(parents=True, exist_ok=True)
    tile_store(gen, dst, manifest["docs"], times)
    tile_bm25(gen, dst, times)
    tile_faiss(gen / "dense.faiss", dst / "dense.faiss", times)
    sent = np.load(gen / "sentences.npy", mmap_mode="r")
    with open(dst / "sentences.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(sent.dtype),
                                                 "fortran_order": False, "shape": (len(sent) * times, sent.shape[1])})
        for _ in range(times):
            f.write(np.ascontiguousarray(sent).tobytes())
    with np.load(gen / "sentence_table.npz") as t:
        ptr, rows = t["ptr"], t["rows"]
    np.savez(dst / "sentence_table.npz",
             ptr=np.concatenate([ptr[:1]] + [ptr[1:] + k * ptr[-1] for k in range(times)]),
             rows=np.concatenate([rows + k * len(sent) for k in range(times)]).astype(rows.dtype))
    docs = {f"{d}#{k}" if k else d: meta for k in range(times) for d, meta in manifest["docs"].items()}
    manifest.update(docs=docs, passages=manifest["passages"] * times, sentences=manifest["sentences"] * times)
    manifest.update(record_files(dst))
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    (out / "CURRENT").write_text(dst.name)
    return dst


def evict(gen: Path) -> None:
    """Drop this generation's files from the page cache (only theirs)."""
    for f in gen.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


OPEN = """
import json, sys, time
import faiss, numpy, qa.bm25, qa.index
from qa.config import Settings
t = time.perf_counter()
index = qa.index.load_index(Settings(corpus=sys.argv[1], index=sys.argv[1]))
print(json.dumps({"open_s": time.perf_counter() - t, "passages": len(index.passages)}))
"""


def time_open(index: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", OPEN, str(index)], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", type=Path, help="an index folder of this format (e.g. a 100k benchmark's)")
    p.add_argument("--times", type=int, default=10)
    p.add_argument("--out", type=Path, required=True, help="where the tiled index folder is written")
    p.add_argument("--runs", type=int, default=3, help="opens timed, warm and cold each")
    p.add_argument("--reuse", action="store_true", help="time the index tiled into --out before (no tiling)")
    args = p.parse_args()
    if args.reuse:
        gen = args.out / "gen-tiled"
    elif args.index is None:
        raise SystemExit("--index is needed to tile (or --reuse)")
    else:
        t = time.perf_counter()
        gen = tile(args.index, args.out, args.times)
        print(f"tiled {args.index} x{args.times} into {args.out} in {time.perf_counter() - t:.0f} s", flush=True)
    from qa.cpu import cpu_name

    results = {"cpu": cpu_name(), "cores": os.cpu_count(), "warm": [], "cold": []}
    time_open(args.out)  # the first open after writing: files in the page cache
    for _ in range(args.runs):
        results["load_before"] = os.getloadavg()
        results["warm"].append(time_open(args.out)["open_s"])
        evict(gen)
        results["cold"].append(time_open(args.out)["open_s"])
    results["passages"] = time_open(args.out)["passages"]
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
