"""A SQuAD file whose every article is one long paragraph: its paragraphs joined by blank lines,
every answer offset moved with them. A stress test for long documents (a report, a paper) that
SQuAD's short paragraphs never give: ``qa eval --given-gold`` then reads each question with its
whole article, and open retrieval searches 48 long documents instead of 2,067 paragraphs.

    python benchmarks/squad_whole_articles.py ../shared/benchmarks/squad-v1.1-dev/dev-v1.1.json \\
        --split heldout --out /tmp/squad-whole-heldout.json
    qa eval /tmp/squad-whole-heldout.json --format squad --given-gold --limit 100 --seed 1
    qa eval /tmp/squad-whole-heldout.json --format squad --modes hybrid-rrf --limit 500 --seed 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qa.splits import SPLITS, in_split

JOIN = "\n\n"  # a blank line: the loader keeps the paragraphs apart, and no answer span crosses one


def whole_articles(squad: dict, split: str | None) -> dict:
    """``squad`` (parsed SQuAD JSON) with each article of ``split`` as one paragraph."""
    data = []
    for article in squad["data"]:
        if not in_split(article["title"], split):
            continue
        context, qas = "", []
        for paragraph in article["paragraphs"]:
            offset = len(context) + (len(JOIN) if context else 0)
            context = context + JOIN + paragraph["context"] if context else paragraph["context"]
            for qa in paragraph["qas"]:
                answers = [{**a, "answer_start": a["answer_start"] + offset} for a in qa.get("answers", [])]
                qas.append({**qa, "answers": answers})
        for qa in qas:
            for a in qa["answers"]:
                if context[a["answer_start"] : a["answer_start"] + len(a["text"])] != a["text"]:
                    raise ValueError(f"question {qa.get('id')}: its answer is not at its offset")
        data.append({"title": article["title"], "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": squad.get("version", ""), "data": data}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("squad", type=Path, help="a SQuAD-format JSON file")
    ap.add_argument("--split", choices=SPLITS, help="only these articles (qa.splits)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        squad = json.loads(args.squad.read_text(encoding="utf-8"))
        out = whole_articles(squad, args.split)
        args.out.write_text(json.dumps(out), encoding="utf-8")
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"squad_whole_articles: {e}", file=sys.stderr)
        return 2
    n = sum(len(a["paragraphs"][0]["qas"]) for a in out["data"])
    longest = max((len(a["paragraphs"][0]["context"]) for a in out["data"]), default=0)
    print(f"wrote {args.out}: {len(out['data'])} articles, {n} questions, the longest {longest:,} characters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
