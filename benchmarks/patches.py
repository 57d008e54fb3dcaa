"""Proposed fixes to ``qa/``, applied as monkeypatches for before/after measurements.

Nothing in ``qa`` imports this; ``benchmarks/run.py --patch NAME[,NAME]`` applies the
patches inside the benchmark's worker processes only, and the report says so. Each
patch stands for a small change to one function of ``qa/`` (described in ``PATCHES``
and in benchmarks/README.md).
"""

from __future__ import annotations

PATCHES: dict[str, str] = {
    "ort_no_spin": "qa/embed.py _load_onnx: options.add_session_config_entry('session.intra_op.allow_spinning', '0') "
    "(ONNX Runtime's worker threads sleep instead of busy-waiting between ops)",
    "split_line_count": "qa/split.py split_document: count the passage's line number from the previous passage's "
    "start instead of from the start of the document (quadratic in document length)",
}


def split_document_incremental_lines(doc, sentences_per_passage: int = 4, overlap: int = 1):
    """``qa.split.split_document`` with the line number counted incrementally (same passages)."""
    from qa.split import MAX_PASSAGE_CHARS, sentence_spans
    from qa.types import Passage

    if sentences_per_passage < 1:
        raise ValueError("sentences_per_passage must be at least 1")
    if not 0 <= overlap < sentences_per_passage:
        raise ValueError("overlap must be at least 0 and less than sentences_per_passage")
    sents = sentence_spans(doc.text)
    passages = []
    line, counted = 1, 0  # the change: line number of offset ``counted``
    i = 0
    while i < len(sents):
        j = i + 1
        while j < len(sents) and j - i < sentences_per_passage and sents[j][1] - sents[i][0] <= MAX_PASSAGE_CHARS:
            j += 1
        start, end = sents[i][0], sents[j - 1][1]
        line += doc.text.count("\n", counted, start)  # passages start in increasing order
        counted = start
        passages.append(Passage(doc=doc.id, ordinal=len(passages), start=start, end=end, line=line,
                                text=doc.text[start:end], sentences=tuple(sents[i:j])))
        if j >= len(sents):
            break
        i = max(j - overlap, i + 1)
    return passages


def _split_line_count() -> None:
    import qa.index
    import qa.split

    qa.split.split_document = split_document_incremental_lines
    qa.index.split_document = split_document_incremental_lines


def _ort_no_spin() -> None:
    import onnxruntime as ort

    original = ort.SessionOptions
    if getattr(original, "_qa_bench_patched", False):
        return

    def session_options(*a, **kw):
        options = original(*a, **kw)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    session_options._qa_bench_patched = True
    ort.SessionOptions = session_options


def apply(names) -> list[str]:
    """Apply the named patches in this process; returns the names applied."""
    applied = []
    for name in names or []:
        if not name:
            continue
        if name not in PATCHES:
            raise SystemExit(f"unknown patch {name!r} (known: {', '.join(PATCHES)})")
        {"ort_no_spin": _ort_no_spin, "split_line_count": _split_line_count, **_APPLY}[name]()
        applied.append(name)
    return applied


# ---------------------------------------------------------------- memory


def build_faiss_fp16(vecs, settings):
    """``qa.index._build_faiss`` storing the vectors as float16 (scalar quantiser QT_fp16).

    The passage vectors come out of the float16 embedding cache, so float16 storage is
    lossless for them: half the memory and disk of float32, the same vectors.
    """
    import faiss
    import numpy as np

    from qa.index import _faiss_kind
    from qa.types import QAError

    dim = vecs.shape[1]
    kind = _faiss_kind(len(vecs), settings)
    fp16 = faiss.ScalarQuantizer.QT_fp16
    ip = faiss.METRIC_INNER_PRODUCT
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


def read_passages_compact(gen):
    """``qa.index._read_passages`` sharing equal objects: one ``doc`` string per document,
    one (start, end) tuple per sentence (neighbouring passages overlap by a sentence) and
    one int object per distinct offset. Same Passage values."""
    import json

    from qa.types import Passage

    c = json.loads((gen / "passages.json").read_text())
    docs: dict = {}
    ints: dict = {}
    spans: dict = {}
    canon = ints.setdefault
    out = []
    for doc, ordinal, start, end, line, text, sents in zip(
        c["doc"], c["ordinal"], c["start"], c["end"], c["line"], c["text"], c["sentences"]
    ):
        doc = docs.setdefault(doc, doc)
        sentences = tuple(spans.setdefault((doc, s, e), (canon(s, s), canon(e, e))) for s, e in sents)
        out.append(Passage(doc, canon(ordinal, ordinal), canon(start, start), canon(end, end), canon(line, line),
                           text, sentences))
    return out


