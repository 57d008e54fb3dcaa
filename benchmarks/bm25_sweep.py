"""BM25 alone on a benchmark, for a grid of k1 and b, with passages indexed as the build indexes them
(document title and section heading, then the passage: ``qa.split.index_text``) or as their bare text.

No dense vectors are made, so a sweep over SciFact takes a minute rather than the index build's
quarter of an hour. The documents, passages, tokenizer, BM25, retrieval and metrics are the
project's own (``qa.eval.setup``, ``qa.split``, ``qa.bm25``, ``qa.retrieve``, ``qa.eval.run``, ``qa.eval.score``).

    python benchmarks/bm25_sweep.py ../shared/benchmarks/squad-v1.1-dev/dev-v1.1.json --format squad --split train
    python benchmarks/bm25_sweep.py ../shared/benchmarks/beir-scifact --format beir --k1 0.9,1.2,1.5 --b 0.4,0.75
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from qa.bm25 import build_bm25
from qa.config import Settings
from qa.cpu import cpu_name
from qa.eval.run import DEPTH, Outcome, judge
from qa.eval.score import retrieval_metrics
from qa.eval.setup import load_question_set, select_split
from qa.load import load_corpus
from qa.retrieve import retrieve
from qa.split import index_text, split_document
from qa.terms import tokenize


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--format", choices=("squad", "beir"), required=True)
    ap.add_argument("--split", help="SQuAD article split (qa/splits.py): train, fit, calibrate or heldout")
    ap.add_argument("--k1", type=floats, default=[0.9, 1.2, 1.5])
    ap.add_argument("--b", type=floats, default=[0.4, 0.75])
    ap.add_argument("--texts", default="bare,title+heading", help="bare, title+heading or both (comma-separated)")
    args = ap.parse_args(argv)
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        questions = select_split(load_question_set(args.file, args.format, corpus), args.split, args.file)
        docs = load_corpus(corpus, warn=lambda msg: None)
    titles = {d.id: d.title for d in docs}
    passages = [p for d in docs for p in split_document(d, settings.sentences_per_passage, settings.overlap)]
    print(f"{args.file.name}: {len(docs)} documents, {len(passages)} passages, {len(questions)} questions"
          f"{f' (split {args.split})' if args.split else ''}; CPU: {cpu_name()}", file=sys.stderr)
    print("| indexed text | k1 | b | R@1 | R@5 | R@20 | MRR@10 | nDCG@10 |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for kind in args.texts.split(","):
        if kind not in ("bare", "title+heading"):
            raise SystemExit(f"error: unknown --texts '{kind}'")
        tokens = [tokenize(p.text if kind == "bare" else index_text(p, titles[p.doc])) for p in passages]
        for k1 in args.k1:
            for b in args.b:
                t = time.perf_counter()
                index = SimpleNamespace(passages=passages, bm25=build_bm25(tokens, k1=k1, b=b))
                run = settings.replace(mode="bm25", k=DEPTH * 3, candidates=DEPTH * 3)
                outcomes = []
                for q in questions:
                    hits = retrieve(index, None, q.question, run).hits
                    ranked, scores, relevant = judge(q, hits, {})
                    outcomes.append(Outcome("bm25", q, ranked, scores, relevant))
                m = retrieval_metrics(outcomes)
                print(f"| {kind} | {k1:g} | {b:g} | {m['recall@1']:.3f} | {m['recall@5']:.3f} | {m['recall@20']:.3f} "
                      f"| {m['mrr@10']:.3f} | {m['ndcg@10']:.3f} |", flush=True)
                print(f"  ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
