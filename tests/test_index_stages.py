"""The index's build stages (``on_stage``), its titles made once per load, and staleness judged by
file status before any hashing (size, mtime, ctime, inode recorded in the manifest)."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

import qa.build
import qa.manifest
from helpers_core import live_generation, settings_for
from qa.build import BUILD_STAGES, build_index
from qa.index import load_index
from qa.digests import RACY_NS, STAT_FIELDS
from qa.manifest import read_manifest, staleness

pytestmark = pytest.mark.unit

OLD_NS = 1_700_000_000 * 10**9  # 2023-11-14: long before any build of these tests
DOCS = {
    "notes.md": "# Caspian Notes\n\n" + "\n\n".join(
        " ".join(f"Paragraph {p} sentence {s} says that shipment {p * 10 + s} reached port number {s}." for s in range(5))
        for p in range(4)) + "\n",
    "sub/ports.txt": "Port Registry\n\nThe port of Astrakhan handled 1,700 crates in 2023. It closed in winter. "
                     "Makhachkala took the rest. Its berths were dredged twice.\n",
}


class HashEncoder:
    """Deterministic unit vectors from a hash of the text; ``pause`` seconds per call; counts calls."""

    name, dim, backend, precision = "hash-encoder", 8, "fake", "fp32"

    def __init__(self, pause: float = 0.0):
        self.pause, self.calls = pause, 0

    def encode(self, texts, batch_size: int = 32, **kwargs) -> np.ndarray:
        self.calls += 1
        time.sleep(self.pause)
        rows = [np.random.default_rng(int(hashlib.sha1(t.encode("utf-8")).hexdigest()[:8], 16)).standard_normal(8)
                for t in texts]
        out = np.asarray(rows, dtype=np.float32).reshape(len(texts), 8)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def quiet(msg: str) -> None:
    pass


def make_corpus(root: Path, docs: dict[str, str | bytes] = DOCS, mtime_ns: int | None = OLD_NS):
    """A corpus under ``root``; its files' mtime set to ``mtime_ns`` (None: left as written, i.e. now)."""
    settings = settings_for(root)
    for name, content in docs.items():
        path = Path(settings.corpus) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        if mtime_ns is not None:
            os.utime(path, ns=(mtime_ns, mtime_ns))
    return settings


def stat_fields(path: Path) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


# ------------------------------------------------------------------ the stage hook


def test_build_reports_every_stage_once_in_order(tmp_path):
    settings = make_corpus(tmp_path)
    reported: list[tuple[str, float]] = []
    t = time.perf_counter()
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder(), on_stage=lambda *a: reported.append(a))
    wall = time.perf_counter() - t
    assert [name for name, _ in reported] == list(BUILD_STAGES) == [
        "list", "prepare", "load", "split", "encoder", "sentences", "encode", "faiss", "tokenize", "bm25",
        "write", "cleanup", "cache"]
    assert all(type(s) is float and s >= 0 for _, s in reported)
    assert sum(s for _, s in reported) <= wall  # the stages split the build, they never overlap

    # an update with nothing to read or encode reports the same stages
    again: list[str] = []
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder(), on_stage=lambda name, s: again.append(name))
    assert again == list(BUILD_STAGES)


def test_each_stage_holds_its_own_time(tmp_path, monkeypatch):
    """Time spent loading the encoder and encoding shows in exactly those stages."""
    settings = make_corpus(tmp_path)
    encoder = HashEncoder(pause=0.02)

    def slow_loader(s):
        time.sleep(0.1)
        return encoder

    monkeypatch.setattr(qa.build, "indexing_encoder", slow_loader)
    stages: dict[str, float] = {}
    t = time.perf_counter()
    build_index(settings, log=quiet, progress=False, on_stage=stages.__setitem__)
    wall = time.perf_counter() - t
    assert list(stages) == list(BUILD_STAGES)
    assert encoder.calls == 2  # 35 texts (9 passages, 26 sentences) in batches of 32
    assert stages["encoder"] >= 0.1 and stages["encode"] >= 0.04
    assert sum(stages.values()) <= wall  # so neither pause is counted in another stage too


