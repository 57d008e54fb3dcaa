"""Near misses: a passage on the question's topic that lacks only its answer.

A real unanswerable question is asked about what the documents discuss: the sentence it
was written from is there, naming its entities, and only the answer is missing ("the
name of the official who traveled to Iran with $145 million" against a sentence on that
trip that names nobody). Cutting the gold answer out of its own paragraph makes such a
passage from any answerable question, for training the reader to say nothing there
(``training/train_reader.py --near-miss-kind answer``; see the model card).

The other way round, a question can be made to miss its own paragraph: one of its names
swapped for another name of the paragraph that its answer sentence lacks ("What share of
Iran's arms exports…" against a passage on Russia's), as the "entity swap" questions of
SQuAD 2.0 were written by hand (``train_reader.py --swapped-names``).
"""

from __future__ import annotations

import random
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


_NAME = re.compile(r"\b[A-Z][\w'’-]*[\w]|\b\d[\d,.]*\d\b|\b\d\b")


def _standalone_names(text: str) -> list[tuple[int, int, str]]:
    """The single-word names and numbers of ``text`` (start, end, word), possessive "'s" dropped:
    capitalised words not at a sentence start, and numbers, next to no other such word (a part
    of "Super Bowl 50" is no name to swap on its own). Unlike :func:`qa.calibration.specific_terms`,
    which lists what a question asks about, this needs each word's place to replace it, and skips
    every sentence's first word, as a paragraph has many."""
    found = []
    for m in _NAME.finditer(text):
        before = text[: m.start()].rstrip()
        if m.group(0)[0].isalpha() and (not before or before.endswith((".", "!", "?", ":", '"'))):
            continue
        found.append((m.start(), m.end(), m.group(0)))
    out = []
    for i, (s, e, w) in enumerate(found):
        near = [found[j] for j in (i - 1, i + 1) if 0 <= j < len(found)]
        if any(re.fullmatch(r"[\s-]*", text[e:ns] if ns >= e else text[ne:s]) for ns, ne, _ in near):
            continue
        if w.endswith(("'s", "’s")):
            w, e = w[:-2], e - 2
        out.append((s, e, w))
    return out


def swap_name(question: str, text: str, spans: list[tuple[int, int]], sentences: list[tuple[int, int]],
              rng: random.Random) -> str | None:
    """The question with one of its names (or numbers) swapped for another of the same kind from
    the paragraph ``text``: the paragraph is then on the question's topic and names both, but its
    answer sentences (``sentences`` holding the gold ``spans``) speak of the first — "What share of
    Iran's arms exports…" against a passage on Russia's. None when no such swap exists: the name
    must stand in an answer sentence, the replacement in none of them and in no answer. A question
    made this way can still be answered elsewhere in the paragraph now and then; the negatives
    are noisy the way SQuAD's retrieved ones are."""
    answer_text = " ".join(text[s:e] for s, e in sentences if any(s < ge and e > gs for gs, ge in spans)).lower()
    if not answer_text:
        return None
    in_answers = [text[gs:ge].lower() for gs, ge in spans]
    asked = _standalone_names(question)
    asked_words = {w.lower() for _, _, w in asked}
    options = {w for _, _, w in _standalone_names(text)
               if w.lower() not in asked_words and w.lower() not in answer_text
               and not any(w.lower() in a for a in in_answers)}
    swaps = []
    for s, e, w in asked:
        if w.lower() not in answer_text:
            continue
        same_kind = sorted(o for o in options if o[0].isdigit() == w[0].isdigit())
        swaps += [(s, e, o) for o in same_kind]
    if not swaps:
        return None
    s, e, o = swaps[rng.randrange(len(swaps))]
    return question[:s] + o + question[e:]
