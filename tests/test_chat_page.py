"""The chat's pieces that need no browser: a reply's HTML ([n] links, snippets and relevance of
the other passages, "searched as", the disagreement side by side, the abstention's nearest
passage), the Markdown and JSON of a reply and a conversation, the corpus watch, and removing
an upload. The browser drives them in tests/test_ui.py."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from helpers_core import DRONES_QUESTION, ROOT
from qa.present import from_dict, location, to_dict
from qa.transcript import conversation_json, conversation_markdown, reply_markdown
from qa.watch import CorpusWatch
from qa.web_page import reply_html
from qa.web_uploads import add_uploads, remove_upload, uploaded

pytestmark = pytest.mark.integration

PAIR = ROOT / "tests" / "fixtures" / "disagree"
SHIPS = "How many container ships did the Port of Veranda handle in 2024?"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from helpers_core import real_encoder
    from qa.config import Settings
    from qa.pipeline import open_engine
    import qa.build
    import qa.pipeline

    base = tmp_path_factory.mktemp("chat")
    corpus = base / "corpus"
    shutil.copytree(ROOT / "corpus", corpus)
    for f in PAIR.iterdir():
        shutil.copy(f, corpus / f.name)
    mp = pytest.MonkeyPatch()
    mp.setattr(qa.pipeline, "query_encoder", lambda settings: real_encoder())
    mp.setattr(qa.build, "indexing_encoder", lambda settings: real_encoder())
    try:
        yield open_engine(Settings(corpus=corpus, index=base / "index"), progress=False)
    finally:
        mp.undo()


def test_refs_link_to_their_sources_in_the_same_reply(engine):
    from qa.pipeline import ask

    result = ask(engine, DRONES_QUESTION)
    page = reply_html(result, rid="abc")
    assert page.index('class="qa-answer"') < page.index('class="qa-head"')  # the answer comes first
    refs = re.findall(r'<a class="qa-ref" href="#qa-abc-(\d+)"', page)
    assert refs and refs[0] == str(result.answers[0].citation)
    for n in set(refs):
        assert f'<details class="qa-cite qa-src-{n}" id="qa-abc-{n}"' in page
    assert reply_html(result) != reply_html(result)  # each reply's anchors are its own


def test_other_passages_show_a_snippet_and_relevance_unopened(engine):
    from qa.pipeline import ask

    result = ask(engine, DRONES_QUESTION)
    page = reply_html(result, rid="r")
    cited = {a.citation for a in result.answers}
    others = [c for c in result.citations if c.n not in cited]
    assert others
    for c in others:
        summary = re.search(rf'id="qa-r-{c.n}"><summary>(.*?)</summary>', page, flags=re.S).group(1)
        assert 'class="qa-snip"' in summary and re.search(r"relevance \d+%", summary)
    for n in cited:
        summary = re.search(rf'id="qa-r-{n}"><summary>(.*?)</summary>', page, flags=re.S).group(1)
        assert "qa-snip" not in summary


def test_follow_up_shows_what_was_searched(engine):
    from qa.pipeline import ask

    follow = ask(engine, "Which port do they arrive at?", history=[DRONES_QUESTION])
    assert "Read as a follow-up; searched as: <i>Which port do they arrive at? How many drones" in reply_html(follow)
    assert "searched as" not in reply_html(ask(engine, "What is SEPAM?", history=[DRONES_QUESTION]))


def test_disagreement_side_by_side_with_citations(engine):
    from qa.pipeline import ask

    result = ask(engine, SHIPS)
    page = reply_html(result, rid="d")
    block = re.search(r'<div class="qa-differ">(.*?)</div></div></div>', page, flags=re.S).group(1)
    assert "Sources differ" in block
    values = re.findall(r'<p class="qa-claim-value">([^<]+)<a class="qa-ref" href="#qa-d-(\d+)"', block)
    assert {v for v, _ in values} == {"4,200", "3,100"}
    assert "harbour-report.txt" in block and "shipping-review.txt" in block
    top, other = result.answers[0].span, ({"4,200", "3,100"} - {result.answers[0].span}).pop()
    assert page.count(f"<mark>{top}</mark>") == 2 and page.count(f"<mark>{other}</mark>") == 1  # not again below
    md = reply_markdown(to_dict(result))
    assert "**Sources differ:**" in md and "“4,200”" in md and "“3,100”" in md


def test_abstention_opens_the_nearest_passage(engine):
    from qa.pipeline import ask

    result = ask(engine, "Which country won the 2022 FIFA World Cup?")
    page = reply_html(result, rid="x")
    assert "no document mentions “FIFA” or “Cup”" in page
    assert f'id="qa-x-{result.abstention.nearest}" open>' in page
    assert page.index("Nearest passage") < page.index("Other passages found")
    assert result.abstention.lead is None  # no passage can hold the answer: nothing to offer as a lead


def test_a_weak_abstention_names_its_best_answer_where_it_stands(engine):
    """Below the confidence needed nothing is answered, but the best span found is named with its
    citation (the exact document text), and the page opens that passage with its sentence marked."""
    from qa.pipeline import ask
    from qa.present import quote_location

    result = ask(engine, DRONES_QUESTION, settings=engine.settings.replace(threshold=0.999))
    why, lead = result.abstention, result.abstention.lead
    assert result.abstained and why.reason == "weak" and lead is not None and lead.score == why.best < 0.999
    cited = next(c for c in result.citations if c.n == lead.citation)
    assert why.nearest == cited.n and cited.doc == lead.doc
    assert cited.text[lead.span_start - cited.start : lead.span_end - cited.start] == lead.span == "1,700"
    assert cited.text[lead.start - cited.start : lead.end - cited.start] == lead.text
    assert (f"the best answer found, “1,700”, has confidence {why.best:.2f}; an answer needs 1.00). "
            f"It stands in [{cited.n}], {quote_location(lead)}.") in result.message
    page = reply_html(result, rid="x")
    assert f'id="qa-x-{cited.n}" open>' in page and "Where the best answer found stands" in page
    assert page.count("<mark>") == 1 and "approximately 1,700 drones" in page.split("<mark>")[1].split("</mark>")[0]
    data = to_dict(result)
    assert data["abstention"]["lead"]["span"] == "1,700" and from_dict(data).abstention == why
    assert f"[{cited.n}] {cited.title}" in reply_markdown(data)


def test_reply_markdown_holds_the_quote_and_its_source(engine):
    from qa.pipeline import ask

    data = to_dict(ask(engine, DRONES_QUESTION))
    md = reply_markdown(data)
    assert md.startswith(f"**Q:** {DRONES_QUESTION}\n")
    assert "approximately **1,700** drones" in md
    top = data["answers"][0]
    cited = next(c for c in data["citations"] if c["n"] == top["citation"])
    assert f"[{cited['n']}] {cited['title']} — `{location(from_dict(data).citations[cited['n'] - 1])}`" in md
    assert f"{cited['doc']}:{cited['line']} (passage " in md
    assert "> " + " ".join(cited["text"].split())[:60] in md


def test_markdown_escapes_markup_from_documents():
    data = {"question": "Why *this* <b>?", "answers": [], "citations": [
        {"n": 1, "doc": "a`b.txt", "title": "# Title", "line": 3, "text": "Some [link](x) text\nover lines"}],
        "message": "No answer.", "abstention": {"nearest": 1}}
    md = reply_markdown(data)
    assert r"Why \*this\* \<b\>?" in md and "``a`b.txt:3``" in md and r"\# Title" in md
    assert r"> Some \[link\](x) text over lines" in md


def test_conversation_exports_every_reply(engine):
    from qa.pipeline import ask

    replies = [to_dict(ask(engine, q)) for q in (DRONES_QUESTION, SHIPS, "Which country won the 2022 FIFA World Cup?")]
    md = conversation_markdown(replies)
    assert md.startswith("# Conversation with the documents")
    assert [line for line in md.splitlines() if line.startswith("## ")] == [
        f"## 1. {DRONES_QUESTION}", f"## 2. {SHIPS}", "## 3. Which country won the 2022 FIFA World Cup?"]
    data = json.loads(conversation_json(replies))
    assert data["format"] == 1 and data["replies"] == json.loads(json.dumps(replies))


def test_corpus_watch_notices_changes_at_most_every_interval(idx):
    now = [100.0]
    watch = CorpusWatch(every=5.0, clock=lambda: now[0])
    assert not watch.changed(idx)
    (idx.corpus / "new.txt").write_text("A new report. The Zorvath-9 radar was delivered to Kazan.")
    now[0] += 1
    assert not watch.changed(idx)  # checked too recently
    now[0] += 5
    assert watch.changed(idx)
    (idx.corpus / "new.txt").unlink()
    now[0] += 5
    assert not watch.changed(idx)


def test_only_uploads_can_be_removed(tmp_path):
    from qa.datatypes import QAError

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "own.txt").write_text("The analyst's own file. It stays.")
    src = tmp_path / "note.txt"
    src.write_text("An uploaded note. It can go.")
    added, problems = add_uploads([str(src)], corpus)
    assert (added, problems) == (["uploads/note.txt"], [])
    assert uploaded(["own.txt", "uploads/note.txt"]) == ["uploads/note.txt"]
    for bad in ["own.txt", "uploads/../own.txt", "uploads/missing.txt", "", None]:
        with pytest.raises(QAError):
            remove_upload(bad, corpus)
    assert (corpus / "own.txt").exists()
    remove_upload("uploads/note.txt", corpus)
    assert not (corpus / "uploads" / "note.txt").exists()


def test_a_question_does_not_queue_behind_a_running_update(idx, fast, monkeypatch):
    from qa import web
    from qa.pipeline import open_engine

    app = web.WebApp(open_engine(idx, progress=False))
    app.watch = CorpusWatch(every=0.0)
    (idx.corpus / "new.txt").write_text("A new report. The Quillon depot was moved to Yerevan in 2030.")
    reloads = []
    monkeypatch.setattr(app, "reload", lambda settings, *a, **kw: reloads.append(settings))
    with app._update_lock:  # an upload is being indexed
        app.refresh()  # returns at once, answering from the index as it is
    assert reloads == []
    app.refresh()  # the next question notices and updates
    assert reloads == [idx]
