import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from qa.bm25 import BM25, bm25_scores, bm25_top, build_bm25, load_bm25, save_bm25
from qa.terms import tokenize
from qa.datatypes import QAError

pytestmark = pytest.mark.unit

SENTENCES = [
    "Iran has supplied Russia with Shahed-136 drones since August 2022.",
    "Russia used Iranian drones to strike Ukrainian power plants in October.",
    "The United States imposed new sanctions on Iran over the drone transfers.",
    "Iran denied sending drones to Russia for use in the war in Ukraine.",
    "Ukraine shot down dozens of Iranian-made drones over Kyiv.",
    "Russia and Iran agreed to build a drone factory in Tatarstan.",
    "The factory in Alabuga could produce 6,000 drones by 2025.",
    "Iran wants Su-35 fighter jets from Russia in return.",
    "Russia may deliver the S-400 air defence system to Iran.",
    "Iran's trainer aircraft include the Yak-130, delivered in 2023.",
    "Iran and Russia signed a deal worth $145 million for the Su-35.",
    "The European Union sanctioned Iranian officials tied to the drone programme.",
    "Russia paid Iran in gold bars, according to leaked documents.",
    "The Shahed-136 carries a warhead of about 40 kilograms.",
    "Iran's oil exports to China rose 31 percent in 2023.",
    "Ukraine asked Israel for air defence against Iranian drones.",
    "Russia's military-industrial complex depends on imported chips.",
    "Russian-Iranian cooperation expanded to ballistic missiles.",
    "Iran supplied 1,700 drones to Russia in the first batch.",
    "The Pentagon said Russia had launched more than 400 Shahed drones.",
    "Iran and Russia both face Western sanctions on their oil sales.",
    "",
    "Russia Iran Russia Iran Russia drone drone drone drone.",
    "A short note.",
    "Drones, drones and more drones: Iran's exports to Russia.",
    "Zürich hosted talks on Iran's nuclear programme.",
]
CORPUS = [tokenize(s) for s in SENTENCES]

QUERIES = [
    "How many drones did Iran supply to Russia?",
    "Su-35 fighter jets",
    "S 400 air defence",
    "$145 million deal",
    "1700 drones",
    "Iran Iran Iran drones",  # repeated tokens count each time
    "sanctions sanctioned sanction",
    "quantum chromodynamics",  # unknown tokens only
    "drone quantum Russia unknownword",
    "",
    "the of and",  # only stop words
]


def _reference(corpus, **params):
    return BM25Okapi(corpus, **params)


def test_corpus_exercises_the_epsilon_rule():
    okapi = _reference(CORPUS)
    negative = [w for w, f in okapi.idf.items() if np.isclose(f, okapi.epsilon * okapi.average_idf)]
    assert {"iran", "russia"} <= set(negative)
    assert okapi.average_idf > 0


@pytest.mark.parametrize("params", [{}, {"k1": 1.2, "b": 0.5, "epsilon": 0.1}, {"k1": 0.9, "b": 1.0}])
@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
def test_scores_equal_rank_bm25(query, params):
    index = build_bm25(CORPUS, **params)
    okapi = _reference(CORPUS, **params)
    tokens = tokenize(query)
    got = bm25_scores(index, tokens)
    expected = okapi.get_scores(tokens)
    assert got.dtype == np.float64 and got.shape == (len(CORPUS),)
    # With b = 1 rank-bm25 computes 0/0 = NaN for the empty document; it scores 0 here.
    assert np.flatnonzero(np.isnan(expected)).tolist() in ([], [21])
    expected[np.isnan(expected)] = 0.0
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_scores_equal_rank_bm25_for_raw_token_lists():
    tokens = ["iran", "iran", "drone", "nothing", "russia", "su35"]
    np.testing.assert_allclose(bm25_scores(build_bm25(CORPUS), tokens), _reference(CORPUS).get_scores(tokens),
                               rtol=0, atol=1e-9)


