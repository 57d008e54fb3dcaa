"""Step 2, splitting: exact offsets, sentence boundaries on tricky text, passages and overlap."""

from __future__ import annotations

import pytest

from helpers_core import CORPUS, doc_from_text, line_of
from qa.load import load_corpus
from qa.split import MAX_PASSAGE_CHARS, MAX_SENTENCE_CHARS, heading_spans, sentence_spans, split_document

pytestmark = pytest.mark.unit


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


@pytest.fixture(scope="module")
def corpus_docs():
    return load_corpus(CORPUS)


# ------------------------------------------------------------------ invariants


def check_spans(text: str, spans: list[tuple[int, int]]) -> None:
    """In order, non-overlapping, whitespace-trimmed, non-empty, and covering every word."""
    prev_end = 0
    for s, e in spans:
        assert prev_end <= s < e <= len(text)
        assert not text[s].isspace() and not text[e - 1].isspace()
        assert text[prev_end:s].strip() == ""  # nothing but whitespace between sentences
        prev_end = e
    assert text[prev_end:].strip() == ""


def check_passages(doc, passages, per: int, overlap: int) -> None:
    heads = heading_spans(doc)
    spans = sentence_spans(doc.text, heads)
    body = [sp for sp in spans if not any(s <= sp[0] < e for s, e in heads)] or spans
    covered = set()
    for k, p in enumerate(passages):
        assert p.doc == doc.id and p.ordinal == k
        assert doc.text[p.start : p.end] == p.text
        assert p.line == line_of(doc.text, p.start)
        assert 1 <= len(p.sentences) <= per
        assert p.sentences[0][0] == p.start and p.sentences[-1][1] == p.end
        for s in p.sentences:
            assert s in body  # whole sentences only, none cut, no heading
        i = body.index(p.sentences[0])
        assert list(p.sentences) == body[i : i + len(p.sentences)]  # consecutive sentences
        assert len(p.sentences) == 1 or p.end - p.start <= MAX_PASSAGE_CHARS
        covered.update(p.sentences)
        if k:
            prev = passages[k - 1]
            shared = [s for s in p.sentences if s in prev.sentences]
            # neighbours share `overlap` sentences (fewer only when the previous passage is short);
            # a section's first passage shares none with the previous section's last
            new_section = any(prev.start < s < p.start for s, _ in heads)
            assert len(shared) == (0 if new_section else min(overlap, len(prev.sentences) - 1))
            assert list(prev.sentences[len(prev.sentences) - len(shared):]) == shared
            assert p.start > prev.start
    assert covered == set(body)  # every sentence but the headings is in some passage


def test_corpus_sentence_offsets_map_back_exactly(corpus_docs):
    for doc in corpus_docs:
        spans = sentence_spans(doc.text)
        assert len(spans) > 20
        check_spans(doc.text, spans)


def test_corpus_known_sentences_are_found_whole(corpus_docs):
    doc = corpus_docs[0]
    found = sentences(doc.text)
    assert "Since 2022, Russia purchased approximately 1,700 drones capable of conducting intelligence, " \
           "surveillance, and reconnaissance, and suicide bomb missions." in found
    assert "There are reports that Russian officials traveled to Iran with $145 million in cash with British " \
           "and U.S. missile systems for the Iranian military in exchange for exposure to Iranian drone technology." in found
    assert "Executive Summary" in found  # a heading line is its own sentence
    assert "# Iran–Russia Military Technology Collaboration: A Policy Brief" in found


@pytest.mark.parametrize("per,overlap", [(4, 1), (3, 0), (5, 2), (1, 0), (2, 1)])
def test_corpus_passages_offsets_lines_and_overlap(corpus_docs, per, overlap):
    for doc in corpus_docs:
        passages = split_document(doc, per, overlap)
        assert passages
        check_passages(doc, passages, per, overlap)
        if overlap:
            # with the default-size corpus passages, neighbours share exactly `overlap`
            short = [p for p in passages[:-1] if len(p.sentences) <= overlap]
            assert not short


def test_default_settings_split_of_corpus_is_stable(corpus_docs):
    counts = [len(split_document(d)) for d in corpus_docs]
    again = [len(split_document(d)) for d in corpus_docs]
    assert counts == again and all(c > 5 for c in counts)
    assert split_document(corpus_docs[0]) == split_document(corpus_docs[0])


# ------------------------------------------------------------------ tricky sentence boundaries


