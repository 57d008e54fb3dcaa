import json
import os

import pytest

from qa.eval.beir import load_beir
from qa.eval.datasets import CORPUS_MARK, load_questions, load_squad
from qa.eval.setup import load_question_set
from qa.datatypes import QAError, Question

pytestmark = pytest.mark.unit


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_questions(tmp_path):
    path = write_lines(
        tmp_path / "q.jsonl",
        [
            '{"id": "q1", "question": " How tall is it? ", "answers": ["330 m", "330 m"], "doc": "a.txt"}',
            "",
            '{"id": 2, "question": "Who?", "answers": [], "paraphrase": "Who is it?"}',
            '{"id": "q3", "question": "Where?", "answers": ["Paris"], "doc": null}',
            "   ",
        ],
    )
    assert load_questions(path) == [
        Question(id="q1", question="How tall is it?", answers=["330 m"], doc="a.txt"),
        Question(id="2", question="Who?", answers=[], doc=None),
        Question(id="q3", question="Where?", answers=["Paris"], doc=None),
    ]


GOOD = '{"id": "q1", "question": "Who?", "answers": ["Ann"]}'


@pytest.mark.parametrize(
    "bad_line, expected",
    [
        ('{"id": "q2", "question": "Why?", "answers": [}', ":2: bad JSON"),
        ('{"id": "q2", "question": "Why?"}', ":2: missing field 'answers'"),
        ('{"question": "Why?", "answers": []}', ":2: missing field 'id'"),
        ('{"id": "q2", "answers": []}', ":2: missing field 'question'"),
        (
            '{"id": "q2", "question": "Why?", "answers": "Bob"}',
            ":2: field 'answers' must be a list of non-empty strings",
        ),
        ('{"id": "q2", "question": "Why?", "answers": ["Bob", 3]}', ":2: field 'answers' must be a list"),
        ('{"id": "q2", "question": "  ", "answers": []}', ":2: field 'question' is empty"),
        ('{"id": "q2", "question": 5, "answers": []}', ":2: field 'question' must be a string"),
        ('{"id": ["q2"], "question": "Why?", "answers": []}', ":2: field 'id' must be a string, got a list"),
        ('{"id": "", "question": "Why?", "answers": []}', ":2: field 'id' is empty"),
        ('{"id": "q2", "question": "Why?", "answers": [], "doc": 7}', ":2: field 'doc' must be"),
        ('["q2", "Why?"]', ":2: expected a JSON object, got a list"),
        ('{"id": "q1", "question": "Again?", "answers": []}', ":2: duplicate id 'q1' (first on line 1)"),
    ],
)
def test_load_questions_errors_name_file_line_and_field(tmp_path, bad_line, expected):
    path = write_lines(tmp_path / "set.jsonl", [GOOD, bad_line, GOOD.replace("q1", "q9")])
    with pytest.raises(QAError) as caught:
        load_questions(path)
    message = str(caught.value)
    assert f"{path}{expected}" in message
    assert "\n" not in message


