"""The reader: windows, span post-processing, the no-answer path, the shipped model and its calibration."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from helpers_core import DOC_A, DOC_B
from qa.answer import answer_sentences, first_read, reader_answers, reader_candidates
from qa.calibration import (FEATURES, ISOTONIC_CLIP, ISOTONIC_MIN, Calibration, calibration_for, candidate_features,
                            fit_isotonic, fit_logistic, fit_platt, load_calibration, missing_terms, reliability,
                            specific_terms)
from qa.config import Settings
from qa.load import file_sha256
from qa.present import lacks_note
from qa.reader import DEFAULT_DIR, MODEL_FILE, expected_sha256, load_reader
from qa.reader_windows import SpanScore, WindowMaker, batch_arrays, best_span, best_spans, token_span
from qa.datatypes import Hit, Passage, QAError


MODEL_DIR = Settings().model_path


@pytest.fixture(scope="module")
def maker() -> WindowMaker:
    return WindowMaker(MODEL_DIR)


@pytest.fixture(scope="module")
def shipped():
    return load_reader(None, MODEL_DIR)


def passage(doc: str, start: int, text: str, ordinal: int = 0) -> Passage:
    """A passage of ``text`` at document offset ``start``, one sentence per '. '."""
    sentences, pos = [], 0
    for part in text.split(". "):
        end = pos + len(part) + (2 if pos + len(part) < len(text) else 0)
        sentences.append((start + pos, start + min(end, len(text))))
        pos = end
    return Passage(doc, ordinal, start, start + len(text), 1, text, tuple(sentences))


# ---------------------------------------------------------------- windows and spans


@pytest.mark.unit
def test_windows_cover_a_long_context_with_overlap(maker):
    context = " ".join(f"word{i}" for i in range(600))
    windows = maker.make_windows("Which word comes last?", [context])
    assert len(windows) > 1
    assert all(len(w.ids) <= maker.window for w in windows)
    for a, b in zip(windows, windows[1:]):
        assert b.offsets[0][0] < a.offsets[-1][1]  # neighbours overlap
    assert windows[0].offsets[0][0] == 0 and windows[-1].offsets[-1][1] == len(context)


@pytest.mark.unit
def test_token_span_maps_back_to_the_exact_text(maker):
    context = "Since 2022, Russia purchased approximately 1,700 drones from Iran's Shahed line."
    w = maker.make_windows("How many drones?", [context])[0]
    start = context.index("1,700")
    s, e = token_span(w, start, start + len("1,700"))
    assert context[w.offsets[s - w.first][0] : w.offsets[e - w.first][1]] == "1,700"
    assert token_span(w, 0, len(context) + 5) is None  # not wholly inside the window


@pytest.mark.unit
def test_best_spans_stay_inside_one_context_and_map_to_exact_text(maker):
    contexts = ["Russia bought 1,700 drones.", "Iran sold them through the port of Amirabad."]
    windows = maker.make_windows("How many drones did Russia buy?", contexts)
    arrays = batch_arrays(windows)
    start = np.full(arrays["input_ids"].shape, -5.0)
    end = np.full(arrays["input_ids"].shape, -5.0)
    # The best start is at the end of the first context and the best end in the second:
    # a span across the two must never come out.
    start[0, windows[0].first + windows[0].n_context - 1] = 9.0
    end[1, windows[1].first + 1] = 9.0
    start[0, windows[0].first + 2] = 4.0
    end[0, windows[0].first + 5] = 4.0  # russia bought 1 , 700 drones
    spans = best_spans(windows, start, end)
    assert spans
    for sp in spans:
        text = contexts[sp.item][sp.start : sp.end]
        assert text and text == text.strip()
        assert sp.end <= len(contexts[sp.item])
    best = spans[0]
    assert best.item == 0 and contexts[0][best.start : best.end] == "1,700 drones"


@pytest.mark.unit
def test_a_context_read_alone_answers_with_the_span_most_above_its_windows_no_answer():
    # a long context is read in windows: one without the answer can still score its best span high
    loud = SpanScore(item=0, start=0, end=5, score=9.0, null=8.5, window=0)
    sure = SpanScore(item=0, start=40, end=45, score=7.0, null=1.0, window=1)
    assert best_span([loud, sure]) is sure
    assert best_span([loud]) is loud and best_span([]) is None


@pytest.mark.unit
def test_best_spans_never_cross_a_paragraph_break(maker):
    # Seen on the default corpus: "five years.\n\nThere is a mutual supply…" came out as a span.
    context = "Exports dropped by 31 percent over five years.\n \nThere is a mutual supply of weapons."
    windows = maker.make_windows("What is there?", [context])
    w = windows[0]
    start = np.full((1, len(w.ids)), -5.0)
    end = np.full((1, len(w.ids)), -5.0)
    a, _ = token_span(w, context.index("five"), context.index("five") + 4)
    _, b = token_span(w, context.index("There"), context.index("There") + 5)
    start[0, a], end[0, b] = 9.0, 9.0  # the best pair spans the break…
    _, b2 = token_span(w, context.index("years"), context.index("years") + 5)
    end[0, b2] = 3.0  # …the next best ends before it
    crossing = best_spans(windows, start, end)
    assert any("\n" in context[sp.start : sp.end] for sp in crossing)  # without the texts nothing stops it
    spans = best_spans(windows, start, end, texts=[context])
    assert spans and context[spans[0].start : spans[0].end] == "five years"
    assert all("\n" not in context[sp.start : sp.end] for sp in spans)
    assert len(spans) == 3  # spans skipped for crossing do not use up the window's share


@pytest.mark.unit
def test_spans_end_after_they_start_and_respect_the_length_cap(maker):
    context = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    windows = maker.make_windows("Which letter?", [context])
    rng = np.random.default_rng(0)
    s = rng.normal(size=(1, len(windows[0].ids)))
    e = rng.normal(size=(1, len(windows[0].ids)))
    spans = best_spans(windows, s, e, max_tokens=3, per_window=20)
    for sp in spans:
        assert sp.start < sp.end
        assert len(maker.tokenizer.encode(context[sp.start : sp.end], add_special_tokens=False).ids) <= 3


@pytest.mark.unit
def test_answer_sentences_are_the_ones_holding_the_span():
    p = passage("a.txt", 100, "First fact here. Russia bought 1,700 drones. Last one.")
    s = p.text.index("1,700") + 100
    a, b = answer_sentences(p, s, s + 5)
    assert p.text[a - 100 : b - 100].strip() == "Russia bought 1,700 drones."


# ---------------------------------------------------------------- answering and abstaining


class FixedReader:
    """A reader whose logits are given: the real post-processing and answer path run on them."""

    def __init__(self, maker, favour: str | None):
        self.maker, self.favour = maker, favour

    def read(self, question, texts, *, per_window=3):
        windows = self.maker.make_windows(question, texts)
        arrays = batch_arrays(windows)
        s = np.full(arrays["input_ids"].shape, -4.0)
        e = np.full(arrays["input_ids"].shape, -4.0)
        s[:, 0] = e[:, 0] = 6.0  # "no answer" everywhere…
        if self.favour:  # …unless told which words to favour
            for i, w in enumerate(windows):
                text = texts[w.item]
                at = text.find(self.favour)
                if at >= 0:
                    a, b = token_span(w, at, at + len(self.favour))
                    s[i, 0] = e[i, 0] = -6.0
                    s[i, a], e[i, b] = 8.0, 8.0
        return best_spans(windows, s, e, per_window=per_window, texts=texts), 1.0


CAL = Calibration("x", "m", ranker=[0.0, 0.1, 0.0, 0.0, -4.0, 0.0], platt=(1.0, 0.0), threshold=0.5)


def hits_of(*texts: str, docs: tuple[str, ...] = ()) -> list[Hit]:
    """Hits in rank order, of DOC_A unless ``docs`` names each one's document."""
    out, pos = [], 0
    for r, t in enumerate(texts):
        out.append(Hit(r, passage(docs[r] if docs else DOC_A, pos, t, r), 1.0, r))
        pos += len(t) + 2
    return out


