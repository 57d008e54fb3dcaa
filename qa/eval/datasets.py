"""Question sets for ``qa eval``: our JSONL format and SQuAD (BEIR: ``qa.eval.beir``).

SQuAD and BEIR ship their documents inside the benchmark files, so their loaders
write the documents as ``.txt`` files into a corpus folder (only files whose content
changed are rewritten, and stale ``.txt`` files are removed), to be indexed like any
other corpus. A corpus folder they write holds the mark file ``.qa-eval-corpus`` (it is
safe to overwrite), and it is created only once the whole input file has been read. Every
problem with an input file raises :class:`QAError` with one line naming the file (and the
line, for line-based files).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import unicodedata
from pathlib import Path
from typing import Any, Callable

from qa.datatypes import QAError, Question

FORMATS = ("jsonl", "squad", "beir")
CORPUS_MARK = ".qa-eval-corpus"  # in a corpus folder written here: safe to overwrite
_MAX_SLUG = 80
_MAX_ASSUMED_TITLE = 60  # characters of a title taken from an article's first line


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise QAError(f"{what} not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise QAError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise QAError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def json_lines(path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    """The non-blank lines of a JSONL file as (1-based line number, object)."""
    rows = []
    for number, line in enumerate(read_text(path, what).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise QAError(f"{path}:{number}: bad JSON: {exc}") from None
        if not isinstance(row, dict):
            raise QAError(f"{path}:{number}: expected a JSON object, got {type_name(row)}")
        rows.append((number, row))
    return rows


def type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def clean_text(text: str) -> str:
    """Text with every line break as ``\\n`` and no NUL characters, so that the corpus
    reader accepts the file and its offsets match the text written."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def _distinct(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(t for t in texts if t))


def load_questions(path: Path) -> list[Question]:
    """Load our JSONL question set.

    One object per line: ``{"id": str, "question": str, "answers": [str, ...],
    "doc": str | null}``. ``"answers": []`` marks an unanswerable question; ``doc``
    (the gold document's id) is optional; other fields are ignored; blank lines are
    skipped. Integer ids are accepted and turned into strings. Raises QAError naming
    the file and line for bad JSON, a missing or ill-typed field, an empty question,
    a duplicate id, and for a file without questions.
    """
    path = Path(path)
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for number, row in json_lines(path, "question set"):
        where = f"{path}:{number}"
        for name in ("id", "question", "answers"):
            if name not in row:
                raise QAError(f"{where}: missing field '{name}'")
        qid = row["id"]
        if isinstance(qid, int) and not isinstance(qid, bool):
            qid = str(qid)
        if not isinstance(qid, str):
            raise QAError(f"{where}: field 'id' must be a string, got {type_name(qid)}")
        if not qid.strip():
            raise QAError(f"{where}: field 'id' is empty")
        if qid in seen:
            raise QAError(f"{where}: duplicate id '{qid}' (first on line {seen[qid]})")
        question = row["question"]
        if not isinstance(question, str):
            raise QAError(f"{where}: field 'question' must be a string, got {type_name(question)}")
        if not question.strip():
            raise QAError(f"{where}: field 'question' is empty")
        answers = row["answers"]
        if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
            raise QAError(f"{where}: field 'answers' must be a list of non-empty strings")
        doc = row.get("doc")
        if doc is not None and (not isinstance(doc, str) or not doc.strip()):
            raise QAError(f"{where}: field 'doc' must be a non-empty string or null")
        seen[qid] = number
        questions.append(
            Question(id=qid, question=question.strip(), answers=_distinct([a.strip() for a in answers]), doc=doc)
        )
    if not questions:
        raise QAError(f"{path}: no questions")
    return questions


def _slug(text: str, fallback: str) -> str:
    """A lower-case ASCII file-name stem: letters, digits and single hyphens."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:_MAX_SLUG].strip("-")
    return slug or fallback


def safe_id(text: str) -> str:
    """A file-name stem keeping letters, digits, ``.``, ``_`` and ``-`` of an id."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:_MAX_SLUG].lstrip(".")
    return stem or "_"


