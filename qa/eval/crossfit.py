"""``qa eval --calibrate --cross-fit DIR ...``: fit the calibration on the articles the reader trained on too.

Each such article is scored by a reader of the same recipe that did not train on it
(``training/train_reader.py --fold I/N``), as scikit-learn's ``CalibratedClassifierCV(ensemble=False)``
fits its map on cross-validated scores and applies it to the model trained on everything. Every
article is then scored as new, by the reader itself or a fold's, and the ranker, the map to
P(right) and the threshold are fitted on all of them, not on the few articles kept from training.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from qa.datatypes import QAError
from qa.splits import FIT

# training.json settings a cross-fitting reader shares with the reader it stands in for
RECIPE = ("base", "epochs", "lr", "layer_decay", "batch", "negatives_share", "near_misses_share", "near_miss_kind",
          "swapped_names_share", "train_embeddings", "init_from", "seed", "bf16")


def training_record(folder: Path) -> dict:
    """The reader's ``training.json`` ({} when missing or unreadable)."""
    try:
        record = json.loads((Path(folder) / "training.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def trained_articles(record: dict) -> frozenset[str] | None:
    """The SQuAD articles a reader trained on, from its ``training.json`` record (:func:`training_record`;
    a reader trained before the list was recorded there: the ``fit`` articles of its split); None when
    unknown."""
    if isinstance(record.get("articles"), list):
        return frozenset(map(str, record["articles"]))
    return frozenset(FIT) if record.get("split") == "qa/splits.py" else None


def scorers(engine, articles: list[str], cross_fit: list[Path]) -> dict[str, object]:
    """For each article, the engine to score its questions with: the given one when its reader did
    not train on the article, else one with a ``cross_fit`` reader that did not (QAError when none)."""
    from qa.reader import load_reader

    recipe = training_record(engine.reader.folder)
    own = trained_articles(recipe)
    if own is None:
        raise QAError(f"--cross-fit: {engine.reader.folder}/training.json does not say which articles the reader "
                      "trained on")
    folds = []
    for folder in cross_fit:
        other = training_record(folder)
        seen = trained_articles(other)
        if seen is None:
            raise QAError(f"--cross-fit: {folder}/training.json does not say which articles that reader trained on")
        differ = [k for k in RECIPE if k in recipe and k in other and recipe[k] != other[k]]
        if differ:
            print(f"warning: --cross-fit {folder} was trained with other settings than the reader "
                  f"({', '.join(f'{k} {other[k]} against {recipe[k]}' for k in differ)}): its scores may not "
                  "stand for the reader's", file=sys.stderr)
        folds.append((seen, dataclasses.replace(engine, reader=load_reader(folder, engine.settings.model_path))))
    chosen = {}
    for a in articles:
        if a not in own:
            chosen[a] = engine
            continue
        fresh = [e for seen, e in folds if a not in seen]
        if not fresh:
            raise QAError(f"--cross-fit: every reader given trained on the article '{a}'")
        chosen[a] = fresh[0]
    return chosen
