"""A web request's choices (mode, k, threshold, history), checked: QAError saying what is wrong with a bad one.

The page's sliders send numbers, scripts calling ``/ask`` send anything JSON can hold.
"""

from __future__ import annotations

import math

from qa.config import MAX_QUESTION_CHARS, Settings, bounds, check_choice
from qa.datatypes import QAError

MAX_K = 20
MAX_HISTORY = 200  # earlier questions a request may send; a follow-up is read with the last one


def request_settings(settings: Settings, mode: str | None = None, k: int | float | None = None,
                     threshold: float | None = None) -> Settings:
    """``settings`` with one request's choices applied; QAError saying what is wrong with a bad one.

    None (and an empty mode) keeps the server's setting; k is a whole number from its setting's
    lowest to MAX_K and the threshold a number in its setting's range (numbers, or text holding one).
    """
    if mode is not None and mode != "":
        check_choice("mode", mode, what="mode", shown=shown)
    return settings.replace(
        mode=mode or None,
        k=_whole_number(k, "the number of passages k", bounds("k")[0], MAX_K),
        threshold=_number_between(threshold, "the threshold", *bounds("threshold")),
    )


def check_question_type(question) -> None:
    """QAError unless the question is text (or missing, which the pipeline calls empty)."""
    if question is not None and not isinstance(question, str):
        raise QAError(f"the question must be text, not {shown(question)}")


def check_history(history) -> list[str]:
    """The earlier questions of an API request (a list of strings, oldest first); QAError when malformed."""
    if history is None:
        return []
    if not isinstance(history, (list, tuple)):
        raise QAError(f"the history must be a list of earlier questions (strings), not {shown(history)}")
    if len(history) > MAX_HISTORY:
        raise QAError(f"the history is too long ({len(history):,} questions; at most {MAX_HISTORY}: "
                      "only the last ones matter)")
    for i, item in enumerate(history, 1):
        if not isinstance(item, str):
            raise QAError(f"the history must be a list of earlier questions (strings), "
                          f"but item {i} is {shown(item)}")
        if len(item) > MAX_QUESTION_CHARS:
            raise QAError(f"item {i} of the history is too long ({len(item):,} characters; "
                          f"at most {MAX_QUESTION_CHARS:,})")
    return list(history)


def _whole_number(value, what: str, low: int, high: int) -> int | None:
    number = _number(value)
    if number is None:
        return None
    if not (math.isfinite(number) and number == int(number) and low <= number <= high):
        raise QAError(f"{what} must be a whole number from {low} to {high}, not {shown(value)}")
    return int(number)


def _number_between(value, what: str, low: float, high: float) -> float | None:
    number = _number(value)
    if number is None:
        return None
    if not (math.isfinite(number) and low <= number <= high):
        raise QAError(f"{what} must be a number from {low:g} to {high:g}, not {shown(value)}")
    return float(number)


def _number(value) -> float | None:
    """A request's number: None when not given, NaN when it is not a number at all."""
    if value is None:
        return None
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return math.nan
    return math.nan


def shown(value) -> str:
    """A request's bad value, short, for an error message."""
    if value is None or isinstance(value, (str, int, float)):
        text = repr(value)
        return text if len(text) <= 40 else text[:39] + "…"
    return f"a {type(value).__name__}"
