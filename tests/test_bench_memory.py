"""``benchmarks/run.py`` refuses a size whose build cannot fit in the machine's memory, up front,
instead of being killed part-way (a 1M build held about 22 GB on a 23.5 GiB machine, unfinished); and
its builds are timed on the path users run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def bench_module(name: str):
    """Import ``benchmarks/<name>.py`` (which imports its neighbours) as ``bench_<name>``."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def run():
    return bench_module("run")


def test_a_size_that_fits_is_built(run):
    assert run.memory_refusal(100_000, 20 * 10**9) is None
    assert run.memory_refusal(1_000_000, None) is None  # memory unknown: not refused


def test_a_million_passages_on_an_8_gb_machine_is_refused_with_the_reason(run):
    assert run.memory_refusal(1_000_000, 20 * 10**9) is None  # fits on this 23.5 GiB machine since the build streams
    message = run.memory_refusal(1_000_000, 8 * 10**9)
    need = 1_000_000 * run.BUILD_BYTES_PER_PASSAGE / 1e9
    assert need > 8 and message.startswith(f"1M: the build needs about {need:.0f} GB")
    assert "8.0 GB available" in message and "--force" in message and "\n" not in message


def test_the_run_stops_before_building_anything(run, tmp_path, monkeypatch):
    monkeypatch.setattr(run, "mem_available", lambda: 10**9)
    with pytest.raises(SystemExit) as stop:
        run.main(["--sizes", "100k", "--out", str(tmp_path / "out")])
    assert str(stop.value).startswith(f"benchmark: 100k: the build needs about {run.BUILD_BYTES_PER_PASSAGE / 1e4:.0f} GB")
    assert not (tmp_path / "out" / "work").exists()


@pytest.fixture(scope="module")
def workers():
    return bench_module("workers")


def test_the_timed_encoder_keeps_the_pooled_path_the_build_takes(workers):
    """The benchmark times the build users run: with pooling hidden, every sentence was encoded alone."""
    import numpy as np

    from qa.vectors import encode_passages

    class Pooling:
        name, dim, backend, precision, pools_spans = "p", 4, "onnx", "fp32", True
        alone = 0

        def encode(self, texts, batch_size=32):
            self.alone += len(texts)
            return np.ones((len(texts), 4), np.float32)

        def encode_spans(self, texts, spans, batch_size=32):
            return np.ones((len(texts), 4), np.float32), [np.ones((len(s), 4), np.float32) for s in spans]

    timed = workers.TimedEncoder(Pooling())
    texts = ["One sentence. Two sentences.", "Three."]
    vectors, pooled = encode_passages(timed, texts, [[(0, 13), (14, 28)], [(0, 6)]], batch_size=8)
    assert timed.pools_spans and timed.inner.alone == 0 and len(vectors) == 2 and [len(p) for p in pooled] == [2, 1]
    timed.split(set(texts))
    assert timed.n == {"passages": 2, "sentences": 0} and timed.t["sentences"] == 0.0
