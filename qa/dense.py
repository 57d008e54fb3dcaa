"""The dense index: FAISS over the passage vectors, built, written, read and searched here.

Exact inner product (``flat``) below ``hnsw_min`` passages, HNSW above (``auto``), or IVF on
request; vectors are stored as float16 in every kind.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from qa.config import Settings, check_choice

EF_CONSTRUCTION = 80
ADD_CHUNK = 1 << 18  # vectors converted to float32 and added at a time (0.4 GB); one chunk up to 262k passages


def faiss_kind(n: int, settings: Settings) -> str:
    """The FAISS index type for ``n`` passages under ``settings``."""
    if settings.faiss != "auto":
        return settings.faiss
    return "hnsw" if n >= settings.hnsw_min else "flat"


def build_faiss(vecs: np.ndarray, settings: Settings):
    """The dense index over ``vecs``, its vectors stored as float16 (``tune`` sets its search depth).

    The vectors come out of the float16 embedding cache, so float16 storage loses nothing
    and halves the memory and the bytes each search reads. Float16 ``vecs`` are added
    ``ADD_CHUNK`` at a time, so no float32 copy of them all is made (1.5 GB at 1M passages).
    """
    import faiss

    check_choice("faiss", settings.faiss)
    dim = vecs.shape[1]
    kind = faiss_kind(len(vecs), settings)
    fp16, ip = faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        index = faiss.IndexScalarQuantizer(dim, fp16, ip)
    elif kind == "hnsw":
        index = faiss.IndexHNSWSQ(dim, fp16, settings.hnsw_m, ip)
        index.hnsw.efConstruction = EF_CONSTRUCTION
    else:  # ivf
        nlist = max(1, min(int(4 * np.sqrt(len(vecs))), len(vecs) // 39 or 1))
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist, fp16, ip)
        index.make_direct_map()
    # fp16 scalar quantisers learn nothing from the data; IVF's k-means learns its lists from all of it
    index.train(np.asarray(vecs if kind == "ivf" else vecs[:ADD_CHUNK], dtype=np.float32))
    for at in range(0, len(vecs), ADD_CHUNK):
        index.add(np.ascontiguousarray(vecs[at : at + ADD_CHUNK], dtype=np.float32))
    return index


def tune(index, kind: str, settings: Settings) -> None:
    """Set the search-time parameters of a ``kind`` index: HNSW's efSearch from the settings,
    IVF's nprobe (an eighth of the lists, at least 8)."""
    if kind == "hnsw":
        index.hnsw.efSearch = settings.hnsw_ef_search
    elif kind == "ivf":
        index.nprobe = max(8, index.nlist // 8)


def write_faiss(index, path: Path) -> None:
    """Write ``index`` to ``path``; serialised here so that a write error is an OSError with its errno."""
    import faiss

    with open(path, "wb") as f:
        f.write(faiss.serialize_index(index).tobytes())


def read_faiss(path: Path, kind: str, settings: Settings, *, vector_bytes: int = 0):
    """The index in ``path``, memory-mapped (read-only), tuned for search (see ``tune``).

    Mapped, its vectors are read from the page cache as searches touch them: opening the 100k-passage
    HNSW index took 4 ms instead of 107 ms (faiss 1.15, AMD EPYC, 2 cores), and processes serving one
    index share its pages. Every kind built here (flat, HNSW, IVF, float16 scalar-quantised) supports
    ``IO_FLAG_MMAP_IFC``. ``vector_bytes``: the size of the stored vectors, which end the file."""
    import faiss

    if kind == "hnsw":
        _read_ahead(path, os.path.getsize(path) - vector_bytes)
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
    tune(index, kind, settings)
    return index


def _read_ahead(path: Path, nbytes: int) -> None:
    """Read the first ``nbytes`` of ``path`` into the page cache, in order. faiss copies an HNSW graph
    out of the mapping (everything before the vectors) one page fault at a time: with the file out
    of the page cache that took 6.2 s at 1M passages (260 MB), read ahead in order 0.4-0.8 s
    (benchmarks/tiled_open.py, AMD EPYC, 2 cores, load 6)."""
    buf = bytearray(16 << 20)
    with open(path, "rb", buffering=0) as f:
        while nbytes > 0:
            got = f.readinto(memoryview(buf)[: min(nbytes, len(buf))])
            if not got:
                return
            nbytes -= got


def dense_top(dense, qvec: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and inner-product scores of the k nearest passages in ``dense``, best first.

    One query runs on one OpenMP thread: a second thread gains little for one vector, and
    OpenMP's barriers cost tens of milliseconds when the other core is busy.
    """
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        scores, rows = dense.search(np.ascontiguousarray(qvec[None, :], dtype=np.float32), k)
    finally:
        faiss.omp_set_num_threads(threads)
    keep = rows[0] >= 0
    return rows[0][keep].astype(np.int64), scores[0][keep].astype(np.float64)