@pytest.mark.unit
def test_answers_quote_the_passage_and_point_at_the_span(maker):
    hits = hits_of("Nothing here. Really nothing.", "Since 2022, Russia purchased approximately 1,700 drones. More.")
    answers, timings = reader_answers(FixedReader(maker, "1,700"), CAL, "How many drones?", hits,
                                      threshold=0.5, max_answers=3)
    assert len(answers) == 1 and timings["reader"] == 1.0
    a = answers[0]
    p = hits[1].passage
    assert a.citation == 2 and a.span == "1,700" and a.doc == DOC_A
    assert p.text[a.span_start - p.start : a.span_end - p.start] == "1,700"
    assert p.text[a.start - p.start : a.end - p.start] == a.text
    assert a.text == "Since 2022, Russia purchased approximately 1,700 drones. "
    assert a.score > 0.9 and a.label == "high"


@pytest.mark.unit
def test_no_answer_when_the_reader_says_no_answer(maker):
    hits = hits_of("Nothing here. Really nothing.", "Another unrelated passage.")
    answers, _ = reader_answers(FixedReader(maker, None), CAL, "Who is the president?", hits,
                                threshold=0.5, max_answers=3)
    assert answers == []


@pytest.mark.unit
def test_a_missing_name_lowers_the_confidence(maker):
    hits = hits_of("Since 2022, Russia purchased approximately 1,700 drones. More.")
    asked = {}
    for q in ("How many drones has Russia purchased?", "How many drones has China purchased?"):
        answers, _ = reader_answers(FixedReader(maker, "1,700"), CAL, q, hits, threshold=0.0, max_answers=1)
        asked[q] = answers[0]
    china, russia = asked["How many drones has China purchased?"], asked["How many drones has Russia purchased?"]
    assert china.score < russia.score - 0.5 and china.label == "low"
    assert china.lacks == ["China"] and russia.lacks == []
    assert lacks_note(china) == "[1] does not mention “China”" and lacks_note(russia) == ""
    assert lacks_note(replace(china, lacks=["China", "Su-57", "2019"], citation=2)) == \
        "[2] does not mention “China”, “Su-57” or “2019”"


