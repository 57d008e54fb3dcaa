"""Benchmark corpora of an exact number of passages, made from SQuAD v1.1 dev contexts.

The stream of documents is deterministic (``seed``), so the 1k corpus is a prefix of the
10k corpus, which is a prefix of the 100k one (except for the last, trimmed document):

- copy 0: the 2,067 SQuAD dev paragraphs unchanged, grouped into documents of
  ``doc_paragraphs`` consecutive paragraphs of one article (a title line first), the
  documents shuffled. Questions and gold answer spans come from this copy only.
- copy 1, 2, ...: the same article chunks again, lightly perturbed so that no sentence
  (hence no passage) repeats anything written before: the chunk's sentences are
  shuffled across its paragraphs, and every sentence is changed by swapping its numbers
  for others with as many digits and/or swapping two adjacent lowercase words (or, for
  a sentence with neither, inserting an adverb). The embedding cache keys texts by hash,
  so repeated passages or sentences would be encoded for free; these are all distinct.

Passages are counted with ``qa.split.split_document`` (the same settings as the build),
and the last document is trimmed sentence by sentence to hit the requested count.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

SQUAD_DEV = Path("/work/shared/benchmarks/squad-v1.1-dev/dev-v1.1.json")
FILLERS = ("also", "indeed", "notably", "reportedly", "largely", "generally", "often", "still",
           "mostly", "clearly", "certainly", "typically", "arguably", "partly", "mainly", "evidently")
_DIGITS = re.compile(r"\d+")
_LOWER_WORD = re.compile(r"^[a-z]+$")


@dataclass
class Chunk:
    """A run of paragraphs of one article: the unit a document is made of."""

    title: str
    paragraphs: list[str]  # original contexts
    sentences: list[list[str]]  # each paragraph's sentences (qa.split.sentence_spans)
    qas: list[list[dict]]  # each paragraph's questions


@dataclass
class GoldQuestion:
    id: str
    question: str
    answers: list[str]
    doc: str
    spans: list[tuple[int, int]]  # answer spans, document character offsets


@dataclass
class Corpus:
    folder: Path
    passages: int
    docs: int
    chars: int
    copies: int  # how many perturbed copies of the SQuAD paragraphs were needed
    questions: list[GoldQuestion] = field(default_factory=list)


def read_chunks(path: Path = SQUAD_DEV, doc_paragraphs: int = 12) -> list[Chunk]:
    from qa.split import sentence_spans

    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    chunks = []
    for article in data:
        title = article["title"].replace("_", " ")
        paras = article["paragraphs"]
        for i in range(0, len(paras), doc_paragraphs):
            part = paras[i : i + doc_paragraphs]
            contexts = [p["context"] for p in part]
            chunks.append(Chunk(
                title=f"{title} (part {i // doc_paragraphs + 1})",
                paragraphs=contexts,
                sentences=[[c[s:e] for s, e in sentence_spans(c)] for c in contexts],
                qas=[p["qas"] for p in part],
            ))
    return chunks


def _swap_numbers(sentence: str, rng: random.Random) -> str:
    def repl(m: re.Match) -> str:
        digits = m.group(0)
        if len(digits) == 1:
            return str(rng.randrange(10))
        return str(rng.randrange(10 ** (len(digits) - 1), 10 ** len(digits)))

    return _DIGITS.sub(repl, sentence)


def _swap_words(sentence: str, rng: random.Random) -> str | None:
    words = sentence.split(" ")
    spots = [i for i in range(1, len(words) - 2) if _LOWER_WORD.match(words[i]) and _LOWER_WORD.match(words[i + 1])
             and words[i] != words[i + 1]]
    if not spots:
        return None
    i = rng.choice(spots)
    words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def _insert_filler(sentence: str, rng: random.Random) -> str:
    words = sentence.split(" ")
    spots = [i for i in range(1, len(words)) if _LOWER_WORD.match(words[i])]
    filler = rng.choice(FILLERS)
    if not spots:
        return f"{filler.capitalize()} {sentence}"
    i = rng.choice(spots)
    return " ".join(words[:i] + [filler] + words[i:])


def perturb(sentence: str, rng: random.Random, seen: set[int]) -> str:
    """A light variant of ``sentence`` that is not in ``seen`` (which it is added to)."""
    for attempt in range(200):
        s = sentence
        ops = 1 + attempt // 4
        for _ in range(ops):
            changed = False
            if _DIGITS.search(s) and rng.random() < 0.7:
                s2 = _swap_numbers(s, rng)
                changed = s2 != s
                s = s2
            if not changed:
                s2 = _swap_words(s, rng) if rng.random() < 0.8 else None
                s = s2 if s2 is not None else _insert_filler(s, rng)
        h = hash(s)
        if h not in seen:
            seen.add(h)
            return s
    raise RuntimeError(f"could not make a distinct variant of {sentence!r}")


def _doc_text(title: str, paragraphs: list[str]) -> tuple[str, list[int]]:
    """The document text and each paragraph's offset in it."""
    text = title
    offsets = []
    for p in paragraphs:
        text += "\n\n"
        offsets.append(len(text))
        text += p
    return text + "\n", offsets