def unique_name(stem: str, taken: set[str]) -> str:
    """``stem.txt``, or ``stem-2.txt``, ``stem-3.txt``... if taken (case-insensitively)."""
    name, n = f"{stem}.txt", 1
    while name.lower() in taken:
        n += 1
        name = f"{stem}-{n}.txt"
    taken.add(name.lower())
    return name


def sync_corpus(corpus_dir: Path, files: dict[str, str]) -> None:
    """Make corpus_dir hold exactly these ``.txt`` files, rewriting only changed ones.

    A write cut short leaves a file whose content differs, so the next run rewrites it.
    The folder gets the mark file :data:`CORPUS_MARK`; a folder this call creates is
    removed again if writing fails.
    """
    created = not corpus_dir.exists()
    try:
        corpus_dir.mkdir(parents=True, exist_ok=True)
        (corpus_dir / CORPUS_MARK).touch()
        present = {p.name for p in corpus_dir.glob("*.txt") if p.is_file()}
        for name, text in files.items():
            target = corpus_dir / name
            data = text.encode("utf-8")
            if name in present and target.read_bytes() == data:
                continue
            target.write_bytes(data)
        for name in present - files.keys():
            (corpus_dir / name).unlink()
    except OSError as exc:
        if created:
            shutil.rmtree(corpus_dir, ignore_errors=True)
        raise QAError(f"cannot write corpus folder {corpus_dir}: {exc.strerror or exc}") from None


def _squad_title(title: str) -> str:
    """A SQuAD title for display: underscores as spaces, whitespace collapsed."""
    return " ".join(title.replace("_", " ").split()) or "Untitled"


