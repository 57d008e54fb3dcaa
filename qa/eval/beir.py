"""BEIR retrieval sets for ``qa eval``: the corpus written as ``.txt`` files, queries with their
graded relevant documents (qrels); retrieval only, no answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qa.datatypes import QAError, Question
from qa.eval.datasets import clean_text, json_lines, read_text, safe_id, sync_corpus, type_name, unique_name


def _beir_field(row: dict[str, Any], name: str, where: str, required: bool = True) -> str:
    if name not in row or row[name] is None:
        if required:
            raise QAError(f"{where}: missing field '{name}'")
        return ""
    value = row[name]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise QAError(f"{where}: field '{name}' must be a string, got {type_name(value)}")
    return value


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR qrels ``query-id<TAB>corpus-id<TAB>score`` (header optional) as nested dicts."""
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(read_text(path, "BEIR qrels file").split("\n"), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if number == 1 and fields[0] == "query-id":
            continue
        if len(fields) != 3:
            raise QAError(f"{path}:{number}: expected 3 tab-separated fields, got {len(fields)}")
        query, doc, grade = fields
        try:
            qrels.setdefault(query, {})[doc] = int(grade)
        except ValueError:
            raise QAError(f"{path}:{number}: score '{grade}' is not an integer") from None
    return qrels


def load_beir(folder: Path, corpus_dir: Path, split: str = "test") -> list[Question]:
    """Load a BEIR dataset folder, writing its corpus into corpus_dir.

    Reads ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
    ``text``) and ``qrels/<split>.tsv``. Each corpus entry becomes ``<safe _id>.txt``
    (``-2``... on a clash): ``# title`` and a blank line when there is a title, then the
    text; entries with neither are not written. BEIR is retrieval-only: questions have
    ``answers=[]``, ``doc=None`` and ``relevant`` = {file name: grade} for grades > 0,
    so they score retrieval metrics but not answers or abstention. Only queries with at least one positive grade are
    returned, in ``queries.jsonl`` order; qrels of queries missing from
    ``queries.jsonl`` are ignored, and judged ids missing from the corpus keep the file
    name they would have had (they count in recall and ideal DCG, as in pytrec_eval).
    """
    folder = Path(folder)
    paths = {
        "corpus": folder / "corpus.jsonl",
        "queries": folder / "queries.jsonl",
        "qrels": folder / "qrels" / f"{split}.tsv",
    }
    for path in paths.values():
        if not path.is_file():
            raise QAError(f"BEIR folder {folder}: missing {path.relative_to(folder).as_posix()}")

    names: dict[str, str] = {}
    taken: set[str] = set()
    files: dict[str, str] = {}
    for number, row in json_lines(paths["corpus"], "BEIR corpus"):
        where = f"{paths['corpus']}:{number}"
        doc_id = _beir_field(row, "_id", where)
        if doc_id in names:
            raise QAError(f"{where}: duplicate _id '{doc_id}'")
        title = " ".join(clean_text(_beir_field(row, "title", where, required=False)).split())
        text = clean_text(_beir_field(row, "text", where))
        names[doc_id] = name = unique_name(safe_id(doc_id), taken)
        if title or text.strip():
            files[name] = (f"# {title}\n\n" if title else "") + text + "\n"

    qrels = _read_qrels(paths["qrels"])
    questions: list[Question] = []
    seen: set[str] = set()
    for number, row in json_lines(paths["queries"], "BEIR queries"):
        where = f"{paths['queries']}:{number}"
        qid = _beir_field(row, "_id", where)
        if qid in seen:
            raise QAError(f"{where}: duplicate _id '{qid}'")
        seen.add(qid)
        text = _beir_field(row, "text", where).strip()
        relevant = {
            names.get(doc_id) or f"{safe_id(doc_id)}.txt": grade
            for doc_id, grade in qrels.get(qid, {}).items()
            if grade > 0
        }
        if not relevant:
            continue
        if not text:
            raise QAError(f"{where}: field 'text' is empty")
        questions.append(Question(id=qid, question=text, answers=[], relevant=relevant))
    if not questions:
        raise QAError(f"BEIR folder {folder}: no queries with qrels in {split}")
    sync_corpus(Path(corpus_dir), files)
    return questions
