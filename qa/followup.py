"""Is a question a follow-up? Decided by retrieval: the question searched alone against the
question searched with the conversation's last query.

A follow-up ("How much cash did officials bring?") finds little on its own words; with the
previous question beside it, the best sentence found matches the query far better. A new topic
("What is SEPAM?" after a question about drones) finds its own match, and the earlier question
adds nothing to it, or pulls the search towards passages that fit the question alone worse. A
question that refers back ("Which port do they arrive at?", or a fragment naming nothing of its
own: "Which port?") is a follow-up unless the previous question makes its match worse: the
pronoun settles what the scores cannot when another document answers the words alone (a
harbour report's port, for drones' port).

The figures are cosine similarities between a query and the best *sentence* of the top passages
(the read ones), from the sentence vectors the index holds when they are encoded sentence by sentence,
so the decision costs one more retrieval when there is an earlier question (a query encoding and a
search: a median 55 ms answer became 74 ms on the shared 2-core AMD EPYC, load average 15–18, so
noisy); an index of pooled sentence vectors (the default, ``qa.vectors``) has those sentences
(~12-24) encoded here too, for the limits below. The two limits were
chosen on the dialogues of ``questions/followups.jsonl`` (written for this, none from the seed
set): the gain of follow-ups there is 0.22–0.53, that of new topics -0.07–0.14; the new topics a
weak question alone could not tell (0.27 alone: "Who won the 2022 FIFA World Cup?") lose 0.06–0.16
of their own match in the context's passages, while follow-ups lose none, or refer back with a
pronoun ("What is it called in Russia?", -0.08).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from qa.calibration import missing_terms, specific_terms
from qa.config import Settings
from qa.datatypes import Hit, Understanding
from qa.index import Index
from qa.retrieve import Retrieval, retrieve, sentence_rerank
from qa.terms import tokenize
from qa.vectors import sentence_vectors_alone

MIN_GAIN = 0.2  # the context must raise the best sentence's similarity to the query by this much
MAX_DROP = 0.05  # ... without lowering the question's own best match by more than this
MIN_GAIN_BACK = 0.0  # a question that refers back ("they", "Which port?") needs only not to match worse
MAX_CONTEXT_CHARS = 400  # of the earlier query borrowed: a long chain of follow-ups stays short

# Words that point back to an earlier question ("Which port do they arrive at?", "And helicopters?").
_ANAPHORA = re.compile(
    r"\b(they|them|their|theirs|it|its|there|those|these|that|this|he|she|him|her|his|such|the same)\b"
    r"|^\W*(and|or|but|also|what about|how about)\b", re.I
)


@dataclass
class Decision:
    """What :func:`understand` found: how the question was read and the retrieval it was answered from."""

    understanding: Understanding
    retrieval: Retrieval


def contextual_query(question: str, previous: str) -> str:
    """The query of a follow-up: the question, then the conversation's last query (shortened)."""
    previous = " ".join(previous.split())
    if len(previous) > MAX_CONTEXT_CHARS:
        previous = previous[:MAX_CONTEXT_CHARS].rsplit(" ", 1)[0]
    return f"{question} {previous}"


def reader_question(question: str, previous: str) -> str:
    """What the reader reads for a follow-up: the question, then the previous query's content words
    ("Which port? Iranian drones shipped Russia"). Given the two questions whole, the reader answers
    the earlier, complete one ("1,700" to "Which port do they arrive at?"). On the 13 follow-ups of
    ``questions/followups.jsonl`` and the README, the whole previous question gave 6 answers to it
    instead; its content words give 9 right answers, 3 abstentions and 1 wrong."""
    words = [w.strip("?.,;:!\"“”'") for w in previous.split()]
    terms = " ".join(dict.fromkeys(w for w in words if w and tokenize(w)))
    return f"{question} {terms}" if terms else question


