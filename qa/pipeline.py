"""The whole path for one question: retrieve, then answer. Shared by the CLI, the UI and `qa eval`."""

from __future__ import annotations

import time
from dataclasses import dataclass

from qa.answer import NOT_FOUND, extract
from qa.config import MAX_QUESTION_CHARS, Settings
from qa.index import Index, ensure_index, load_index, stderr_log
from qa.retrieve import contextualize, retrieve
from qa.types import QAError, Result


@dataclass
class Engine:
    """What answering needs, loaded once: settings, index and query encoder."""

    settings: Settings
    index: Index
    encoder: object


def open_engine(settings: Settings, *, build: bool = True, log=stderr_log, progress: bool = True,
                encoder=None) -> Engine:
    """Load the index (building it first if missing or stale, unless ``build`` is False) and the encoder.

    Pass ``encoder`` (e.g. the previous engine's) to reuse an already loaded query encoder.
    """
    index = ensure_index(settings, log=log, progress=progress) if build else load_index(settings)
    return Engine(settings, index, encoder or query_encoder(settings))


def query_encoder(settings: Settings):
    """The fast encoder for queries (ONNX Runtime; no torch import on this path)."""
    from qa.embed import load_encoder

    backend = "onnx" if settings.backend == "auto" else settings.backend
    return load_encoder(settings.model_path, backend=backend, precision="fp32", queries=True)


def check_question(question: str) -> str:
    """The question, stripped; QAError when it is empty or too long."""
    if not isinstance(question, str) or not question.strip():
        raise QAError("the question is empty")
    question = question.strip().encode("utf-8", "replace").decode("utf-8")  # undecodable bytes from argv/stdin
    if len(question) > MAX_QUESTION_CHARS:
        raise QAError(f"the question is too long ({len(question):,} characters; at most {MAX_QUESTION_CHARS:,})")
    return question


def ask(engine: Engine, question: str, *, history: list[str] | None = None, settings: Settings | None = None) -> Result:
    """Answer one question; ``history`` holds earlier questions of the conversation, oldest first."""
    settings = settings or engine.settings
    question = check_question(question)
    t0 = time.perf_counter()
    query = contextualize(question, history or [])
    found = retrieve(engine.index, engine.encoder, query, settings)
    t1 = time.perf_counter()
    qvec = found.query_vector
    if qvec is None:
        qvec = engine.encoder.encode([query])[0]
    answers, citations = extract(question, query, found.hits, engine.index, qvec, settings)
    t2 = time.perf_counter()
    timings = {
        "retrieve": round((t1 - t0) * 1000, 3),
        "answer": round((t2 - t1) * 1000, 3),
        "total": round((t2 - t0) * 1000, 3),
        **{f"retrieve_{k}": round(v, 3) for k, v in found.timings_ms.items()},
    }
    return Result(
        question=question,
        answers=answers,
        citations=citations,
        mode=settings.mode,
        timings_ms=timings,
        message="" if answers else NOT_FOUND,
    )
