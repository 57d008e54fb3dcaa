#!/usr/bin/env python
"""Speed at scale: indexing throughput, index size and RAM, warm query latency per stage,
HNSW recall, encoder backends/precisions, and the cold start of ``qa ask``.

    python benchmarks/run.py                       # 1k and 10k passages, real encoder (~7.5 min on 2 idle cores)
    python benchmarks/run.py --sizes 100k          # 100k passages; dense vectors synthetic (see below)
    python benchmarks/run.py --sizes 1k,10k,100k --out /tmp/bench

Corpora come from SQuAD v1.1 dev contexts, repeated with light perturbation so every
passage and sentence is distinct (``benchmarks/corpus.py``). Sizes above 10k passages use
synthetic dense vectors unless ``--real-vectors`` is given (``--synthetic-vectors`` forces
them at every size): passages, sentences and BM25 are real, the dense vectors are real
vectors of the already-built smaller sizes plus noise. Every measurement runs in a
fresh subprocess (``benchmarks/workers.py``). Results go to ``--out`` (default
``benchmarks/out/``): ``results.json`` and ``results.md``; results of sizes not re-run
are kept from the previous run in the same folder (``--fresh`` discards them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import qa  # noqa: E402
from corpus import SQUAD_DEV, build_corpus, read_chunks  # noqa: E402

ROOT = Path(next(iter(qa.__path__))).resolve().parent  # the project: corpus/, questions/ (works from a copy of benchmarks/)

COLD_QUESTION = "How many drones has Russia purchased from Iran since 2022?"
SYNTHETIC_ABOVE = 10_000
POOL_SIZE = 1000  # passages of the real build synthetic vectors are drawn from when no real size was run

TARGETS = [
    # key, description, limit, direction
    ("cold_start_s", "`qa ask` cold start, default corpus (median of 5)", 2.0, "<="),
    ("hybrid_default_p50_ms", "warm hybrid ask, default corpus, p50", 10.0, "<="),
    ("hybrid_100k_p50_ms", "warm hybrid ask at 100k, p50", 20.0, "<="),
    ("hybrid_100k_p95_ms", "warm hybrid ask at 100k, p95", 50.0, "<="),
    ("bm25_100k_p50_ms", "BM25 search at 100k, p50", 5.0, "<="),
    ("dense_100k_p50_ms", "dense (FAISS) search at 100k, p50", 5.0, "<="),
    ("hybrid_1M_p50_ms", "warm hybrid ask at 1M, p50", 30.0, "<="),
    ("hybrid_1M_p95_ms", "warm hybrid ask at 1M, p95", 60.0, "<="),
    ("bm25_1M_p50_ms", "BM25 search at 1M, p50", 10.0, "<="),
    ("open_1M_s", "index open (load_index) at 1M", 5.0, "<="),
    ("open_largest_s", "index open (load_index), largest size run", 5.0, "<="),
    ("hnsw_recall_at_10", "HNSW Recall@10 vs exact (efSearch of the settings)", 0.98, ">="),
    ("indexing_passages_per_s", "indexing throughput, real encoder (slowest of 1k/10k)", 40.0, ">="),
    ("int8_recall_drop_points", "int8 Recall@5 drop vs fp32 (points)", 1.0, "<"),
    ("bf16_recall_drop_points", "bf16 Recall@5 drop vs fp32 (points)", 1.0, "<"),
    ("ram_bytes_per_passage", "RAM of the loaded index per passage beyond text (largest size)", 4096.0, "<="),
    ("bench_1k_10k_minutes", "benchmark at 1k+10k end to end (minutes)", 10.0, "<"),
]


def parse_size(text: str) -> int:
    t = text.strip().lower().replace("_", "")
    mult = 1
    if t.endswith("k"):
        mult, t = 1000, t[:-1]
    elif t.endswith("m"):
        mult, t = 1_000_000, t[:-1]
    return int(float(t) * mult)


# Peak RSS of a build per passage: 9,910 MB for 1M passages with synthetic vectors (2026-12-03, AMD EPYC;
# qa.build streams BM25's counts and fills one vector table; before, the 1M build passed 22 GB and was
# stopped). 12 KB a passage leaves a fifth for a corpus of longer documents or a real encoder's buffers.
BUILD_BYTES_PER_PASSAGE = 12_000


def meminfo(field: str) -> int | None:
    """A ``/proc/meminfo`` field in bytes (``MemTotal``, ``MemAvailable``: what can be allocated
    without swapping), or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def mem_available() -> int | None:
    return meminfo("MemAvailable")


