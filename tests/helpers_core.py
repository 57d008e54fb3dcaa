"""Shared helpers for the core tests (load, split, index, retrieve, CLI).

The expensive things are made once per test session and copied:

- ``real_encoder()``: the bundled model through ONNX Runtime (loaded once);
- ``template(tmp_path_factory)``: the default 2-document corpus with a built index,
  which ``clone(tmp_path, ...)`` copies (corpus, index and its embedding cache) so a
  test gets its own index in a few milliseconds and can damage or update it freely.

Nothing here writes into the project's own ``corpus/`` or ``index/`` folders.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from pathlib import Path

import numpy as np


from qa.config import Settings  # noqa: E402
from qa.datatypes import Document, QAError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
DOC_A = "iran-russia-military-technology-axis.txt"  # holds the "1,700 drones" sentence
DOC_B = "russia-iran-military-ties-expansion.txt"
DRONES_QUESTION = "How many drones has Russia purchased from Iran since 2022?"


@functools.lru_cache(maxsize=None)
def real_encoder():
    from qa.embed import load_encoder

    return load_encoder(Settings().model_path, backend="onnx", precision="fp32")


class EncoderCrash(RuntimeError):
    """The simulated failure of an encoder in the middle of a build."""


class CountingEncoder:
    """Wraps an encoder; records every batch of texts asked for (``encode`` and ``encode_spans``);
    can fail on a given call."""

    def __init__(self, inner=None, fail_on_call: int | None = None):
        self.inner = inner or real_encoder()
        self.name = self.inner.name
        self.dim = self.inner.dim
        self.backend = self.inner.backend
        self.precision = self.inner.precision
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call  # 1-based

    @property
    def texts(self) -> list[str]:
        return [t for call in self.calls for t in call]

    def encode(self, texts, **kwargs) -> np.ndarray:
        texts = list(texts)
        if self.fail_on_call is not None and len(self.calls) + 1 >= self.fail_on_call:
            raise EncoderCrash("simulated interruption of the encoder")
        self.calls.append(texts)
        return self.inner.encode(texts, **kwargs)

    @property
    def pools_spans(self) -> bool:
        return bool(getattr(self.inner, "pools_spans", False))

    def encode_spans(self, texts, spans, **kwargs):
        texts = list(texts)
        if self.fail_on_call is not None and len(self.calls) + 1 >= self.fail_on_call:
            raise EncoderCrash("simulated interruption of the encoder")
        self.calls.append(texts)
        return self.inner.encode_spans(texts, spans, **kwargs)


def settings_for(root: Path, **changes) -> Settings:
    return Settings(corpus=Path(root) / "corpus", index=Path(root) / "index").replace(**changes)


def copy_corpus(dst: Path, names: tuple[str, ...] = (DOC_A, DOC_B)) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(CORPUS / name, dst / name)
    return dst


_TEMPLATE: dict[str, Path] = {}


def template(tmp_path_factory) -> Path:
    """A folder with ``corpus/`` (the 2 default documents) and a built ``index/``; made once."""
    if "root" not in _TEMPLATE:
        from qa.build import build_index

        root = tmp_path_factory.mktemp("template")
        copy_corpus(root / "corpus")
        build_index(settings_for(root), log=lambda msg: None, progress=False, encoder=real_encoder())
        _TEMPLATE["root"] = root
    return _TEMPLATE["root"]


def clone(tmp_path_factory, dst: Path) -> Settings:
    """A private copy of the template (corpus + built index + cache) under ``dst``."""
    src = template(tmp_path_factory)
    shutil.copytree(src / "corpus", dst / "corpus")
    shutil.copytree(src / "index", dst / "index")
    return settings_for(dst)


def live_generation(index_folder: Path) -> Path:
    return Path(index_folder) / (Path(index_folder) / "CURRENT").read_text().strip()


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def doc_from_text(text: str, doc_id: str = "t.txt") -> Document:
    return Document(id=doc_id, title="t", text=text, sha256="0" * 64)


def make_pdf(path: Path, pages: list[list[str]], title: str | None = None) -> Path:
    """A real PDF with text pages (Helvetica, one ``Tj`` per line) written by pypdf."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    add = getattr(writer, "add_object", None) or writer._add_object
    for lines in pages:
        page = writer.add_blank_page(width=612, height=792)
        font = DictionaryObject({
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
            NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
        })
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): add(font)})}
        )
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = add(stream)
    if title is not None:
        writer.add_metadata({"/Title": title})
    with open(path, "wb") as f:
        writer.write(f)
    return path


def make_docx(path: Path, blocks: list, *, title_property: str | None = None) -> Path:
    """A Word file written by python-docx, block by block: a string is a paragraph, ``(level,
    text)`` a heading (level 0: the Title style), a list of rows (tuples of cells) a table."""
    import docx

    d = docx.Document()
    if title_property is not None:
        d.core_properties.title = title_property
    for block in blocks:
        if isinstance(block, str):
            d.add_paragraph(block)
        elif isinstance(block, tuple):
            d.add_heading(block[1], level=block[0])
        else:
            table = d.add_table(rows=len(block), cols=len(block[0]))
            for r, row in enumerate(block):
                for c, value in enumerate(row):
                    table.cell(r, c).text = value
    d.save(path)
    return path


class HashEncoder:
    """Deterministic unit vectors from a hash of the text: the build path without a model."""

    name, dim, backend, precision = "hash-encoder", 8, "fake", "fp32"

    def encode(self, texts, batch_size: int = 32, **kwargs) -> np.ndarray:
        rows = [np.random.default_rng(int(hashlib.sha1(t.encode("utf-8")).hexdigest()[:8], 16)).standard_normal(8)
                for t in texts]
        out = np.asarray(rows, dtype=np.float32).reshape(len(texts), 8)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def one_line_qaerror(fn, *args, **kw) -> str:
    with __import__("pytest").raises(QAError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg
