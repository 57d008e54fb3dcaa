"""The columnar passage store (qa.passages): exact round trip, nothing read on open, an index of an
older format (4: passages.json; 5: BM25 postings in bm25.npz) still opens and is rewritten without
encoding, a kill -9 while it is written keeps the old index."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import qa.manifest
import qa.passages
from helpers_core import CountingEncoder, HashEncoder, live_generation, one_line_qaerror, settings_for
from qa.build import build_index, ensure_index
from qa.datatypes import Passage
from qa.index import load_index
from qa.bm25 import bm25_top, load_bm25
from qa.manifest import FORMAT_VERSION, GENERATION_FILES, staleness
from qa.passages import JSON_FILE, PASSAGE_FILES, PassageStore, open_passages, write_passages


TESTS = Path(__file__).parent
HEADINGS = ("", "Résumé – 第一章", "Ω 🚀 e\u0301")


def quiet(msg: str) -> None:
    pass


def odd_passages() -> list[Passage]:
    """Passages with every field set, unicode text (combining marks, CJK, astral emoji, NUL, form feeds)."""
    texts = ["Plain ASCII.", "Café naïve — “quoted” 😀 text.\nSecond line 第二行.", "e\u0301\u0000tab\there\fpage 2.",
             "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 " * 30, "x"]
    out, start = [], 5
    for i, text in enumerate(texts * 3):
        end = start + len(text)
        mid = start + len(text) // 2
        out.append(Passage(doc=("a.md", "dir/b – ü.txt", "c.pdf")[i % 3], ordinal=i, start=start, end=end,
                           line=1 + 3 * i, text=text, sentences=((start, mid), (mid, end)) if i % 2 else ((start, end),),
                           page=i % 4, page_line=(i % 4) and 2 * i + 1, heading=HEADINGS[i % 3]))
        start = end + 2
    return out


def written(tmp_path: Path, passages: list[Passage]) -> PassageStore:
    write_passages(tmp_path, passages)
    return open_passages(tmp_path, {p.doc for p in passages})


@pytest.mark.unit
def test_every_field_round_trips_exactly(tmp_path, monkeypatch):
    passages = odd_passages()
    store = written(tmp_path, passages)
    assert len(store) == len(passages)
    assert [store[i] for i in range(len(store))] == passages  # one row at a time
    monkeypatch.setattr(qa.passages, "CHUNK", 4)  # iteration across chunk boundaries
    assert list(store) == passages
    assert store == passages and passages == store and store != passages[:-1]
    assert store[-1] == passages[-1] and store[2:7:2] == passages[2:7:2]
    for got, want in zip(store, passages):
        assert type(got.text) is str and type(got.start) is int and type(got.sentences[0][0]) is int
        assert got.key == want.key
    with pytest.raises(IndexError):
        store[len(passages)]
    (tmp_path / "empty").mkdir()
    empty = written(tmp_path / "empty", [])
    assert len(empty) == 0 and list(empty) == [] and empty == []


@pytest.mark.unit
def test_opening_builds_no_passage_and_reads_no_text(tmp_path, monkeypatch):
    """A texts file of 2 GiB (sparse: no disk used) opens at once; only the row asked for is decoded."""
    big = 2 << 30
    rows = np.zeros(2, dtype=qa.passages.ROW)
    rows[0] = (0, 0, 0, big - 1, 1, 0, 0, 0, big - 1, 1)
    rows[1] = (0, 1, big - 1, big, 1, 0, 0, 0, big, 1)
    np.save(tmp_path / qa.passages.ROWS, rows)
    np.save(tmp_path / qa.passages.SPANS, np.array([[0, big - 1]], dtype=np.int64))
    (tmp_path / qa.passages.STRINGS).write_text(json.dumps({"docs": ["huge.txt"], "headings": [""]}))
    with open(tmp_path / qa.passages.TEXTS, "wb") as f:
        f.seek(big - 1)
        f.write(b"Z")
    made = []
    monkeypatch.setattr(qa.passages, "Passage", lambda *a: made.append(a) or Passage(*a))
    t = time.perf_counter()
    store = open_passages(tmp_path, {"huge.txt"})
    assert time.perf_counter() - t < 1.0  # decoding 2 GiB would take seconds: a huge margin
    assert made == [] and len(store) == 2
    last = store[1]
    assert last.text == "Z" and last.sentences == () and len(made) == 1


def hash_built(tmp_path: Path, docs: int = 3):
    settings = settings_for(tmp_path)
    Path(settings.corpus).mkdir(parents=True)
    for i in range(docs):
        (Path(settings.corpus) / f"doc{i}.md").write_text(
            f"# Notes {i}\n\n## Café section\n\n" + " ".join(f"Crate {j} of batch {i} weighed {j * 7} kilos."
                                                           for j in range(14)) + "\n", encoding="utf-8")
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    return settings


@pytest.mark.unit
def test_a_loaded_index_builds_passages_only_when_asked(tmp_path, monkeypatch):
    settings = hash_built(tmp_path)
    want = list(load_index(settings).passages)
    made = []
    monkeypatch.setattr(qa.passages, "Passage", lambda *a: made.append(a) or Passage(*a))
    index = load_index(settings)
    assert isinstance(index.passages, PassageStore) and made == []
    assert index.passages[3] == want[3] and len(made) == 1


@pytest.mark.unit
def test_a_fresh_index_is_opened_without_hashing_and_an_edit_is_still_caught(tmp_path, monkeypatch):
    settings = hash_built(tmp_path)
    hashed = []
    real = qa.manifest.file_sha256
    monkeypatch.setattr(qa.manifest, "file_sha256", lambda p: hashed.append(Path(p).name) or real(p))
    load_index(settings)
    assert hashed == []  # every file's status is the one the build recorded
    texts = live_generation(settings.index) / qa.passages.TEXTS
    data = texts.read_bytes()
    texts.write_bytes(data.replace(b"Crate", b"Crane", 1))
    msg = one_line_qaerror(load_index, settings)
    assert hashed == [qa.passages.TEXTS] and f"{qa.passages.TEXTS} was modified" in msg


@pytest.mark.unit
def test_a_text_that_is_not_utf8_is_a_one_line_error_when_read(tmp_path):
    settings = hash_built(tmp_path)
    texts = live_generation(settings.index) / qa.passages.TEXTS
    data = bytearray(texts.read_bytes())
    data[0] = 0xFF
    texts.write_bytes(bytes(data))
    index = load_index(settings, verify=False)  # opened: no text is read
    msg = one_line_qaerror(lambda: index.passages[0])
    assert "damaged" in msg and qa.passages.TEXTS in msg and "rebuild" in msg
    assert "was modified" in one_line_qaerror(load_index, settings)  # the digest catches it first


def to_older_format(gen: Path, version: int) -> None:
    """Rewrite generation ``gen`` as earlier versions wrote it: format 5 kept the BM25 postings in
    bm25.npz (BM25 format 1); format 4 also kept the passages in passages.json."""
    manifest = json.loads((gen / "manifest.json").read_text())
    bm25 = load_bm25(gen)
    np.savez(gen / "bm25.npz", format=np.int64(1), n_docs=np.int64(bm25.n_docs),
             params=np.array([bm25.k1, bm25.b, bm25.epsilon]), indptr=bm25.indptr, docs=np.asarray(bm25.docs),
             weights=np.asarray(bm25.weights))
    del bm25
    for name in ("bm25_docs.npy", "bm25_weights.npy"):
        (gen / name).unlink()
    if version == 4:
        passages = list(open_passages(gen, manifest["docs"]))
        columns = {k: [getattr(p, k) for p in passages] for k in ("doc", "ordinal", "start", "end", "line", "text",
                                                                  "page", "page_line", "heading")}
        columns["sentences"] = [[list(s) for s in p.sentences] for p in passages]
        (gen / JSON_FILE).write_text(json.dumps(columns, ensure_ascii=False), encoding="utf-8")
        for name in PASSAGE_FILES:
            (gen / name).unlink()
    manifest["format"] = manifest["signature"]["format"] = version
    del manifest["stat"]
    manifest["files"] = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(gen.iterdir())
                         if f.name != "manifest.json"}
    (gen / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.unit
@pytest.mark.parametrize("version", [4, 5])
def test_an_index_of_an_older_format_opens_and_is_rewritten_from_the_cache(tmp_path, version):
    settings = hash_built(tmp_path)
    want = list(load_index(settings).passages)
    question = ["crate", "batch", "kilos"]
    want_bm25 = bm25_top(load_index(settings).bm25, question, 5)
    gen = live_generation(settings.index)
    to_older_format(gen, version)
    old = load_index(settings)  # opens as it is, every digest checked
    assert old.passages == want and old.folder == gen
    assert all(np.array_equal(a, b) for a, b in zip(bm25_top(old.bm25, question, 5), want_bm25))
    assert staleness(settings) == f"the index is in format {version}, this version writes format {FORMAT_VERSION}"
    log: list[str] = []
    enc = CountingEncoder(HashEncoder())
    build_index(settings, log=log.append, progress=False, encoder=enc)
    assert enc.texts == []  # every vector came from the embedding cache
    index = load_index(settings)
    assert isinstance(index.passages, PassageStore) and index.passages == want
    assert index.folder != gen and staleness(settings) is None
    assert sorted(f.name for f in index.folder.iterdir()) == sorted([*GENERATION_FILES, "manifest.json"])


@pytest.mark.unit
def test_ensure_index_says_in_one_line_why_it_rewrites_an_old_index(tmp_path, monkeypatch):
    settings = hash_built(tmp_path)
    to_older_format(live_generation(settings.index), 4)
    monkeypatch.setattr("qa.build.indexing_encoder", lambda s: CountingEncoder(HashEncoder()))
    log: list[str] = []
    index = ensure_index(settings, log=log.append, progress=False)
    assert log[0] == (f"index: the index is in format 4, this version writes format {FORMAT_VERSION}; "
                      f"building {settings.index} from {settings.corpus}")
    assert isinstance(index.passages, PassageStore) and len(index.passages) == index.manifest["passages"]


@pytest.mark.e2e
def test_kill_9_while_the_store_is_written_keeps_the_previous_index(tmp_path):
    settings = hash_built(tmp_path)
    before = list(load_index(settings).passages)
    gen_before = live_generation(settings.index)
    (Path(settings.corpus) / "doc9.md").write_text("A new shipment of tea arrived on Monday.\n")
    child = f"""