def test_index_layout():
    index = build_bm25(CORPUS)
    assert isinstance(index, BM25)
    assert index.n_docs == len(CORPUS)
    assert index.indptr.dtype == np.int64 and index.docs.dtype == np.int32 and index.weights.dtype == np.float64
    assert len(index.indptr) == len(index.vocab) + 1 and index.indptr[-1] == len(index.docs) == len(index.weights)
    assert (index.k1, index.b, index.epsilon) == (1.5, 0.75, 0.25)
    term = tokenize("Shahed")[0]
    t = index.vocab[term]
    postings = index.docs[index.indptr[t]:index.indptr[t + 1]]
    assert postings.tolist() == [i for i, toks in enumerate(CORPUS) if term in toks] == [0, 13, 19]
    assert 21 not in index.docs  # the empty document has no postings


def test_vocabulary_beyond_16_bit_term_ids():
    corpus = [[f"t{i}" for i in range(j, 70_000, 3)] + ["common"] for j in range(3)] + [["common", "t5"]]
    index = build_bm25(corpus)
    assert len(index.vocab) == 70_001
    for term in ("t69998", "t5", "common"):
        t = index.vocab[term]
        assert index.docs[index.indptr[t]:index.indptr[t + 1]].tolist() == [
            r for r, toks in enumerate(corpus) if term in toks
        ]
    tokens = ["t69999", "t5", "common", "t4"]
    np.testing.assert_allclose(bm25_scores(index, tokens), _reference(corpus).get_scores(tokens), rtol=0, atol=1e-9)


def test_empty_document_scores_zero():
    index = build_bm25(CORPUS)
    assert CORPUS[21] == []
    assert bm25_scores(index, tokenize("Iran drones Russia"))[21] == 0.0


def test_single_document_corpus():
    corpus = [tokenize("Iran supplied drones to Russia.")]
    index = build_bm25(corpus)
    assert index.n_docs == 1
    tokens = tokenize("Iran drones")
    np.testing.assert_allclose(bm25_scores(index, tokens), _reference(corpus).get_scores(tokens), atol=1e-12)
    # With one document every idf is negative in rank-bm25, so nothing scores above zero.
    rows, scores = bm25_top(index, tokens, 5)
    assert rows.size == 0 and scores.size == 0


@pytest.mark.parametrize("corpus", [[], [[]], [[], [], []]])
def test_corpus_without_terms(corpus):
    index = build_bm25(corpus)
    assert index.n_docs == len(corpus) and index.vocab == {}
    assert bm25_scores(index, ["iran"]).tolist() == [0.0] * len(corpus)
    rows, scores = bm25_top(index, ["iran"], 3)
    assert rows.size == 0 and scores.size == 0


def test_top_matches_full_sort():
    index = build_bm25(CORPUS)
    for query in QUERIES:
        tokens = tokenize(query)
        full = _reference(CORPUS).get_scores(tokens)
        expected = [r for r in sorted(range(len(full)), key=lambda r: (-full[r], r)) if full[r] > 0]
        for k in (1, 3, 5, 100):
            rows, scores = bm25_top(index, tokens, k)
            assert rows.dtype == np.int64 and scores.dtype == np.float64
            assert rows.tolist() == expected[:k]
            np.testing.assert_allclose(scores, full[rows], atol=1e-9)
            assert np.all(np.diff(scores) <= 0) and np.all(scores > 0)


def test_top_finds_the_right_document():
    index = build_bm25(CORPUS)
    assert bm25_top(index, tokenize("Su-35 $145 million"), 1)[0].tolist() == [10]
    assert bm25_top(index, tokenize("1700 drones"), 1)[0].tolist() == [18]
    assert bm25_top(index, tokenize("ZURICH"), 1)[0].tolist() == [25]


