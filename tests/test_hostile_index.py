"""A hostile index folder (issue "Hardening"): builds racing readers, a full disk, a read-only
folder, hand-edited files, and the build log's counts.

Fast and offline: the index is a copy of the session's template (its embeddings cached), and
the small corpora are encoded by a hash-based encoder instead of the model.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import qa.embcache
import qa.index
import qa.manifest
import qa.storage
import qa.pipeline
from helpers_core import (
    DOC_A,
    DRONES_QUESTION,
    CountingEncoder,
    EncoderCrash,
    HashEncoder,
    live_generation,
    one_line_qaerror,
    real_encoder,
    settings_for,
)
from qa.cli import main
from qa.config import HEURISTIC_THRESHOLD, Settings, load_saved
from qa.build import build_index, ensure_index
from qa.index import load_index
from qa.manifest import read_manifest, staleness
from qa.retrieve import retrieve
from qa.datatypes import QAError

pytestmark = pytest.mark.integration

NEW_SENTENCE = "The zeppelin fleet of the Caspian flotilla numbered 4,321 airships in 2024."
CHANGED = "corpus changed (0 added, 1 changed, 0 removed)"


class Log(list):
    def __call__(self, msg: str) -> None:
        self.append(msg)


def quiet(msg: str) -> None:
    pass


def small_doc(topic: str, n: int = 12) -> str:
    return f"# Notes on {topic}\n\n" + " ".join(
        f"Shipment {i} of {topic} reached port number {i % 5} in week {i + 1}." for i in range(n)
    ) + "\n"


def small_corpus(root: Path, docs: dict[str, str]) -> Settings:
    settings = settings_for(root)
    Path(settings.corpus).mkdir(parents=True)
    for name, text in docs.items():
        (Path(settings.corpus) / name).write_text(text, encoding="utf-8")
    return settings


def damaged(settings, what: str) -> str:
    return f"index in {settings.index} is damaged ({what}): run `qa index --rebuild`"


def append_sentence(settings, name=DOC_A, sentence=NEW_SENTENCE):
    path = Path(settings.corpus) / name
    path.write_text(path.read_text(encoding="utf-8") + "\n\n" + sentence + "\n", encoding="utf-8")


def top_passage(index, settings) -> str:
    return retrieve(index, real_encoder(), DRONES_QUESTION, settings).hits[0].passage.text


def generations(settings) -> list[str]:
    return sorted(p.name for p in Path(settings.index).glob("gen-*"))


def leftovers(settings) -> list[str]:
    """Temporary files and folders anywhere in the index folder."""
    root = Path(settings.index)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith(".tmp") or p.name.startswith((".tmp-", ".del-")))


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the digest of its bytes (folders as '<dir>')."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
            for p in sorted(Path(folder).rglob("*"))}


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        rc = main(args)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def where(settings) -> list[str]:
    return ["--corpus", str(settings.corpus), "--index", str(settings.index)]


def error_line(rc: int, err: str, status: int = 2) -> str:
    """Exit ``status`` (2: bad input; 1: the machine's fault, e.g. a full disk) and exactly one
    `error: ...` line, last, after only index notes and warnings."""
    assert rc == status, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert all(line.startswith(("index: ", "warning: ")) for line in lines[:-1]), err
    return lines[-1]


# ------------------------------------------------------------------ 1. builds racing readers


def test_a_generation_being_loaded_is_kept_until_the_reader_is_done(idx, monkeypatch):
    gen_before = live_generation(idx.index)
    real_read = qa.index.open_passages
    rebuilt = []

    def read_then_rebuild(gen, *args):
        if not rebuilt:  # a whole `qa index --rebuild` runs while this reader is half way through
            rebuilt.append(build_index(idx, rebuild=True, log=quiet, progress=False, encoder=CountingEncoder()))
        return real_read(gen, *args)

    monkeypatch.setattr(qa.index, "open_passages", read_then_rebuild)
    index = load_index(idx)
    monkeypatch.undo()
    assert rebuilt and live_generation(idx.index) != gen_before
    assert index.folder == gen_before  # the reader got the whole generation it started on
    assert generations(idx) == sorted([gen_before.name, live_generation(idx.index).name])
    assert "1,700" in top_passage(index, idx)
    newer = load_index(idx)
    assert newer.folder == live_generation(idx.index) and newer.passages == index.passages
    build_index(idx, rebuild=True, log=quiet, progress=False, encoder=CountingEncoder())
    assert generations(idx) == [live_generation(idx.index).name]  # no reader holds the old ones: deleted
    assert leftovers(idx) == []


@pytest.mark.parametrize("reader", ["load_index", "read_manifest"])
def test_a_reader_whose_generation_was_just_replaced_reads_current_again(idx, monkeypatch, reader):
    gen_before = live_generation(idx.index)
    real_current = qa.storage.read_current
    names = []

    def current_then_rebuild(folder):
        name = real_current(folder)
        if not names:  # CURRENT was read; a build replaces and deletes that generation before it is opened
            names.append(name)
            build_index(idx, rebuild=True, log=quiet, progress=False, encoder=CountingEncoder())
            assert not gen_before.exists()
        else:
            names.append(name)
        return name

    monkeypatch.setattr(qa.storage, "read_current", current_then_rebuild)
    got = load_index(idx) if reader == "load_index" else read_manifest(idx.index)
    monkeypatch.undo()
    gen_after = live_generation(idx.index)
    assert names[0] == gen_before.name and names[-1] == gen_after.name != gen_before.name
    if reader == "load_index":
        assert got.folder == gen_after and "1,700" in top_passage(got, idx)
    else:
        assert got == json.loads((gen_after / "manifest.json").read_text())


def test_files_vanishing_mid_load_without_file_locks_are_read_again(idx, monkeypatch):
    """On a file system without locks a build may delete the generation a reader is reading:
    the reader sees CURRENT moved and loads the new generation."""
    import fcntl

    real_flock = fcntl.flock

    def flock(fd, op):
        if os.path.isdir(f"/proc/self/fd/{fd if isinstance(fd, int) else fd.fileno()}"):
            raise OSError(errno.ENOLCK, "No locks available")
        return real_flock(fd, op)

    gen_before = live_generation(idx.index)
    real_read = qa.index.open_passages
    calls = []

    def read_after_a_rebuild(gen, *args):
        calls.append(gen.name)
        if len(calls) == 1:
            build_index(idx, rebuild=True, log=quiet, progress=False, encoder=CountingEncoder())
            assert not gen_before.exists()
        return real_read(gen, *args)

    monkeypatch.setattr(fcntl, "flock", flock)
    monkeypatch.setattr(qa.index, "open_passages", read_after_a_rebuild)
    index = load_index(idx)
    monkeypatch.undo()
    assert calls == [gen_before.name, live_generation(idx.index).name]
    assert index.folder == live_generation(idx.index)
    assert "1,700" in top_passage(index, idx)


def test_loads_never_fail_while_rebuilds_run_in_a_loop(tmp_path):
    """The issue's race: `qa index --rebuild` in a loop (a thread) while `qa ask` loads (here)."""
    settings = small_corpus(tmp_path, {f"doc{i}.md": small_doc(f"cargo {i}") for i in range(3)})
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    expected = load_index(settings).passages
    rebuilds, built, failures = 12, [], []
    done = threading.Event()

    def rebuild_loop():
        try:
            for _ in range(rebuilds):
                built.append(build_index(settings, rebuild=True, log=quiet, progress=False, encoder=HashEncoder()))
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(f"build: {e!r}")
        finally:
            done.set()

    builder = threading.Thread(target=rebuild_loop, daemon=True)
    loads, deadline = 0, time.monotonic() + 20
    builder.start()
    while not done.is_set() and time.monotonic() < deadline:
        try:
            assert staleness(settings) is None
            index = load_index(settings)
            assert index.passages == expected
            loads += 1
        except QAError as e:
            failures.append(f"load: {e}")
    builder.join(timeout=20)
    assert failures == []
    assert not builder.is_alive() and len(built) == rebuilds
    assert loads > 0
    build_index(settings, rebuild=True, log=quiet, progress=False, encoder=HashEncoder())
    assert generations(settings) == [live_generation(settings.index).name]
    assert leftovers(settings) == []


# ------------------------------------------------------------------ 2. a full disk


class FullDisk:
    """A file on a full disk: the first write stores half its bytes, then ENOSPC, as does every later one."""

    def __init__(self, f):
        self._f = f
        self._full = False

    def write(self, data):
        if not self._full:
            self._full = True
            self._f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def fill_disk(monkeypatch, name_part: str, nth: int = 1) -> list[Path]:
    """The ``nth`` file opened for writing whose name holds ``name_part`` (every one when ``nth``
    is 0) hits a full disk; returns the paths of those files as they are opened."""
    real_open = builtins.open
    opened: list[Path] = []

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") and name_part in os.path.basename(file):
            opened.append(Path(os.fspath(file)))
            if nth in (0, len(opened)):
                return FullDisk(f)
        return f

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    return opened


def replaced(tmp: Path) -> Path:
    """The file ``qa.storage.atomic_write`` replaces through the temporary ``tmp`` (.NAME.XXXXXX.tmp)."""
    return tmp.with_name(tmp.name[1:].rsplit(".", 2)[0])


FULL_AT = ["emb-", "passage_texts.bin", "passages.npy", "passage_spans.npy", "passage_strings.json", "dense.faiss", "sentences.npy", "sentence_table.npz", "bm25.npz",
           "bm25_vocab.json", "bm25_docs.npy", "bm25_weights.npy", "manifest.json", ".CURRENT."]


@pytest.mark.parametrize("name_part", FULL_AT)
def test_full_disk_during_a_build_is_one_line_and_keeps_the_index(idx, monkeypatch, name_part):
    gen_before = live_generation(idx.index)
    old = load_index(idx)
    cache_dir = next((Path(idx.index) / "cache").iterdir())
    shards_before = sorted(p.name for p in cache_dir.iterdir())
    append_sentence(idx)
    opened = fill_disk(monkeypatch, name_part)
    enc = CountingEncoder()
    msg = one_line_qaerror(build_index, idx, log=quiet, progress=False, encoder=enc)
    monkeypatch.undo()
    where = opened[0]  # a file replaced atomically is named, not its temporary
    if name_part == ".CURRENT.":
        where = Path(idx.index) / "CURRENT"
    elif name_part == "emb-":
        where = replaced(where)
    assert msg == f"disk full writing {where}"
    assert enc.texts  # the failure came after encoding began
    assert leftovers(idx) == []  # no torn emb-*.tmp, no .tmp-gen-* folder, no .CURRENT.*.tmp
    assert live_generation(idx.index) == gen_before
    if name_part == ".CURRENT.":  # the new generation was complete, never live; the next build deletes it
        assert len(set(generations(idx)) - {gen_before.name}) == 1
        assert opened[0].name.startswith(".CURRENT.")
    else:
        assert generations(idx) == [gen_before.name]
    if name_part == "emb-":  # the shards written before stay whole; the torn one is gone
        assert sorted(p.name for p in cache_dir.iterdir()) == shards_before
    index = load_index(idx)  # the old index serves, digests verified
    assert index.passages == old.passages and "1,700" in top_passage(index, idx)
    assert staleness(idx) == CHANGED
    # with room on the disk again the update goes through; encoded shards were kept
    again = CountingEncoder()
    build_index(idx, log=quiet, progress=False, encoder=again)
    if name_part == "emb-":
        assert sorted(again.texts) == sorted(enc.texts)  # the torn shard's texts are encoded again
    else:
        assert again.calls == []  # everything encoded before the disk filled up was cached
    assert NEW_SENTENCE in " ".join(p.text for p in load_index(idx).passages)
    assert generations(idx) == [live_generation(idx.index).name]
    assert staleness(idx) is None and leftovers(idx) == []


def test_full_disk_while_compacting_the_cache_is_a_warning_after_a_good_build(idx, monkeypatch):
    append_sentence(idx)
    cache_dir = next((Path(idx.index) / "cache").iterdir())
    opened = fill_disk(monkeypatch, "emb-", nth=2)  # 1: the new texts' shard, 2: the compacted cache
    log = Log()
    build_index(idx, log=log, progress=False, encoder=CountingEncoder())
    monkeypatch.undo()
    assert f"warning: disk full writing {replaced(opened[1])}; the embedding cache was not compacted" in log
    assert leftovers(idx) == [] and len(list(cache_dir.glob("emb-*.npz"))) == 2  # old shards kept whole
    assert staleness(idx) is None
    assert NEW_SENTENCE in " ".join(p.text for p in load_index(idx).passages)


def test_full_disk_on_qa_index_and_qa_ask(idx, fast, monkeypatch, capsys):
    gen_before = live_generation(idx.index)
    append_sentence(idx)
    opened = fill_disk(monkeypatch, "dense.faiss", nth=0)
    rc, out, err = run_main(["index", "-q", *where(idx)], capsys)
    assert error_line(rc, err, 1) == f"error: disk full writing {opened[0]}"
    assert out == "" and leftovers(idx) == []
    # `qa ask` tries the update, cannot write it, and answers from the index it has
    rc, out, err = run_main(["ask", "--answerer", "heuristic", "--json", "-q", *where(idx), DRONES_QUESTION], capsys)
    monkeypatch.undo()
    assert rc == 0, err
    assert err.splitlines() == [
        f"index: {CHANGED}; building {idx.index} from {idx.corpus}",
        f"warning: the index was not updated (disk full writing {opened[1]}); answering from the existing index",
    ]
    result = json.loads(out)
    assert "1,700" in result["answers"][0]["text"] and "1,700" in result["citations"][0]["text"]
    assert live_generation(idx.index) == gen_before and leftovers(idx) == []


# ------------------------------------------------------------------ 3. a read-only index folder


def read_only(monkeypatch, folder: Path, code: int = errno.EROFS) -> None:
    """Make every write under ``folder`` fail as on a read-only mount (root ignores chmod)."""
    top = os.path.abspath(folder)

    def inside(path) -> bool:
        if isinstance(path, int):
            return False
        p = os.path.abspath(os.fspath(path))
        return p == top or p.startswith(top + os.sep)

    def deny(path):
        raise OSError(code, os.strerror(code), os.fspath(path))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def fake_open(file, mode="r", *args, **kwargs):
        if set(mode) & set("wax+") and inside(file):
            deny(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        if flags & writing and (inside(path) or kwargs.get("dir_fd") is not None):
            deny(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if inside(path):
            if os.path.exists(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(path))
            deny(path)
        return real_mkdir(path, *args, **kwargs)

    def refuse(real):
        def fake(path, *args, **kwargs):
            if inside(path) or kwargs.get("dir_fd") is not None or (args and inside(args[0])):
                deny(path)
            return real(path, *args, **kwargs)

        return fake

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    for name in ("replace", "rename", "unlink", "remove", "rmdir", "utime"):
        monkeypatch.setattr(os, name, refuse(getattr(os, name)))


@pytest.mark.parametrize("code,why", [(errno.EROFS, "read-only file system: cannot write"),
                                      (errno.EACCES, "permission denied writing")])
def test_read_only_index_with_a_changed_corpus_answers_from_the_existing_index(idx, monkeypatch, code, why):
    append_sentence(idx)
    before = snapshot(idx.index)
    old = load_index(idx).passages
    read_only(monkeypatch, idx.index, code)
    lock = Path(idx.index) / ".lock"
    assert one_line_qaerror(build_index, idx, log=quiet, progress=False) == f"{why} {lock}"
    log = Log()
    index = ensure_index(idx, log=log, progress=False)
    assert staleness(idx) == CHANGED
    monkeypatch.undo()
    assert log == [
        f"index: {CHANGED}; building {idx.index} from {idx.corpus}",
        f"warning: the index was not updated ({why} {lock}); answering from the existing index",
    ]
    assert index.passages == old and "1,700" in top_passage(index, idx)
    assert snapshot(idx.index) == before  # nothing written, nothing deleted


def test_read_only_index_through_the_cli(idx, fast, monkeypatch, capsys):
    append_sentence(idx)
    before = snapshot(idx.index)
    read_only(monkeypatch, idx.index)
    lock = Path(idx.index) / ".lock"
    rc, out, err = run_main(["index", *where(idx)], capsys)
    assert error_line(rc, err, 1) == f"error: read-only file system: cannot write {lock}" and out == ""
    rc, out, err = run_main(["ask", "--answerer", "heuristic", "--json", *where(idx), DRONES_QUESTION], capsys)
    assert rc == 0, err
    assert err.splitlines() == [
        f"index: {CHANGED}; building {idx.index} from {idx.corpus}",
        f"warning: the index was not updated (read-only file system: cannot write {lock}); "
        "answering from the existing index",
    ]
    assert "1,700" in json.loads(out)["answers"][0]["text"]
    # a question never rebuilds the index with other index settings: one line saying to run `qa index`, exit 2
    rc, out, err = run_main(["ask", "--sentences", "3", "--answerer", "heuristic", *where(idx), DRONES_QUESTION],
                            capsys)
    assert error_line(rc, err, 2) == (
        f"error: the index in {idx.index} was built with --sentences 4; a question cannot change it: run "
        "`qa index --sentences 3` to rebuild it (every later question then uses it)") and out == ""
    monkeypatch.undo()
    assert snapshot(idx.index) == before


# ------------------------------------------------------------------ 4. hand-edited files


CURRENT_EDITS = {
    "non-UTF-8 byte": b"gen-\xff\xfe",
    "only binary": b"\x00\x01\xff",
    "NUL inside": b"gen-abc\x00def",
    "a path": b"gen-x/../../etc",
    "two names": b"gen-a\ngen-b\n",
    "empty": b"",
    "huge": b"gen-" + b"a" * 100_000,
}


@pytest.mark.parametrize("edit", list(CURRENT_EDITS))
def test_hand_edited_current_is_one_line_and_rebuild_repairs_it(idx, edit, fast, capsys):
    gens = generations(idx)
    (Path(idx.index) / "CURRENT").write_bytes(CURRENT_EDITS[edit])
    want = damaged(idx, "CURRENT does not name a generation")
    assert one_line_qaerror(load_index, idx) == want
    assert one_line_qaerror(staleness, idx) == want
    assert one_line_qaerror(read_manifest, idx.index) == want
    rc, out, err = run_main(["ask", "--answerer", "heuristic", *where(idx), DRONES_QUESTION], capsys)
    assert error_line(rc, err) == f"error: {want}" and out == ""
    assert generations(idx) == gens  # nothing deleted
    build_index(idx, rebuild=True, log=quiet, progress=False, encoder=CountingEncoder())
    assert "1,700" in top_passage(load_index(idx), idx) and staleness(idx) is None


def test_current_that_is_a_folder_is_one_line(idx):
    (Path(idx.index) / "CURRENT").unlink()
    (Path(idx.index) / "CURRENT").mkdir()
    want = damaged(idx, "CURRENT is unreadable: Is a directory")
    assert one_line_qaerror(load_index, idx) == want
    assert one_line_qaerror(staleness, idx) == want
    msg = one_line_qaerror(build_index, idx, rebuild=True, log=quiet, progress=False, encoder=CountingEncoder())
    assert msg.startswith(f"cannot write {Path(idx.index) / 'CURRENT'} (")


def _set(key, value):
    def edit(m):
        m[key] = value
        return m

    return edit


def _doc_without_sha(m):
    next(iter(m["docs"].values())).pop("sha256")
    return m


def _files_elsewhere(m):
    m["files"]["../../../etc/passwd"] = m["files"].pop("passages.npy")
    return m


MANIFEST_EDITS = {
    "a list": (lambda m: [1, 2], "manifest.json is not a JSON object"),
    "empty object": (lambda m: {}, "manifest.json has no signature"),
    "docs a list": (_set("docs", ["a.txt"]), "manifest.json has a bad list of documents"),
    "doc without sha256": (_doc_without_sha, "manifest.json has a bad list of documents"),
    "skipped a list": (_set("skipped", ["x"]), "manifest.json has a bad list of skipped files"),
    "files missing": (_set("files", {}), "manifest.json does not list the index files"),
    "files outside": (_files_elsewhere, "manifest.json does not list the index files"),
    "faiss unknown": (_set("faiss", "annoy"), "manifest.json has an unknown FAISS index type"),
    "passages a string": (_set("passages", "12"), "manifest.json has bad passage or sentence counts"),
    "model dim a string": (lambda m: {**m, "model": {**m["model"], "dim": "384"}},
                           "manifest.json has a bad model entry"),
    "non-UTF-8": (b'{"docs": "\xff"}', "manifest.json is unreadable"),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, "manifest.json is unreadable"),
    "NaN everywhere": (b'{"signature": NaN}', "manifest.json has no signature"),
}


@pytest.mark.parametrize("edit", list(MANIFEST_EDITS))
def test_hand_edited_manifest_is_one_line_naming_it(idx, edit):
    change, what = MANIFEST_EDITS[edit]
    path = live_generation(idx.index) / "manifest.json"
    path.write_bytes(change if isinstance(change, bytes)
                     else json.dumps(change(json.loads(path.read_text()))).encode())
    files = snapshot(idx.index)
    want = damaged(idx, what)
    assert one_line_qaerror(load_index, idx) == want
    assert one_line_qaerror(load_index, idx, verify=False) == want
    assert one_line_qaerror(staleness, idx) == want
    assert snapshot(idx.index) == files
    build_index(idx, log=quiet, progress=False, encoder=CountingEncoder())  # an update starts afresh
    assert "1,700" in top_passage(load_index(idx), idx) and staleness(idx) is None


def _rows(change):
    def edit(gen: Path) -> bytes:
        rows = np.load(gen / "passages.npy")
        change(rows)
        return _npy(rows)

    return edit


def _strings(change):
    def edit(gen: Path) -> bytes:
        strings = json.loads((gen / "passage_strings.json").read_text())
        change(strings)
        return json.dumps(strings).encode()

    return edit


def _spans(change):
    def edit(gen: Path) -> bytes:
        return _npy(change(np.load(gen / "passage_spans.npy")))

    return edit


def _set_first(array, value):
    array[0] = value
    return array


def _npz(gen: Path, name: str, **arrays) -> bytes:
    buf = io.BytesIO()
    with np.load(gen / name) as data:
        np.savez(buf, **{**dict(data), **arrays})
    return buf.getvalue()


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _pickled() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"doc": "a.txt"}], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _small_faiss(gen: Path) -> bytes:
    import faiss

    index = faiss.read_index(str(gen / "dense.faiss"))
    small = faiss.IndexFlatIP(index.d)
    small.add(index.reconstruct_n(0, 1))
    return faiss.serialize_index(small).tobytes()