import sys, time
sys.path.insert(0, {str(TESTS)!r})
import qa.passages, qa.build
from helpers_core import HashEncoder, settings_for
real = qa.passages.write_passages
def write_then_hang(folder, passages):
    real(folder, passages)
    with open(folder / qa.passages.ROWS, "r+b") as f:
        f.truncate(40)  # torn, as a kill in mid-write leaves it
    print("writing", flush=True)
    time.sleep(60)
qa.build.write_passages = write_then_hang
qa.build.build_index(settings_for({str(tmp_path)!r}), log=lambda m: None, progress=False, encoder=HashEncoder())
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline() == b"writing\n"
        assert list(Path(settings.index).glob(".tmp-gen-*"))  # the new generation was half written
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert live_generation(settings.index) == gen_before
    assert load_index(settings).passages == before  # digests and columns checked
    assert "1 added" in staleness(settings)
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())  # clears what the kill left
    assert not list(Path(settings.index).glob(".tmp-gen-*"))
    assert any("tea" in p.text for p in load_index(settings).passages)


@pytest.mark.unit
def test_columns_that_disagree_are_refused_on_open(tmp_path):
    passages = odd_passages()
    write_passages(tmp_path, passages)
    with pytest.raises(ValueError, match="passage_strings.json does not match manifest.json"):
        open_passages(tmp_path, {"a.md"})
    rows = np.load(tmp_path / qa.passages.ROWS)
    rows["end"][2] = rows["start"][2] - 1
    np.save(tmp_path / qa.passages.ROWS, rows)
    with pytest.raises(ValueError, match="passages.npy holds a malformed passage"):
        open_passages(tmp_path, {p.doc for p in passages})
