"""A question typed in lower case or all in capitals names its names as the documents write them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from helpers_core import settings_for, template
from qa.bm25 import build_bm25
from qa.calibration import specific_terms
from qa.index import load_index
from qa.terms import tokenize
from qa.truecase import truecase


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return load_index(settings_for(template(tmp_path_factory)))


def tiny_index(*texts: str):
    """What truecase reads of an index: the BM25 postings and the passages' texts."""
    return SimpleNamespace(bm25=build_bm25([tokenize(t) for t in texts]),
                           passages=[SimpleNamespace(text=t) for t in texts])


@pytest.mark.integration
@pytest.mark.parametrize("typed,cased", [
    ("how many drones has china purchased from iran?", "how many drones has China purchased from Iran?"),
    ("HOW MANY DRONES HAS CHINA PURCHASED FROM IRAN?", "how many drones has China purchased from Iran?"),
    # "us" may be "tell us"; the documents write "Senate" only in "US Senate", which says nothing of it alone
    ("what did the us senate introduce?", "what did the us senate introduce?"),
    ("WHAT DID THE US SENATE INTRODUCE?", "what did the us senate introduce?"),
    ("what is tehran's military industry reliant on?", "what is Tehran's military industry reliant on?"),
    ("how do moscow-tehran ties work?", "how do Moscow-Tehran ties work?"),
    # as typed: a question with its capitals, a word no document holds (it may be a name or not)
    ("How many drones has China purchased from Iran?", "How many drones has China purchased from Iran?"),
    ("how many drones has zimbabwe purchased?", "how many drones has zimbabwe purchased?"),
])
def test_words_without_case_are_written_as_the_documents_write_names(index, typed, cased):
    assert truecase(typed, index) == cased


@pytest.mark.integration
def test_a_question_in_capitals_names_what_the_cased_question_names(index):
    cased = "How many drones has China purchased from Iran since 2022?"
    assert specific_terms(truecase(cased.upper(), index)) == specific_terms(cased) == ["China", "Iran", "2022"]
    assert specific_terms(truecase(cased.lower(), index)) == ["China", "Iran", "2022"]
    assert specific_terms(cased.upper()) != specific_terms(cased)  # why: "MANY" and "DRONES" would be names


@pytest.mark.unit
def test_only_running_text_counts_and_a_name_must_be_capitalised_there_nearly_always():
    index = tiny_index(
        "Exports fell. Drones were sold to Kazan by Alabuga, and Alabuga grew.",
        "Drones matter. The drones of Alabuga flew; drones are cheap.",
        "Sanctions bite. The Sanctions Act passed, and sanctions rose.",
        "Kazan is big. New York City and Kansas City grew.",
        "Mexico City is large.",
    )
    assert truecase("what does alabuga make?", index) == "what does Alabuga make?"
    # "Drones" twice at a sentence's start, "drones" in running text: a common word
    assert truecase("who sold drones?", index) == "who sold drones?"
    # "Sanctions" once in a law's name, "sanctions" once in running text: under the share a name needs
    assert truecase("what about sanctions?", index) == "what about sanctions?"
    # "Kazan" once in running text (its other time starts a sentence): too seldom to tell
    assert truecase("where is kazan?", index) == "where is kazan?"
    assert truecase("WHERE IS KAZAN?", index) == "where is kazan?"
    # "City" only beside another capital: part of longer names, which say nothing of the word alone
    assert truecase("which city grew?", index) == "which city grew?"
