"""The lexical tokenizer shared by BM25 indexing, BM25 queries and answer scoring.

Pipeline: NFKC + casefold the text, unify apostrophes and hyphens, find raw tokens
with one precompiled regex, then turn each distinct raw token into terms once
(memoised): thousands separators dropped ("1,700" -> "1700"), dotted acronyms
joined ("U.S." -> "us"), "%" -> "percent", possessives and clitics removed
("Iran's" -> "iran"), Latin accents folded ("Zürich" -> "zurich"), stop words
dropped, and a light inflectional stemmer applied to purely alphabetic words.

A hyphenated token yields its joined compound plus its parts, so "Su-35", "su35"
and "Su 35" all meet: "Su-35" -> ["su35", "su", "35"]. Currency signs are not
part of tokens: "$145 million" -> ["145", "million"].
"""

from __future__ import annotations

import re
import string
import unicodedata
from itertools import chain

__all__ = ["STOP_WORDS", "fold_accents", "normalize_answer", "tokenize"]

# English function words. "us" is deliberately absent (it is also "US", the country,
# once case is folded) and so is "may" (the month). Contractions appear without their
# apostrophe because clitics are stripped first ("it's" -> "it") and "n't" is not.
STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above across after again against all along also although am among an and
    another any are around as at be because been before behind being below between both
    but by can cannot could did do does doing down during each either else ever every
    few for from further had has have having he her here hers herself him himself his
    how however i if in into is it its itself just many me might more most much must my
    myself neither no nor not of off on once only onto or other our ours ourselves out
    over own same shall she should since so some such than that the their theirs them
    themselves then there these they this those though through thus to too toward
    towards under unless until up upon very via was we were what when where whereas
    whether which while who whom whose why will with within without would yet you your
    yours yourself yourselves
    aint arent cant couldnt didnt doesnt dont hadnt hasnt havent isnt mightnt mustnt
    neednt shant shouldnt wasnt werent wont wouldnt
    """.split()
)

# Applied to non-ASCII text after NFKC (str.replace: much faster than str.translate).
_CHAR_FIXES = (
    ("\u2019", "'"),  # right single quotation mark (curly apostrophe)
    ("\u2018", "'"),  # left single quotation mark
    ("\u02bc", "'"),  # modifier letter apostrophe
    ("\u2032", "'"),  # prime
    ("\u2010", "-"),  # hyphen (NFKC maps the non-breaking hyphen here)
    ("\u2212", "-"),  # minus sign
    ("\u00ad", ""),  # soft hyphen
)

# A piece: a number with thousands separators, a decimal number, or a run of letters
# and digits. A token: pieces joined by hyphens or apostrophes; or a dotted acronym
# (two or more single letters each followed by a dot); or "%".
_PIECE = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|[^\W_]+)"
_TOKEN_RE = re.compile(rf"(?:[^\W\d_]\.){{2,}}|{_PIECE}(?:['-]{_PIECE})*|%")
_CLITIC_RE = re.compile(r"'(?:s|re|ve|ll|d|m)$")
_MARKS_RE = re.compile(r"[\u0300-\u036f]")
_LATIN_MARKS_RE = re.compile(r"(?<=[a-z])[\u0300-\u036f]+")

_CACHE_MAX = 1_000_000


def tokenize(text: str) -> list[str]:
    """Terms of ``text`` for lexical matching; the same function serves documents and queries."""
    if text.isascii():
        text = text.lower()
    else:
        text = unicodedata.normalize("NFKC", text).casefold()
        for char, replacement in _CHAR_FIXES:
            if char in text:
                text = text.replace(char, replacement)
        if _MARKS_RE.search(text):  # marks NFKC could not compose, e.g. casefolded "İ"
            text = _LATIN_MARKS_RE.sub("", text)
    return list(chain.from_iterable(map(_TERMS.__getitem__, _TOKEN_RE.findall(text))))


class _TermCache(dict):
    """Raw token -> tuple of terms, computed on first sight (bounded: cleared when full)."""

    def __missing__(self, raw: str) -> tuple[str, ...]:
        if len(self) >= _CACHE_MAX:
            self.clear()
        terms = self[raw] = _analyse(raw)
        return terms


_TERMS = _TermCache()


def _analyse(raw: str) -> tuple[str, ...]:
    """Terms of one raw token (already casefolded)."""
    if raw == "%":
        return ("percent",)
    if raw.endswith("."):
        return _terms_of(_clean_piece(raw.replace(".", "")))
    if "-" not in raw:
        return _terms_of(_clean_piece(raw))
    parts = [p for p in (_clean_piece(p) for p in raw.split("-")) if p]
    terms: list[str] = []
    if len(parts) > 1 and not all(_is_number(p) for p in parts):
        terms.extend(_terms_of("".join(parts)))
    for part in parts:
        terms.extend(_terms_of(part))
    return tuple(terms)


def _clean_piece(piece: str) -> str:
    """Drop clitics, apostrophes and thousands separators; fold Latin accents."""
    if "'" in piece:
        piece = _CLITIC_RE.sub("", piece).replace("'", "")
    if "," in piece:
        piece = piece.replace(",", "")
    return fold_accents(piece)


def fold_accents(text: str) -> str:
    """Lower-case ``text`` with the accents of its Latin letters dropped, as terms have them
    ("zürich" -> "zurich", "céloron" -> "celoron"); letters without a decomposition stay ("ł")."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFC", _LATIN_MARKS_RE.sub("", unicodedata.normalize("NFKD", text)))


