"""Near misses: a passage on the question's topic that lacks only its answer.

A real unanswerable question is asked about what the documents discuss: the sentence it
was written from is there, naming its entities, and only the answer is missing ("the
name of the official who traveled to Iran with $145 million" against a sentence on that
trip that names nobody). Cutting the gold answer out of its own paragraph makes such a
passage from any answerable question, for training the reader to say nothing there
(``training/train_reader.py --near-miss-kind answer``; tried as a second stage, see the
model card).
"""

from __future__ import annotations

import re

# A word that leads into an answer span ("in 1998", "by the Normans") goes with it, so that what
# is left reads as a sentence more often: "was founded by ." would teach the reader to spot the
# cut, not the missing answer.
LEAD_IN = re.compile(r"(?:\b(?:in|on|at|by|of|for|from|to|with|as|about|around|nearly|over|than|"
                     r"the|a|an|some)\s+)+$", re.IGNORECASE)


def cut_answers(text: str, spans: list[tuple[int, int]], answers: list[str]) -> str | None:
    """``text`` without the answer ``spans`` (offsets into it) and the words leading into them;
    None when an accepted answer still appears in what is left (then it is no near miss)."""
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    parts, pos = [], 0
    for s, e in merged:
        head = text[pos:s]
        lead = LEAD_IN.search(head)
        parts.append(head[: lead.start()] if lead else head)
        pos = e - 1 if text[s:e].endswith((".", ",", ";")) else e  # the sentence keeps its own stop
    rest = "".join(parts) + text[pos:]
    rest = re.sub(r"\(\s*\)", "", re.sub(r"[ \t]{2,}", " ", rest))
    rest = re.sub(r" +([,.;:])", r"\1", rest)
    # A raw substring, not qa.eval.metrics.contains_answer's whole normalised tokens: stricter, so that
    # no left-over "fleets" or "1901s" still answers a passage labelled as answering nothing.
    folded = rest.lower()
    if not rest.strip() or any(a.lower() in folded for a in answers):
        return None
    return rest