def understand(index: Index, encoder, question: str, history: list[str], settings: Settings) -> Decision:
    """Retrieve for ``question`` asked after ``history`` (earlier queries, oldest first; the page
    passes each earlier question as it was searched), deciding whether it is a follow-up."""
    alone = retrieve(index, encoder, question, settings)
    previous = next((h for h in reversed(history) if h.strip()), "")
    if not previous or not alone.hits:
        return Decision(Understanding(question, False, ""), alone)
    query = contextual_query(question, previous)
    context = retrieve(index, encoder, query, settings)
    qvec = _vector(encoder, question, alone)
    memo: dict = {}
    own = best_match(index, qvec, alone.hits[: settings.read], encoder, memo)
    with_context = best_match(index, _vector(encoder, query, context), context.hits[: settings.read], encoder, memo)
    own_in_context = best_match(index, qvec, context.hits[: settings.read], encoder, memo)
    gain, drop = with_context - own, own - own_in_context
    refers_back = _ANAPHORA.search(question) is not None or _elliptical(question)
    figures = f"best match alone {own:.2f}, with the previous question {with_context:.2f}"
    if refers_back and gain >= MIN_GAIN_BACK:
        return Decision(Understanding(query, True, f"a follow-up: it refers back, and {figures}",
                                      reader_question(question, previous)), context)
    if not any(t in index.bm25.vocab for t in tokenize(question)):
        # "What is the weather today?": no document holds a word of it, so it is not asking about
        # what the conversation found either (an elliptical follow-up names something that is there)
        return Decision(Understanding(question, False, "a new question: no document holds any of its words"), alone)
    if gain < MIN_GAIN:  # from here on, the question does not refer back
        return Decision(Understanding(question, False, f"a new question: {figures}"), alone)
    new_names = _new_names(question, previous, alone.hits[:1])
    if new_names:
        named = ", ".join(f"“{n}”" for n in new_names)
        return Decision(Understanding(question, False, f"a new question: it names {named}, which its own "
                                                       f"search finds and the previous question did not ask about"),
                        alone)
    if drop > MAX_DROP:
        return Decision(Understanding(question, False, f"a new question: the previous question's passages fit it "
                                                       f"worse ({own_in_context:.2f} against {own:.2f})"), alone)
    return Decision(Understanding(query, True, f"a follow-up: {figures}", reader_question(question, previous)),
                    context)


def best_match(index: Index, qvec: np.ndarray, hits: list[Hit], encoder=None, memo: dict | None = None) -> float:
    """The highest cosine similarity between ``qvec`` and a sentence of ``hits`` (-1 without any), the
    sentences as encoded on their own (the limits were chosen on those: ``qa.vectors.sentence_vectors_alone``)."""
    if not hits:
        return -1.0
    alone = sentence_vectors_alone(index, encoder, [h.passage for h in hits], memo)
    if alone is not None:
        sims = [float(np.max(v @ qvec)) for v in alone if len(v)]
        return max(sims) if sims else -1.0
    _, scores = sentence_rerank(index, qvec, np.array([h.row for h in hits], dtype=np.int64))
    return float(scores[0]) if len(scores) else -1.0


def _vector(encoder, query: str, found: Retrieval) -> np.ndarray:
    return found.query_vector if found.query_vector is not None else encoder.encode([query])[0]


def _elliptical(question: str) -> bool:
    """A fragment that names nothing of its own ("Which port?", "And helicopters?", "Why?"): at most
    one content term and no name, code or number ("What is SEPAM?" names SEPAM)."""
    return len(tokenize(question)) <= 1 and not specific_terms(question)


def _new_names(question: str, previous: str, top: list[Hit]) -> list[str]:
    """Names and codes of the question that the previous query does not mention and the question's
    own best passage does."""
    terms = missing_terms(specific_terms(question), previous)
    if not terms or not top:
        return []
    absent = set(missing_terms(terms, top[0].passage.text))
    return [t for t in terms if t not in absent]