def test_top_breaks_ties_by_row():
    corpus = [["alpha", "beta"], ["gamma", "delta"], ["alpha", "beta"], ["epsilon", "zeta"], ["alpha", "beta"],
              ["eta", "theta"], ["alpha", "gamma"], ["iota", "kappa"], ["lambda", "mu"], ["nu", "xi"]]
    index = build_bm25(corpus)
    rows, scores = bm25_top(index, ["beta"], 2)
    assert rows.tolist() == [0, 2] and scores[0] == scores[1] > 0
    rows, _ = bm25_top(index, ["beta"], 10)
    assert rows.tolist() == [0, 2, 4]
    rows, _ = bm25_top(index, ["alpha", "beta"], 4)
    assert rows.tolist() == [0, 2, 4, 6]


def test_top_with_nothing_to_return():
    index = build_bm25(CORPUS)
    for tokens, k in [([], 5), (["unknownword"], 5), (["iran"], 0), (["iran"], -1)]:
        rows, scores = bm25_top(index, tokens, k)
        assert rows.shape == (0,) and scores.shape == (0,)


def test_save_load_round_trip(tmp_path):
    index = build_bm25(CORPUS, k1=1.2, b=0.7, epsilon=0.2)
    save_bm25(index, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bm25.npz", "bm25_docs.npy", "bm25_vocab.json",
                                                          "bm25_weights.npy"]
    loaded = load_bm25(tmp_path)
    assert loaded.vocab == index.vocab and loaded.n_docs == index.n_docs
    assert (loaded.k1, loaded.b, loaded.epsilon) == (1.2, 0.7, 0.2)
    for name in ("indptr", "docs", "weights"):
        a, b = getattr(loaded, name), getattr(index, name)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    tokens = tokenize("Zürich Iran drones Su-35")
    assert np.array_equal(bm25_scores(loaded, tokens), bm25_scores(index, tokens))


def test_save_load_empty_index(tmp_path):
    save_bm25(build_bm25([[]]), tmp_path)
    loaded = load_bm25(tmp_path)
    assert loaded.n_docs == 1 and loaded.vocab == {} and bm25_scores(loaded, ["x"]).tolist() == [0.0]


def test_load_missing_files(tmp_path):
    with pytest.raises(QAError, match="missing"):
        load_bm25(tmp_path)
    save_bm25(build_bm25(CORPUS), tmp_path)
    (tmp_path / "bm25_vocab.json").unlink()
    with pytest.raises(QAError, match="missing"):
        load_bm25(tmp_path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (d / "bm25.npz").write_bytes(b"not a zip file"),
        lambda d: (d / "bm25.npz").write_bytes((d / "bm25.npz").read_bytes()[:200]),
        lambda d: (d / "bm25_vocab.json").write_text("[\"iran\", "),
        lambda d: (d / "bm25_vocab.json").write_text("[\"iran\"]"),  # too few terms for the arrays
        lambda d: (d / "bm25_vocab.json").write_bytes(b"\xff\xfe\x00"),
        lambda d: (d / "bm25_docs.npy").write_bytes((d / "bm25_docs.npy").read_bytes()[:-4]),  # a posting short
        lambda d: np.save(d / "bm25_weights.npy", np.load(d / "bm25_weights.npy").astype(np.float32)),
    ],
)
def test_load_corrupt_files(tmp_path, damage):
    save_bm25(build_bm25(CORPUS), tmp_path)
    damage(tmp_path)
    with pytest.raises(QAError, match="corrupt") as info:
        load_bm25(tmp_path)
    assert "\n" not in str(info.value)


def test_a_posting_that_names_no_passage_is_a_one_line_error_when_read(tmp_path):
    save_bm25(build_bm25(CORPUS), tmp_path)
    docs = np.load(tmp_path / "bm25_docs.npy")
    docs[-1] = 10**6
    np.save(tmp_path / "bm25_docs.npy", docs)
    loaded = load_bm25(tmp_path)  # no posting is read on load
    last = max(loaded.vocab, key=loaded.vocab.get)
    with pytest.raises(QAError, match="damaged") as info:
        bm25_top(loaded, [last], 3)
    assert "\n" not in str(info.value)


def test_module_stays_light():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, qa.bm25; print('rank_bm25' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.split() == ["False", "False"]