def memory_refusal(n: int, available: int | None) -> str | None:
    """Why a build of ``n`` passages cannot finish in ``available`` bytes, or None when it can (or
    when the memory is unknown)."""
    need = n * BUILD_BYTES_PER_PASSAGE
    if available is None or need <= available:
        return None
    return (f"{label(n)}: the build needs about {need / 1e9:.0f} GB ({BUILD_BYTES_PER_PASSAGE // 1000} KB a passage, estimated from a "
            f"measured 1M build) and this machine has {available / 1e9:.1f} GB available; it would be killed part-way "
            f"(--force to try anyway)")


def label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)


def run_worker(task: str, args: dict, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    a, o = workdir / f"{task}.args.json", workdir / f"{task}.out.json"
    a.write_text(json.dumps(args, default=str))
    o.unlink(missing_ok=True)
    t = time.perf_counter()
    load0 = os.getloadavg()
    proc = subprocess.run([sys.executable, str(HERE / "workers.py"), task, str(a), str(o)], cwd=ROOT)
    if proc.returncode != 0 or not o.exists():
        raise SystemExit(f"worker {task} failed (exit {proc.returncode}); args in {a}")
    res = json.loads(o.read_text())
    res["wall_seconds"] = time.perf_counter() - t
    res["loadavg_start"] = load0
    return res


def machine() -> dict:
    from qa.cpu import cpu_name, resolve_precision, vector_units

    total = meminfo("MemTotal")
    mem = f"{total / 2**30:.1f} GiB" if total else ""

    def ver(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "cpu": cpu_name(), "units": vector_units(), "auto_precision": resolve_precision("auto"), "cores": cores, "ram": mem, "python": platform.python_version(),
        "torch": ver("torch"), "faiss": ver("faiss-cpu"), "onnxruntime": ver("onnxruntime"),
        "numpy": ver("numpy"), "sentence_transformers": ver("sentence-transformers"),
        "platform": platform.platform(), "loadavg_at_start": os.getloadavg(),
    }


def pick_questions(questions: list[dict], n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    qs = list(questions)
    rng.shuffle(qs)
    return qs[:n]


# ---------------------------------------------------------------- the steps


def is_synthetic(n: int, args) -> bool:
    return args.synthetic_vectors or (n > SYNTHETIC_ABOVE and not args.real_vectors)


def pool_build(args, out: Path, chunks, settings: dict) -> str:
    """A real build of ``POOL_SIZE`` passages (``work/pool``, reused when already there): the real
    vectors synthetic ones are drawn from when this run and ``--out`` hold no real-vector size."""
    work = out / "work" / "pool"
    index = work / "index"
    done = work / "done.json"
    if done.exists() and (index / "CURRENT").exists():
        say(f"synthetic vectors: drawing on the real vectors of {index}")
        return str(index)
    say(f"synthetic vectors need real ones to draw on, and {out} has none: building {POOL_SIZE:,} passages "
        f"with the real encoder first ({work})")
    build_corpus(work / "corpus", POOL_SIZE, seed=args.seed, doc_paragraphs=args.doc_paragraphs, chunks=chunks)
    res = run_worker("build", {"corpus": str(work / "corpus"), "index": str(index), "settings": settings}, work)
    done.write_text(json.dumps({"passages": res["passages"], "seconds": res["seconds"]["total"]}))
    return str(index)


def bench_size(n: int, args, out: Path, chunks, settings: dict, pool_dirs: list[str], real_done: list[str]) -> dict:
    name = label(n)
    work = out / "work" / name
    synthetic = is_synthetic(n, args)
    reused = None
    if args.reuse_index:
        src = Path(args.reuse_index) / "work" / name
        prev = json.loads((Path(args.reuse_index) / "results.json").read_text())["sizes"].get(name)
        if prev and (src / "index" / "CURRENT").exists():
            reused = prev
    if reused:
        src = Path(args.reuse_index) / "work" / name
        synthetic = reused["synthetic_vectors"]
        qdicts = json.loads((src / "questions.json").read_text())
        n_passages = reused["corpus"]["passages"]
        res = {**{k: reused[k] for k in ("size", "target_passages", "synthetic_vectors", "corpus")},
               "measured": time.strftime("%Y-%m-%d %H:%M"), "build": {**reused["build"], "reused_from": str(src)}}
        work.mkdir(parents=True, exist_ok=True)
        if args.rebuild:
            say(f"{name}: rebuilding the index of {args.reuse_index} from its embedding cache (no encoding)")
            shutil.rmtree(work / "index", ignore_errors=True)
            shutil.copytree(src / "index" / "cache", work / "index" / "cache")
            base = {"corpus": str(src / "corpus"), "index": str(work / "index"), "settings": settings}
            # a synthetic size's texts missing from the cache (its keys changed since) get synthetic vectors
            # again, drawn from the earlier run's real ones: never a real encoding of the whole size
            earlier = json.loads((Path(args.reuse_index) / "results.json").read_text())["sizes"]
            pools = [str(d) for d in sorted(Path(args.reuse_index).glob("work/*/index"))
                     if d.parent.name == "pool" or not earlier.get(d.parent.name, {}).get("synthetic_vectors", True)]
            res["build"] = run_worker("build", {**base, "keep_cache": True, "synthetic": synthetic,
                                                "pool_dirs": pools if synthetic else []}, work)
            res["build"]["from_cache_of"] = str(src)
        else:
            say(f"{name}: reusing the corpus and index of {args.reuse_index} (no build)")
            base = {"corpus": str(src / "corpus"), "index": str(src / "index"), "settings": settings}
    else:
        say(f"{name}: corpus")
        t = time.perf_counter()
        c = build_corpus(work / "corpus", n, seed=args.seed, doc_paragraphs=args.doc_paragraphs, chunks=chunks)
        qdicts = [q.__dict__ for q in c.questions]
        n_passages = c.passages
        (work / "questions.json").write_text(json.dumps(qdicts))
        res = {"size": name, "target_passages": n, "synthetic_vectors": synthetic, "measured": time.strftime("%Y-%m-%d %H:%M"),
               "corpus": {"passages": c.passages, "docs": c.docs, "chars": c.chars, "copies": c.copies,
                          "questions_with_gold": len(c.questions), "seconds": time.perf_counter() - t}}
        base = {"corpus": str(work / "corpus"), "index": str(work / "index"), "settings": settings}
        say(f"{name}: build ({'synthetic' if synthetic else 'real'} vectors)")
        res["build"] = run_worker("build", {**base, "synthetic": synthetic, "pool_dirs": pool_dirs if synthetic else []}, work)
    if not synthetic:
        real_done.append(base["index"])
    say(f"{name}: memory of the loaded index")
    res["memory"] = run_worker("memory", base, work)
    qs = pick_questions(qdicts, args.questions, args.seed)
    recall_qs = [q["question"] for q in pick_questions(qdicts, args.recall_questions, args.seed + 1)]
    kinds = []
    if n >= args.ann_min:
        kinds = ["hnsw", "ivf"] if n <= 20_000 or args.ivf else ["hnsw"]
    say(f"{name}: warm query latency ({len(qs)} questions x 3 modes)" + (f", ANN check {kinds}" if kinds else ""))
    res["latency"] = run_worker("latency", {**base, "questions": qs, "recall_questions": recall_qs, "ann_check": kinds,
                                            "repeat": args.repeat}, work)
    if res["build"]["passages"] != n_passages:
        say(f"warning: the corpus generator counted {n_passages} passages, the index has {res['build']['passages']}")
    if synthetic:
        res["latency"]["note"] = "dense vectors synthetic: dense/hybrid recall meaningless; latencies valid"
    if not synthetic and not args.skip_precision and args.precision_size == n:
        pq = pick_questions(qdicts, args.precision_questions, args.seed + 2)
        say(f"{name}: encoder backends and precisions ({len(pq)} questions)")
        combos = [tuple(x.split("/")) for x in args.combos.split(",")]
        res["precision"] = run_worker("precision", {**base, "questions": pq, "combos": combos,
                                                    "budget_seconds": args.precision_budget,
                                                    "sample_seconds": args.sample_seconds}, work)
    return res


def cold_start(args, out: Path, settings: dict) -> dict:
    qa_bin = Path(sys.executable).parent / "qa"
    if not qa_bin.exists():
        qa_bin = Path(shutil.which("qa") or "qa")
    tmp = Path(tempfile.mkdtemp(prefix="qa-cold-"))
    try:
        shutil.copytree(ROOT / "corpus", tmp / "corpus")
        common = ["--corpus", str(tmp / "corpus"), "--index", str(tmp / "index")]
        env = dict(os.environ)  # qa itself runs offline (qa/__init__.py)
        t = time.perf_counter()
        subprocess.run([str(qa_bin), "index", "-q", *common], check=True, env=env, capture_output=True)
        index_s = time.perf_counter() - t
        times, loads = [], []
        for i in range(args.cold_runs + 1):
            t = time.perf_counter()
            p = subprocess.run([str(qa_bin), "ask", COLD_QUESTION, *common], env=env, capture_output=True, text=True)
            dt = time.perf_counter() - t
            if p.returncode != 0:
                raise SystemExit(f"qa ask failed: {p.stderr}")
            if i:  # the first run only warms the page cache
                times.append(dt)
                loads.append(os.getloadavg()[0])
        answer = p.stdout.strip().splitlines()[0] if p.stdout.strip() else ""
        seeds = [json.loads(line) for line in (ROOT / "questions" / "seed.jsonl").read_text().splitlines() if line.strip()]
        qs = [{"id": q["id"], "question": q["question"], "answers": q.get("answers", []), "doc": q.get("doc"), "spans": []}
              for q in seeds]
        say("default corpus: warm query latency")
        lat = run_worker("latency", {"corpus": str(tmp / "corpus"), "index": str(tmp / "index"), "settings": settings,
                                     "questions": qs, "repeat": args.repeat},
                         out / "work" / "default")
        return {"index_seconds": index_s, "runs_s": times, "median_s": statistics.median(times),
                "loadavg": loads, "first_answer_line": answer, "latency": lat}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- report


def _f(x, nd=1, unit=""):
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    if isinstance(x, (int,)) and not isinstance(x, bool):
        return f"{x:,}{unit}"
    return f"{x:,.{nd}f}{unit}"


def measure_targets(results: dict) -> dict:
    sizes = results.get("sizes", {})
    m: dict = {}
    cs = results.get("cold_start")
    if cs:
        m["cold_start_s"] = cs["median_s"]
        m["hybrid_default_p50_ms"] = cs["latency"]["modes"]["hybrid"]["ms"]["total"]["p50"]
    for name in ("100k", "1M"):
        big = sizes.get(name)
        if big:
            modes = big["latency"]["modes"]
            m[f"hybrid_{name}_p50_ms"] = modes["hybrid"]["ms"]["total"]["p50"]
            m[f"hybrid_{name}_p95_ms"] = modes["hybrid"]["ms"]["total"]["p95"]
            m[f"bm25_{name}_p50_ms"] = modes["bm25"]["ms"]["bm25"]["p50"]
            if name == "100k":
                m["dense_100k_p50_ms"] = modes["dense"]["ms"]["faiss"]["p50"]
            else:
                m["open_1M_s"] = big["memory"]["load_seconds"]
    # synthetic vectors are a few thousand real ones plus noise: tight clusters no real corpus has,
    # on which HNSW's recall says nothing (0.67 at 1M from 4,908 real vectors; 0.94 on a real 100k index)
    recalls = [(s["latency"]["ann"]["hnsw"]["recall_at_10"], k) for k, s in sizes.items()
               if s.get("latency", {}).get("ann", {}).get("hnsw") and not s["synthetic_vectors"]]
    if recalls:
        m["hnsw_recall_at_10"] = min(recalls)[0]
        m["hnsw_recall_at_10_where"] = ", ".join(f"{k}: {r:.4f}" for r, k in recalls)
    real = [(s["build"]["rate"]["overall"], k) for k, s in sizes.items()
            if not s["synthetic_vectors"] and not s["build"].get("from_cache_of")]
    if real:
        m["indexing_passages_per_s"] = min(real)[0]
        m["indexing_passages_per_s_where"] = ", ".join(f"{k}: {r:.1f}" for r, k in real)
    for s in sizes.values():
        for c in s.get("precision", {}).get("combos", []):
            if c.get("backend") == "onnx" and c.get("precision") == "int8" and "delta_points" in c:
                m["int8_recall_drop_points"] = -c["delta_points"]
            if c.get("precision") == "bf16" and "delta_points" in c:
                m["bf16_recall_drop_points"] = -c["delta_points"]
    if sizes:
        largest = max(sizes.values(), key=lambda s: s["target_passages"])
        m["ram_bytes_per_passage"] = largest["memory"]["bytes_per_passage_beyond_text"]
        m["open_largest_s"] = largest["memory"]["load_seconds"]
        m["open_largest_s_where"] = ", ".join(f"{k}: {s['memory']['load_seconds']:.2f} s" for k, s in sizes.items())
        m["ram_bytes_per_passage_where"] = ", ".join(
            f"{k}: {s['memory']['bytes_per_passage_beyond_text']:.0f}" for k, s in sizes.items())
    if results.get("bench_1k_10k_minutes") is not None:
        m["bench_1k_10k_minutes"] = results["bench_1k_10k_minutes"]
    return m


def verdicts(m: dict) -> list[dict]:
    rows = []
    for key, desc, limit, op in TARGETS:
        v = m.get(key)
        if v is not None:
            v = float(v) + 0.0  # no "-0.00"
        if v is None:
            ok = None
        else:
            ok = {"<=": v <= limit, ">=": v >= limit, "<": v < limit}[op]
        rows.append({"key": key, "target": desc, "limit": f"{op} {limit:g}", "measured": v,
                     "where": m.get(f"{key}_where"), "pass": ok})
    return rows


def to_markdown(results: dict) -> str:
    mc = results["machine"]
    sizes = sorted(results.get("sizes", {}).values(), key=lambda s: s["target_passages"])
    L = ["# qa speed benchmark", ""]
    units = f" ({', '.join(mc['units']) or 'no AVX2'}; --precision auto: {mc['auto_precision']})" if "units" in mc else ""
    L.append(f"Machine: {mc['cpu']}{units}, {mc['cores']} cores, {mc['ram']} RAM; Python {mc['python']}, torch {mc['torch']}, "
             f"faiss {mc['faiss']}, onnxruntime {mc['onnxruntime']}, numpy {mc['numpy']}. "
             f"Load average at the start of the last run: {', '.join(f'{x:.1f}' for x in mc['loadavg_at_start'])}; "
             f"latencies and throughputs move with the load of other jobs: see the load figures of each step.")
    if results.get("settings"):
        L.append("")
        L.append(f"**Settings changed from the defaults**: {results['settings']}.")
    L += ["", "## Targets", "", "| target | limit | measured | result |", "|---|---|---|---|"]
    for r in results["targets"]:
        v = r["measured"]
        shown = "not measured" if v is None else (f"{v:.4f}" if abs(v) < 1.5 and r["key"].startswith("hnsw") else f"{v:,.2f}")
        if r.get("where"):
            shown += f" ({r['where']})"
        res = "–" if r["pass"] is None else ("PASS" if r["pass"] else "**FAIL**")
        L.append(f"| {r['target']} | {r['limit']} | {shown} | {res} |")

    if sizes:
        L += ["", "## Indexing", "",
              "Seconds per stage; rates in passages/s (splitting = read + split + sentence table; encoding = passages "
              "and their sentences through the embedding cache; BM25 = tokenising + building).", "",
              "| size | vectors | docs | sentences | split s | encode s | FAISS s | BM25 s | write s | total s | "
              "overall p/s | split p/s | encode p/s | FAISS p/s | BM25 p/s | index MB | cache MB | peak RSS MB | load avg |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for s in sizes:
            b = s["build"]
            sec, rate = b["seconds"], b["rate"]
            kind = "synthetic" if s["synthetic_vectors"] else "real"
            if b.get("from_cache_of"):
                kind += ", from cache"
            L.append(f"| {s['size']} | {kind} ({b['faiss']}) | {b['docs']:,} | "
                     f"{b['sentences']:,} | {sec['splitting']:.1f} | {sec['encoding']:.1f} | {sec['faiss']:.1f} | "
                     f"{sec['bm25']:.1f} | {sec['write']:.1f} | {sec['total']:.1f} | {rate['overall']:.1f} | "
                     f"{rate['splitting']:.0f} | {rate['encoding']:.1f}{'*' if s['synthetic_vectors'] else ''} | "
                     f"{rate['faiss']:,.0f} | {rate['bm25']:,.0f} | {b['disk_mb']['index']:.1f} | "
                     f"{b['disk_mb']['cache']:.1f} | {b['peak_rss_mb']:.0f} | {b['loadavg_end'][0]:.1f} |")
        if any(s["synthetic_vectors"] for s in sizes):
            L.append("")
            L.append("\\* synthetic vectors: the encoding time is the stand-in encoder's, not a real one.")
        L.append("")
        for s in sizes:
            b = s["build"]
            if s["synthetic_vectors"] or b.get("from_cache_of"):
                continue
            tok = b.get("passage_tokens") or {}
            L.append(f"- {s['size']}: encoder passage texts {b['rate']['encode_passage_texts']:.1f}/s, sentence texts "
                     f"{b['rate']['encode_sentence_texts']:.1f}/s ({b['encoded']['passages']:,} passages + "
                     f"{b['encoded']['sentences']:,} sentences encoded; encoder CPU {b['encode_cpu_seconds']:.0f} s "
                     f"for {b['seconds']['encoding']:.0f} s wall); passages average {tok.get('mean', 0):.0f} tokens "
                     f"(p95 {tok.get('p95', 0):.0f}); distinct passages {b['distinct_passages']:,}/{b['passages']:,}, "
                     f"distinct sentence texts {b['distinct_sentence_texts']:,}/{b['sentences']:,}.")

        L += ["", "## Memory of the loaded index", "",
              "RSS after `load_index` minus RSS before (fresh process, libraries already imported), per passage, "
              "minus the passages' text held in RAM (all of it for an index of format 4; for a memory-mapped store, "
              "the texts file's resident pages: none until a query reads a passage). FAISS, BM25 postings: what "
              "the index holds (mapped from format 6: resident only as searches touch it); Passage objects: the "
              "mapped columns' resident pages from format 5.", "",
              "| size | load s | index RAM MB | text MB | bytes/passage beyond text | FAISS | BM25 postings | BM25 vocab | "
              "sentence table | Passage objects (excl. text) | str overhead | manifest |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for s in sizes:
            mm = s["memory"]
            c = mm["components_bytes_per_passage"]
            L.append(f"| {s['size']} | {mm['load_seconds']:.2f} | {mm['index_ram_mb']:.1f} | {mm['text_utf8_mb']:.1f} | "
                     f"**{mm['bytes_per_passage_beyond_text']:.0f}** | {c['faiss']:.0f} | {c['bm25_postings']:.0f} | "
                     f"{c['bm25_vocab_dict']:.0f} | {c['sentence_table']:.0f} | {c['passage_objects_excl_text']:.0f} | "
                     f"{c['text_str_overhead']:.0f} | {c['manifest']:.0f} |")
        for s in sizes:
            first = s["memory"].get("first_query_ms")
            if first:
                L.append(f"\n{s['size']}: the first searches after opening took BM25 {first['bm25']:.1f} ms, "
                         f"dense {first['dense']:.1f} ms, reading 10 passages {first['10_passages']:.1f} ms "
                         "(what a mapped index reads as a query first touches it).")

        L += ["", "## Warm query latency (ms, p50 / p95)", "",
              "Per stage, from `Result.timings_ms` of `qa.pipeline.ask`, after 10 warm-up questions. In bm25 mode the "
              "query is encoded inside the answer stage (answer scoring needs the query vector). Recall@5: a cited "
              "passage contains a gold answer span (SQuAD); at synthetic sizes only the BM25 figure means anything.", "",
              "| size | mode | encode | BM25 | FAISS | fusion | answer | total | total, best of repeats | Recall@5 | top answer has gold |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        rows = [(s["size"] + (" (synthetic vectors)" if s["synthetic_vectors"] else ""), s["latency"]) for s in sizes]
        if results.get("cold_start"):
            rows.insert(0, ("default corpus", results["cold_start"]["latency"]))
        for name, lat in rows:
            for mode in ("bm25", "dense", "hybrid"):
                md = lat["modes"].get(mode)
                if not md:
                    continue
                ms = md["ms"]

                def cell(k):
                    return f"{ms[k]['p50']:.2f} / {ms[k]['p95']:.2f}" if k in ms else "–"

                rec = "–" if md.get("recall_at_k") is None else f"{md['recall_at_k']:.3f}"
                if "synthetic" in name and mode != "bm25":
                    rec = "n/a (synthetic vectors)"
                bo = md.get("best_of_repeats_total_ms")
                bo = f"{bo['p50']:.2f} / {bo['p95']:.2f} (of {md['repeat']})" if bo else "–"
                L.append(f"| {name} | {mode} | {cell('encode')} | {cell('bm25')} | {cell('faiss')} | {cell('fusion')} | "
                         f"{cell('answer')} | **{cell('total')}** | {bo} | {rec} | {md['top_answer_has_gold']:.3f} |")
        L.append("")
        L.append("Questions per size: " + ", ".join(f"{n} {lat['questions']} ({lat['passages']:,} passages, "
                                                     f"load avg {lat['loadavg_end'][0]:.1f})" for n, lat in rows) + ".")

        anns = [(s["size"] + (" (synthetic vectors)" if s["synthetic_vectors"] else ""), s["latency"]["ann"])
                for s in sizes if s["latency"].get("ann")]
        if anns:
            L += ["", "## Approximate dense search vs exact", "",
                  "Recall@10 of the approximate index against `IndexFlatIP` over the same vectors, with real query vectors "
                  "(SQuAD questions). At sizes below `hnsw_min` the index is flat; HNSW/IVF are built for the check "
                  "with the same code (`qa.dense.build_faiss`) and the settings' parameters.", "",
                  "| size | index | Recall@10 | search p50 ms | flat search p50 ms | build s | parameters | efSearch sweep (recall / p50 ms) |",
                  "|---|---|---|---|---|---|---|---|"]
            for name, ann in anns:
                for kind in ("hnsw", "ivf"):
                    e = ann.get(kind)
                    if not e:
                        continue
                    params = (f"M={e['m']}, efSearch={e['ef_search']}" if kind == "hnsw"
                              else f"nlist={e['nlist']}, nprobe={e['nprobe']}")
                    sweep = "; ".join(f"{ef}: {v['recall_at_10']:.3f} / {v['p50_ms']:.2f}" for ef, v in e.get("ef_sweep", {}).items())
                    L.append(f"| {name} | {kind}{' (the index)' if e['is_the_index'] else ''} | {e['recall_at_10']:.4f}"
                             f"{' (not a target)' if 'synthetic' in name else ''} | "
                             f"{e['search_ms']['p50']:.2f} | {ann['flat']['search_ms']['p50']:.2f} | "
                             f"{_f(e['build_seconds'])} | {params} | {sweep} |")

    prec = [(s["size"], s["precision"]) for s in sizes if s.get("precision")]
    if prec:
        for name, p in prec:
            L += ["", f"## Encoder backends and precisions ({name}: {p['passages']:,} passages, {p['questions']} questions)", "",
                  "Throughput on random batches of 32 corpus passages (`passages/s`); the idle-machine estimate divides by "
                  "CPU time / cores instead of wall time. Recall@5: dense retrieval (exact search), fp32 query vectors, "
                  "passage vectors of each precision (stored as float16, as the index does).", "",
                  "| backend | precision | load s | passages/s | idle estimate p/s | Recall@5 | Δ points vs fp32 | cosine to fp32 | top-5 overlap |",
                  "|---|---|---|---|---|---|---|---|---|"]
            for c in p["combos"]:
                if "error" in c:
                    L.append(f"| {c['backend']} | {c['precision']} | error: {c['error']} |||||||")
                    continue
                rec = _f(c.get("recall_at_5"), 4) if "recall_at_5" in c else f"skipped: {c.get('quality_skipped', '')}"
                L.append(f"| {c['backend']} | {c['precision']} | {c['load_seconds']:.1f} | {c['passages_per_s']:.1f} | "
                         f"{c['passages_per_s_idle_estimate']:.1f} | {rec} | {_f(c.get('delta_points'), 2)} | "
                         f"{_f(c.get('mean_cosine_to_fp32'), 5)} | {_f(c.get('top5_overlap_with_fp32'), 3)} |")

    if results.get("splitscale"):
        L += ["", "## Splitting vs document length", "",
              "`qa.split.split_document` on SQuAD articles of growing length (best of 3): a flat passages/s "
              "means splitting is linear in the document's length.", "",
              "| document | chars | passages | seconds | passages/s | chars/s |",
              "|---|---|---|---|---|---|"]
        for d in results["splitscale"]["docs"]:
            L.append(f"| {d['doc']} | {d['chars']:,} | {d['passages']} | {d['seconds']:.4f} | "
                     f"{d['passages_per_s']:,.0f} | {d['chars_per_s']:,.0f} |")

    cs = results.get("cold_start")
    if cs:
        L += ["", "## Cold start", "",
              f"`qa ask \"{COLD_QUESTION}\"` as a fresh process on a temp copy of `corpus/` with its own `--index` "
              f"(index built first in {cs['index_seconds']:.1f} s; one unrecorded warm-up run): "
              f"median **{cs['median_s']:.2f} s** of {len(cs['runs_s'])} runs "
              f"({', '.join(f'{x:.2f}' for x in cs['runs_s'])} s; load avg {', '.join(f'{x:.1f}' for x in cs['loadavg'])}).",
              f"First line of the answer: `{cs['first_answer_line'][:150]}`"]
    if results.get("phases"):
        L += ["", "## Benchmark run time", "", "Steps of the runs whose figures are in this report:", ""]
        L.append(", ".join(f"{k} {v / 60:.1f} min" for k, v in results["phases"].items()) + ".")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1k,10k", help="corpus sizes in passages (default: 1k,10k)")
    p.add_argument("--out", type=Path, default=HERE / "out", help="results folder (default: benchmarks/out)")
    p.add_argument("--synthetic-vectors", action="store_true", help="synthetic dense vectors at every size")
    p.add_argument("--real-vectors", action="store_true", help=f"real encoding even above {SYNTHETIC_ABOVE:,} passages (slow)")
    p.add_argument("--questions", type=int, default=100, help="questions per size for latency (default: 100)")
    p.add_argument("--recall-questions", type=int, default=500, help="query vectors for the ANN recall check (default: 500)")
    p.add_argument("--ann-min", type=int, default=10_000, help="sizes from which ANN recall is checked (default: 10000)")
    p.add_argument("--ivf", action="store_true", help="also check IVF above 20k passages (k-means training is slow)")
    p.add_argument("--precision-size", type=parse_size, default=1000, help="size of the encoder/precision study (default: 1k)")
    p.add_argument("--precision-questions", type=int, default=500, help="questions of the precision study (default: 500)")
    p.add_argument("--precision-budget", type=float, default=120.0,
                   help="seconds allowed to encode the whole corpus with one precision for Recall@5 (default: 120)")
    p.add_argument("--sample-seconds", type=float, default=15.0, help="seconds of throughput sampling per encoder (default: 15)")
    p.add_argument("--combos", default="onnx/fp32,onnx/int8,torch/fp32,torch/bf16", help="backend/precision pairs")
    p.add_argument("--skip-precision", action="store_true")
    p.add_argument("--skip-cold-start", action="store_true")
    p.add_argument("--skip-split-scaling", action="store_true")
    p.add_argument("--cold-runs", type=int, default=5)
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of each question per mode; p50/p95 are of the last run, 'best of' of the minimum (default: 3)")
    p.add_argument("--doc-paragraphs", type=int, default=12, help="SQuAD paragraphs per document (default: 12)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hnsw-min", type=int, help="Settings.hnsw_min for the built indexes (default: the settings')")
    p.add_argument("--ef-search", type=int, help="Settings.hnsw_ef_search")
    p.add_argument("--index-precision", choices=("auto", "fp32", "bf16", "int8"),
                   help="Settings.precision of the indexing encoder (default: the settings', auto: chosen by "
                        "this CPU's flags)")
    p.add_argument("--index-backend", choices=("auto", "onnx", "torch"), help="Settings.backend (default: auto)")
    p.add_argument("--fresh", action="store_true", help="discard results of earlier runs in --out")
    p.add_argument("--force", action="store_true", help="build a size even when it looks too large for the memory")
    p.add_argument("--reuse-index", metavar="OUT",
                   help="measure memory/latency on the corpora and indexes of an earlier run's --out (no build; "
                        "its build figures are copied), e.g. to re-measure after a change to qa/'s query path")
    p.add_argument("--rebuild", action="store_true",
                   help="with --reuse-index: rebuild the index from the earlier run's embedding cache (no encoding), "
                        "e.g. after a change to how qa/ builds or stores the index")
    args = p.parse_args(argv)
    sizes = sorted(parse_size(s) for s in args.sizes.split(",") if s.strip())
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    settings: dict = {}
    if args.hnsw_min is not None:
        settings["hnsw_min"] = args.hnsw_min
    if args.ef_search is not None:
        settings["hnsw_ef_search"] = args.ef_search
    if args.index_precision:
        settings["precision"] = args.index_precision
    if args.index_backend:
        settings["backend"] = args.index_backend

    if not args.force and not (args.reuse_index and not args.rebuild):  # a size is built
        for n in sizes:
            refusal = memory_refusal(n, mem_available())
            if refusal:
                raise SystemExit(f"benchmark: {refusal}")
    prev = {}
    if (out / "results.json").exists() and not args.fresh:
        try:
            prev = json.loads((out / "results.json").read_text())
        except ValueError:
            prev = {}
    if prev.get("settings", {}) != settings:
        prev = {}  # never mix figures measured with different settings
    results = {"machine": machine(), "settings": settings, "sizes": prev.get("sizes", {}),
               "cold_start": prev.get("cold_start"), "splitscale": prev.get("splitscale"),
               "phases": prev.get("phases", {}), "bench_1k_10k_minutes": prev.get("bench_1k_10k_minutes")}
    if "total" in results["phases"]:  # written by an earlier version
        results["phases"]["total of the previous run"] = results["phases"].pop("total")
    tag = " (re-measured on the earlier index)" if args.reuse_index and not args.rebuild else ""
    t_all = time.perf_counter()
    say(f"benchmark: sizes {', '.join(label(n) for n in sizes)} -> {out}")
    chunks = read_chunks(SQUAD_DEV, args.doc_paragraphs)
    real_dirs = [str(out / "work" / k / "index") for k, s in results["sizes"].items()
                 if not s["synthetic_vectors"] and (out / "work" / k / "index").exists()]
    first_synthetic = next((n for n in sizes if is_synthetic(n, args)), None)
    if first_synthetic is not None and not args.reuse_index and not real_dirs \
            and not any(not is_synthetic(n, args) for n in sizes if n < first_synthetic):
        # synthetic vectors are real vectors plus noise: without real ones they would be random
        # directions, and HNSW recall on them would mean nothing. Build the real ones first.
        t = time.perf_counter()
        real_dirs.append(pool_build(args, out, chunks, settings))
        results["phases"]["real vectors for the synthetic ones"] = time.perf_counter() - t
    for n in sizes:
        t = time.perf_counter()
        results["sizes"][label(n)] = bench_size(n, args, out, chunks, settings, real_dirs, real_dirs)
        results["phases"][label(n) + tag] = time.perf_counter() - t
        write(results, out)
    if not args.skip_split_scaling:
        t = time.perf_counter()
        say("splitting vs document length")
        results["splitscale"] = run_worker("splitscale", {}, out / "work")
        results["phases"]["split scaling"] = time.perf_counter() - t
    if not args.skip_cold_start:
        t = time.perf_counter()
        say("cold start of qa ask, default corpus")
        results["cold_start"] = cold_start(args, out, settings)
        results["phases"]["cold start + default corpus"] = time.perf_counter() - t
    total = time.perf_counter() - t_all
    results["phases"][f"total of the run of {', '.join(label(n) for n in sizes) or 'no sizes'}{tag}"] = total
    if (set(label(n) for n in sizes) == {"1k", "10k"} and not args.skip_precision and not args.skip_cold_start
            and not args.reuse_index):
        results["bench_1k_10k_minutes"] = total / 60
    write(results, out)
    print(to_markdown(results))
    say(f"done in {total / 60:.1f} min: {out / 'results.md'}")
    return 0


def write(results: dict, out: Path) -> None:
    results["measured_targets"] = measure_targets(results)
    results["targets"] = verdicts(results["measured_targets"])
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    (out / "results.md").write_text(to_markdown(results))


if __name__ == "__main__":
    sys.exit(main())
