"""Retrieval with each ``--dense-context`` (what the encoder sees with a passage: ``none`` or
``title,heading``), on a SQuAD or BEIR benchmark: one real index per context, every question retrieved
in every mode, Recall@k, MRR@10 and nDCG@10 as ``qa eval`` reports them, per SQuAD article split.

Retrieval only: no answer is read, so all 10,570 SQuAD dev questions take minutes, not the hour
``qa eval`` spends reading them. The corpus, index, retrieval and metrics are the project's own
(``qa.eval.setup``, ``qa.build``, ``qa.retrieve``, ``qa.eval.run.judge``, ``qa.eval.score``); each question
is encoded once and its vector reused by every mode and context. Each context's index stays in
``--work`` (``index-none``, ``index-title+heading``, the corpus in ``corpus``), so a second run
encodes nothing, and ``qa eval --corpus WORK/corpus --index WORK/index-… --dense-context …`` scores
answers on the same index.

    python benchmarks/dense_context.py ../shared/benchmarks/squad-v1.1-dev/dev-v1.1.json --format squad --work .qa-eval/dense-squad
    python benchmarks/dense_context.py ../shared/benchmarks/beir-scifact --format beir --work .qa-eval/dense-scifact
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from qa.build import ensure_index
from qa.config import DENSE_CONTEXTS, PRECISIONS, Settings
from qa.cpu import cpu_name
from qa.eval.run import DEPTH, Outcome, judge
from qa.eval.score import retrieval_metrics
from qa.eval.setup import load_question_set, mode_settings
from qa.index import load_index
from qa.pipeline import query_encoder
from qa.retrieve import retrieve
from qa.splits import SPLITS, in_split

MODES = ("bm25", "dense", "hybrid-rrf", "hybrid-weighted")


class Memo:
    """The query encoder, each question encoded once however many modes and indexes ask for it."""

    def __init__(self, inner):
        self.inner, self.vectors = inner, {}
        self.name, self.dim, self.backend, self.precision = inner.name, inner.dim, inner.backend, inner.precision

    def encode(self, texts, **kw) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if todo:
            self.vectors.update(zip(todo, self.inner.encode(todo, **kw)))
        return np.stack([self.vectors[t] for t in texts])


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--format", choices=("squad", "beir"), required=True)
    ap.add_argument("--work", type=Path, required=True, help="folder for the corpus and one index per context")
    ap.add_argument("--contexts", nargs="+", default=list(DENSE_CONTEXTS), choices=DENSE_CONTEXTS)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--precision", default=Settings().precision, choices=PRECISIONS,
                    help="indexing precision (default: the default's; int8 builds about twice as fast)")
    args = ap.parse_args(argv)
    corpus = args.work / "corpus"
    questions = load_question_set(args.file, args.format, corpus)
    splits = [None, *SPLITS] if args.format == "squad" else [None]
    print(f"{args.file.name}: {len(questions)} questions; indexing precision {args.precision}; "
          f"CPU: {cpu_name()}, {os.cpu_count()} cores; "
          f"load average {load()}", file=sys.stderr)
    print("| context | mode | articles | questions | R@1 | R@5 | R@10 | R@20 | MRR@10 | nDCG@10 |")
    print("|---|---|---|--:|--:|--:|--:|--:|--:|--:|")
    encoder = None
    for context in args.contexts:
        settings = Settings(corpus=corpus, index=args.work / f"index-{context.replace(',', '+')}",
                            dense_context=context, precision=args.precision)
        t = time.perf_counter()
        index = ensure_index(settings, progress=False)
        print(f"{context}: index ready in {time.perf_counter() - t:.0f} s ({len(index.passages)} passages); "
              f"load average {load()}", file=sys.stderr)
        encoder = encoder or Memo(query_encoder(settings))
        for mode in args.modes.split(","):
            t = time.perf_counter()
            run = mode_settings(settings, mode).replace(k=DEPTH)
            outcomes = []
            for q in questions:
                ranked, scores, relevant = judge(q, retrieve(index, encoder, q.question, run).hits, {})
                outcomes.append(Outcome(mode, q, ranked, scores, relevant))
            for split in splits:
                m = retrieval_metrics([o for o in outcomes if split is None or in_split(o.question.article, split)])
                if not m["n"]:
                    continue
                print(f"| {context} | {mode} | {split or 'all'} | {m['n']} | {m['recall@1']:.3f} | {m['recall@5']:.3f} "
                      f"| {m['recall@10']:.3f} | {m['recall@20']:.3f} | {m['mrr@10']:.3f} | {m['ndcg@10']:.3f} |",
                      flush=True)
            print(f"  {context} {mode}: {time.perf_counter() - t:.0f} s; load average {load()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
