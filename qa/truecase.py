"""A question's names, written as the documents write them, when the question itself does not say.

The checks on names (:func:`qa.calibration.specific_terms`: a passage that lacks a name the question
asks about is never confident; a name no document mentions is not answered) find a name by its
capital. Analysts type fast: "how many drones has china bought from iran?" or all in capitals. The
models read text in lower case, so only those checks depend on case. :func:`truecase` writes each
word that carries no case of its own (lower case, or any word of a question all in capitals) as
the documents write it — "China", "Tehran" — when they almost always capitalise it where it
stands alone in running text; every other word stays as typed (a word of a question all in
capitals goes to lower case). A word no document holds stays as it is: it could be a name or
not, and nothing says which; so a question typed without case is never refused for naming
something no document mentions, but its answer is still held at "low" when its passage lacks a
name the documents know.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from qa.terms import STOP_WORDS, tokenize

if TYPE_CHECKING:
    from qa.index import Index

SAMPLE = 20  # passages holding a word that are looked at to see how the documents write it
MIN_SEEN = 2  # occurrences in running text needed: a word seen once may be a title's
NAME_SHARE = 0.9  # of them capitalised, to take the word as a name (one also written in lower case is not)

# never taken for names: function words, and common words that documents mostly write as names
# ("tell us" is not the US, "may" not May)
_NEVER = STOP_WORDS | {"us", "may", "march"}
_WORD = re.compile(r"[^\W\d_][\w'’]*")  # the parts of "moscow-tehran" one by one
_POSSESSIVE = re.compile(r"['’]s$", re.IGNORECASE)
_BEFORE = re.compile(r"([^\W\d_])[\w'’.-]* +$")  # the first letter of the word just before (spaces between)
_AFTER = re.compile(r"(?:['’]s)? +([^\W\d_])")  # ... of the word just after (past a possessive)
# what may stand before a word that starts a sentence, a heading or a quote (its capital says nothing)
_OPENERS = frozenset(".!?:;\"“”‘'([{•–—#*")  # a bullet's "-" starts a line


def truecase(question: str, index: Index) -> str:
    """``question`` with the words that carry no case of their own written as the documents write
    them when that is as a name (see the module's docstring)."""
    shouting = question.upper() == question

    def fix(m: re.Match) -> str:
        word = m.group(0)
        if not (shouting or word.islower()):
            return word
        base = _POSSESSIVE.sub("", word)
        form = None if base.lower() in _NEVER else _written_as(base.lower(), index)
        if form is not None:
            return form + word[len(base):].lower()
        return word.lower() if shouting else word

    return _WORD.sub(fix, question)


def _written_as(word: str, index: Index) -> str | None:
    """How the documents write ``word`` when it is a name there: a form with a capital that at least
    :data:`NAME_SHARE` of its occurrences take, counting those in lower case anywhere and those with
    a capital that stand alone in running text — not at a sentence's start, and not beside another
    capitalised word, as "City" in "New York City" or "Senate" in "US Senate" (part of a longer
    name, which says nothing of the word alone: on SQuAD those made "city" a name). None for a
    common word, or one the documents do not hold often enough to tell."""
    terms = tokenize(word)
    term = index.bm25.vocab.get(terms[0]) if len(terms) == 1 else None
    if term is None:
        return None
    postings = index.bm25.docs[index.bm25.indptr[term] : index.bm25.indptr[term + 1]]
    rows = postings[np.linspace(0, len(postings) - 1, min(SAMPLE, len(postings))).astype(np.int64)]  # spread out
    pattern = re.compile(rf"(?<![\w]){re.escape(word)}(?![\w])", re.IGNORECASE)
    named: Counter[str] = Counter()
    common = 0
    for row in sorted(set(rows.tolist())):
        text = index.passages[int(row)].text
        for m in pattern.finditer(text):
            if m.group(0).islower():
                common += 1
            elif not _starts_sentence(text, m.start()) and not _beside_capital(text, m.start(), m.end()):
                named[m.group(0)] += 1
    alone = sum(named.values())
    if alone >= MIN_SEEN and alone >= NAME_SHARE * (alone + common):
        return min(named, key=lambda form: (-named[form], form))
    return None


def _starts_sentence(text: str, at: int) -> bool:
    before = text[:at].rstrip()
    return not before or before[-1] in _OPENERS or "\n" in text[len(before) : at]


def _beside_capital(text: str, start: int, end: int) -> bool:
    before = _BEFORE.search(text, max(0, start - 40), start)
    after = _AFTER.match(text, end)
    return bool(before and before.group(1).isupper()) or bool(after and after.group(1).isupper())