def test_load_questions_empty_and_missing(tmp_path):
    empty = write_lines(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(QAError, match="no questions"):
        load_questions(empty)
    with pytest.raises(QAError, match="not found"):
        load_questions(tmp_path / "absent.jsonl")


SQUAD_V2 = {
    "version": "v2.0",
    "data": [
        {
            "title": "Eiffel_Tower",
            "paragraphs": [
                {
                    "context": "The tower is 330 metres tall.",
                    "qas": [
                        {
                            "id": "e1",
                            "question": "How tall is the tower?",
                            "answers": [
                                {"text": "330 metres", "answer_start": 13},
                                {"text": "330 metres", "answer_start": 13},
                                {"text": "330", "answer_start": 13},
                            ],
                            "is_impossible": False,
                        }
                    ],
                },
                {
                    "context": "It was built by Gustave Eiffel's company.",
                    "qas": [
                        {
                            "id": "e2",
                            "question": "Whose company built it?",
                            "answers": [{"text": "Gustave Eiffel's", "answer_start": 16}],
                            "is_impossible": False,
                        },
                        {
                            "id": "e3",
                            "question": "Who painted it?",
                            "answers": [],
                            "plausible_answers": [{"text": "Gustave Eiffel", "answer_start": 16}],
                            "is_impossible": True,
                        },
                    ],
                },
            ],
        },
        {
            "title": "Beyoncé",
            "paragraphs": [
                {"context": "Beyoncé Giselle Knowles-Carter is a singer.", "qas": []},
                {
                    "context": "She was born in Houston.",
                    "qas": [
                        {
                            "id": "b1",
                            "question": "Where was she born?",
                            "answers": [{"text": "Houston", "answer_start": 16}],
                        }
                    ],
                },
            ],
        },
    ],
}


def write_squad(tmp_path, data):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_load_squad_v2(tmp_path):
    corpus = tmp_path / "corpus"
    notes = []
    questions = load_squad(write_squad(tmp_path, SQUAD_V2), corpus, note=notes.append)
    assert notes == []  # nothing assumed
    assert sorted(os.listdir(corpus)) == [CORPUS_MARK, "beyonce.txt", "eiffel-tower.txt"]
    assert (corpus / CORPUS_MARK).read_bytes() == b""
    eiffel = (corpus / "eiffel-tower.txt").read_text(encoding="utf-8")
    assert eiffel == (
        "# Eiffel Tower\n\nThe tower is 330 metres tall.\n\nIt was built by Gustave Eiffel's company.\n"
    )
    beyonce = (corpus / "beyonce.txt").read_text(encoding="utf-8")
    assert beyonce == "# Beyoncé\n\nBeyoncé Giselle Knowles-Carter is a singer.\n\nShe was born in Houston.\n"
    assert questions == [
        Question("e1", "How tall is the tower?", ["330 metres", "330"], "eiffel-tower.txt", (16, 45),
                 spans=[(29, 32), (29, 39)], article="Eiffel_Tower"),
        Question("e2", "Whose company built it?", ["Gustave Eiffel's"], "eiffel-tower.txt", (47, 88),
                 spans=[(63, 79)], article="Eiffel_Tower"),
        Question("e3", "Who painted it?", [], "eiffel-tower.txt", (47, 88), article="Eiffel_Tower"),
        Question("b1", "Where was she born?", ["Houston"], "beyonce.txt", (56, 80), spans=[(72, 79)],
                 article="Beyoncé"),
    ]
    assert eiffel[29:39] == "330 metres" and eiffel[63:79] == "Gustave Eiffel's" and beyonce[72:79] == "Houston"
    assert beyonce[56:80] == "She was born in Houston."
    assert eiffel[47:88] == "It was built by Gustave Eiffel's company."


def test_load_squad_caches_and_removes_stale_files(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "old-article.txt").write_text("stale")
    (corpus / "notes.md").write_text("kept")
    path = write_squad(tmp_path, SQUAD_V2)
    load_squad(path, corpus)
    assert sorted(os.listdir(corpus)) == [CORPUS_MARK, "beyonce.txt", "eiffel-tower.txt", "notes.md"]
    os.utime(corpus / "beyonce.txt", ns=(1_000_000_000, 1_000_000_000))
    os.utime(corpus / "eiffel-tower.txt", ns=(1_000_000_000, 1_000_000_000))
    changed = json.loads(json.dumps(SQUAD_V2))
    changed["data"][1]["paragraphs"][1]["context"] = "She was born in Houston, Texas."
    load_squad(write_squad(tmp_path, changed), corpus)
    assert os.stat(corpus / "eiffel-tower.txt").st_mtime_ns == 1_000_000_000
    assert os.stat(corpus / "beyonce.txt").st_mtime_ns != 1_000_000_000
    assert (corpus / "beyonce.txt").read_text(encoding="utf-8").endswith("born in Houston, Texas.\n")


def question(qid, answer):
    return {"id": qid, "question": "?", "answers": [{"text": answer}]}


def test_load_squad_clashing_slugs_and_crlf(tmp_path):
    data = {
        "data": [
            {"title": "Sky_(UK)", "paragraphs": [{"context": "A\r\nB\x00", "qas": [question("1", "B")]}]},
            {"title": "Sky UK", "paragraphs": [{"context": "C", "qas": [question("2", "C")]}]},
        ]
    }
    corpus = tmp_path / "corpus"
    first, second = load_squad(write_squad(tmp_path, data), corpus)
    assert (first.doc, second.doc) == ("sky-uk.txt", "sky-uk-2.txt")
    text = (corpus / "sky-uk.txt").read_text(encoding="utf-8")
    assert text == "# Sky (UK)\n\nA\nB\n"
    assert first.region == (12, 15)


@pytest.mark.parametrize(
    "data, expected",
    [
        ([], "the top level is not an object"),
        ({"version": "1.1"}, "the top level has no 'data' list"),
        ({"data": ["Eiffel"]}, "data[0] is not an object"),
        ({"data": [{"title": ["T"], "paragraphs": []}]}, "data[0] has a list as 'title' (expected a string)"),
        ({"data": [{"title": "T"}]}, "data[0] has no 'paragraphs' list"),
        (
            {"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "Q?", "answers": []}]}]}]},
            "data[0].paragraphs[0].qas[0] has no 'id'",
        ),
        (
            {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": {"n": 1}, "question": "Q?", "answers": []}]}]}]},
            "data[0].paragraphs[0].qas[0] has an object as 'id' (expected a string or number)",
        ),
        (
            {"data": [{"paragraphs": [{"context": "c", "qas": [question(1, "c"), question("1", "c")]}]}]},
            "data[0].paragraphs[0].qas[1] repeats id '1'",
        ),
        ({"data": [{"title": "T", "paragraphs": [{"qas": []}]}]}, "data[0].paragraphs[0] has no 'context' string"),
        (
            {"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [{"id": "1", "answers": []}]}]}]},
            "data[0].paragraphs[0].qas[0] has no 'question' string",
        ),
        ({"data": [{"title": "T", "paragraphs": []}]}, "no questions"),
    ],
)
def test_load_squad_malformed(tmp_path, data, expected):
    path = write_squad(tmp_path, data)
    notes = []
    with pytest.raises(QAError) as caught:
        load_squad(path, tmp_path / "corpus", note=notes.append)
    assert str(caught.value) == (f"{path}: {expected}" if expected == "no questions"
                                 else f"{path}: not SQuAD JSON: {expected}")
    assert notes == [] and not (tmp_path / "corpus").exists()  # a refused file writes and says nothing


def test_load_squad_without_titles_and_with_scalar_ids(tmp_path, capsys):
    """Published SQuAD-style sets without article titles and with integer ids are read as the
    format's readers read them, and what was assumed is said in one stderr line."""
    bees = "Honey bees live in colonies of many thousands of insects ruled by a single queen."
    data = {
        "version": "1.1",
        "data": [
            {"paragraphs": [{"context": "The Eiffel Tower is in Paris.\nIt is 330 metres tall.",
                             "qas": [{"id": 1, "question": "Where is the tower?",
                                      "answers": [{"text": "Paris", "answer_start": 23}]}]}]},
            {"title": None, "paragraphs": [{"context": "  \n" + bees,
                                            "qas": [{"id": 2.5, "question": "Who rules?", "answers": []}]}]},
            {"title": " ", "paragraphs": [{"context": "", "qas": [{"id": True, "question": "?", "answers": []}]}]},
            {"title": "Sky_(UK)", "paragraphs": [{"context": "C", "qas": [question("s1", "C")]}]},
        ],
    }
    path = write_squad(tmp_path, data)
    corpus = tmp_path / "corpus"
    questions = load_squad(path, corpus)
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"note: {path}: 3 of 4 articles have no title, so each is titled by its first line, or 'Article <n>' "
        "(data[0], data[1], data[2]); 3 question ids are not strings, read as text (e.g. 1 as '1')\n"
    )
    eiffel, bees_doc, third, sky = "the-eiffel-tower-is-in-paris.txt", \
        "honey-bees-live-in-colonies-of-many-thousands-of-insects.txt", "article-3.txt", "sky-uk.txt"
    assert sorted(os.listdir(corpus)) == sorted([CORPUS_MARK, eiffel, bees_doc, third, sky])
    text = (corpus / eiffel).read_text(encoding="utf-8")
    assert text == "# The Eiffel Tower is in Paris.\n\nThe Eiffel Tower is in Paris.\nIt is 330 metres tall.\n"
    assert (corpus / bees_doc).read_text(encoding="utf-8") == (
        f"# Honey bees live in colonies of many thousands of insects…\n\n  \n{bees}\n")
    assert (corpus / third).read_text(encoding="utf-8") == "# Article 3\n\n\n"
    assert [(q.id, q.doc, q.article) for q in questions] == [
        ("1", eiffel, "The Eiffel Tower is in Paris."),
        ("2.5", bees_doc, "Honey bees live in colonies of many thousands of insects…"),
        ("true", third, "Article 3"),
        ("s1", sky, "Sky_(UK)"),
    ]
    start, end = questions[0].region
    assert text[start:end] == "The Eiffel Tower is in Paris.\nIt is 330 metres tall."
    assert [text[a:b] for a, b in questions[0].spans] == ["Paris"]


def test_load_squad_assumptions_are_one_line_however_many(tmp_path):
    data = {"data": [{"paragraphs": [{"context": "Same first line.", "qas": [question(f"q{n}", "Same")]}]}
                     for n in range(5)]}
    data["data"][4]["paragraphs"][0]["qas"][0]["id"] = 7
    path = write_squad(tmp_path, data)
    notes = []
    questions = load_squad(path, tmp_path / "corpus", note=notes.append)
    assert notes == [
        f"{path}: 5 of 5 articles have no title, so each is titled by its first line, or 'Article <n>' "
        "(data[0], data[1], data[2], ...); 1 question id is not a string, read as text (e.g. 7 as '7')"
    ]
    assert [q.doc for q in questions] == ["same-first-line.txt"] + [f"same-first-line-{n}.txt" for n in range(2, 6)]
    assert {q.article for q in questions} == {"Same first line."}
    assert [q.id for q in questions] == ["q0", "q1", "q2", "q3", "7"]


def test_load_squad_refused_file_leaves_no_corpus_folder(tmp_path):
    path = write_squad(tmp_path, {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": 1}]}]}]})
    corpus = tmp_path / "new" / "corpus"
    with pytest.raises(QAError) as caught:
        load_question_set(path, "squad", corpus)
    assert str(caught.value) == f"{path}: not SQuAD JSON: data[0].paragraphs[0].qas[0] has no 'answers' list"
    assert not (tmp_path / "new").exists()


def test_load_squad_bad_json(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(QAError, match="bad JSON"):
        load_squad(path, tmp_path / "corpus")


def write_beir(folder, split="test"):
    (folder / "qrels").mkdir(parents=True)
    write_lines(
        folder / "corpus.jsonl",
        [
            '{"_id": "d1", "title": "Stem cells", "text": "Nanotech tracks stem cells."}',
            '{"_id": "d/2", "title": "", "text": "No title here."}',
            '{"_id": 3, "text": "Integer id."}',
            '{"_id": "d4", "title": null, "text": " "}',
        ],
    )
    write_lines(
        folder / "queries.jsonl",
        [
            '{"_id": "q1", "text": "Can nanotech track cells?", "metadata": {}}',
            '{"_id": "q2", "text": "Unjudged query."}',
            '{"_id": "q3", "text": "Judged irrelevant only."}',
            '{"_id": "q4", "text": "Two relevant."}',
        ],
    )
    write_lines(
        folder / "qrels" / f"{split}.tsv",
        ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q3\td1\t0", "q4\td/2\t2", "q4\t3\t1", "q4\td1\t0", "q9\td1\t1"],
    )


def test_load_beir(tmp_path):
    write_beir(tmp_path / "scifact")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "stale.txt").write_text("old")
    questions = load_beir(tmp_path / "scifact", corpus)
    assert sorted(os.listdir(corpus)) == [CORPUS_MARK, "3.txt", "d1.txt", "d_2.txt"]
    assert (corpus / "d1.txt").read_text(encoding="utf-8") == "# Stem cells\n\nNanotech tracks stem cells.\n"
    assert (corpus / "d_2.txt").read_text(encoding="utf-8") == "No title here.\n"
    assert questions == [
        Question("q1", "Can nanotech track cells?", [], relevant={"d1.txt": 1}),
        Question("q4", "Two relevant.", [], relevant={"d_2.txt": 2, "3.txt": 1}),
    ]
    os.utime(corpus / "d1.txt", ns=(1_000_000_000, 1_000_000_000))
    load_beir(tmp_path / "scifact", corpus)
    assert os.stat(corpus / "d1.txt").st_mtime_ns == 1_000_000_000


def test_load_beir_split_and_missing_files(tmp_path):
    write_beir(tmp_path / "b", split="dev")
    assert [q.id for q in load_beir(tmp_path / "b", tmp_path / "corpus", split="dev")] == ["q1", "q4"]
    with pytest.raises(QAError, match="missing qrels/test.tsv"):
        load_beir(tmp_path / "b", tmp_path / "corpus")
    with pytest.raises(QAError, match="missing corpus.jsonl"):
        load_beir(tmp_path / "nowhere", tmp_path / "corpus")


def test_load_beir_bad_corpus_line(tmp_path):
    write_beir(tmp_path / "b")
    with open(tmp_path / "b" / "corpus.jsonl", "a", encoding="utf-8") as f:
        f.write('{"title": "no id", "text": "x"}\n')
    with pytest.raises(QAError, match=r"corpus.jsonl:5: missing field '_id'"):
        load_beir(tmp_path / "b", tmp_path / "corpus")


def test_load_question_set_dispatch(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", [GOOD])
    assert load_question_set(path, "jsonl", None) == [Question("q1", "Who?", ["Ann"])]
    squad = write_squad(tmp_path, SQUAD_V2)
    assert len(load_question_set(squad, "squad", tmp_path / "corpus")) == 4
    write_beir(tmp_path / "beir")
    assert len(load_question_set(tmp_path / "beir", "beir", tmp_path / "corpus2")) == 2
    with pytest.raises(QAError, match="unknown format 'x': expected jsonl, squad or beir"):
        load_question_set(path, "x", None)
    with pytest.raises(QAError, match="needs a corpus folder"):
        load_question_set(squad, "squad", None)