@pytest.mark.unit
def test_a_name_no_document_mentions_keeps_the_answer_below_the_threshold(maker):
    hits = hits_of("Since 2022, Russia purchased approximately 1,700 drones. More.")
    reader = FixedReader(maker, "1,700")
    plain, _ = reader_candidates(reader, CAL, "How many drones has Russia purchased?", hits)
    capped, _ = reader_candidates(reader, CAL, "How many drones has Russia purchased?", hits, unmentioned=True)
    assert plain[0].probability > 0.9 and capped[0].probability == pytest.approx(CAL.threshold - 0.01)
    assert CAL.probability(5.0, unmentioned=True) < CAL.threshold <= CAL.probability(5.0)
    assert CAL.probability(-5.0, unmentioned=True) == CAL.probability(-5.0)  # a low one stays as it is


class CountingReader(FixedReader):
    """A FixedReader that records the passages each call read."""

    def __init__(self, maker, favour):
        super().__init__(maker, favour)
        self.calls: list[list[str]] = []

    def read(self, question, texts, *, per_window=3):
        self.calls.append(list(texts))
        return super().read(question, texts, per_window=per_window)


EARLY = ("Since 2022, Russia purchased approximately 1,700 drones. More.", "Nothing here. Really nothing.",
         "Elsewhere: Russia purchased 1,700 drones from Iran, a report says.")