GENERATION_EDITS = {
    "doc id a number": ("passage_strings.json", _strings(lambda c: c["docs"].__setitem__(0, 5)),
                        "passage_strings.json is unreadable"),
    "unknown document": ("passage_strings.json", _strings(lambda c: c["docs"].__setitem__(0, "other.txt")),
                         "passage_strings.json does not match manifest.json"),
    "strings non-UTF-8": ("passage_strings.json", lambda gen: b'{"docs": "\xff"}', "passage_strings.json is unreadable"),
    "strings deeply nested": ("passage_strings.json", lambda gen: b"[" * 100_000, "passage_strings.json is unreadable"),
    "strings a list": ("passage_strings.json", lambda gen: b"[]", "passage_strings.json is unreadable"),
    "text cut short": ("passage_texts.bin", lambda gen: (gen / "passage_texts.bin").read_bytes()[:-3],
                       "passage_texts.bin does not match passages.npy"),
    "text end past the file": ("passages.npy", _rows(lambda r: r["text_end"].__iadd__(1)),
                               "passage_texts.bin does not match passages.npy"),
    "doc row out of range": ("passages.npy", _rows(lambda r: r["doc"].__setitem__(0, 99)),
                             "passages.npy holds a malformed passage"),
    "negative start": ("passages.npy", _rows(lambda r: r["start"].__setitem__(0, -1)),
                       "passages.npy holds a malformed passage"),
    "heading out of range": ("passages.npy", _rows(lambda r: r["heading"].__setitem__(-1, 10**6)),
                             "passages.npy holds a malformed passage"),
    "a row short": ("passages.npy", lambda gen: _npy(np.load(gen / "passages.npy")[:-1]),
                    "passage_texts.bin does not match passages.npy"),
    "rows a plain array": ("passages.npy", lambda gen: _npy(np.arange(10)),
                           "passages.npy does not hold the passage columns"),
    "rows pickled objects": ("passages.npy", lambda gen: _pickled(), "passages.npy is unreadable"),
    "rows garbage": ("passages.npy", lambda gen: b"\x93NUMPY torn", "passages.npy is unreadable"),
    "sentence out of the passage": ("passage_spans.npy", _spans(lambda s: _set_first(s, [0, 10**9])),
                                    "passage_spans.npy does not match passages.npy"),
    "sentence ends before it starts": ("passage_spans.npy", _spans(lambda s: _set_first(s, s[0][::-1])),
                                       "passage_spans.npy does not match passages.npy"),
    "sentence a float": ("passage_spans.npy", _spans(lambda s: s.astype(np.float64)),
                         "passage_spans.npy does not hold sentence spans"),
    "a span missing": ("passage_spans.npy", _spans(lambda s: s[:-1]),
                       "passage_spans.npy does not match passages.npy"),
    "one vector": ("dense.faiss", _small_faiss, "dense.faiss does not match passages.npy"),
    "faiss garbage": ("dense.faiss", lambda gen: b"IxF2" + b"\x07" * 64, "dense.faiss is unreadable"),
    "vocab an object": ("bm25_vocab.json", lambda gen: b"{}", "bm25.npz or bm25_vocab.json is unreadable"),
    "a sentence row short": ("sentences.npy", lambda gen: _npy(np.load(gen / "sentences.npy")[:-1]),
                             "sentences.npy does not match manifest.json"),
    "float32 sentences": ("sentences.npy", lambda gen: _npy(np.load(gen / "sentences.npy").astype(np.float32)),
                          "sentences.npy does not match manifest.json"),
    "sentence rows out of range": ("sentence_table.npz",
                                   lambda gen: _npz(gen, "sentence_table.npz",
                                                    rows=np.full(3, 10**6, dtype=np.int32)),
                                   "sentence_table.npz does not match passages.npy"),
    "table garbage": ("sentence_table.npz", lambda gen: b"PK\x03\x04 torn", "sentence_table.npz is unreadable"),
}


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("edit", list(GENERATION_EDITS))
def test_hand_edited_generation_file_with_its_digest_updated_is_one_line_naming_it(idx, edit, verify):
    """Even a file edited together with its digest in manifest.json is caught, by its content."""
    name, change, what = GENERATION_EDITS[edit]
    gen = live_generation(idx.index)
    data = change(gen)
    (gen / name).write_bytes(data)
    manifest = json.loads((gen / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256(data).hexdigest()
    (gen / "manifest.json").write_text(json.dumps(manifest))
    files = snapshot(idx.index)
    assert one_line_qaerror(load_index, idx, verify=verify) == damaged(idx, what)
    assert snapshot(idx.index) == files
    assert staleness(idx) is None  # the manifest itself is sound


def test_hand_edited_cache_shards_are_dropped_and_encoded_again(tmp_path):
    settings = small_corpus(tmp_path, {"notes.md": small_doc("grain")})
    first = CountingEncoder(HashEncoder())
    build_index(settings, log=quiet, progress=False, encoder=first)
    cache_dir = Path(settings.index) / "cache" / qa.manifest.model_key(settings)
    (shard,) = cache_dir.glob("emb-*.npz")
    with np.load(shard) as data:
        keys = data["keys"]
    np.savez(cache_dir / "emb-1-wrongdim.npz", keys=keys, vecs=np.ones((len(keys), 5), np.float16))
    np.savez(cache_dir / "emb-2-numbers.npz", keys=np.arange(len(keys)), vecs=np.ones((len(keys), 8), np.float16))
    np.savez(cache_dir / "emb-3-short.npz", keys=keys, vecs=np.ones((1, 8), np.float16))
    shard.unlink()
    again = CountingEncoder(HashEncoder())
    build_index(settings, rebuild=True, log=quiet, progress=False, encoder=again)
    assert sorted(again.texts) == sorted(first.texts)  # none of the bad shards was used
    assert len(list(cache_dir.glob("emb-*.npz"))) == 1 and not list(cache_dir.glob("emb-[123]-*"))
    index = load_index(settings)
    want = HashEncoder().encode([p.text for p in index.passages])
    assert np.allclose(np.stack([index.passage_vector(r) for r in range(len(index.passages))]), want, atol=2e-3)


SETTINGS_EDITS = {
    "threshold a word": (b'{"threshold": "abc"}', 'its threshold must be a number from 0 to 1, not "abc"'),
    "a list": (b"[1, 2]", "not a JSON object"),
    "threshold 5": (b'{"threshold": 5}', "its threshold must be a number from 0 to 1, not 5"),
    "threshold negative": (b'{"threshold": -0.1}', "its threshold must be a number from 0 to 1, not -0.1"),
    "threshold true": (b'{"threshold": true}', "its threshold must be a number from 0 to 1, not true"),
    "threshold a numeric string": (b'{"threshold": "0.3"}', 'its threshold must be a number from 0 to 1, not "0.3"'),
    "threshold NaN": (b'{"threshold": NaN}', "its threshold must be a number from 0 to 1, not NaN"),
    "threshold 1e999": (b'{"threshold": 1e999}', "its threshold must be a number from 0 to 1, not Infinity"),
    "threshold huge integer": (b'{"threshold": 1' + b"0" * 400 + b"}",
                               "its threshold must be a number from 0 to 1, not 1" + "0" * 39),
    "threshold a list": (b'{"threshold": [0.3]}', "its threshold must be a number from 0 to 1, not [0.3]"),
    "not JSON": (b'{"threshold": ', "not valid JSON"),
    "non-UTF-8": (b'{"threshold": "\xff"}', "not valid JSON"),
    "deeply nested": (b"[" * 100_000, "not valid JSON"),
}


@pytest.mark.parametrize("edit", list(SETTINGS_EDITS))
def test_hand_edited_settings_json_is_ignored_with_one_warning(tmp_path, capsys, edit):
    data, why = SETTINGS_EDITS[edit]
    (tmp_path / "settings.json").write_bytes(data)
    got = load_saved(Settings(index=tmp_path, answerer="heuristic"))
    assert got.threshold == HEURISTIC_THRESHOLD
    assert capsys.readouterr().err == (f"warning: ignored {tmp_path / 'settings.json'}: {why}; "
                                       f"using the default threshold {HEURISTIC_THRESHOLD}\n")
    # its contract stands: only the heuristic answerer reads it, and a threshold given wins
    assert load_saved(Settings(index=tmp_path)).threshold is None
    assert load_saved(Settings(index=tmp_path, answerer="heuristic", threshold=0.25)).threshold == 0.25
    assert capsys.readouterr().err == ""


def test_settings_json_that_is_a_folder_is_ignored_with_one_warning(tmp_path, capsys):
    (tmp_path / "settings.json").mkdir()
    assert load_saved(Settings(index=tmp_path, answerer="heuristic")).threshold == HEURISTIC_THRESHOLD
    assert capsys.readouterr().err == (f"warning: ignored {tmp_path / 'settings.json'}: cannot be read "
                                       f"(Is a directory); using the default threshold {HEURISTIC_THRESHOLD}\n")


@pytest.mark.parametrize("data,threshold", [
    (b'{"threshold": 0.3}', 0.3), (b'{"threshold": 0}', 0.0), (b'{"threshold": 1, "other": "x"}', 1.0),
    (b"{}", HEURISTIC_THRESHOLD), (b'{"threshold": null}', HEURISTIC_THRESHOLD), (None, HEURISTIC_THRESHOLD),
])
def test_sound_settings_json_is_read_silently(tmp_path, capsys, data, threshold):
    if data is not None:
        (tmp_path / "settings.json").write_bytes(data)
    assert load_saved(Settings(index=tmp_path, answerer="heuristic")).threshold == threshold
    assert capsys.readouterr().err == ""


def test_bad_settings_json_does_not_stop_qa_ask(idx, fast, capsys):
    path = Path(idx.index) / "settings.json"
    path.write_text('{"threshold": "abc"}')
    rc, out, err = run_main(["ask", "--answerer", "heuristic", "--json", *where(idx), DRONES_QUESTION], capsys)
    assert rc == 0
    assert err == (f'warning: ignored {path}: its threshold must be a number from 0 to 1, not "abc"; '
                   f"using the default threshold {HEURISTIC_THRESHOLD}\n")
    assert "1,700" in json.loads(out)["answers"][0]["text"]


# ------------------------------------------------------------------ 5. the build log's counts


def test_duplicate_texts_are_counted_apart_from_cache_hits(tmp_path):
    text = small_doc("copper")
    settings = small_corpus(tmp_path, {"a.md": text, "b.md": text})  # every text of b.md repeats one of a.md
    enc = CountingEncoder(real_encoder())
    log = Log()
    build_index(settings, log=log, progress=False, encoder=enc)
    distinct = len(enc.texts)  # pooled: one forward pass per distinct passage text
    assert distinct == len(set(enc.texts)) > 0
    index = load_index(settings)
    assert len(index.passages) == 2 * distinct
    assert [m for m in log if m.startswith("index: encoding")] == [
        f"index: encoding {distinct} passages ({distinct} duplicates, 0 from cache)"]


def test_duplicate_texts_are_counted_apart_from_cache_hits_encoded(tmp_path):
    text = small_doc("copper")
    settings = small_corpus(tmp_path, {"a.md": text, "b.md": text}).replace(sentence_vectors="encoded")
    enc = CountingEncoder(HashEncoder())
    log = Log()
    build_index(settings, log=log, progress=False, encoder=enc)
    distinct = len(enc.texts)
    assert distinct == len(set(enc.texts)) > 0  # each distinct text encoded once
    index = load_index(settings)
    assert len(index.passages) + index.manifest["sentences"] == 2 * distinct
    assert [m for m in log if m.startswith("index: encoding")] == [
        f"index: encoding {distinct} texts ({distinct} duplicates, 0 from cache)"]


@pytest.mark.parametrize("vectors", ["pooled", "encoded"])
def test_resumed_build_counts_duplicates_and_cache_hits_apart(tmp_path, monkeypatch, vectors):
    text = small_doc("tin", n=20)
    settings = small_corpus(tmp_path, {"a.md": text, "b.md": text}).replace(sentence_vectors=vectors)
    monkeypatch.setattr(qa.embcache, "CACHE_SHARD", 8)
    monkeypatch.setattr(qa.embcache, "POOLED_SHARD", 2)
    shard = 2 if vectors == "pooled" else 8  # passages pooled, or texts encoded, per cache shard
    inner = real_encoder() if vectors == "pooled" else HashEncoder()
    first = CountingEncoder(inner, fail_on_call=2)  # one shard, then the build dies
    with pytest.raises(EncoderCrash):
        build_index(settings, log=quiet, progress=False, encoder=first)
    assert len(first.calls) == 1 and len(first.texts) == shard
    second = CountingEncoder(inner)
    log = Log()
    build_index(settings, log=log, progress=False, encoder=second)
    assert not set(first.texts) & set(second.texts)
    distinct = len(first.texts) + len(second.texts)
    unit = "passages" if vectors == "pooled" else "texts"
    assert [m for m in log if m.startswith("index: encoding")] == [
        f"index: encoding {distinct - shard} {unit} ({distinct} duplicates, {shard} from cache)"]
