"""Fixtures shared by the test files (helpers that are plain functions live in helpers_core.py)."""

from __future__ import annotations

import pytest

import qa.build
import qa.pipeline
from helpers_core import clone, real_encoder


@pytest.fixture
def idx(tmp_path_factory, tmp_path):
    """A private copy of the built 2-document index (with its embedding cache)."""
    return clone(tmp_path_factory, tmp_path)


@pytest.fixture
def fast(monkeypatch):
    """In-process runs reuse the already loaded encoder instead of loading it again."""
    monkeypatch.setattr(qa.pipeline, "query_encoder", lambda settings: real_encoder())
    monkeypatch.setattr(qa.build, "indexing_encoder", lambda settings: real_encoder())
