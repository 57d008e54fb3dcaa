"""The embedding model is known by its content, not its path; a calibration lives with the index
generation it was fitted on and never outlives a change of model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers_core import HashEncoder, live_generation, one_line_qaerror, settings_for
from qa.build import build_index
from qa.calibration import CALIBRATION_FILE, Calibration, calibration_for
from qa.index import load_index
from qa.manifest import staleness
from qa.pipeline import index_model

pytestmark = pytest.mark.unit

OLD_NS = 1_700_000_000 * 10**9  # files older than the racy window: their digests are remembered


def quiet(msg: str) -> None:
    pass


def fake_model(folder: Path, weights: bytes = b"weights-1") -> Path:
    """A model folder as far as its identity goes (the HashEncoder stands in for its vectors)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "modules.json").write_text("[]")
    new_weights(folder, weights)
    return folder


def new_weights(folder: Path, data: bytes) -> None:
    path = folder / "model.safetensors"
    path.unlink(missing_ok=True)
    path.write_bytes(data)
    for f in folder.iterdir():
        os.utime(f, ns=(OLD_NS, OLD_NS))


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("QA_CACHE", str(tmp_path / "qa-cache"))
    model = fake_model(tmp_path / "venv-1" / "model-x")
    settings = settings_for(tmp_path, model=str(model))
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "ports.txt").write_text("The port of Astrakhan handled 1,700 crates in 2023. "
                                                   "It closed in winter.\n")
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    return settings, model


def calibrate(settings) -> Calibration:
    """A calibration fitted on the live generation, saved into it as ``qa eval --calibrate`` does."""
    index = load_index(settings)
    cal = Calibration("reader-a", index_model(index), ranker=[0.0] * 6, platt=(1.0, 0.0), threshold=0.42)
    cal.save(index.folder / CALIBRATION_FILE)
    return cal


def test_a_moved_model_keeps_its_index_and_new_weights_at_the_same_path_do_not(setup, tmp_path):
    settings, model = setup
    assert staleness(settings) is None
    moved = tmp_path / "venv-2" / "model-x"  # the venv moved: same files, another path
    shutil.copytree(model, moved)
    assert staleness(settings.replace(model=str(moved))) is None
    assert index_model(load_index(settings)).startswith("model-x-")
    new_weights(model, b"weights-2")  # same size, same path, other bytes
    assert staleness(settings) == "index settings or model changed"
    assert staleness(settings.replace(model=str(moved))) is None


def test_the_calibration_follows_updates_of_the_index_and_dies_with_the_model(setup, tmp_path):
    settings, model = setup
    cal = calibrate(settings)
    (tmp_path / "reader").mkdir()  # a reader that ships no calibration
    corpus_doc = tmp_path / "corpus" / "ports.txt"
    corpus_doc.write_text(corpus_doc.read_text() + "Makhachkala took the rest.\n")
    before = live_generation(settings.index)
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    index = load_index(settings)
    assert index.folder != before and (index.folder / CALIBRATION_FILE).is_file()
    got = calibration_for(index.folder, tmp_path / "reader", "reader-a", index_model(index))
    assert got.threshold == cal.threshold

    new_weights(model, b"weights-2")
    build_index(settings, log=quiet, progress=False, encoder=HashEncoder())
    index = load_index(settings)
    assert not (index.folder / CALIBRATION_FILE).exists()
    assert "no calibration" in one_line_qaerror(calibration_for, index.folder, tmp_path / "reader", "reader-a",
                                                index_model(index))


def test_a_calibration_for_another_embedding_model_is_not_used(setup, tmp_path):
    settings, _ = setup
    index = load_index(settings)
    Calibration("reader-a", "other-model-fp32", ranker=[0.0] * 6, platt=(1.0, 0.0), threshold=0.9).save(
        index.folder / CALIBRATION_FILE)
    shipped = tmp_path / "reader"
    shipped.mkdir()
    Calibration("reader-a", "", ranker=[0.0] * 6, platt=(1.0, 0.0), threshold=0.4).save(shipped / CALIBRATION_FILE)
    notes: list[str] = []
    got = calibration_for(index.folder, shipped, "reader-a", index_model(index), log=notes.append)
    assert got.threshold == 0.4 and "another reader or model" in notes[0]
