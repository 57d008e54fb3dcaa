"""Step 3, the index: build, staleness, incremental updates, atomicity, damage, resumed builds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import qa.build
import qa.embcache
import qa.manifest
import qa.storage
from helpers_core import (
    DOC_A,
    DOC_B,
    DRONES_QUESTION,
    CountingEncoder,
    EncoderCrash,
    live_generation,
    real_encoder,
    one_line_qaerror,
    settings_for,
)
from qa.build import build_index
from qa.index import load_index
from qa.manifest import read_manifest, staleness
from qa.load import load_corpus
from qa.retrieve import retrieve
from qa.split import split_document
from qa.vectors import encode_passages

pytestmark = pytest.mark.integration

NEW_SENTENCE = "The zeppelin fleet of the Caspian flotilla numbered 4,321 airships in 2024."


class Log(list):
    def __call__(self, msg: str) -> None:
        self.append(msg)

    def encoding(self) -> list[str]:
        return [m for m in self if m.startswith("index: encoding ")]


def update(settings, encoder=None, **kw):
    log = Log()
    enc = encoder or CountingEncoder()
    manifest = build_index(settings, log=log, progress=False, encoder=enc, **kw)
    return manifest, enc, log


def all_texts(index) -> set[str]:
    """Every text the index encodes: its passages, and their sentences when these are encoded on their
    own (pooled sentence vectors come from the passage's forward pass)."""
    texts = {p.text for p in index.passages}
    if index.manifest["settings"]["sentence_vectors"] == "encoded":
        for p in index.passages:
            texts.update(p.text[s - p.start : e - p.start] for s, e in p.sentences)
    return texts


def unit(index) -> str:
    """What the build log counts: passages (pooled) or texts (encoded)."""
    return "passages" if index.manifest["settings"]["sentence_vectors"] == "pooled" else "texts"


def top_passage(index, settings) -> str:
    return retrieve(index, real_encoder(), DRONES_QUESTION, settings).hits[0].passage.text


def append_sentence(settings, name=DOC_A, sentence=NEW_SENTENCE):
    path = Path(settings.corpus) / name
    path.write_text(path.read_text(encoding="utf-8") + "\n\n" + sentence + "\n", encoding="utf-8")


# ------------------------------------------------------------------ a fresh build


SMALL_DOC = "# Caspian Notes\n\n" + "\n\n".join(
    " ".join(f"Paragraph {p} sentence {s} says that shipment {p * 10 + s} reached port number {s}." for s in range(5))
    for p in range(4)
) + "\n"


def small_corpus(root: Path):
    settings = settings_for(root)
    Path(settings.corpus).mkdir(parents=True)
    (Path(settings.corpus) / "notes.md").write_text(SMALL_DOC)
    return settings


def test_fresh_build_of_a_tmp_corpus(tmp_path):
    settings = small_corpus(tmp_path)
    assert staleness(settings) == "no index yet"
    manifest, enc, log = update(settings)
    assert staleness(settings) is None
    index = load_index(settings)
    (doc,) = load_corpus(settings.corpus)
    assert index.passages == split_document(doc, settings.sentences_per_passage, settings.overlap)
    assert set(manifest["docs"]) == {"notes.md"} and manifest["skipped"] == {}
    assert manifest["docs"]["notes.md"]["sha256"] == doc.sha256
    assert manifest["docs"]["notes.md"]["title"] == doc.title == index.titles["notes.md"] == "Caspian Notes"
    assert manifest["passages"] == len(index.passages) == index.dense.ntotal == index.bm25.n_docs
    # every distinct text encoded exactly once, announced in the log
    assert sorted(enc.texts) == sorted(all_texts(index))
    assert log.encoding() == [f"index: encoding {len(all_texts(index))} {unit(index)}"]
    assert log[-1].startswith("index: 1 documents (1 read),")
    # the layout: CURRENT names the only generation; no temporary folders left
    names = sorted(p.name for p in Path(settings.index).iterdir())
    assert names == [".lock", "CURRENT", "cache", live_generation(settings.index).name]


def test_built_index_parts_agree_with_the_documents(idx):
    assert staleness(idx) is None
    index = load_index(idx)
    docs = {d.id: d for d in load_corpus(idx.corpus)}
    assert set(index.manifest["docs"]) == {DOC_A, DOC_B}
    expected = [p for d in sorted(docs) for p in split_document(docs[d], idx.sentences_per_passage, idx.overlap)]
    assert index.passages == expected
    for row, p in enumerate(index.passages):
        assert docs[p.doc].text[p.start : p.end] == p.text
        assert len(index.sentence_vectors_of(row)) == len(p.sentences)
    # stored vectors are the encoder's embeddings of the passage / sentence texts
    enc = real_encoder()
    rows = [0, len(index.passages) // 2, len(index.passages) - 1]
    want = enc.encode([index.passages[r].text for r in rows])
    got = np.stack([index.passage_vector(r) for r in rows])
    assert np.allclose(got, want, atol=2e-3)
    # a sentence vector is pooled from the tokens of the passage that first holds it: its last
    # sentence (the first is shared with the passage before); close to the sentence encoded alone
    p = index.passages[rows[1]]
    s, e = p.sentences[-1]
    _, (pooled,) = encode_passages(enc, [p.text], [[(s - p.start, e - p.start)]], 32)
    assert np.allclose(index.sentence_vectors_of(rows[1])[-1], pooled[0], atol=2e-3)
    assert float(pooled[0] @ enc.encode([p.text[s - p.start : e - p.start]])[0]) > 0.5
    assert "1,700" in top_passage(index, idx)


# ------------------------------------------------------------------ staleness and incremental updates


def test_edited_document_is_stale_and_update_encodes_only_new_texts(idx):
    before = load_index(idx)
    old_texts = all_texts(before)
    append_sentence(idx)
    reason = staleness(idx)
    assert reason is not None and "changed" in reason and "1 changed" in reason
    assert "0 added" in reason and "0 removed" in reason
    manifest, enc, log = update(idx)
    after = load_index(idx)
    new_only = all_texts(after) - old_texts
    assert new_only and any(NEW_SENTENCE in t for t in new_only)
    assert sorted(enc.texts) == sorted(new_only)  # nothing already embedded is encoded again
    (msg,) = log.encoding()
    assert msg.startswith(f"index: encoding {len(new_only)} {unit(after)} (")
    assert log[-1].startswith("index: 2 documents (1 read),")
    # the unchanged document keeps its passages; the edited one is re-split
    assert [p for p in after.passages if p.doc == DOC_B] == [p for p in before.passages if p.doc == DOC_B]
    (doc_a,) = load_corpus(idx.corpus, only={DOC_A})
    assert [p for p in after.passages if p.doc == DOC_A] == split_document(doc_a)
    assert manifest["docs"][DOC_A]["sha256"] == doc_a.sha256
    assert staleness(idx) is None


def test_added_document_is_stale_and_update_encodes_only_its_texts(idx):
    text = "# Caspian Airships\n\n" + NEW_SENTENCE + " They were built in Astrakhan. Each carried two crews.\n"
    (Path(idx.corpus) / "sub").mkdir()
    (Path(idx.corpus) / "sub" / "airships.md").write_text(text)
    reason = staleness(idx)
    assert reason == "corpus changed (1 added, 0 changed, 0 removed)"
    before = load_index(idx)
    _, enc, log = update(idx)
    after = load_index(idx)
    assert set(after.manifest["docs"]) == {DOC_A, DOC_B, "sub/airships.md"}
    assert after.titles["sub/airships.md"] == "Caspian Airships"
    assert enc.texts and all(t in text for t in enc.texts)
    assert sorted(enc.texts) == sorted(all_texts(after) - all_texts(before))
    assert log.encoding()[0].startswith(f"index: encoding {len(enc.texts)} {unit(after)} (")
    assert [p for p in after.passages if p.doc != "sub/airships.md"] == before.passages
    assert staleness(idx) is None


def test_removed_document_disappears_without_encoding(idx):
    (Path(idx.corpus) / DOC_B).unlink()
    assert staleness(idx) == "corpus changed (0 added, 0 changed, 1 removed)"
    before = load_index(idx)
    manifest, enc, log = update(idx)
    assert enc.calls == [] and log.encoding() == []
    after = load_index(idx)
    assert set(manifest["docs"]) == {DOC_A}
    assert {p.doc for p in after.passages} == {DOC_A}
    assert after.passages == [p for p in before.passages if p.doc == DOC_A]
    for mode in ("bm25", "dense", "hybrid"):
        s = idx.replace(mode=mode, k=len(after.passages))
        hits = retrieve(after, real_encoder(), "Su-35 jets Yak-130 helicopters", s).hits
        assert hits and all(h.passage.doc == DOC_A for h in hits)
    assert staleness(idx) is None


def test_skipped_binary_file_does_not_keep_the_index_stale(idx):
    (Path(idx.corpus) / "garbage.txt").write_bytes(bytes(range(256)) * 8)
    assert staleness(idx) == "corpus changed (1 added, 0 changed, 0 removed)"
    manifest, enc, log = update(idx)
    assert enc.calls == []
    assert any(m.startswith("warning: skipped garbage.txt") for m in log)
    assert list(manifest["skipped"]) == ["garbage.txt"]
    assert set(manifest["docs"]) == {DOC_A, DOC_B}
    assert staleness(idx) is None


@pytest.mark.parametrize("change", [{"sentences_per_passage": 3}, {"overlap": 0}, {"faiss": "hnsw"}])
def test_settings_change_makes_index_stale(idx, change):
    changed = idx.replace(**change)
    assert staleness(changed) == "index settings or model changed"
    assert staleness(idx) is None


@pytest.mark.parametrize("vectors", ["pooled", "encoded"])
def test_rebuild_with_new_passage_size_reuses_cached_embeddings(idx, vectors):
    idx = idx.replace(sentence_vectors=vectors)
    (Path(idx.corpus) / DOC_A).unlink()  # keep the test fast: one document to re-split
    update(idx)
    before = load_index(idx)
    changed = idx.replace(sentences_per_passage=3)
    _, enc, _ = update(changed)
    after = load_index(changed)
    assert after.passages != before.passages
    assert all(len(p.sentences) <= 3 for p in after.passages)
    assert staleness(changed) is None and staleness(idx) == "index settings or model changed"
    # only the new passage texts were encoded (encoded: the sentences are the same texts; pooled:
    # their vectors come from the new passages' forward passes)
    new_passage_texts = {p.text for p in after.passages} - {p.text for p in before.passages}
    assert sorted(enc.texts) == sorted(new_passage_texts)


def test_missing_or_empty_corpus_is_a_qaerror(idx, tmp_path):
    shutil.rmtree(idx.corpus)
    assert "not found" in one_line_qaerror(staleness, idx)
    assert "not found" in one_line_qaerror(build_index, idx, log=lambda m: None, progress=False)
    Path(idx.corpus).mkdir()
    assert "no documents" in one_line_qaerror(build_index, idx, log=lambda m: None, progress=False)
    assert load_index(idx).passages  # the old index is untouched by the failed builds


# ------------------------------------------------------------------ atomicity


def _crashing_write(after_files: int):
    """A _write_generation that writes the first files of a generation, then 'the power fails'."""

    def write(folder, manifest, passages, *rest):
        (folder / "passage_texts.bin").write_text("".join(p.text for p in passages)[: 100])
        if after_files > 1:
            (folder / "dense.faiss").write_bytes(b"\0" * 64)
        raise OSError(28, "No space left on device")

    return write


@pytest.mark.parametrize("after_files", [1, 2])
def test_crash_while_writing_keeps_the_previous_index(idx, monkeypatch, after_files):
    gen_before = live_generation(idx.index)
    old_passages = load_index(idx).passages
    append_sentence(idx)
    monkeypatch.setattr(qa.build, "write_generation", _crashing_write(after_files))
    with pytest.raises(OSError, match="No space left"):
        update(idx)
    monkeypatch.undo()
    assert live_generation(idx.index) == gen_before
    assert not list(Path(idx.index).glob(".tmp-*"))
    index = load_index(idx)  # the previous index still loads (digests verified) and answers
    assert index.passages == old_passages
    assert "1,700" in top_passage(index, idx)
    assert "1 changed" in staleness(idx)


def test_leftovers_of_a_killed_build_do_not_break_the_next_one(idx, monkeypatch):
    """A process killed mid-build leaves a .tmp-gen folder, maybe an orphan gen, a torn shard."""
    gen_before = live_generation(idx.index)
    append_sentence(idx)
    # a crash after the new generation is in place but before CURRENT points at it
    real_atomic_write = qa.storage.atomic_write

    def crash(path, text):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(qa.storage, "atomic_write", crash)
    with pytest.raises(OSError):
        update(idx)
    monkeypatch.setattr(qa.storage, "atomic_write", real_atomic_write)
    orphans = [p for p in Path(idx.index).glob("gen-*") if p != gen_before]
    assert len(orphans) == 1  # complete but never made live
    assert live_generation(idx.index) == gen_before
    assert NEW_SENTENCE not in " ".join(p.text for p in load_index(idx).passages)
    # what kill -9 at other moments leaves behind
    tmp = Path(idx.index) / ".tmp-gen-20000101000000-dead00"
    tmp.mkdir()
    (tmp / "passages.npy").write_bytes(b"\x93NUMPY torn")
    (Path(idx.index) / ".CURRENT.abc123.tmp").write_text("gen-2000")
    cache_dir = next((Path(idx.index) / "cache").iterdir())
    (cache_dir / "emb-1-abcdef.tmp").write_bytes(b"\x93NUMPY torn")
    shard = next(cache_dir.glob("emb-*.npz")).read_bytes()
    (cache_dir / "emb-2-abcdef.npz").write_bytes(shard[: len(shard) // 2])  # a torn shard

    _, enc, _ = update(idx)
    gen_after = live_generation(idx.index)
    assert gen_after != gen_before
    assert [p.name for p in Path(idx.index).glob("gen-*")] == [gen_after.name]
    assert not list(Path(idx.index).glob(".tmp-gen-*"))
    assert not (cache_dir / "emb-2-abcdef.npz").exists()  # the torn shard was dropped
    index = load_index(idx)
    assert NEW_SENTENCE in " ".join(p.text for p in index.passages)
    assert "1,700" in top_passage(index, idx)
    assert staleness(idx) is None


# ------------------------------------------------------------------ damaged indexes


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_passage_text(path: Path) -> None:
    """Replace the first passage's first word by as many other letters (the texts file keeps its size)."""
    data = path.read_bytes()
    word = data.split(b" ", 1)[0]
    path.write_bytes(b"X" * len(word) + data[len(word):])


def _edit_passage_start(path: Path) -> None:
    rows = np.load(path)
    rows["start"][0] += 1
    rows["end"][0] += 1
    with open(path, "wb") as f:
        np.save(f, rows)


DAMAGE = {
    "passage_texts.bin truncated": ("passage_texts.bin", _truncate),
    "passage_texts.bin edited": ("passage_texts.bin", _edit_passage_text),
    "passages.npy edited": ("passages.npy", _edit_passage_start),
    "passages.npy truncated": ("passages.npy", _truncate),
    "passage_spans.npy deleted": ("passage_spans.npy", Path.unlink),
    "passage_strings.json truncated": ("passage_strings.json", _truncate),
    "dense.faiss flipped": ("dense.faiss", _flip_byte),
    "dense.faiss truncated": ("dense.faiss", _truncate),
    "dense.faiss deleted": ("dense.faiss", Path.unlink),
    "sentences.npy truncated": ("sentences.npy", _truncate),
    "bm25.npz flipped": ("bm25.npz", _flip_byte),
    "bm25_weights.npy flipped": ("bm25_weights.npy", _flip_byte),
    "bm25_docs.npy truncated": ("bm25_docs.npy", _truncate),
    "manifest.json truncated": ("manifest.json", _truncate),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_index_is_a_one_line_qaerror_and_is_kept(idx, damage):
    name, hurt = DAMAGE[damage]
    gen = live_generation(idx.index)
    hurt(gen / name)
    files_before = sorted(p.name for p in gen.iterdir())
    msg = one_line_qaerror(load_index, idx)
    assert "damaged" in msg and "qa index --rebuild" in msg
    if name != "manifest.json":
        assert name in msg
    assert sorted(p.name for p in gen.iterdir()) == files_before  # nothing deleted
    assert live_generation(idx.index) == gen
    # `qa index --rebuild` repairs it
    update(idx, rebuild=True)
    index = load_index(idx)
    assert "1,700" in top_passage(index, idx)


@pytest.mark.parametrize("damage", ["passage_texts.bin truncated", "passages.npy truncated", "dense.faiss truncated",
                                    "sentences.npy truncated", "passage_spans.npy deleted"])
def test_damaged_index_is_a_qaerror_even_without_verification(idx, damage):
    name, hurt = DAMAGE[damage]
    hurt(live_generation(idx.index) / name)
    assert "rebuild" in one_line_qaerror(load_index, idx, verify=False)


def test_incremental_update_does_not_carry_over_a_damaged_generation(idx):
    """After damage, editing another document must not launder the damaged passages into a
    new generation whose digests then look valid."""
    _edit_passage_text(live_generation(idx.index) / "passage_texts.bin")
    assert "damaged" in one_line_qaerror(load_index, idx)
    append_sentence(idx, DOC_B, "Moscow also sent engines.")
    update(idx)  # what `qa ask` does when it finds the corpus changed
    index = load_index(idx)
    docs = {d.id: d for d in load_corpus(idx.corpus)}
    for p in index.passages:
        assert docs[p.doc].text[p.start : p.end] == p.text, f"passage {p.doc}#{p.ordinal} is not the document's text"


@pytest.mark.parametrize("pointer", ["gen-20990101000000-abcdef", "../elsewhere", "", "cache"])
def test_current_pointing_nowhere_is_a_qaerror(idx, pointer):
    (Path(idx.index) / "CURRENT").write_text(pointer)
    msg = one_line_qaerror(load_index, idx)
    assert "CURRENT" in msg and "rebuild" in msg
    assert "CURRENT" in one_line_qaerror(staleness, idx)
    update(idx, rebuild=True)
    assert "1,700" in top_passage(load_index(idx), idx)


def test_no_index_is_a_qaerror_for_load(tmp_path):
    settings = settings_for(tmp_path)
    assert read_manifest(settings.index) is None
    assert "qa index" in one_line_qaerror(load_index, settings)


# ------------------------------------------------------------------ interrupted builds resume


@pytest.mark.parametrize("vectors", ["pooled", "encoded"])
def test_interrupted_build_resumes_from_the_cache(tmp_path, monkeypatch, vectors):
    settings = small_corpus(tmp_path).replace(sentence_vectors=vectors)
    shard = 2 if vectors == "pooled" else 8  # passages pooled, or texts encoded, per cache shard
    monkeypatch.setattr(qa.embcache, "CACHE_SHARD", 8)
    monkeypatch.setattr(qa.embcache, "POOLED_SHARD", 2)
    first = CountingEncoder(fail_on_call=2)  # one shard, then the process "dies"
    with pytest.raises(EncoderCrash):
        build_index(settings, log=lambda m: None, progress=False, encoder=first)
    assert len(first.calls) == 1 and len(first.texts) == shard
    assert staleness(settings) == "no index yet"
    assert not list(Path(settings.index).glob("gen-*")) and not list(Path(settings.index).glob(".tmp-*"))
    cache_dir = Path(settings.index) / "cache" / qa.manifest.model_key(settings)
    assert len(list(cache_dir.glob("emb-*.npz"))) == 1

    _, second, log = update(settings)
    index = load_index(settings)
    distinct = all_texts(index)
    assert len(distinct) > 2 * shard
    assert not set(second.texts) & set(first.texts)  # nothing encoded twice
    assert sorted(second.texts + first.texts) == sorted(distinct)
    assert len(second.calls) > 1 and all(len(call) <= shard for call in second.calls)
    assert log.encoding() == [f"index: encoding {len(distinct) - shard} {unit(index)} ({shard} from cache)"]
    assert len(list(cache_dir.glob("emb-*.npz"))) == 1  # compacted after success
    # the resumed index holds the same vectors as an uninterrupted build
    want = real_encoder().encode([p.text for p in index.passages])
    got = np.stack([index.passage_vector(r) for r in range(len(index.passages))])
    assert np.allclose(got, want, atol=2e-3)
    assert staleness(settings) is None