@pytest.mark.parametrize(
    "text,expected",
    [
        ("The U.S. Senate met. It voted.", ["The U.S. Senate met.", "It voted."]),
        ("The U.S. and Iran talked. Fine.", ["The U.S. and Iran talked.", "Fine."]),
        ("Russia bought 1,700 drones. It paid.", ["Russia bought 1,700 drones.", "It paid."]),
        ("It paid $145 million in cash. Then left.", ["It paid $145 million in cash.", "Then left."]),
        ("The deal was worth $1.5 billion in total. Then it ended.",
         ["The deal was worth $1.5 billion in total.", "Then it ended."]),
        ("Mr. Smith went home. He slept.", ["Mr. Smith went home.", "He slept."]),
        ("Dr. Jones and Gen. Petraeus met. They talked.", ["Dr. Jones and Gen. Petraeus met.", "They talked."]),
        ("Some weapons, e.g. this one, are old. Others are new.",
         ["Some weapons, e.g. this one, are old.", "Others are new."]),
        ("Old jets, i.e. the MiG-29, were sold. New ones too.", ["Old jets, i.e. the MiG-29, were sold.", "New ones too."]),
        ("It cost approx. five dollars. Yes.", ["It cost approx. five dollars.", "Yes."]),
        ("J. R. Smith wrote it. Later.", ["J. R. Smith wrote it.", "Later."]),
        ("The drones were sold to the U.S. The deal closed.", ["The drones were sold to the U.S.", "The deal closed."]),
        ("Jets were sold to the U.S. Army last year. Fine.", ["Jets were sold to the U.S. Army last year.", "Fine."]),
        ("Version 3.5 shipped. Good.", ["Version 3.5 shipped.", "Good."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("Really? Yes! Okay.", ["Really?", "Yes!", "Okay."]),
        ("Wait… What happened.", ["Wait…", "What happened."]),
        ("In 2022 it started. 2023 was worse.", ["In 2022 it started.", "2023 was worse."]),
    ],
)
def test_sentence_boundaries(text, expected):
    assert sentences(text) == expected
    check_spans(text, sentence_spans(text))


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Iran said no. Russia insisted.", ["Iran said no.", "Russia insisted."]),
        ("They sat. Then they left.", ["They sat.", "Then they left."]),
        ("We watched the sun. It was hot.", ["We watched the sun.", "It was hot."]),
        ("It is modern art. The museum agreed.", ["It is modern art.", "The museum agreed."]),
        ("See No. 5 for details. Next.", ["See No. 5 for details.", "Next."]),  # a real abbreviation
        ("Read p. 12 and Gen. Smith's note. Done.", ["Read p. 12 and Gen. Smith's note.", "Done."]),
    ],
)
def test_ordinary_words_that_double_as_abbreviations_end_sentences(text, expected):
    """"no", "sat", "sun", "art" are words first: a full stop after them ends the sentence
    unless they are used as an abbreviation ("No. 5", "p. 12", "Gen. Smith")."""
    assert sentences(text) == expected


def test_headings_and_bullets_are_their_own_sentences():
    text = ("# Drone Trade\n"
            "Executive Summary\n"
            "Iran sold drones to Russia. Russia paid in cash.\n"
            "- first bullet without a period\n"
            "* second bullet\n"
            "1. numbered item\n"
            "• round bullet\n"
            "## Next Section\n"
            "More text.")
    assert sentences(text) == [
        "# Drone Trade",
        "Executive Summary",
        "Iran sold drones to Russia.",
        "Russia paid in cash.",
        "- first bullet without a period",
        "* second bullet",
        "1. numbered item",
        "• round bullet",
        "## Next Section",
        "More text.",
    ]


def test_line_continuing_in_lower_case_joins():
    text = "Iran and Russia signed a deal that\ncovers drones and jets. Next one."
    assert sentences(text) == ["Iran and Russia signed a deal that\ncovers drones and jets.", "Next one."]


def test_paragraph_break_always_splits():
    assert sentences("A heading without stop\n\nand a lower-case paragraph.") == [
        "A heading without stop", "and a lower-case paragraph."]


HARD_WRAPPED = """Iran and Russia have expanded their military cooperation in recent years, with
Tehran supplying drones and Moscow providing fighter aircraft and air defence systems
to its partner. The two countries signed an agreement in 2023 that covers the joint
production of Shahed drones at a factory in the Alabuga special economic zone in
Tatarstan, according to officials. Analysts say the arrangement allows Russia to
Produce thousands of drones each year without relying on shipments from Iran.
Short line.
Another short line."""


def test_hard_wrapped_pdf_like_lines_join_into_sentences():
    found = sentences(HARD_WRAPPED)
    assert found == [
        "Iran and Russia have expanded their military cooperation in recent years, with\n"
        "Tehran supplying drones and Moscow providing fighter aircraft and air defence systems\nto its partner.",
        "The two countries signed an agreement in 2023 that covers the joint\n"
        "production of Shahed drones at a factory in the Alabuga special economic zone in\n"
        "Tatarstan, according to officials.",
        "Analysts say the arrangement allows Russia to\n"
        "Produce thousands of drones each year without relying on shipments from Iran.",
        "Short line.",
        "Another short line.",
    ]
    doc = doc_from_text(HARD_WRAPPED)
    check_passages(doc, split_document(doc, 2, 1), 2, 1)