def _is_number(term: str) -> bool:
    return term.replace(".", "", 1).isdigit()


def _terms_of(word: str) -> tuple[str, ...]:
    if not word or word in STOP_WORDS:
        return ()
    if word.isascii() and word.isalpha():
        return (_stem(word),)
    return (word,)


# --- light stemmer --------------------------------------------------------------
#
# The inflectional steps of the Porter2 (Snowball English) stemmer: 1a (plurals),
# 1b (-ed, -ing, -eed, -edly, -ingly), 1c (final y -> i) and 5 (final e, ll), with
# Porter2's R1/R2 regions and short-syllable rules. The derivational steps 2-4
# (-ation, -ness, -ize, -ive, -ment...) are left out: they conflate unrelated words
# (organ/organization, universe/university, general/generous).

_VOWELS = frozenset("aeiouy")  # "Y" (a consonant y) is not in it
_DOUBLES = ("bb", "dd", "ff", "gg", "mm", "nn", "pp", "rr", "tt")
_R1_PREFIXES = ("gener", "commun", "arsen")
_SPECIAL = {"skies": "sky", "dying": "die", "lying": "lie", "tying": "tie"}
_INVARIANT = frozenset({"sky", "news", "howe", "atlas", "cosmos", "bias", "andes"})
_INVARIANT_AFTER_1A = frozenset(
    {"inning", "outing", "canning", "herring", "earring", "proceed", "exceed", "succeed"}
)


def _stem(word: str) -> str:
    """Porter2 steps 1a, 1b, 1c and 5 of a lowercase ASCII alphabetic word."""
    if len(word) <= 2 or word in _INVARIANT:
        return word
    if word in _SPECIAL:
        return _SPECIAL[word]
    w = _mark_consonant_y(word)
    r1 = _r1(w)
    r2 = _region(w, r1)
    w = _step1a(w)
    if w in _INVARIANT_AFTER_1A:
        return w
    w = _step1b(w, r1)
    if len(w) > 2 and w[-1] in "yY" and w[-2] not in _VOWELS:
        w = w[:-1] + "i"
    w = _step5(w, r1, r2)
    return w.lower()


def _mark_consonant_y(w: str) -> str:
    """Initial y and y after a vowel are consonants: write them as Y."""
    if "y" not in w:
        return w
    chars = list(w)
    for i, ch in enumerate(chars):
        if ch == "y" and (i == 0 or chars[i - 1] in _VOWELS):
            chars[i] = "Y"
    return "".join(chars)


def _region(w: str, start: int) -> int:
    """Start of the region after the first non-vowel following a vowel, from ``start``."""
    for i in range(start + 1, len(w)):
        if w[i] not in _VOWELS and w[i - 1] in _VOWELS:
            return i + 1
    return len(w)


def _r1(w: str) -> int:
    for prefix in _R1_PREFIXES:
        if w.startswith(prefix):
            return len(prefix)
    return _region(w, 0)


def _ends_short_syllable(w: str) -> bool:
    if len(w) == 2:
        return w[0] in _VOWELS and w[1] not in _VOWELS
    return (
        len(w) >= 3
        and w[-3] not in _VOWELS
        and w[-2] in _VOWELS
        and w[-1] not in _VOWELS
        and w[-1] not in "wxY"
    )


def _has_vowel(s: str) -> bool:
    return any(c in _VOWELS for c in s)


def _step1a(w: str) -> str:
    if w.endswith("sses"):
        return w[:-2]
    if w.endswith(("ied", "ies")):
        return w[:-3] + ("i" if len(w) > 4 else "ie")
    if w.endswith(("us", "ss")):
        return w
    if w.endswith("s") and _has_vowel(w[:-2]):
        return w[:-1]
    return w


def _step1b(w: str, r1: int) -> str:
    for suffix in ("eedly", "eed"):
        if w.endswith(suffix):
            start = len(w) - len(suffix)
            return w[:start] + "ee" if start >= r1 else w
    for suffix in ("ingly", "edly", "ing", "ed"):
        if w.endswith(suffix):
            stem = w[: -len(suffix)]
            if not _has_vowel(stem):
                return w
            if stem.endswith(("at", "bl", "iz")):
                return stem + "e"
            if stem.endswith(_DOUBLES):
                return stem[:-1]
            if r1 >= len(stem) and _ends_short_syllable(stem):
                return stem + "e"
            return stem
    return w


def _step5(w: str, r1: int, r2: int) -> str:
    last = len(w) - 1
    if w.endswith("e"):
        if last >= r2 or (last >= r1 and not _ends_short_syllable(w[:-1])):
            return w[:-1]
    elif w.endswith("ll") and last >= r2:
        return w[:-1]
    return w


_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Normalise text exactly as the official SQuAD v1.1 script does.

    Lower-case, drop ASCII punctuation, replace the words a/an/the with a space,
    then collapse whitespace: ``"The  Eiffel Tower!"`` -> ``"eiffel tower"``.
    """
    text = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())