@pytest.mark.unit
def test_early_exit_reads_the_top_passage_alone_when_it_is_confident(maker):
    hits = hits_of(*EARLY)
    question = "How many drones has Russia purchased?"
    whole, _ = reader_candidates(FixedReader(maker, "1,700"), CAL, question, hits)
    reader = CountingReader(maker, "1,700")
    early, _ = reader_candidates(reader, CAL, question, hits, early_exit=0.9)
    assert reader.calls == [[EARLY[0]]]  # one window: the others were never read
    assert early[0].probability > 0.9
    assert (early[0].hit, early[0].start, early[0].end) == (whole[0].hit, whole[0].start, whole[0].end)
    off = CountingReader(maker, "1,700")
    again, _ = reader_candidates(off, CAL, question, hits)
    assert [(c.hit, c.start, c.rank_logit) for c in again] == [(c.hit, c.start, c.rank_logit) for c in whole]
    assert off.calls == [list(EARLY)]  # off: one read of all three


@pytest.mark.unit
def test_early_exit_reads_the_rest_when_the_top_passage_is_not_confident(maker):
    hits = hits_of(*EARLY[1:], EARLY[0])  # nothing to answer from in the top passage
    question = "How many drones has Russia purchased?"
    whole, ms_whole = reader_candidates(FixedReader(maker, "1,700"), CAL, question, hits)
    reader = CountingReader(maker, "1,700")
    early, ms = reader_candidates(reader, CAL, question, hits, early_exit=0.9)
    assert reader.calls == [[EARLY[1]], [EARLY[2], EARLY[0]]] and ms == 2.0
    assert [(c.hit, c.start, c.end, c.rank_logit) for c in early] == \
        [(c.hit, c.start, c.end, c.rank_logit) for c in whole]  # the same ranking as one read of all three
    assert {early[0].hit, early[1].hit} == {1, 2}


@pytest.mark.unit
def test_early_exit_first_reads_the_best_passage_of_every_document(maker):
    hits = hits_of(*EARLY, docs=(DOC_A, DOC_A, DOC_B))
    question = "How many drones has Russia purchased?"
    reader = CountingReader(maker, "1,700")
    early, _ = reader_candidates(reader, CAL, question, hits, early_exit=0.9)
    # the third hit is the other document's best: read with the top one, so both documents' answers
    # are there to compare; the second hit (the top one's document again) is skipped
    assert reader.calls == [[EARLY[0], EARLY[2]]]
    assert {c.hit for c in early if c.probability > 0.9} == {0, 2}
    assert first_read(hits) == [0, 2] and first_read(hits_of(*EARLY)) == [0]


@pytest.mark.unit
def test_specific_and_missing_terms():
    q = "How many drones has China purchased from Iran since 2019, and what about the Su-57?"
    assert specific_terms(q) == ["China", "Iran", "2019", "Su-57"]
    text = "Since 2022, Russia purchased 1,700 drones from Iranian makers; the Su-57 was not offered."
    assert missing_terms(specific_terms(q), text) == ["China", "2019"]
    assert missing_terms(["China"], "Chinese buyers") == []  # same stem
    # accents do not count, either way; a letter without a decomposition does
    assert missing_terms(["Zurich", "Celoron", "Bogotá", "Lodz"], "Zürich, Céloron and Bogota; Łódź") == ["Lodz"]
    # a code or number as the index's tokenizer reads it; another number is still missing
    assert missing_terms(["1700", "S400", "Su35", "1950", "145", "1701"],
                         "About 1,700 S-400 and Su-35 units since the 1950’s, for $145 million.") == ["1701"]
    assert missing_terms(["Iranian", "Russia", "Beijing"], "Iran ships drones to the Russian port") == ["Beijing"]
    # a capital stands for its country and the other way round (qa.capitals), by stem or as a phrase
    assert missing_terms(["Moscow", "Tehran", "Iraq"], "Russian and Iranian officials met in Baghdad") == []
    assert missing_terms(["Washington"], "the United States said") == []
    assert missing_terms(["Washington", "Paris"], "a United Statesman in Lyon") == ["Washington", "Paris"]


# ---------------------------------------------------------------- calibration


