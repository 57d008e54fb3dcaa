"""The whole path for one question: retrieve, then answer. Shared by the CLI, the UI and `qa eval`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

from qa.abstain import explain, unmentioned
from qa.answer import cite, reader_candidates, select_answers, to_answer
from qa.disagree import disagreement
from qa.calibration import Calibration, calibration_for, neutral
from qa.config import MAX_QUESTION_CHARS, Settings
from qa.build import ensure_index
from qa.index import Index, open_existing, stderr_log
from qa.protocols import SpanReader, TextEncoder
from qa.reader import load_reader
from qa.followup import understand
from qa.retrieve import retrieve
from qa.truecase import truecase
from qa.datatypes import Answer, Document, QAError, Result


@dataclass
class Engine:
    """What answering needs, loaded once: settings, index, query encoder, reader and its calibration."""

    settings: Settings
    index: Index
    encoder: TextEncoder  # for queries
    reader: SpanReader | None = None  # None with --answerer heuristic
    calibration: Calibration | None = None


def open_engine(settings: Settings, *, build: bool = True, log=stderr_log, progress: bool = True,
                encoder: TextEncoder | None = None, reader: SpanReader | None = None, fitting: bool = False,
                loaded: Mapping[str, Document] | None = None) -> Engine:
    """Load the index (building it first if missing or stale; with ``build`` False, as it is,
    with a warning when stale), the
    encoder and the reader. Pass ``encoder`` or ``reader`` (e.g. the previous engine's) to reuse them.
    ``fitting``: a calibration is about to be fitted, so a reader without one is no error.
    ``loaded``: documents already read, by id, which a build need not read again."""
    index = (ensure_index(settings, log=log, progress=progress, loaded=loaded) if build
             else open_existing(settings, log=log))
    engine = Engine(settings, index, encoder or query_encoder(settings))
    if settings.answerer == "reader":
        engine.reader = reader or load_reader(settings.reader or None, settings.model_path)
        try:
            engine.calibration = calibration_for(index.folder, engine.reader.folder, engine.reader.identity,
                                                 index_model(index), log=log)
        except QAError:
            if not fitting:
                raise
            engine.calibration = neutral(engine.reader.identity, index_model(index))
    return engine


def index_model(index: Index) -> str:
    """The embedding model (its content identity) and precision the index's vectors come from, as its
    signature records them: what a calibration fitted on this index is tied to."""
    return str(index.manifest["signature"].get("model", ""))


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


def threshold(engine: Engine, settings: Settings) -> float:
    """The abstention threshold in effect: the one given, else the calibrated one."""
    if settings.threshold is not None:
        return settings.threshold
    if settings.answerer == "reader" and engine.calibration is not None:
        return engine.calibration.threshold
    from qa.config import HEURISTIC_THRESHOLD

    return HEURISTIC_THRESHOLD


def ask(engine: Engine, question: str, *, history: list[str] | None = None, settings: Settings | None = None,
        depth: int = 0) -> Result:
    """Answer one question; ``history`` holds earlier questions of the conversation, oldest first
    (each as it was searched, ``Result.understood.query``, so a chain of follow-ups keeps its topic).
    Whether the question is a follow-up is decided by :func:`qa.followup.understand`.

    ``depth`` > k also returns that many ranked hits in ``Result.hits`` (for ``qa eval``),
    without changing the answer: the answer always comes from the normal top-k retrieval.
    """
    settings = settings or engine.settings
    typed = check_question(question)
    t0 = time.perf_counter()
    question = truecase(typed, engine.index)  # "china" as "China", so that the checks on names see it
    normal = max(settings.candidates, settings.k)
    decision = understand(engine.index, engine.encoder, question, history or [],
                          settings.replace(k=max(settings.k, min(depth, normal))))
    found, query = decision.retrieval, decision.understanding.query
    t1 = time.perf_counter()
    hits = found.hits[: settings.k]
    step_ms: dict[str, float] = {}
    needed = threshold(engine, settings)
    best: float | None = None  # the best candidate's confidence, for the abstention's reason
    missing: list[str] | None = None  # the question's names no document mentions (reader only)
    lead: list[Answer] = []  # on abstaining, the best candidate below the threshold (reader only)
    if settings.answerer == "reader":
        if engine.reader is None or engine.calibration is None:
            raise QAError("this engine was opened without a reader (open it with answerer='reader')")
        read = hits[: settings.read]
        missing = unmentioned(question, engine.index)
        ranked_spans, reader_ms = reader_candidates(engine.reader, engine.calibration,
                                                    decision.understanding.read_as or query, read,
                                                    unmentioned=bool(missing), early_exit=settings.early_exit)
        answers = select_answers(ranked_spans, read, engine.calibration, threshold=needed,
                                 max_answers=settings.max_answers)
        step_ms = {"reader": round(reader_ms, 3)}
        # the top-ranked candidate's: the one an answer would be (a lower-ranked one may score higher once
        # a passage lacking a name the question asks about is capped, and is never shown)
        best = ranked_spans[0].probability if ranked_spans else None
        if not answers and ranked_spans and not missing:
            top = ranked_spans[0]
            lead = [to_answer(top, read[top.hit].passage, engine.calibration)]
    else:
        from qa.heuristic import extract

        qvec = found.query_vector
        if qvec is None:
            qvec = engine.encoder.encode([query])[0]
        answers = extract(question, query, hits, engine.index, qvec, settings.replace(threshold=needed),
                          engine.encoder)
    citations, cited = cite(hits, answers + lead, engine.index)
    answers, lead = cited[: len(answers)], cited[len(answers):]
    abstention = None if answers else explain(question, engine.index, citations, best=best, threshold=needed,
                                                 missing=missing, lead=lead[0] if lead else None)
    t2 = time.perf_counter()
    ranked = found.hits
    if depth > normal:  # deeper than the answer's retrieval goes: a second, separate retrieval
        ranked = retrieve(engine.index, engine.encoder, query, settings.replace(k=depth)).hits
    timings = {
        "retrieve": round((t1 - t0) * 1000, 3),
        "answer": round((t2 - t1) * 1000, 3),
        "total": round((t2 - t0) * 1000, 3),
        **{f"retrieve_{k}": round(v, 3) for k, v in found.timings_ms.items()},
        **step_ms,
    }
    return Result(
        question=typed,
        answers=answers,
        citations=citations,
        mode=settings.mode,
        timings_ms=timings,
        message=abstention.text if abstention else "",
        hits=ranked if depth else [],
        understood=decision.understanding,
        abstention=abstention,
        disagreement=disagreement(answers),
    )
