"""How a question and a passage become the reader's input, shared by training and answering.

The reader sees ``[CLS] question [SEP] context-window [SEP]``. A context longer than
one window is read in overlapping windows; every context token keeps its character
offsets into the context, so a predicted span maps back to the exact source text.
Position 0 (``[CLS]``) stands for "no answer in this window".

Only the ``tokenizers`` package is needed here (no torch), so the query path can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_QUESTION_TOKENS = 48
WINDOW_TOKENS = 256  # question + context + 3 special tokens
OVERLAP_TOKENS = 96  # context tokens shared by neighbouring windows
MAX_ANSWER_TOKENS = 30


@dataclass(frozen=True)
class Window:
    """One model input: a question and a stretch of one context."""

    item: int  # which context (index into the list given to ``make_windows``)
    ids: list[int]
    first: int  # position of the first context token in ``ids``
    offsets: list[tuple[int, int]]  # character offsets, in the context, of each context token

    @property
    def n_context(self) -> int:
        return len(self.offsets)


class WindowMaker:
    """Tokenises questions and contexts with the model's own fast tokenizer."""

    def __init__(self, model_dir: str | Path, *, window: int = WINDOW_TOKENS, overlap: int = OVERLAP_TOKENS,
                 max_question: int = MAX_QUESTION_TOKENS) -> None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        tok.no_padding()
        tok.no_truncation()
        self.tokenizer = tok
        self.cls = tok.token_to_id("[CLS]")
        self.sep = tok.token_to_id("[SEP]")
        self.window = window
        self.overlap = overlap
        self.max_question = max_question

    def question_ids(self, question: str) -> list[int]:
        return self.tokenizer.encode(question, add_special_tokens=False).ids[: self.max_question]

    def make_windows(self, question: str, contexts: list[str]) -> list[Window]:
        """All windows of all ``contexts`` for ``question``, in context order."""
        q = self.question_ids(question)
        room = max(16, self.window - len(q) - 3)
        step = max(1, room - self.overlap)
        head = [self.cls, *q, self.sep]
        windows: list[Window] = []
        for item, enc in enumerate(self.tokenizer.encode_batch(contexts, add_special_tokens=False)):
            ids, offsets = enc.ids, enc.offsets
            start = 0
            while True:
                part = slice(start, start + room)
                windows.append(Window(item, head + ids[part] + [self.sep], len(head), list(offsets[part])))
                if start + room >= len(ids):
                    break
                start += step
        return windows


def batch_arrays(windows: list[Window], multiple: int = 1) -> dict[str, np.ndarray]:
    """Padded ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64) for a batch,
    the width rounded up to a ``multiple``."""
    width = -(-max(len(w.ids) for w in windows) // multiple) * multiple
    ids = np.zeros((len(windows), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, w in enumerate(windows):
        ids[i, : len(w.ids)] = w.ids
        mask[i, : len(w.ids)] = 1
        types[i, w.first : len(w.ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def token_span(window: Window, char_start: int, char_end: int) -> tuple[int, int] | None:
    """Input positions (start, end inclusive) of the tokens covering ``[char_start, char_end)``.

    None when the answer is not wholly inside this window.
    """
    offs = window.offsets
    if not offs or char_start < offs[0][0] or char_end > offs[-1][1]:
        return None
    s = next((i for i, (a, b) in enumerate(offs) if b > char_start), None)
    e = next((i for i in range(len(offs) - 1, -1, -1) if offs[i][0] < char_end), None)
    if s is None or e is None or e < s:
        return None
    return window.first + s, window.first + e


@dataclass(frozen=True)
class SpanScore:
    """A candidate answer span in one context, with the logits it was chosen by."""

    item: int  # which context
    start: int  # character offsets in that context
    end: int
    score: float  # start logit + end logit
    null: float  # the window's no-answer score: start + end logit of [CLS]
    window: int  # index of the window it came from


PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")


def best_spans(windows: list[Window], start_logits: np.ndarray, end_logits: np.ndarray, *,
               per_window: int = 3, top: int = 20, max_tokens: int = MAX_ANSWER_TOKENS,
               texts: list[str] | None = None) -> list[SpanScore]:
    """The best-scoring spans of every window, highest score first, at most ``per_window`` each.

    A span lies wholly inside one window's context tokens (never across contexts or
    into the question), ends no earlier than it starts and is at most ``max_tokens`` long.
    Given the contexts' ``texts``, a span never crosses a paragraph break (a blank line)
    either: a passage may hold several paragraphs, an answer never does. The same stretch
    of text seen by two overlapping windows is kept once, with its best score.
    """
    found: dict[tuple[int, int, int], SpanScore] = {}
    for w_i, w in enumerate(windows):
        n = w.n_context
        if n == 0:
            continue
        s = np.asarray(start_logits[w_i, w.first : w.first + n], dtype=np.float64)
        e = np.asarray(end_logits[w_i, w.first : w.first + n], dtype=np.float64)
        null = float(start_logits[w_i, 0] + end_logits[w_i, 0])
        k = min(top, n)
        s_top = np.argpartition(-s, k - 1)[:k]
        e_top = np.argpartition(-e, k - 1)[:k]
        grid = s[s_top][:, None] + e[e_top][None, :]
        ok = (e_top[None, :] >= s_top[:, None]) & (e_top[None, :] - s_top[:, None] < max_tokens)
        grid = np.where(ok, grid, -np.inf)
        order = np.argsort(-grid, axis=None, kind="stable")
        kept = 0
        for flat in order:
            score = grid.flat[flat]
            if not np.isfinite(score) or kept >= per_window:
                break
            a, b = s_top[flat // k], e_top[flat % k]
            cs, ce = w.offsets[a][0], w.offsets[b][1]
            if texts is not None and PARAGRAPH_BREAK.search(texts[w.item], cs, ce):
                continue
            key = (w.item, cs, ce)
            if key not in found or found[key].score < score:
                found[key] = SpanScore(w.item, cs, ce, float(score), null, w_i)
            kept += 1
    return sorted(found.values(), key=lambda c: (-c.score, c.item, c.start))


def best_span(spans: list[SpanScore]) -> SpanScore | None:
    """The reader's answer in one context read alone: the span most above its own window's
    "no answer" score. A long context is read in several windows, and one that holds no answer
    can still give its best span a high raw score: over whole SQuAD articles (120 questions of
    the calibrate articles) the raw score's pick scored EM / F1 0.575 / 0.670, the margin's
    0.683 / 0.781; over their 783 gold paragraphs 0.743 / 0.850 and 0.746 / 0.851 (reader v2,
    AMD EPYC, 2026-12-04). The answer step ranks by the margin too (:mod:`qa.calibration`)."""
    return max(spans, key=lambda s: s.score - s.null, default=None)