def test_build_without_a_hook_is_unchanged(tmp_path):
    """With and without ``on_stage``: the same generation files, manifest and log (but for times)."""
    settings = make_corpus(tmp_path)
    with_hook = settings.replace(index=tmp_path / "index-hooked")
    logs: dict[str, list[str]] = {"plain": [], "hooked": []}
    stages: list[str] = []
    plain = build_index(settings, log=logs["plain"].append, progress=False, encoder=HashEncoder())
    hooked = build_index(with_hook, log=logs["hooked"].append, progress=False, encoder=HashEncoder(),
                         on_stage=lambda name, s: stages.append(name))
    assert stages == list(BUILD_STAGES)
    assert {**plain, "built": None, "stat": None} == {**hooked, "built": None, "stat": None}  # files' status differs
    gen_a, gen_b = live_generation(settings.index), live_generation(with_hook.index)
    assert sorted(f.name for f in gen_a.iterdir()) == sorted(f.name for f in gen_b.iterdir())
    for f in gen_a.iterdir():
        if f.name != "manifest.json":  # which differs by its "built" time and files' status only
            assert f.read_bytes() == (gen_b / f.name).read_bytes(), f.name
    untimed = [[re.sub(r"\d+\.\d+s", "Ts", m) for m in log] for log in logs.values()]
    assert untimed[0] == untimed[1] and untimed[0][-1] == (
        "index: 2 documents (2 read), 9 passages, 25 sentences in Ts (FAISS+BM25 Ts)")
    assert load_index(settings).passages == load_index(with_hook).passages


def test_a_failing_hook_stops_the_build_and_leaves_the_old_index(tmp_path):
    settings = make_corpus(tmp_path)
    first = build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    (Path(settings.corpus) / "notes.md").write_text("# Other\n\nA new text entirely. It has two sentences.\n")

    def hook(name, seconds):
        if name == "encode":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(settings, log=quiet, progress=False, encoder=HashEncoder(), on_stage=hook)
    assert read_manifest(Path(settings.index)) == first
    assert staleness(settings) == "corpus changed (0 added, 1 changed, 0 removed)"


# ------------------------------------------------------------------ titles


def test_titles_are_made_once_per_loaded_index(tmp_path):
    settings = make_corpus(tmp_path)
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    index = load_index(settings)
    titles = index.titles
    assert titles is index.titles  # the second access builds nothing
    assert titles == {d: m["title"] for d, m in index.manifest["docs"].items()} == {
        "notes.md": "Caspian Notes", "sub/ports.txt": "Port Registry"}
    (Path(settings.corpus) / "more.md").write_text("# Volga Barges\n\nThe barges carried grain. They were slow.\n")
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    reloaded = load_index(settings)
    assert reloaded.titles is not titles and reloaded.titles["more.md"] == "Volga Barges"
    assert "more.md" not in index.titles  # each loaded index keeps the titles of its own manifest


# ------------------------------------------------------------------ staleness by file status


class Watched:
    """A file object of the corpus, opened through ``Reads``: records each read from it."""

    def __init__(self, f, name: str, reads: list[str]):
        self._f, self._name, self._reads = f, name, reads

    def __enter__(self):
        self._f.__enter__()
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __iter__(self):
        self._reads.append(self._name)
        return iter(self._f)

    def __getattr__(self, attr):
        if attr.startswith("read"):  # read, readall, readinto, readline, readlines
            self._reads.append(self._name)
        return getattr(self._f, attr)