def test_short_unwrapped_title_line_does_not_join_the_next():
    assert sentences("Executive Summary\nAt the beginning of the war.") == [
        "Executive Summary", "At the beginning of the war."]


def test_very_long_run_without_punctuation_is_capped_at_spaces():
    text = " ".join(f"word{i}" for i in range(800))  # ~6,000 characters, no full stop
    spans = sentence_spans(text)
    assert len(spans) > 1
    check_spans(text, spans)
    assert all(e - s <= MAX_SENTENCE_CHARS for s, e in spans)
    for s, e in spans:  # cut at spaces: no word is broken
        assert (s == 0 or text[s - 1] == " ") and (e == len(text) or text[e] == " ")
    doc = doc_from_text(text)
    passages = split_document(doc, 4, 1)
    check_passages(doc, passages, 4, 1)
    assert all(len(p.text) <= MAX_PASSAGE_CHARS for p in passages)


def test_long_run_without_any_space_is_still_capped():
    text = "x" * 2500 + ". Tail."
    spans = sentence_spans(text)
    check_spans(text, spans)
    assert all(e - s <= MAX_SENTENCE_CHARS for s, e in spans)
    assert sentences(text)[-1] == "Tail."


def test_passages_on_tricky_text_keep_exact_offsets_and_lines():
    text = ("Title Line\n\n"
            "The U.S. Senate met on Monday. It discussed 1,700 drones worth $145 million.\n"
            "Mr. Smith, e.g. the chair, spoke. He said $1.5 billion was spent.\n\n"
            "- a bullet\n- another bullet\n\n"
            "Final paragraph. Really the end!")
    doc = doc_from_text(text)
    for per, overlap in [(4, 1), (2, 1), (3, 2), (1, 0)]:
        passages = split_document(doc, per, overlap)
        check_passages(doc, passages, per, overlap)
        for p in passages[:-1]:  # these sentences are short: every passage but the last is full
            assert len(p.sentences) == per
        for a, b in zip(passages, passages[1:]):
            assert len(set(a.sentences) & set(b.sentences)) == overlap
    lines = {p.text.split("\n")[0]: p.line for p in split_document(doc, 1, 0)}
    assert "Title Line" not in lines  # a heading: the context of the passages under it, not one of them
    assert {p.heading for p in split_document(doc, 1, 0)} == {"Title Line"}
    assert lines["The U.S. Senate met on Monday."] == 3
    assert lines["Mr. Smith, e.g. the chair, spoke."] == 4
    assert lines["- a bullet"] == 6
    assert lines["Final paragraph."] == 9


def test_passage_size_cap_keeps_passages_under_max_chars():
    sentence = "Iran delivered another batch of drones to Russia under the long running agreement. "
    text = sentence * 60  # ~5,000 characters of short sentences
    doc = doc_from_text(text)
    passages = split_document(doc, 40, 5)
    check_passages(doc, passages, 40, 5)
    assert all(len(p.text) <= MAX_PASSAGE_CHARS for p in passages)
    assert len(passages) > 4


def test_single_sentence_and_whitespace_documents():
    doc = doc_from_text("  Only one sentence here  \n")
    (p,) = split_document(doc)
    assert p.text == "Only one sentence here" and p.start == 2 and p.line == 1
    assert split_document(doc_from_text(" \n\n \t")) == []


@pytest.mark.parametrize("per,overlap", [(0, 0), (-1, 0), (3, 3), (3, 4), (3, -1), (1, 1)])
def test_invalid_sizes_raise(per, overlap):
    with pytest.raises(ValueError):
        split_document(doc_from_text("One. Two. Three."), per, overlap)


def test_splitting_a_long_document_takes_linear_time(corpus_docs):
    """~75 KB of ordinary prose must split in well under a second (it is ~10 ms when linear).

    A quadratic scan (looking for the word before each full stop from the start of the
    text) takes seconds here, and minutes for a book-sized document.
    """
    import time

    text = "\n\n".join([corpus_docs[0].text] * 8)
    t0 = time.perf_counter()
    spans = sentence_spans(text)
    elapsed = time.perf_counter() - t0
    assert len(spans) == 8 * len(sentence_spans(corpus_docs[0].text))
    assert elapsed < 1.0, f"sentence_spans took {elapsed:.1f}s for {len(text):,} characters"
