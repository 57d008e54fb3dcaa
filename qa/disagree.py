"""When the answers' documents disagree: the top answer and an answer from another document
that gives a different number, date or name for the same question.

Only the answers given (all at or above the abstention threshold) are compared, so a
disagreement is between two answers the system would stand behind, each with its citation.
Two spans are compared when they are of the same kind:

* **date**: a year (1000–2099) or a month name;
* **number**: digits or a number word ("hundreds", "a dozen"); values are compared, so
  "1,700" and "approximately 1,700" agree and "31 percent" agrees with "31";
* **name**: a capitalised word; names agree when one holds the other ("Su-35" and "Su-35 jets").

Free text ("the lack of parts", "to repair them") is never a disagreement: two phrasings of
one reason differ in words without contradicting each other.
"""

from __future__ import annotations

import re

from qa.datatypes import Answer, Disagreement
from qa.terms import normalize_answer

_MONTHS = ("january february march april may june july august september october november december "
           "jan feb mar apr jun jul aug sep sept oct nov dec").split()
_YEAR = re.compile(r"(?<![\d,.])(1\d{3}|20\d{2})(?![\d,])")
_MONTH = re.compile(r"\b(" + "|".join(_MONTHS) + r")\b\.?", re.I)
# Digits joined to letters or a hyphen are a code ("Su-35", "S-400", "F16"), which is a name.
_NUMBER = re.compile(r"(?<![\w.-])(?:\d+(?:,\d{3})*(?:\.\d+)?)(?![\w-])")
_SCALE = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_SCALE_AFTER = re.compile(r"\s*(thousand|million|billion|trillion)\b", re.I)
_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "hundred": 100, "dozen": 12,
}
# Amounts without a value: each is its own value, unlike any number ("hundreds" against "1,700").
_VAGUE = ("dozens", "scores", "hundreds", "thousands", "millions", "billions", "several", "many", "few", "numerous")
_NUMBER_WORD = re.compile(r"\b(" + "|".join([*_WORDS, *_VAGUE]) + r")\b", re.I)
_CAPITAL = re.compile(r"\b[A-Z][\w’'-]*")


def kind(span: str) -> str | None:
    """"date", "number", "name" or None (free text)."""
    if _YEAR.search(span) or _MONTH.search(span):
        return "date"
    if _NUMBER.search(span) or _NUMBER_WORD.search(span):
        return "number"
    if _CAPITAL.search(span):
        return "name"
    return None


def numbers(span: str) -> set:
    """The values a number span states: floats (scaled by a following "million"…), and vague
    amounts as their word."""
    values: set = set()
    for m in _NUMBER.finditer(span):
        value = float(m.group().replace(",", ""))
        scale = _SCALE_AFTER.match(span, m.end())
        values.add(value * _SCALE[scale.group(1).lower()] if scale else value)
    for m in _NUMBER_WORD.finditer(span):
        word = m.group(1).lower()
        values.add(float(_WORDS[word]) if word in _WORDS else word)
    return values


def differ(a: str, b: str, what: str) -> bool:
    """Whether spans ``a`` and ``b``, both of kind ``what``, state different things."""
    if what == "number":
        va, vb = numbers(a), numbers(b)
        return bool(va and vb) and not (va & vb)
    na, nb = normalize_answer(a), normalize_answer(b)
    if not na or not nb:
        return False
    wa, wb = set(na.split()), set(nb.split())
    return not (wa <= wb or wb <= wa)


def disagreement(answers: list[Answer]) -> Disagreement | None:
    """The top answer against the best answer of each other document that states a different
    number, date or name; None when every document agrees, or only one document answers."""
    if len(answers) < 2 or not answers[0].span:
        return None
    top = answers[0]
    what = kind(top.span)
    if what is None:
        return None
    others: list[Answer] = []
    for a in answers[1:]:
        if (a.doc == top.doc or any(o.doc == a.doc for o in others) or not a.span or kind(a.span) != what
                or not differ(top.span, a.span, what)):
            continue
        others.append(a)
    return Disagreement(what, [top, *others]) if others else None
