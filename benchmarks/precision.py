#!/usr/bin/env python
"""Real index builds per indexing precision: passages per second, wall clock and CPU time.

    python benchmarks/precision.py                                   # 400 passages, fp32 and int8, 2 rounds
    python benchmarks/precision.py --passages 100 --precisions fp32,bf16 --rounds 1

Each build is ``qa.build.build_index`` (the path of ``qa index``) of the same SQuAD corpus
(``benchmarks/corpus.py``) into a fresh index folder with an empty embedding cache, the
precisions taken in turn round after round, so a change of the machine's load touches every
precision alike. The encoder is made once per precision before the first round (the one-off
ONNX export or int8 quantisation is not timed); loading it is part of every build. Besides the
wall clock, each build reports its CPU-time estimate, passages per CPU-second times the cores
the encoder uses: what the build would reach on idle cores when other processes share them
(it leaves out any waiting the build does by itself, so it flatters a little).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from corpus import build_corpus  # noqa: E402
from qa.build import build_index, indexing_encoder  # noqa: E402
from qa.config import Settings  # noqa: E402
from qa.cpu import INT8_UNITS, BF16_UNITS, cpu_count, cpu_flags, cpu_name, resolve_precision  # noqa: E402


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def one_build(settings: Settings) -> dict:
    """Build the index of ``settings`` from nothing; its passages and the times it took."""
    shutil.rmtree(settings.index, ignore_errors=True)
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), cpu_seconds()
    manifest = build_index(settings, log=lambda msg: None, progress=False)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return {"passages": manifest["passages"], "wall": wall, "cpu": cpu, "load": (load, os.getloadavg()[0])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passages", type=int, default=400, help="passages of the corpus (default 400)")
    ap.add_argument("--precisions", default="fp32,int8", help="comma-separated, as --precision takes them")
    ap.add_argument("--rounds", type=int, default=2, help="builds per precision (default 2)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/qa-precision-bench"), help="work folder (replaced)")
    args = ap.parse_args(argv)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    shutil.rmtree(args.out, ignore_errors=True)
    corpus = build_corpus(args.out / "corpus", args.passages)
    flags = cpu_flags()
    units = [f for f in ("avx2", "avx512f", *INT8_UNITS, *BF16_UNITS) if f in flags]
    print(f"CPU: {cpu_name()} ({', '.join(units)}), {cpu_count()} cores; --precision auto here: "
          f"{resolve_precision('auto')}; corpus: {corpus.passages} passages in {corpus.docs} documents", flush=True)
    runs: dict[str, list[dict]] = {p: [] for p in precisions}
    base = Settings(corpus=args.out / "corpus")
    for p in precisions:  # the one-off export / quantisation, untimed
        indexing_encoder(base.replace(precision=p))
    print("| precision | round | wall s | passages/s | CPU s | CPU-time estimate p/s | load avg |")
    print("|---|--:|--:|--:|--:|--:|---|")
    for r in range(args.rounds):
        for p in precisions:
            run = one_build(base.replace(precision=p, index=args.out / f"index-{p}"))
            runs[p].append(run)
            n = run["passages"]
            print(f"| {p} | {r + 1} | {run['wall']:.1f} | {n / run['wall']:.1f} | {run['cpu']:.1f} | "
                  f"{n / run['cpu'] * cpu_count():.1f} | {run['load'][0]:.1f} → {run['load'][1]:.1f} |", flush=True)
    print("\nbest of the rounds:")
    for p, rs in runs.items():
        n = rs[0]["passages"]
        print(f"- {p}: {n / min(r['wall'] for r in rs):.1f} passages/s wall, "
              f"{n / min(r['cpu'] for r in rs) * cpu_count():.1f} CPU-time estimate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
