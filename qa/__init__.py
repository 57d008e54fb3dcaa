"""Offline question answering over a folder of documents.

The data's path, one module per step: load → split → index (embed) → retrieve →
answer (the trained reader, :mod:`qa.reader`) → present; the types that flow between
them are in ``qa.datatypes``, the settings in ``qa.config``, and ``qa.pipeline`` runs the
whole path for one question. The public API::

    from qa import Settings, open_engine, ask
    engine = open_engine(Settings(corpus=Path("corpus"), index=Path("index")))
    result = ask(engine, "How many drones has Russia purchased?")
    result.answers[0].span, result.answers[0].score, result.citations[0].line

Names are imported on first use, so ``import qa`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
import os

# No model is ever fetched from a hub: every process that imports qa runs Hugging Face's libraries
# offline. The one place this is set.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_EXPORTS = {
    "Settings": "qa.config",
    "IndexSettings": "qa.config",
    "AskSettings": "qa.config",
    "Engine": "qa.pipeline",
    "open_engine": "qa.pipeline",
    "ask": "qa.pipeline",
    "build_index": "qa.build",
    "load_index": "qa.index",
    "load_reader": "qa.reader",
    "Result": "qa.datatypes",
    "Answer": "qa.datatypes",
    "Citation": "qa.datatypes",
    "Passage": "qa.datatypes",
    "Document": "qa.datatypes",
    "QAError": "qa.datatypes",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'qa' has no attribute {name!r}")
