import csv
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers_core import live_generation
from qa.cli import build_parser, main, settings_from
from qa.config import Settings, load_saved
from qa.cpu import cpu_count, cpu_name
from qa.eval.calibrate import choose_threshold
from qa.eval.run import evaluate, judge
from qa.eval.setup import EVAL_MODES, LABELS, mode_settings, sample_questions
from qa.eval.metrics import exact_match, recall_at_k
from qa.datatypes import Hit, Passage, Question

pytestmark = pytest.mark.integration

DOCS = {
    "eiffel.txt": "# The Eiffel Tower\n\nThe Eiffel Tower is a wrought-iron lattice tower in Paris. "
    "The tower is 330 metres tall. It was designed by the engineering company of Gustave Eiffel. "
    "Construction of the tower finished in 1889 for the World's Fair.\n\n"
    "The tower has three levels for visitors. About seven million people visit the tower every year. "
    "Restaurants are found on the first and second levels.\n",
    "wall.txt": "# The Great Wall of China\n\nThe Great Wall of China is a series of fortifications in northern "
    "China. Its total length is about 21,196 kilometres. Most of the existing wall was built during the "
    "Ming dynasty. Early walls were begun in the 7th century BC.\n\n"
    "The wall was meant to protect Chinese states against raids by nomadic groups. Watchtowers along it "
    "sent smoke signals to warn of attacks.\n",
    "bees.txt": "# Honey bees\n\nHoney bees live in colonies of many thousands of insects. Each colony has a "
    "single queen that lays the eggs. Worker bees are female and gather nectar and pollen. "
    "Bees tell each other where flowers are through the waggle dance.\n",
}
QUESTIONS = [
    {"id": "q1", "question": "How tall is the Eiffel Tower?", "answers": ["330 metres"], "doc": "eiffel.txt"},
    {"id": "q2", "question": "In what year was construction of the Eiffel Tower finished?", "answers": ["1889"],
     "doc": "eiffel.txt"},
    {"id": "q3", "question": "How long is the Great Wall of China in total?", "answers": ["21,196 kilometres"],
     "doc": "wall.txt"},
    {"id": "q4", "question": "During which dynasty was most of the Great Wall built?",
     "answers": ["Ming dynasty", "Ming"], "doc": "wall.txt"},
    {"id": "q5", "question": "How do bees tell each other where flowers are?", "answers": ["waggle dance"]},
    {"id": "u1", "question": "Who is the president of Brazil?", "answers": []},
    {"id": "u2", "question": "What is the boiling point of mercury?", "answers": []},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A three-document corpus, its index (built once) and a question set."""
    root = tmp_path_factory.mktemp("tiny")
    corpus = root / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    questions = root / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n", encoding="utf-8")
    index = root / "index"
    assert main(["index", "--corpus", str(corpus), "--index", str(index), "-q"]) == 0
    return SimpleNamespace(root=root, corpus=corpus, index=index, questions=questions)


def run_eval_cli(capsys, *args):
    code = main(["eval", *map(str, args), "-q"])
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def assert_fractions(figures):
    for key, value in figures.items():
        if key == "reliability":
            assert sum(b["n"] for b in value) <= figures["n"]
            assert all(0.0 <= b["confidence"] <= 1.0 and 0.0 <= b["accuracy"] <= 1.0 for b in value)
        elif key not in ("n", "answerable", "unanswerable", "mean_answer_words") and value is not None:
            assert 0.0 <= value <= 1.0, (key, value)


def test_eval_jsonl_writes_consistent_outputs(tiny, tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "old.txt").write_text("from an earlier run")
    code, stdout, _ = run_eval_cli(capsys, tiny.questions, "--corpus", tiny.corpus, "--index", tiny.index,
                                   "--out", out)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["chart.png", "per_question.csv", "reliability.png", "report.md", "results.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temp or old folders left beside it
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for label in LABELS.values():
        assert f"| {label} " in stdout

    results = json.loads((out / "results.json").read_text())
    assert list(results["modes"]) == list(EVAL_MODES)
    assert results["dataset"]["answerable"] == 5 and results["dataset"]["unanswerable"] == 2
    assert results["documents"] == 3 and results["settings"]["k"] == 5
    rows = read_csv(out / "per_question.csv")
    assert len(rows) == len(QUESTIONS) * len(EVAL_MODES)
    assert [r["ok"] for r in rows] == sorted(r["ok"] for r in rows)  # failures first

    for mode, figures in results["modes"].items():
        retrieval, answers = figures["retrieval"], figures["answers"]
        assert retrieval["n"] == 5  # unanswerable questions are left out
        assert_fractions(retrieval)
        assert_fractions(answers)
        assert retrieval["recall@20"] >= retrieval["recall@10"] >= retrieval["recall@5"] >= retrieval["recall@1"]
        assert retrieval["mrr@10"] <= retrieval["recall@10"]
        mine = [r for r in rows if r["mode"] == mode]
        answerable = [r for r in mine if r["answerable"] == "1"]
        assert len(answerable) == 5 and all(r["correct"] == "" for r in mine if r["answerable"] == "0")
        assert answers["accuracy"] == pytest.approx(sum(int(r["correct"]) for r in answerable) / 5)
        assert answers["span_em"] == pytest.approx(sum(int(r["span_em"]) for r in answerable) / 5)
        assert answers["f1"] == pytest.approx(sum(float(r["f1"]) for r in answerable) / 5, abs=1e-4)
        assert answers["citation_accuracy"] == pytest.approx(sum(int(r["citation_ok"]) for r in answerable) / 5)
        assert answers["answered_rate"] == pytest.approx(sum(r["abstained"] == "0" for r in mine) / len(mine))
        for stage in ("retrieve", "answer", "total"):
            latency = figures["latency_ms"][stage]
            assert latency["n"] == len(QUESTIONS) and 0 <= latency["p50"] <= latency["p95"]
    assert results["modes"]["dense"]["retrieval"]["recall@20"] == 1.0  # a tiny corpus: dense ranks every passage

    report = (out / "report.md").read_text()
    assert "## Retrieval" in report and "## Answers" in report and "## Latency" in report
    assert '"threshold"' in report and "qa eval" in report
    assert results["machine"] == {"cpu": cpu_name(), "cores": cpu_count()}
    assert f"## Latency (ms per question; {cpu_name()}, {cpu_count()} cores)" in report


@pytest.mark.parametrize("candidates", [50, 3])
def test_eval_answers_exactly_as_ask(tiny, candidates):
    from qa.eval.datasets import load_questions
    from qa.pipeline import ask, open_engine

    settings = Settings(corpus=tiny.corpus, index=tiny.index, candidates=candidates)
    engine = open_engine(settings, build=False, progress=False)
    questions = load_questions(tiny.questions)
    outcomes = evaluate(engine, questions, list(EVAL_MODES), settings, progress=False)
    assert len(outcomes) == len(questions) * len(EVAL_MODES)
    for o in outcomes:
        result = ask(engine, o.question.question, settings=mode_settings(settings, o.mode))
        assert o.answered == (not result.abstained)
        if o.answered:
            assert o.answer == result.answers[0]
            assert o.cited == result.citations[o.answer.citation - 1]


def test_judge_counts_chunks_of_the_gold_region_once():
    def hit(rank, doc, ordinal, start, end, text):
        p = Passage(doc, ordinal, start, end, 1, text, ((start, end),))
        return Hit(row=rank, passage=p, score=1.0 - rank / 10, rank=rank)

    q = Question("s1", "Where?", ["Paris"], doc="a.txt", region=(100, 200))
    hits = [
        hit(0, "b.txt", 0, 0, 50, "Paris is big."),  # another document
        hit(1, "a.txt", 3, 90, 150, "It is in Paris."),  # overlaps the region, has the answer
        hit(2, "a.txt", 4, 140, 210, "Paris, again."),  # a second chunk of the same region
        hit(3, "a.txt", 5, 150, 210, "No answer here."),  # in the region, no answer
        hit(4, "a.txt", 9, 300, 350, "Paris outside."),  # answer outside the region
    ]
    ranked, scores, relevant = judge(q, hits, {})
    assert relevant == {"gold:a.txt#100-200": 1}
    assert ranked == ["b.txt#0", "gold:a.txt#100-200", "gold:a.txt#100-200", "a.txt#5", "a.txt#9"]
    assert scores == [h.score for h in hits]
    assert recall_at_k(ranked, relevant, 1) == 0.0 and recall_at_k(ranked, relevant, 2) == 1.0

    unanswerable = Question("u", "Who?", [])
    assert judge(unanswerable, hits, {})[2] == {}
    beir = Question("b", "claim", [], relevant={"a.txt": 2})
    ranked, _, relevant = judge(beir, hits, {})
    assert ranked == ["b.txt", "a.txt", "a.txt", "a.txt", "a.txt"] and relevant == {"a.txt": 2}


def test_sample_is_fixed_and_keeps_file_order():
    questions = [Question(str(i), f"q{i}?", ["a"]) for i in range(100)]
    first = sample_questions(questions, 10, seed=0)
    assert first == sample_questions(questions, 10, seed=0)
    assert first != sample_questions(questions, 10, seed=1)
    assert len(first) == 10 and [int(q.id) for q in first] == sorted(int(q.id) for q in first)
    assert sample_questions(questions, 500, seed=0) == questions
    assert sample_questions(questions, None, seed=0) == questions


def test_choose_threshold_maximises_accuracy_plus_abstention_f1():
    scores = [0.9, 0.8, 0.5, 0.3, 0.2, -1.0]
    correct = [True, True, False, False, False, False]
    unanswerable = [False, False, False, True, True, True]
    assert choose_threshold(scores, correct, unanswerable) == pytest.approx(0.4)
    assert choose_threshold([0.7, 0.6], [True, True], [False, False]) == 0.0  # nothing to abstain on


def test_calibrate_saves_threshold_that_ask_reads(tiny, tmp_path, capsys):
    index = tmp_path / "index"
    shutil.copytree(tiny.index, index)
    code, stdout, _ = run_eval_cli(capsys, tiny.questions, "--corpus", tiny.corpus, "--index", index, "--calibrate",
                                   "--answerer", "heuristic")
    assert code == 0
    saved = json.loads((index / "settings.json").read_text())
    threshold = saved["threshold"]
    assert 0.0 <= threshold <= 1.0
    assert f"threshold {threshold:.4f}" in stdout and "settings.json" in stdout
    assert load_saved(Settings(index=index, answerer="heuristic")).threshold == threshold
    assert load_saved(Settings(index=index)).threshold is None  # the reader's threshold is its calibration's
    args = build_parser().parse_args(["ask", "--index", str(index), "--answerer", "heuristic", "How tall?"])
    assert settings_from(args).threshold == threshold
    assert not [p for p in index.iterdir() if p.name.endswith(".tmp")]


SQUAD = {
    "version": "v2.0",
    "data": [
        {"title": "Eiffel_Tower", "paragraphs": [
            {"context": "The Eiffel Tower is a lattice tower in Paris. The tower is 330 metres tall.",
             "qas": [{"id": "e1", "question": "How tall is the Eiffel Tower?",
                      "answers": [{"text": "330 metres", "answer_start": 64}]}]},
            {"context": "Construction of the tower finished in 1889. It was built for the World's Fair.",
             "qas": [{"id": "e2", "question": "When was construction of the tower finished?",
                      "answers": [{"text": "1889", "answer_start": 38}]},
                     {"id": "e3", "question": "Who painted the tower pink?", "answers": [],
                      "is_impossible": True}]},
        ]},
        {"title": "Honey_bee", "paragraphs": [
            {"context": "Each colony of honey bees has a single queen. Bees tell each other where flowers are "
                        "through the waggle dance.",
             "qas": [{"id": "b1", "question": "How do bees tell each other where flowers are?",
                      "answers": [{"text": "the waggle dance", "answer_start": 90}]}]},
        ]},
    ],
}


def test_squad_round_trip_uses_its_own_cached_corpus_and_index(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-squad.json").write_text(json.dumps(SQUAD), encoding="utf-8")
    args = ["tiny-squad.json", "--format", "squad", "--out", "out"]
    code, stdout, err = run_eval_cli(capsys, *args)
    assert code == 0, err
    home = tmp_path / ".qa-eval" / "tiny-squad"
    assert sorted(p.name for p in (home / "corpus").glob("*.txt")) == ["eiffel-tower.txt", "honey-bee.txt"]
    assert (home / "index" / "CURRENT").is_file()
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "index").exists()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["dataset"]["format"] == "squad"
    assert (results["dataset"]["answerable"], results["dataset"]["unanswerable"]) == (3, 1)
    for figures in results["modes"].values():
        assert figures["retrieval"]["n"] == 3
        assert figures["answers"]["unanswerable"] == 1
    assert results["modes"]["dense"]["retrieval"]["recall@20"] == 1.0

    code, _, err = run_eval_cli(capsys, *args, "--modes", "dense,bm25")
    assert code == 0 and "building" not in err  # the index is reused
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results["modes"]) == ["bm25", "dense"]
    assert run_eval_cli(capsys, *args, "--mode", "hybrid", "--fusion", "weighted")[0] == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results["modes"]) == ["hybrid-weighted"]

    # a set from several articles is also scored leave-one-article-out, near misses included
    code, stdout, err = run_eval_cli(capsys, "tiny-squad.json", "--format", "squad", "--calibrate",
                                     "--calibration-out", "cal.json")
    assert code == 0 and "leave one article out (2 articles)" in stdout, err
    held = json.loads((tmp_path / "cal.json").read_text())["figures"]["leave_one_article_out"]
    assert held["cut"] >= 1 and 0.0 <= held["abstains_cut"] <= 1.0


def reader_copy(folder: Path, articles: list[str]) -> Path:
    """The shipped reader in ``folder``, its training.json saying it trained on ``articles``."""
    from qa.reader import DEFAULT_DIR

    folder.mkdir()
    for f in DEFAULT_DIR.iterdir():
        if f.is_file() and f.name != "training.json":
            (folder / f.name).symlink_to(f)
    (folder / "training.json").write_text(json.dumps({"split": "qa/splits.py", "articles": articles, "lr": 0.0001}))
    return folder


def test_cross_fitting_scores_each_article_with_a_reader_that_never_trained_on_it(tmp_path, monkeypatch, capsys):
    from qa.eval.crossfit import trained_articles, training_record
    from qa.reader import DEFAULT_DIR, expected_sha256
    from qa.splits import FIT

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-squad.json").write_text(json.dumps(SQUAD), encoding="utf-8")
    assert trained_articles(training_record(DEFAULT_DIR)) == frozenset(FIT)  # recorded before the list was: the split's fit articles
    main_reader = reader_copy(tmp_path / "main", ["Eiffel_Tower"])
    fold = reader_copy(tmp_path / "fold", ["Honey_bee"])
    args = ["tiny-squad.json", "--format", "squad", "--calibrate", "--reader", main_reader]
    code, stdout, err = run_eval_cli(capsys, *args, "--calibration-out", "cal.json", "--cross-fit", fold)
    assert code == 0 and "leave one article out (2 articles)" in stdout, err
    cal = json.loads((tmp_path / "cal.json").read_text())
    assert cal["reader"] == expected_sha256(main_reader)  # fitted for the reader itself, with a fold's help
    assert cal["figures"]["cross_fit"] == {expected_sha256(fold): ["Eiffel_Tower"]}
    assert "1 of 2 articles scored by cross-fitting readers" in cal["fitted_on"]

    # a question set whose article every reader trained on, an unknown recipe, or no --calibrate: one line each
    both = reader_copy(tmp_path / "both", ["Eiffel_Tower", "Honey_bee"])
    code, _, err = run_eval_cli(capsys, *args, "--calibration-out", "x.json", "--cross-fit", both)
    assert code == 2 and "every reader given trained on the article 'Eiffel_Tower'" in err
    (fold / "training.json").write_text(json.dumps({"split": "qa/splits.py", "articles": ["Honey_bee"], "lr": 1}))
    code, _, err = run_eval_cli(capsys, *args, "--calibration-out", "x.json", "--cross-fit", fold)
    assert code == 0 and "was trained with other settings than the reader (lr 1 against 0.0001)" in err
    (both / "training.json").write_text("{}")
    code, _, err = run_eval_cli(capsys, *args, "--calibration-out", "x.json", "--cross-fit", both)
    assert code == 2 and "does not say which articles that reader trained on" in err
    code, _, err = run_eval_cli(capsys, "tiny-squad.json", "--format", "squad", "--cross-fit", fold)
    assert code == 2 and "--cross-fit goes with --calibrate" in err
    assert "Traceback" not in err


def test_beir_scores_retrieval_only(tmp_path, capsys):
    folder = tmp_path / "beir-tiny"
    (folder / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "Tower", "text": "The Eiffel Tower in Paris is 330 metres tall."},
        {"_id": "d2", "title": "Wall", "text": "The Great Wall of China is about 21,196 kilometres long."},
        {"_id": "d3", "title": "Bees", "text": "Honey bees communicate through the waggle dance."},
    ]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus) + "\n")
    queries = [{"_id": "c1", "text": "The Eiffel Tower is tall."}, {"_id": "c2", "text": "Bees dance."}]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nc1\td1\t1\nc2\td3\t1\n")
    out = tmp_path / "out"
    code, stdout, err = run_eval_cli(capsys, folder, "--format", "beir", "--out", out,
                                     "--corpus", tmp_path / "bc", "--index", tmp_path / "bi")
    assert code == 0, err
    assert "Answers" not in stdout
    results = json.loads((out / "results.json").read_text())
    for figures in results["modes"].values():
        assert figures["answers"] is None and figures["retrieval"]["n"] == 2
        assert_fractions(figures["retrieval"])
        assert figures["retrieval"]["recall@20"] == 1.0
    rows = read_csv(out / "per_question.csv")
    assert len(rows) == 2 * len(EVAL_MODES) and all(r["answer"] == "" and r["correct"] == "" for r in rows)


@pytest.mark.parametrize(
    "content, extra, message",
    [
        ('{"id": "q1", "question": "Who?", "answers": ["Ann"]}\n{"id": "q2", "question": ', [], ":2: bad JSON"),
        ("\n\n", [], "no questions"),
        (None, [], "not found"),
        ('{"id": "q1", "question": "Who?", "answers": ["Ann"]}\n', ["--format", "xml"], "unknown format 'xml'"),
        ('{"id": "q1", "question": "Who?", "answers": ["Ann"]}\n', ["--modes", "bm25,sparse"], "unknown mode"),
        ('{"id": "q1", "question": "Who?", "answers": ["Ann"]}\n', ["--limit", "0"], "--limit"),
        ('{"id": "q1", "question": "Who?", "answers": ["Ann"]}\n', ["--calibrate"], "--calibrate"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_leaves_out_alone(tiny, tmp_path, capsys, content, extra, message):
    questions = tmp_path / "set.jsonl"
    if content is not None:
        questions.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier report")
    code, stdout, err = run_eval_cli(capsys, questions, "--corpus", tiny.corpus, "--index", tiny.index,
                                     "--out", out, *extra)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and message in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out"] + (["set.jsonl"] if content else []))


def test_benchmark_refuses_to_write_into_a_real_corpus(tiny, tmp_path, capsys):
    (tmp_path / "s.json").write_text(json.dumps(SQUAD), encoding="utf-8")
    before = sorted(p.name for p in tiny.corpus.iterdir())
    code, _, err = run_eval_cli(capsys, tmp_path / "s.json", "--format", "squad", "--corpus", tiny.corpus,
                                "--index", tmp_path / "i")
    assert code == 2 and "already holds other files" in err
    assert sorted(p.name for p in tiny.corpus.iterdir()) == before


def test_reader_calibration_is_saved_with_the_index_and_used_by_ask(tiny, tmp_path, capsys):
    from qa.calibration import load_calibration
    from qa.pipeline import index_model, open_engine
    from qa.reader import DEFAULT_DIR, expected_sha256

    index = tmp_path / "index"
    shutil.copytree(tiny.index, index)
    code, stdout, err = run_eval_cli(capsys, tiny.questions, "--corpus", tiny.corpus, "--index", index, "--calibrate")
    assert code == 0 and "calibration.json" in stdout and "with their answer left out" in stdout, err
    gen = live_generation(index)  # the calibration lives with the generation it was fitted on
    cal = load_calibration(gen / "calibration.json")
    assert cal.reader == expected_sha256(DEFAULT_DIR)
    engine = open_engine(Settings(corpus=tiny.corpus, index=index), build=False, progress=False)
    assert engine.calibration == cal and cal.model == index_model(engine.index)
    cal.reader = "another reader"
    cal.save(gen / "calibration.json")
    notes = []
    engine = open_engine(Settings(corpus=tiny.corpus, index=index), build=False, progress=False, log=notes.append)
    assert engine.calibration == load_calibration(DEFAULT_DIR / "calibration.json")
    assert any("another reader" in n for n in notes)


def test_squad_split_and_the_reader_given_the_gold_paragraph(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-squad.json").write_text(json.dumps(SQUAD), encoding="utf-8")
    code, stdout, err = run_eval_cli(capsys, "tiny-squad.json", "--format", "squad", "--given-gold",
                                     "--split", "heldout", "--out", "gold")
    assert code == 0, err
    assert f"Reader given the gold paragraph (3 questions, heldout; {cpu_name()}, {cpu_count()} cores)" in stdout
    figures = json.loads((tmp_path / "gold" / "results.json").read_text())["given_gold"]
    assert 0.0 <= figures["em"] <= figures["f1"] <= 1.0
    with open(tmp_path / "gold" / "per_question.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert sum(int(r["em"]) for r in rows) / 3 == pytest.approx(figures["em"])
    assert sum(float(r["f1"]) for r in rows) / 3 == pytest.approx(figures["f1"], abs=1e-4)
    for r in rows:
        assert int(r["em"]) == exact_match(r["span"], r["expected"].split(" | "))
    report = (tmp_path / "gold" / "report.md").read_text(encoding="utf-8")
    assert "--given-gold" in report and f"{figures['em']:.3f}" in report and cpu_name() in report
    assert sorted(p.name for p in (tmp_path / "gold").iterdir()) == ["per_question.csv", "report.md", "results.json"]
    code, _, err = run_eval_cli(capsys, "tiny-squad.json", "--format", "squad", "--split", "train")
    assert code == 2 or code == 1
    assert "no question of tiny-squad.json is in that split" in err
