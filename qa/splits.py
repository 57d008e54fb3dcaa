"""The fixed article split of SQuAD v1.1 dev used to train, calibrate and report the reader.

Split by article, never by question, so no held-out paragraph is ever read in training:

* ``fit`` (20 articles): the reader is trained on these;
* ``calibrate`` (4 articles): answer ranking and confidence calibration are fitted on these,
  which the reader never trained on, so its scores there are as on new text;
* ``train`` = fit + calibrate, the first 24 articles of the file;
* ``heldout``: the other 24 articles. Every figure we report is on these; nothing is fitted
  or chosen on them.
"""

from __future__ import annotations

FIT = (
    "Super_Bowl_50", "Warsaw", "Normans", "Nikola_Tesla", "Computational_complexity_theory", "Teacher",
    "Martin_Luther", "Southern_California", "Sky_(United_Kingdom)", "Victoria_(Australia)", "Huguenot",
    "Steam_engine", "Oxygen", "1973_oil_crisis", "Apollo_program", "European_Union_law", "Amazon_rainforest",
    "Ctenophora", "Fresno,_California", "Packet_switching",
)
CALIBRATE = ("Black_Death", "Geology", "Newcastle_upon_Tyne", "Victoria_and_Albert_Museum")
TRAIN = FIT + CALIBRATE
SPLITS = ("train", "heldout", "fit", "calibrate")


def in_split(title: str, split: str | None) -> bool:
    """Whether a SQuAD article (by its title, as in the file) belongs to ``split`` (None: all)."""
    if split is None:
        return True
    if split == "heldout":
        return title not in TRAIN
    return title in {"train": TRAIN, "fit": FIT, "calibrate": CALIBRATE}[split]
