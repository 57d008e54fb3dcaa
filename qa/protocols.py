"""The small interfaces where implementations plug in: an encoder, a retriever, a reader.

Each is a ``typing.Protocol``: anything with these attributes and methods fits, without
inheriting from anything (the tests' ``HashEncoder`` is a ``TextEncoder``; the trained
``qa.reader.Reader`` is a ``SpanReader``). Only the standard library and numpy are imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # for the annotations only: importing them here would load the index and reader code
    from qa.index import Index
    from qa.reader_windows import SpanScore


@runtime_checkable
class TextEncoder(Protocol):
    """Texts to unit vectors (``qa.embed.Encoder``): the index build encodes passages and sentences
    with one, queries are encoded with another of the same model."""

    name: str  # shown in the manifest
    dim: int
    backend: str  # onnx, torch, ...
    precision: str  # fp32, bf16, int8

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """float32 array (len(texts), dim), unit rows, in input order."""
        ...


@runtime_checkable
class SpanPoolingEncoder(TextEncoder, Protocol):
    """An encoder that can also pool span vectors (the sentences of a passage) out of the text's own
    forward pass (``qa.embed.Encoder`` with the onnx backend). The build uses it when ``pools_spans``
    is true (``qa.vectors``); any other ``TextEncoder`` has its sentences encoded one by one."""

    pools_spans: bool

    def encode_spans(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], *,
                     batch_size: int = 32) -> tuple[np.ndarray, list[np.ndarray]]:
        """The texts' vectors, and per text the vectors of its character spans."""
        ...


class Retriever(Protocol):
    """One ranking of the index's passages for a query (``qa.retrieve.RETRIEVERS``): passage rows and
    their scores, best first, at most ``depth``. ``qvec`` is the query's vector (None when the mode
    needs none)."""

    def __call__(self, index: Index, query: str, qvec: np.ndarray | None, depth: int) -> tuple[np.ndarray, np.ndarray]:
        ...


@runtime_checkable
class SpanReader(Protocol):
    """What the answer step needs of a reader: the best spans of ``texts`` for ``question`` (best
    first) and the milliseconds it took; its ``identity`` (what a calibration is fitted for) and its
    ``folder`` (where its own calibration ships). Another reader plugs in by providing this."""

    identity: str
    folder: Path

    def read(self, question: str, texts: list[str], *, per_window: int = 3) -> tuple[list[SpanScore], float]: ...