def _scalar_text(value: Any) -> str | None:
    """A JSON scalar as text: strings as they are, numbers, booleans and null as JSON
    spells them (``7``, ``1.5``, ``true``, ``null``); None for a list or an object."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return None


def _assumed_title(article: dict[str, Any], number: int) -> str:
    """A title for an article without one: its first non-blank context line (whitespace
    collapsed, cut at a word to at most 60 characters), else ``Article <number>``."""
    paragraphs = article.get("paragraphs")
    for paragraph in paragraphs if isinstance(paragraphs, list) else []:
        context = paragraph.get("context") if isinstance(paragraph, dict) else None
        for line in clean_text(context).split("\n") if isinstance(context, str) else []:
            line = " ".join(line.split())
            if len(line) > _MAX_ASSUMED_TITLE:
                cut = line[: _MAX_ASSUMED_TITLE - 1]
                line = (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip() + "…"
            if line:
                return line
    return f"Article {number}"


def _stderr_note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def load_squad(path: Path, corpus_dir: Path, *, note: Callable[[str], None] | None = None) -> list[Question]:
    """Load a SQuAD v1.1 or v2.0 JSON file, writing its articles into corpus_dir.

    Each article becomes ``<slug of title>.txt`` (``-2``, ``-3``... on a clash): a line
    ``# Title`` (underscores shown as spaces), a blank line, then the paragraphs in
    order separated by blank lines; line breaks are written as ``\\n``. Each question
    gets ``doc`` = that file name, ``region`` = the paragraph's (start, end) character
    offsets in the file's text as read back in UTF-8, ``answers`` = the distinct
    stripped answer texts (v2.0 ``is_impossible`` questions get ``answers=[]``) and
    ``article`` = the title as the file spells it.

    Like the format's common readers, it accepts what published SQuAD-style sets leave
    out or spell differently: an article whose ``title`` is missing, null or blank gets
    one from its first context line (see :func:`_assumed_title`), or ``Article <n>``
    (1-based) without any text, and that assumed title is its ``article``; a question
    ``id`` (or a title) that is any other JSON scalar is read as text, as JSON spells it
    (``7`` -> ``'7'``, ``true`` -> ``'true'``, an id ``null`` -> ``'null'``), and ids must
    still be distinct as text. What was assumed is said once, in one line, through
    ``note`` (default: a ``note: ...`` line on stderr), after the whole file has been
    read and before anything is written.
    """
    path = Path(path)
    note = note or _stderr_note
    try:
        data = json.loads(read_text(path, "SQuAD file"))
    except ValueError as exc:
        raise QAError(f"{path}: bad JSON: {exc}") from None

    def malformed(where: str, problem: str) -> QAError:
        return QAError(f"{path}: not SQuAD JSON: {where} {problem}")

    def checked(obj: Any, name: str, kind: type, where: str) -> Any:
        if not isinstance(obj, dict):
            raise malformed(where, "is not an object")
        if not isinstance(obj.get(name), kind):
            raise malformed(where, f"has no '{name}' {'list' if kind is list else 'string'}")
        return obj[name]

    files: dict[str, str] = {}
    taken: set[str] = set()
    questions: list[Question] = []
    seen: set[str] = set()
    untitled: list[int] = []  # indices of the articles given an assumed title
    retyped: list[tuple[Any, str]] = []  # (id as in the file, id as text) of ids that were not strings
    for a, article in enumerate(checked(data, "data", list, "the top level")):
        where = f"data[{a}]"
        if not isinstance(article, dict):
            raise malformed(where, "is not an object")
        raw_title = article.get("title")
        if raw_title is not None and _scalar_text(raw_title) is None:
            raise malformed(where, f"has {type_name(raw_title)} as 'title' (expected a string)")
        spelled = _scalar_text(raw_title) if raw_title is not None else ""
        if spelled.strip():
            title = _squad_title(spelled)
        else:
            title = spelled = _assumed_title(article, a + 1)
            untitled.append(a)
        name = unique_name(_slug(title, f"article-{a + 1}"), taken)
        parts = [f"# {title}\n\n"]
        offset = len(parts[0])
        for p, paragraph in enumerate(checked(article, "paragraphs", list, where)):
            pwhere = f"{where}.paragraphs[{p}]"
            context = clean_text(checked(paragraph, "context", str, pwhere))
            if p:
                parts.append("\n\n")
                offset += 2
            region = (offset, offset + len(context))
            parts.append(context)
            offset += len(context)
            for q, qa in enumerate(checked(paragraph, "qas", list, pwhere)):
                qwhere = f"{pwhere}.qas[{q}]"
                if not isinstance(qa, dict):
                    raise malformed(qwhere, "is not an object")
                if "id" not in qa:
                    raise malformed(qwhere, "has no 'id'")
                qid = _scalar_text(qa["id"])
                if qid is None:
                    raise malformed(qwhere, f"has {type_name(qa['id'])} as 'id' (expected a string or number)")
                if not isinstance(qa["id"], str):
                    retyped.append((qa["id"], qid))
                if qid in seen:
                    raise malformed(qwhere, f"repeats id '{qid}'")
                seen.add(qid)
                texts = []
                spans = []
                for n, answer in enumerate(checked(qa, "answers", list, qwhere)):
                    text = clean_text(checked(answer, "text", str, f"{qwhere}.answers[{n}]"))
                    texts.append(text.strip())
                    at = answer.get("answer_start")
                    if isinstance(at, int) and not isinstance(at, bool):
                        start = at + len(text) - len(text.lstrip())
                        end = start + len(text.strip())
                        if context[start:end] == text.strip() and end > start:
                            spans.append((region[0] + start, region[0] + end))
                impossible = qa.get("is_impossible") is True
                questions.append(
                    Question(
                        id=qid,
                        question=checked(qa, "question", str, qwhere).strip(),
                        answers=[] if impossible else _distinct(texts),
                        doc=name,
                        region=region,
                        spans=[] if impossible else sorted(set(spans)),
                        article=spelled,
                    )
                )
        parts.append("\n")
        files[name] = "".join(parts)
    if not questions:
        raise QAError(f"{path}: no questions")
    assumed = []
    if untitled:
        which = ", ".join(f"data[{a}]" for a in untitled[:3]) + (", ..." if len(untitled) > 3 else "")
        assumed.append(f"{len(untitled)} of {len(data['data'])} articles have no title, so each is titled by its "
                       f"first line, or 'Article <n>' ({which})")
    if retyped:
        raw, text = retyped[0]
        are = "id is not a string" if len(retyped) == 1 else "ids are not strings"
        assumed.append(f"{len(retyped)} question {are}, read as text (e.g. {json.dumps(raw)} as '{text}')")
    if assumed:
        note(f"{path}: {'; '.join(assumed)}")
    sync_corpus(Path(corpus_dir), files)
    return questions