@pytest.mark.unit
def test_logistic_fit_recovers_a_known_rule():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 2))
    y = rng.random(4000) < 1 / (1 + np.exp(-(2.0 * x[:, 0] - 1.0 * x[:, 1] + 0.5)))
    w = fit_logistic(x, y, l2=1e-6)
    assert np.allclose(w, [2.0, -1.0, 0.5], atol=0.2)
    a, b = fit_platt(x[:, 0] * 2 - x[:, 1], y)
    assert abs(a - 1.0) < 0.15 and abs(b - 0.5) < 0.15


@pytest.mark.unit
def test_isotonic_map_pools_violators_and_keeps_order():
    knots = fit_isotonic(np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]), np.array([0, 1, 0, 1, 1, 1]))
    # 1.0 (right) and 2.0 (wrong) violate the order: pooled into one block at 1.5 with half right
    assert knots == [(0.0, ISOTONIC_CLIP), (1.5, 0.5), (4.0, 1 - ISOTONIC_CLIP)]
    ties = fit_isotonic(np.array([1.0, 1.0, 2.0]), np.array([1, 0, 1]))
    assert [x for x, _ in ties] == [1.0, 2.0]  # equal scores share one knot
    cal = Calibration("x", "m", ranker=[0.0] * 6, platt=(1.0, 0.0), threshold=0.3, isotonic=knots)
    assert cal.probability(-9.0) == ISOTONIC_CLIP and cal.probability(9.0) == 1 - ISOTONIC_CLIP
    assert cal.probability(0.75) == pytest.approx((ISOTONIC_CLIP + 0.5) / 2)  # between knots
    assert cal.probability(9.0, lacks=True) < cal.medium  # the caps still apply


@pytest.mark.unit
@pytest.mark.parametrize("n, isotonic", [(ISOTONIC_MIN - 1, False), (ISOTONIC_MIN, True)])
def test_the_isotonic_map_needs_enough_questions(n, isotonic):
    from qa.eval.calibrate import fit

    cal = fit(synthetic_rows(np.random.default_rng(3), n), "r", "m", "test")
    assert bool(cal.isotonic) is isotonic
    probs = [cal.probability(x) for x in np.linspace(-10, 10, 41)]
    assert probs == sorted(probs) and 0.0 < probs[0] < 0.5 < probs[-1] < 1.0


def synthetic_rows(rng, n: int, cut: bool = False) -> list:
    """Calibration rows of ``n`` questions: asked (a better score is more often right), asked with
    the answer left out and, with ``cut``, with only the answer cut out (never right)."""
    from qa.eval.calibrate import ASKED, CUT, LEFT_OUT

    rows = []
    for _ in range(n):
        score = rng.normal(size=2)
        feats = candidate_features(score * 3, np.zeros(2), np.array([0, 1]), np.zeros(2))
        rows.append((feats, score + rng.normal(size=2) > 0.3, ASKED))
        rows.append((feats - 2.0, np.array([False, False]), LEFT_OUT))
        if cut:
            rows.append((feats - 1.0, np.array([False, False]), CUT))
    return rows


@pytest.mark.unit
def test_rows_asked_with_the_answer_cut_out_are_measured_not_fitted():
    from qa.eval.calibrate import CUT, fit, leave_one_article_out

    rows = synthetic_rows(np.random.default_rng(5), 60, cut=True)
    assert fit(rows, "r", "m", "t") == fit([r for r in rows if r[2] != CUT], "r", "m", "t")
    per_article = {"A": rows[:90], "B": rows[90:]}  # 3 rows a question
    held = leave_one_article_out(per_article, "r", "m")
    assert held["cut"] == 60 and held.keys() >= {"answered_right", "top_right", "ece", "abstains_left_out"}
    for key in ("answered_right", "top_right", "ece", "abstains_left_out", "abstains_cut"):
        assert 0.0 <= held[key] <= 1.0
    # left-out rows score lowest, cut rows in between: the threshold catches more of the former
    assert held["abstains_left_out"] >= held["abstains_cut"] > 0.0
    assert held["answered_right"] <= held["top_right"]


