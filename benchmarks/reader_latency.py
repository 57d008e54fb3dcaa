"""Latency of answering with the reader on the default corpus: warm `ask` and a cold `qa ask`.

    python benchmarks/reader_latency.py                # seed questions, hybrid, default settings
    python benchmarks/reader_latency.py --read 3 --repeat 5

Warm: one engine, every question of questions/seed.jsonl asked ``--repeat`` times after a
warm-up; p50/p95 of the total and of the reader alone. Cold: ``qa ask`` in a fresh process,
best and median of ``--cold`` runs (the index exists already). The CPU is named beside
every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.config import Settings  # noqa: E402
from qa.cpu import cpu_name, vector_units  # noqa: E402
from qa.eval.metrics import percentile  # noqa: E402
from qa.pipeline import ask, open_engine  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--read", type=int, default=Settings().read, help="passages the reader reads")
    ap.add_argument("--early-exit", type=float, default=Settings().early_exit,
                    help="read the rest only below this confidence (qa ask --early-exit)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cold", type=int, default=5, help="cold `qa ask` runs")
    ap.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    ap.add_argument("--index", type=Path, default=ROOT / "index")
    args = ap.parse_args()
    settings = Settings(corpus=args.corpus, index=args.index, read=args.read, early_exit=args.early_exit)
    engine = open_engine(settings, progress=False)
    questions = [json.loads(line)["question"] for line in (ROOT / "questions" / "seed.jsonl").read_text().splitlines()
                 if line.strip()]
    for q in questions[:10]:
        ask(engine, q)
    total, reader = [], []
    for _ in range(args.repeat):
        for q in questions:
            t = ask(engine, q).timings_ms
            total.append(t["total"])
            reader.append(t["reader"])
    cold = []
    for _ in range(args.cold):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "qa.cli", "ask", "--quiet", "--corpus", str(args.corpus),
                        "--index", str(args.index), "--early-exit", str(args.early_exit), questions[0]],
                       check=True, capture_output=True)
        cold.append(time.perf_counter() - t)
    result = {
        "cpu": cpu_name(), "units": ", ".join(vector_units()), "cores": os.cpu_count(), "read": args.read,
        "early_exit": args.early_exit,
        "questions": len(questions), "asks": len(total),
        "warm_total_ms": {"p50": percentile(total, 50), "p95": percentile(total, 95)},
        "reader_ms": {"p50": percentile(reader, 50), "p95": percentile(reader, 95)},
        "cold_qa_ask_s": {"best": min(cold), "median": statistics.median(cold)},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
