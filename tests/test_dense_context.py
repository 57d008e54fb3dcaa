"""The encoder's view of a passage (``--dense-context``): its document's title and section heading
before the passage, the pooled sentence spans shifted past them, and the cache keyed by what was encoded."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from helpers_core import CountingEncoder, HashEncoder, real_encoder, settings_for
from qa.build import build_index
from qa.datatypes import text_key
from qa.index import load_index
from qa.load import load_corpus
from qa.manifest import staleness
from qa.split import dense_text, index_text, split_document
from qa.vectors import encode_passages, input_spans, plan, span_key

TITLE = "Caspian Notes"
HEADING = "Port Calls"
DOC = (f"# {TITLE}\n\nThe flotilla left Astrakhan in May. It carried grain and engines.\n\n## {HEADING}\n\n"
       + " ".join(f"Ship {i} called at Anzali port on day {i} with {i * 7} containers." for i in range(9)) + "\n")


def corpus(root: Path, **changes):
    settings = settings_for(root, **changes)
    Path(settings.corpus).mkdir(parents=True)
    (Path(settings.corpus) / "notes.md").write_text(DOC, encoding="utf-8")
    return settings


def passages_of(settings):
    (doc,) = load_corpus(settings.corpus)
    return doc, split_document(doc, settings.sentences_per_passage, settings.overlap)


class Log(list):
    def __call__(self, msg: str) -> None:
        self.append(msg)


# ------------------------------------------------------------------ what the encoder sees


@pytest.mark.unit
def test_the_encoder_input_holds_title_and_heading_then_the_passage(tmp_path):
    doc, passages = passages_of(corpus(tmp_path))
    under = next(p for p in passages if p.heading == HEADING)
    assert dense_text(under, doc.title, "title,heading") == f"{TITLE} — {HEADING}\n{under.text}"
    assert dense_text(under, doc.title, "none") == under.text
    first = passages[0]
    assert first.heading == "" and doc.title == TITLE  # before the first section: the title alone
    assert dense_text(first, doc.title, "title,heading") == f"{TITLE}\n{first.text}"
    assert dense_text(under, "", "title,heading") == f"{HEADING}\n{under.text}"  # the heading alone
    assert dense_text(replace(first, heading=TITLE), TITLE, "title,heading") == f"{TITLE}\n{first.text}"  # once
    assert dense_text(first, "", "title,heading") == first.text  # no context to give
    assert index_text(under, doc.title) == f"{TITLE}\n{HEADING}\n{under.text}"  # BM25's view is unchanged


@pytest.mark.unit
def test_sentence_spans_are_shifted_past_the_context(tmp_path):
    doc, passages = passages_of(corpus(tmp_path))
    for p in passages:
        text = dense_text(p, doc.title, "title,heading")
        spans = input_spans(p, text)
        assert [text[a:b] for a, b in spans] == [doc.text[s:e] for s, e in p.sentences]
        assert input_spans(p, p.text) == [(s - p.start, e - p.start) for s, e in p.sentences]


@pytest.mark.unit
def test_cache_keys_follow_the_encoded_text(tmp_path):
    doc, passages = passages_of(corpus(tmp_path))
    table = _table(passages)
    bare = plan(passages, [p.text for p in passages], *table)
    assert bare.keys == [p.key for p in passages]  # no context: the vectors cached before still apply
    inputs = [dense_text(p, doc.title, "title,heading") for p in passages]
    ctx = plan(passages, inputs, *table)
    assert ctx.keys == [text_key(t) for t in inputs] and ctx.texts == inputs
    assert not set(ctx.keys) & set(bare.keys)
    assert not set(ctx.row_keys) & set(bare.row_keys)
    assert ctx.span_keys[0] == [span_key(ctx.keys[0], a, b) for a, b in input_spans(passages[0], inputs[0])]
    retitled = plan(passages, [dense_text(p, "Other Title", "title,heading") for p in passages], *table)
    assert not set(retitled.keys) & set(ctx.keys)  # another title: another vector


def _table(passages):
    from qa.build import _sentence_table

    _, _, ptr, rows = _sentence_table(passages)
    return ptr, rows


@pytest.mark.unit
def test_a_build_encodes_the_passages_with_their_context(tmp_path):
    settings = corpus(tmp_path, dense_context="title,heading", sentence_vectors="encoded")
    enc = CountingEncoder(HashEncoder())
    build_index(settings, log=Log(), progress=False, encoder=enc)
    doc, passages = passages_of(settings)
    assert set(enc.texts) >= {dense_text(p, doc.title, "title,heading") for p in passages}
    assert not {p.text for p in passages} & set(enc.texts)
    index = load_index(settings)
    want = HashEncoder().encode([dense_text(p, doc.title, "title,heading") for p in index.passages])
    assert np.allclose([index.passage_vector(r) for r in range(len(index.passages))], want, atol=2e-3)


@pytest.mark.unit
def test_pooled_spans_of_an_encoder_that_cannot_pool_are_the_sentences(tmp_path):
    """An encoder without token outputs encodes each span on its own: the sentence, not the context."""
    settings = corpus(tmp_path, dense_context="title,heading")
    enc = CountingEncoder(HashEncoder())
    build_index(settings, log=Log(), progress=False, encoder=enc)
    index = load_index(settings)
    for row, p in enumerate(index.passages):
        sentences = [p.text[s - p.start : e - p.start] for s, e in p.sentences]
        assert np.allclose(index.sentence_vectors_of(row), HashEncoder().encode(sentences), atol=2e-3)


@pytest.mark.unit
def test_another_context_rebuilds_and_an_older_index_is_rebuilt_from_its_cache(tmp_path):
    settings = corpus(tmp_path)
    build_index(settings, log=Log(), progress=False, encoder=CountingEncoder(HashEncoder()))
    assert staleness(settings) is None
    # an index built before the setting existed (its signature does not name it) was built without
    # context: it is rebuilt, every vector from the cache
    manifest_path = next(Path(settings.index).glob("gen-*/manifest.json"))
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    del manifest["signature"]["dense_context"], manifest["settings"]["dense_context"]
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    assert staleness(settings) == "index settings or model changed"
    enc, log = CountingEncoder(HashEncoder()), Log()
    build_index(settings, log=log, progress=False, encoder=enc)
    assert enc.texts == [] and not [m for m in log if m.startswith("index: encoding")]
    # with the context, every passage is encoded again, with it
    ctx = settings.replace(dense_context="title,heading")
    assert staleness(ctx) == "index settings or model changed"
    enc = CountingEncoder(HashEncoder())
    build_index(ctx, log=Log(), progress=False, encoder=enc)
    doc, passages = passages_of(ctx)
    assert {dense_text(p, doc.title, "title,heading") for p in passages} <= set(enc.texts)
    assert load_index(ctx).manifest["settings"]["dense_context"] == "title,heading"


# ------------------------------------------------------------------ the real model's token outputs


@pytest.mark.integration
def test_pooled_sentence_vectors_after_a_prefix_are_the_mean_of_their_own_tokens(tmp_path):
    """A sentence's pooled vector, after the context, is the mean of the token outputs of the same
    forward pass whose first character lies in the sentence: computed here apart from ``qa.embed``,
    with the tokenizer's offsets and the exported ONNX graph run directly."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from qa.config import Settings
    from qa.embed import default_cache_dir
    from qa.models import check_model_dir, export_path

    doc, passages = passages_of(corpus(tmp_path))
    p = next(q for q in passages if q.heading == HEADING)
    text = dense_text(p, doc.title, "title,heading")
    spans = input_spans(p, text)
    enc = real_encoder()
    vectors, (pooled,) = enc.encode_spans([text], [spans])

    model_dir = check_model_dir(Settings().model_path)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    e = tokenizer.encode(text.lower())
    session = ort.InferenceSession(str(export_path(model_dir, default_cache_dir())), providers=["CPUExecutionProvider"])
    ids = np.asarray([e.ids], dtype=np.int64)
    sentence, tokens = session.run(["sentence_embedding", "token_embeddings"],
                                   {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    assert np.allclose(vectors[0], sentence[0] / np.linalg.norm(sentence[0]), atol=1e-4)
    prefix_tokens = sum(1 for a, b in e.offsets if b > a and a < len(text) - len(p.text))
    assert prefix_tokens >= 4  # the context was really encoded
    for (a, b), got in zip(spans, pooled):
        inside = [i for i, (s, t) in enumerate(e.offsets) if t > s and a <= s < b]
        assert inside and min(inside) > prefix_tokens  # the sentence's own tokens, none of the context
        want = tokens[0][inside].mean(0)
        assert np.allclose(got, want / np.linalg.norm(want), atol=1e-4)
    # the same sentences pooled without the context differ: the tokens saw the title and heading
    _, (plain,) = encode_passages(enc, [p.text], [input_spans(p, p.text)], 32)
    assert all(float(u @ v) < 0.9999 for u, v in zip(plain, pooled))


@pytest.mark.integration
def test_a_built_index_holds_the_vectors_of_the_passages_with_their_context(tmp_path):
    settings = corpus(tmp_path, dense_context="title,heading")
    build_index(settings, log=Log(), progress=False, encoder=real_encoder())
    index = load_index(settings)
    doc = load_corpus(settings.corpus)[0]
    enc = real_encoder()
    inputs = [dense_text(p, doc.title, "title,heading") for p in index.passages]
    assert np.allclose([index.passage_vector(r) for r in range(len(inputs))], enc.encode(inputs), atol=2e-3)
    row = len(inputs) - 1
    p = index.passages[row]
    _, (pooled,) = encode_passages(enc, [inputs[row]], [input_spans(p, inputs[row])], 32)
    assert np.allclose(index.sentence_vectors_of(row)[-1], pooled[-1], atol=2e-3)