@pytest.mark.unit
def test_answer_cut_removes_the_answer_from_the_passage_that_holds_it():
    from qa.datatypes import Question
    from qa.eval.calibrate import answer_cut

    gold = "The fleet of 1588 was led by Admiral Howard. It returned in autumn."
    other = "The crown paid for the ships."
    hits = [Hit(0, passage("d2", 0, other), 0.9, 0), Hit(1, passage("d1", 100, gold), 0.8, 1)]
    start = 100 + gold.index("Admiral Howard")
    q = Question("q", "Who led the fleet?", ["Admiral Howard", "Howard"], doc="d1", spans=[(start, start + 14)])
    cut = answer_cut(hits, q)
    assert cut[0] is hits[0] and cut[1].passage.text == "The fleet of 1588 was led. It returned in autumn."
    assert cut[1].passage.start == 100 and hits[1].passage.text == gold  # the hit itself is untouched
    assert answer_cut(hits[:1], q) is None  # no hit holds the spans
    named = Hit(2, passage("d3", 0, "Howard was at sea."), 0.7, 2)
    assert answer_cut([*hits, named], q) is None  # another hit still answers it
    assert answer_cut(hits, Question("q", "Who?", ["Admiral Howard"], doc="d1")) is None  # spans unknown


@pytest.mark.unit
def test_a_saved_isotonic_calibration_loads_back(tmp_path):
    cal = Calibration("x", "m", ranker=[0.0] * 6, platt=(1.0, 0.0), isotonic=[(-1.0, 0.1), (2.0, 0.8)])
    cal.save(tmp_path / "calibration.json")
    back = load_calibration(tmp_path / "calibration.json")
    assert back.isotonic == cal.isotonic and back.probability(0.5) == pytest.approx(0.45)


@pytest.mark.unit
def test_reliability_and_ece():
    rel = reliability([0.9, 0.9, 0.9, 0.9, 0.1, 0.1], [True, True, True, False, False, False])
    assert rel["n"] == 6
    assert rel["ece"] == pytest.approx(4 / 6 * 0.15 + 2 / 6 * 0.1)
    assert [b["n"] for b in rel["bins"]] == [2, 4]


@pytest.mark.unit
def test_features_have_one_row_per_candidate():
    f = candidate_features(np.array([3.0, 1.0]), np.array([0.0, 2.0]), np.array([0, 2]), np.array([0, 1]))
    assert f.shape == (2, len(FEATURES))
    assert f[0, 1] == 3.0 and f[1, 1] == -1.0 and f[1, 3] == pytest.approx(1 / 3) and f[1, 4] == 1.0
    assert np.exp(f[:, 2]).sum() == pytest.approx(1.0)


@pytest.mark.parametrize("content", ["{", "[1, 2]", '{"format": 1, "reader": "x"}',
                                     '{"format": 1, "reader": "x", "model": "m", "ranker": [1], "platt": [1, 0], '
                                     '"threshold": 0.3, "high": 0.8, "medium": 0.5}',
                                     '{"format": 1, "reader": "x", "model": "m", "ranker": [0,0,0,0,0,0], '
                                     '"platt": [1, 0], "threshold": 5, "high": 0.8, "medium": 0.5}',
                                     '{"format": 1, "reader": "x", "model": "m", "ranker": [0,0,0,0,0,0], '
                                     '"platt": [1, 0], "threshold": 0.3, "high": 0.8, "medium": 0.5, '
                                     '"isotonic": [[2, 0.5], [1, 0.6]]}'])
@pytest.mark.unit
def test_a_bad_calibration_file_is_one_clear_error(tmp_path, content):
    path = tmp_path / "calibration.json"
    path.write_text(content)
    with pytest.raises(QAError, match="calibration.json"):
        load_calibration(path)