class Reads:
    """Counts ``qa.manifest.hash_file`` calls (staleness and build) and records every read from a corpus file, by any means
    of opening it (``qa.load.corpus_files`` opens each file, without reading it, to see that it can)."""

    def __init__(self, monkeypatch, corpus: Path):
        self.hashed: list[str] = []
        self.read: list[str] = []
        corpus = str(Path(corpus).resolve())
        real_hash, real_open = qa.manifest.hash_file, io.open

        def hash_file(path):
            self.hashed.append(Path(path).name)
            return real_hash(path)

        def opening(file, *a, **kw):
            f = real_open(file, *a, **kw)
            if isinstance(file, (str, os.PathLike)) and os.path.abspath(file).startswith(corpus + os.sep):
                return Watched(f, Path(file).name, self.read)
            return f

        monkeypatch.setattr(qa.manifest, "hash_file", hash_file)
        monkeypatch.setattr(qa.build, "hash_file", hash_file)
        monkeypatch.setattr(io, "open", opening)  # pathlib's read_bytes / open
        monkeypatch.setattr(builtins, "open", opening)

    def clear(self) -> None:
        self.hashed.clear()
        self.read.clear()


def test_untouched_corpus_is_up_to_date_without_reading_a_byte(tmp_path, monkeypatch):
    settings = make_corpus(tmp_path, {**DOCS, "garbage.txt": bytes(range(256)) * 8})
    manifest = build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    corpus = Path(settings.corpus)
    assert list(manifest["skipped"]) == ["garbage.txt"]
    for did in ("notes.md", "sub/ports.txt"):  # the status each file had when the build read it
        assert {k: manifest["docs"][did][k] for k in STAT_FIELDS} == stat_fields(corpus / did)
        assert manifest["docs"][did]["mtime_ns"] == OLD_NS
    assert manifest["skipped_stat"] == {"garbage.txt": stat_fields(corpus / "garbage.txt")}
    reads = Reads(monkeypatch, corpus)
    assert staleness(settings) is None
    assert reads.hashed == [] and reads.read == []
    # the files are really there to be read: the counters see a read
    assert qa.manifest.hash_file(corpus / "notes.md") == manifest["docs"]["notes.md"]["sha256"]
    assert reads.hashed == ["notes.md"] and reads.read == ["notes.md"]


def test_touched_file_with_the_same_bytes_is_up_to_date(tmp_path, monkeypatch):
    settings = make_corpus(tmp_path)
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    path = Path(settings.corpus) / "notes.md"
    os.utime(path, ns=(OLD_NS + 10**9, OLD_NS + 10**9))
    reads = Reads(monkeypatch, settings.corpus)
    assert staleness(settings) is None
    assert reads.hashed == reads.read == ["notes.md"]  # only the touched file is read


def test_changed_file_is_stale(tmp_path, monkeypatch):
    settings = make_corpus(tmp_path)
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    path = Path(settings.corpus) / "notes.md"
    path.write_text(DOCS["notes.md"].replace("Caspian", "Baltic!"), encoding="utf-8")
    reads = Reads(monkeypatch, settings.corpus)
    assert staleness(settings) == "corpus changed (0 added, 1 changed, 0 removed)"
    assert reads.hashed == reads.read == ["notes.md"]


def test_replaced_file_of_the_same_size_and_mtime_is_stale(tmp_path, monkeypatch):
    """As ``cp -p`` or an unpacked archive leave it: other bytes, same size, same mtime, a new inode."""
    settings = make_corpus(tmp_path)
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    path = Path(settings.corpus) / "notes.md"
    before = stat_fields(path)
    tmp = path.with_name(".notes.md.new")  # hidden: not a document
    tmp.write_text(DOCS["notes.md"].replace("Caspian", "Baltics"), encoding="utf-8")
    os.utime(tmp, ns=(OLD_NS, OLD_NS))
    os.replace(tmp, path)
    after = stat_fields(path)
    assert (after["size"], after["mtime_ns"]) == (before["size"], before["mtime_ns"]) and after["ino"] != before["ino"]
    reads = Reads(monkeypatch, settings.corpus)
    assert staleness(settings) == "corpus changed (0 added, 1 changed, 0 removed)"
    assert reads.hashed == reads.read == ["notes.md"]