def _faiss_fp16() -> None:
    import qa.index

    qa.index._build_faiss = build_faiss_fp16


def _passages_compact() -> None:
    import qa.index

    qa.index._read_passages = read_passages_compact


PATCHES.update({
    "faiss_fp16": "qa/index.py _build_faiss: float16 storage (IndexScalarQuantizer / IndexHNSWSQ / "
    "IndexIVFScalarQuantizer with QT_fp16) instead of float32; lossless for the float16-cached vectors",
    "passages_compact": "qa/index.py _read_passages: share one doc-id string per document, one (start, end) "
    "tuple per sentence and one int per offset across the loaded Passage objects",
})
_APPLY = {"faiss_fp16": _faiss_fp16, "passages_compact": _passages_compact}


# ---------------------------------------------------------------- query latency


def _faiss_query_1thread() -> None:
    """Single-query FAISS searches on one OpenMP thread (restored afterwards)."""
    import faiss

    import qa.retrieve

    original = qa.retrieve.dense_top

    def dense_top(index, qvec, k):
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return original(index, qvec, k)
        finally:
            faiss.omp_set_num_threads(threads)

    qa.retrieve.dense_top = dense_top


PATCHES["faiss_query_1thread"] = (
    "qa/retrieve.py dense_top: run the one-query index.search with faiss.omp_set_num_threads(1) (restoring the "
    "previous count after): OpenMP barriers cost tens of ms when the cores are busy, and one query gains little "
    "from a second thread")
_APPLY["faiss_query_1thread"] = _faiss_query_1thread


def sentence_rerank_vectorized(index, qvec, rows):
    """``qa.retrieve.sentence_rerank`` with one gather and one matrix-vector product for all candidates."""
    import numpy as np

    if len(rows) == 0:
        return rows.astype(np.int64), np.zeros(0)
    rows = np.asarray(rows)
    starts = index.sentence_ptr[rows]
    lens = index.sentence_ptr[rows + 1] - starts
    firsts = np.cumsum(lens) - lens  # where each candidate's sentences start in the gathered block
    pos = np.repeat(starts - firsts, lens) + np.arange(int(lens.sum()))
    sims = np.asarray(index.sentence_vectors[index.sentence_rows[pos]], dtype=np.float32) @ qvec
    best = np.full(len(rows), -1.0)
    has = lens > 0
    if has.any():
        best[has] = np.maximum(np.maximum.reduceat(sims, firsts[has]).astype(np.float64), -1.0)
    order = np.lexsort((rows, -best))
    return rows[order].astype(np.int64), best[order]


def _rerank_vectorized() -> None:
    import qa.retrieve

    qa.retrieve.sentence_rerank = sentence_rerank_vectorized


PATCHES["rerank_vectorized"] = (
    "qa/retrieve.py sentence_rerank: gather all candidates' sentence vectors with one fancy index and score "
    "them with one matrix-vector product (np.maximum.reduceat per candidate) instead of a Python loop of ~100 "
    "small products")
_APPLY["rerank_vectorized"] = _rerank_vectorized


def _malloc_trim_after_load() -> None:
    """Diagnostic: return the memory freed after loading (JSON parse transients) to the OS."""
    import ctypes

    import qa.index

    original = qa.index.load_index
    libc = ctypes.CDLL("libc.so.6")

    def load_index(*a, **kw):
        index = original(*a, **kw)
        import gc

        gc.collect()
        libc.malloc_trim(0)
        return index

    qa.index.load_index = load_index
    try:
        import qa.pipeline

        qa.pipeline.load_index = load_index
    except ImportError:
        pass


PATCHES["malloc_trim"] = (
    "diagnostic, qa/index.py load_index: gc.collect() and glibc malloc_trim(0) after loading, to see how much of "
    "the loaded index's RSS is memory freed by the load (JSON parsing) but kept by the allocator")
_APPLY["malloc_trim"] = _malloc_trim_after_load