@pytest.mark.unit
def test_a_calibration_for_another_reader_is_not_used(tmp_path):
    ours = Calibration("reader-a", "model", ranker=[0.0] * 6, platt=(1.0, 0.0), threshold=0.4)
    other = Calibration("reader-b", "model", ranker=[0.0] * 6, platt=(1.0, 0.0), threshold=0.9)
    (tmp_path / "index").mkdir()
    (tmp_path / "reader").mkdir()
    other.save(tmp_path / "index" / "calibration.json")
    ours.save(tmp_path / "reader" / "calibration.json")
    notes = []
    got = calibration_for(tmp_path / "index", tmp_path / "reader", "reader-a", "model", log=notes.append)
    assert got.threshold == 0.4 and notes and "another reader" in notes[0]
    with pytest.raises(QAError, match="no calibration"):
        calibration_for(tmp_path / "index", tmp_path / "reader", "reader-c", "model")


@pytest.mark.unit
def test_an_index_calibration_of_an_older_format_gives_way_to_the_shipped_one(tmp_path):
    (tmp_path / "index").mkdir()
    (tmp_path / "reader").mkdir()
    old = {"format": 0, "reader": "reader-a", "model": "model", "ranker": [0.0] * 4, "platt": [1, 0],
           "threshold": 0.3, "high": 0.8, "medium": 0.5}
    (tmp_path / "index" / "calibration.json").write_text(json.dumps(old))
    Calibration("reader-a", "model", ranker=[0.0] * 6, platt=(1.0, 0.0), threshold=0.4).save(
        tmp_path / "reader" / "calibration.json")
    notes = []
    got = calibration_for(tmp_path / "index", tmp_path / "reader", "reader-a", "model", log=notes.append)
    assert got.threshold == 0.4 and "qa eval --calibrate" in notes[0]
    with pytest.raises(QAError, match="format 0"):
        load_calibration(tmp_path / "index" / "calibration.json")


# ---------------------------------------------------------------- the shipped model


@pytest.mark.integration
def test_shipped_model_matches_its_checksum():
    assert (DEFAULT_DIR / MODEL_FILE).stat().st_size < 50 * 2**20
    assert file_sha256(DEFAULT_DIR / MODEL_FILE) == expected_sha256(DEFAULT_DIR)
    card = (DEFAULT_DIR / "MODEL_CARD.md").read_text()
    assert expected_sha256(DEFAULT_DIR) in card
    cal = load_calibration(DEFAULT_DIR / "calibration.json")
    assert cal.reader == expected_sha256(DEFAULT_DIR)


@pytest.mark.integration
def test_a_damaged_model_is_refused(tmp_path):
    copy = tmp_path / "reader"
    shutil.copytree(DEFAULT_DIR, copy)
    with open(copy / MODEL_FILE, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(QAError, match="does not match its checksum"):
        load_reader(copy, MODEL_DIR)
    (copy / "SHA256SUMS").unlink()
    with pytest.raises(QAError, match="SHA256SUMS"):
        load_reader(copy, MODEL_DIR)


@pytest.mark.integration
def test_onnx_reader_agrees_with_the_torch_model_it_was_exported_from(shipped):
    """reference.json holds torch's start/end argmax on a fixed sample, recorded at export."""
    ref = json.loads((DEFAULT_DIR / "reference.json").read_text())
    from qa.reader_windows import Window

    windows = [Window(0, w["ids"], w["first"], []) for w in ref["windows"]]
    s, e = shipped.logits(windows)
    starts = [int(np.argmax(s[i, : len(w.ids)])) for i, w in enumerate(windows)]
    ends = [int(np.argmax(e[i, : len(w.ids)])) for i, w in enumerate(windows)]
    agree = np.mean([a == b for a, b in zip(starts + ends, ref["start_argmax"] + ref["end_argmax"])])
    assert agree >= ref["min_agreement"], agree


@pytest.mark.integration
def test_shipped_reader_finds_the_span_in_a_plain_sentence(shipped):
    context = ("Iran-Russia drone trade. Since 2022, Russia purchased approximately 1,700 drones capable of "
               "reconnaissance and suicide bomb missions.")
    spans, ms = shipped.read("How many drones has Russia purchased?", [context])
    assert "1,700" in context[spans[0].start : spans[0].end]
    assert ms > 0