def _count_passages(text: str, sentences_per_passage: int, overlap: int) -> int:
    from qa.split import split_document
    from qa.datatypes import Document

    return len(split_document(Document("d", "t", text, ""), sentences_per_passage, overlap))


def build_corpus(folder: Path, n_passages: int, *, seed: int = 0, doc_paragraphs: int = 12,
                 sentences_per_passage: int = 4, overlap: int = 1, squad: Path = SQUAD_DEV,
                 chunks: list[Chunk] | None = None) -> Corpus:
    """Write documents with exactly ``n_passages`` passages in total (as the index will split them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.txt"):
        old.unlink()
    chunks = chunks or read_chunks(squad, doc_paragraphs)
    rng = random.Random(seed)
    seen: set[int] = set()
    for chunk in chunks:
        for sents in chunk.sentences:
            seen.update(hash(s) for s in sents)
    total = n_docs = chars = 0
    copy = 0
    questions: list[GoldQuestion] = []
    while total < n_passages:
        order = list(range(len(chunks)))
        random.Random(seed * 1000 + copy).shuffle(order)
        for ci in order:
            if total >= n_passages:
                break
            chunk = chunks[ci]
            if copy == 0:
                title, paragraphs = chunk.title, list(chunk.paragraphs)
            else:
                title = f"{chunk.title}, variant {copy}"
                flat = [s for sents in chunk.sentences for s in sents]
                rng.shuffle(flat)
                flat = [perturb(s, rng, seen) for s in flat]
                paragraphs, at = [], 0
                for sents in chunk.sentences:
                    paragraphs.append(" ".join(flat[at : at + len(sents)]))
                    at += len(sents)
                paragraphs = [p for p in paragraphs if p]
            text, offsets = _doc_text(title, paragraphs)
            count = _count_passages(text, sentences_per_passage, overlap)
            if total + count > n_passages:
                text, offsets, count, paragraphs = _trim(title, paragraphs, n_passages - total,
                                                         sentences_per_passage, overlap)
                if count == 0:
                    continue
            doc_id = f"c{copy:02d}-{ci:04d}.txt"
            (folder / doc_id).write_text(text, encoding="utf-8")
            n_docs += 1
            chars += len(text)
            total += count
            if copy == 0:
                for k, (para, off) in enumerate(zip(paragraphs, offsets)):
                    if para != chunk.paragraphs[k]:
                        continue  # trimmed
                    for qa in chunk.qas[k]:
                        spans = sorted({(off + a["answer_start"], off + a["answer_start"] + len(a["text"]))
                                        for a in qa["answers"]})
                        questions.append(GoldQuestion(qa["id"], qa["question"],
                                                      sorted({a["text"] for a in qa["answers"]}), doc_id, spans))
        copy += 1
    return Corpus(folder, total, n_docs, chars, copy - 1, questions)


def _trim(title: str, paragraphs: list[str], room: int, spp: int, overlap: int):
    """The longest prefix of the document (in sentences) with at most ``room`` passages."""
    from qa.split import sentence_spans

    units: list[tuple[int, str]] = []  # (paragraph index, sentence)
    for k, p in enumerate(paragraphs):
        units.extend((k, p[s:e]) for s, e in sentence_spans(p))

    def make(n: int):
        paras: list[list[str]] = []
        for k, s in units[:n]:
            while len(paras) <= k:
                paras.append([])
            paras[k].append(s)
        # a fully kept paragraph is kept verbatim (its questions stay valid)
        kept = [paragraphs[i] if i < len(paras) and len(paras[i]) == len(sentence_spans(paragraphs[i]))
                else " ".join(paras[i]) for i in range(len(paras)) if paras[i]]
        text, offsets = _doc_text(title, kept)
        return text, offsets, _count_passages(text, spp, overlap), kept

    lo, hi = 0, len(units)
    while lo < hi:  # largest n with count(n) <= room
        mid = (lo + hi + 1) // 2
        if make(mid)[2] <= room:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return "", [], 0, []
    return make(lo)


def save_questions(path: Path, questions: list[GoldQuestion]) -> None:
    Path(path).write_text(json.dumps([q.__dict__ for q in questions], ensure_ascii=False))


def read_questions(path: Path) -> list[GoldQuestion]:
    return [GoldQuestion(q["id"], q["question"], q["answers"], q["doc"], [tuple(s) for s in q["spans"]])
            for q in json.loads(Path(path).read_text())]


def is_gold(passage, q: GoldQuestion) -> bool:
    """Whether a passage of the gold document contains one of the gold answer spans."""
    return passage.doc == q.doc and any(passage.start <= s and e <= passage.end for s, e in q.spans)
