"""Fixtures shared by the test files (helpers that are plain functions live in helpers_core.py)."""

from __future__ import annotations

import pytest

import qa.build
import qa.cpu
import qa.pipeline
from helpers_core import clone, real_encoder


@pytest.fixture
def idx(tmp_path_factory, tmp_path):
    """A private copy of the built 2-document index (with its embedding cache)."""
    return clone(tmp_path_factory, tmp_path)


@pytest.fixture(autouse=True)
def plain_cpu(monkeypatch):
    """In-process tests run as on a CPU without int8 dot-product units (``--precision auto``: fp32),
    whatever this machine has, so what they build does not depend on it; tests of the rule
    (tests/test_precision.py) give their own flags. Subprocesses see the real CPU."""
    monkeypatch.setattr(qa.cpu, "cpu_flags", lambda: frozenset({"avx2"}))


@pytest.fixture
def fast(monkeypatch):
    """In-process runs reuse the already loaded encoder instead of loading it again."""
    monkeypatch.setattr(qa.pipeline, "query_encoder", lambda settings: real_encoder())
    monkeypatch.setattr(qa.build, "indexing_encoder", lambda settings: real_encoder())


KINDS = ("unit", "integration", "e2e")  # registered in pyproject.toml; CONTRIBUTING.md says which is which


def pytest_collection_modifyitems(config, items):
    """Every test is exactly one of unit, integration, e2e (module-level ``pytestmark`` or its own mark)."""
    wrong = [f"{item.nodeid}: {kinds or 'none'}" for item in items
             if len(kinds := sorted({m.name for m in item.iter_markers() if m.name in KINDS})) != 1]
    if wrong:
        raise pytest.UsageError("each test needs exactly one of the marks unit, integration, e2e:\n  "
                                + "\n  ".join(wrong[:20]))