def test_added_and_removed_files_are_stale(tmp_path, monkeypatch):
    settings = make_corpus(tmp_path)
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    (Path(settings.corpus) / "sub" / "ports.txt").unlink()
    (Path(settings.corpus) / "new.md").write_text("# New\n\nA new document. It has two sentences.\n")
    reads = Reads(monkeypatch, settings.corpus)
    assert staleness(settings) == "corpus changed (1 added, 0 changed, 1 removed)"
    assert reads.hashed == reads.read == ["new.md"]


def test_file_modified_just_before_the_build_is_always_hashed(tmp_path, monkeypatch):
    """A file written less than RACY_NS before the build read it could be written again within its
    timestamp's granularity with its size and mtime unchanged: no status is recorded for it."""
    assert RACY_NS == 2 * 10**9
    settings = make_corpus(tmp_path)
    fresh = Path(settings.corpus) / "fresh.md"
    fresh.write_text("# Fresh\n\nWritten right now. Twice, maybe.\n")
    manifest = build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    assert not set(STAT_FIELDS) & set(manifest["docs"]["fresh.md"])
    assert set(STAT_FIELDS) <= set(manifest["docs"]["notes.md"])
    reads = Reads(monkeypatch, settings.corpus)
    assert staleness(settings) is None and reads.hashed == reads.read == ["fresh.md"]
    reads.clear()
    fresh.write_text("# Fresh\n\nWritten right now. Twice, mAybe.\n")  # same size, perhaps the same mtime
    assert staleness(settings) == "corpus changed (0 added, 1 changed, 0 removed)"
    assert reads.hashed == reads.read == ["fresh.md"]


def test_manifest_without_file_status_hashes_every_file(tmp_path, monkeypatch):
    """A manifest written before file status was recorded (or a hand-edited one) is still read: the
    files are hashed, as they always were."""
    settings = make_corpus(tmp_path, {**DOCS, "garbage.txt": bytes(range(256)) * 8})
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    path = live_generation(settings.index) / "manifest.json"
    m = json.loads(path.read_text())
    for meta in m["docs"].values():
        for k in STAT_FIELDS:
            del meta[k]
    del m["skipped_stat"]
    path.write_text(json.dumps(m))
    reads = Reads(monkeypatch, settings.corpus)
    assert staleness(settings) is None
    assert sorted(reads.hashed) == sorted(reads.read) == ["garbage.txt", "notes.md", "ports.txt"]
    reads.clear()
    m["docs"]["notes.md"].update(size="1", mtime_ns=True, ctime_ns=None, ino=1.5)  # not ints: hash it
    path.write_text(json.dumps(m))
    assert staleness(settings) is None
    assert sorted(reads.hashed) == sorted(reads.read) == ["garbage.txt", "notes.md", "ports.txt"]
    assert len(load_index(settings).passages) == 9  # the index loads as ever


def test_update_records_the_new_status_of_unchanged_documents(tmp_path, monkeypatch):
    """A touched document carried into a new generation gets its new status: no more hashing."""
    settings = make_corpus(tmp_path)
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    corpus = Path(settings.corpus)
    os.utime(corpus / "notes.md", ns=(OLD_NS + 10**9, OLD_NS + 10**9))
    ports = corpus / "sub" / "ports.txt"
    ports.write_text(DOCS["sub/ports.txt"] + "\nA new line. Another one.\n")
    os.utime(ports, ns=(OLD_NS, OLD_NS))
    log: list[str] = []
    manifest = build_index(settings, log=log.append, progress=False, encoder=HashEncoder())
    assert log[-1].startswith("index: 2 documents (1 read),")  # notes.md was reused, not re-read
    assert {k: manifest["docs"]["notes.md"][k] for k in STAT_FIELDS} == stat_fields(corpus / "notes.md")
    assert {k: manifest["docs"]["sub/ports.txt"][k] for k in STAT_FIELDS} == stat_fields(ports)
    reads = Reads(monkeypatch, corpus)
    assert staleness(settings) is None and reads.hashed == reads.read == []
