"""Why the system abstained, in plain words, and the nearest passage it offers instead.

Two reasons, checked in this order:

* **unmentioned**: the question names something (a name, code or number:
  :func:`qa.calibration.specific_terms`) that no indexed document mentions — looked up in the
  BM25 vocabulary, which holds every term of every passage under the same tokenizer, so the
  check costs a dictionary look-up per name however large the corpus;
* **weak**: the documents mention what is asked about, but the best answer found is below the
  confidence an answer needs (or nothing answer-like was found).
"""

from __future__ import annotations

import bisect

from qa.calibration import missing_terms, specific_terms
from qa.capitals import metonym
from qa.datatypes import Abstention, Answer, Citation
from qa.index import Index
from qa.present import quote_location
from qa.terms import tokenize

SAY_NOT_FOUND = "The documents do not answer this question"


MISSPELT_MIN = 5  # letters from which a name one edit from a term of the documents is taken as misspelt


def unmentioned(question: str, index: Index) -> list[str]:
    """The names, codes and numbers of ``question`` that no passage of ``index`` mentions.

    A name counts as mentioned when any of its terms is in the index, or a term of the same
    stem ("China" by "Chinese", as :func:`qa.calibration.missing_terms` judges), or its country
    for a capital and the other way round ("Moscow" by "Russia", :mod:`qa.capitals`), or when it
    is a misspelling of a term (:func:`_misspelt`: "Karistadt" for Karlstadt)."""
    vocab = index.bm25.vocab
    return [name for name in specific_terms(question)
            if not _in_index(name, vocab) and not ((other := metonym(name)) and _in_index(other, vocab))]


def _in_index(name: str, vocab: dict[str, int]) -> bool:
    terms = tokenize(name)
    if not terms or any(t in vocab for t in terms):
        return True
    if any(c.isdigit() for c in name):
        return False
    return not missing_terms([name], " ".join(_stem_neighbours(vocab, name))) or _misspelt(terms, vocab)


def _misspelt(terms: list[str], vocab: dict[str, int]) -> bool:
    """Whether a term of the name of at least :data:`MISSPELT_MIN` letters is one edit (a letter
    changed, added or dropped, or two neighbours swapped) from a term of the index that starts
    with the same letter. Many names SQuAD's writers asked about that its articles do not hold are
    misspelt ("Karistadt", "Mnemiposis", "Telnet" for Telenet): on the 24 articles we fit on, one
    edit from 5 letters up took 17 of the 34 such names asked (12 names, every one a misspelling
    or another spelling, "Boleslaw" for Bolesław) and no other; two edits also took "Celsius" for
    "census" and "WInston" for "wanton" (2026-12-04)."""
    from rapidfuzz import process  # here, not at the top: 15 ms of import that most questions never need
    from rapidfuzz.distance import OSA

    sorted_terms = _sorted_terms(vocab)
    for term in terms:
        if len(term) < MISSPELT_MIN:
            continue
        lo = bisect.bisect_left(sorted_terms, term[0])
        hi = bisect.bisect_left(sorted_terms, term[0] + "\U0010ffff")
        if process.extractOne(term, sorted_terms[lo:hi], scorer=OSA.distance, score_cutoff=1) is not None:
            return True
    return False


def _stem_neighbours(vocab: dict[str, int], name: str) -> list[str]:
    """The vocabulary's terms that share the name's first four letters (candidates for the same stem).

    Found by bisection in the sorted vocabulary, sorted once per vocabulary: scanning it costs
    O(terms) per name, which at millions of terms is most of a question's time."""
    head = name.lower()[:4]
    terms = _sorted_terms(vocab)
    lo = bisect.bisect_left(terms, head)
    hi = bisect.bisect_left(terms, head + "\U0010ffff")
    return terms[lo:hi]


_sorted: tuple[dict, list[str]] = ({}, [])  # the vocabulary last sorted and its sorted terms, swapped as one


def _sorted_terms(vocab: dict[str, int]) -> list[str]:
    global _sorted
    held = _sorted
    if held[0] is not vocab:
        held = _sorted = (vocab, sorted(vocab))
    return held[1]


def explain(question: str, index: Index, citations: list[Citation], *, best: float | None,
            threshold: float, missing: list[str] | None = None, lead: Answer | None = None) -> Abstention:
    """The abstention for ``question``: its reason in one plain sentence, naming the nearest passage.

    ``best``: the best answer candidate's confidence (None when the answerer found none or gives
    no probability); ``threshold``: the confidence an answer needs; ``missing``: the question's
    unmentioned names when already known (None: look them up). ``lead``: that best candidate as a
    cited answer; when the match is only weak it is named with where it stands, and its passage is
    the one offered: a paraphrased question often has its right answer just under the threshold
    (on the seed set, 5 of the 8 answerable questions that abstain), so the analyst can check it
    there. A name no document mentions offers no lead: no passage can hold that answer."""
    nearest = citations[0].n if citations else None
    offer = (f" The nearest passage is [{nearest}], {quote_location(citations[0])}."
             if citations else " No passage came close.")
    if missing is None:
        missing = unmentioned(question, index)
    if missing:
        names = _join([f"“{m}”" for m in missing])
        return Abstention("unmentioned", f"{SAY_NOT_FOUND}: no document mentions {names}.{offer}",
                          missing, _round(best), _round(threshold), nearest)
    if best is None:
        why = f"the best match is too weak (no answer found reaches the confidence needed, {threshold:.2f})"
        lead = None
    elif lead is not None:
        why = (f"the best match is too weak (the best answer found, “{lead.span or lead.text}”, has confidence "
               f"{best:.2f}; an answer needs {threshold:.2f})")
        offer = f" It stands in [{lead.citation}], {quote_location(lead)}."
        nearest = lead.citation
    else:
        why = (f"the best match is too weak (the best answer found has confidence {best:.2f}; "
               f"an answer needs {threshold:.2f})")
    return Abstention("weak", f"{SAY_NOT_FOUND}: {why}.{offer}", [], _round(best), _round(threshold), nearest, lead)


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
