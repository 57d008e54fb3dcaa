"""File status and content digests, remembered as git remembers its index: a file whose size, mtime,
ctime and inode are what they were when it was hashed still holds the same bytes.

The index manifest records each document's status this way (``qa.manifest``), and
``remembered_sha256`` keeps the digests of model files (the embedding model, the reader) in
``$QA_CACHE/digests.json``, so a process does not hash 100 MB of weights at every start.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from qa.load import file_sha256
from qa.storage import atomic_write

STAT_FIELDS = ("size", "mtime_ns", "ctime_ns", "ino")  # recorded per file: unchanged means not re-hashed
RACY_NS = 2_000_000_000  # a file modified less than this before it was read is hashed every time (see stat_of)
DIGESTS_FILE = "digests.json"
MAX_REMEMBERED = 256  # digests kept in the cache file; the oldest go first


def default_cache_dir() -> Path:
    """Where qa caches what it can make again (ONNX exports, digests): ``$QA_CACHE`` or ``~/.cache/qa``."""
    return Path(os.environ.get("QA_CACHE", Path.home() / ".cache" / "qa"))


def same_stat(recorded: dict, st: os.stat_result) -> bool:
    """Whether ``st`` is the status ``stat_of`` recorded; False when any field is missing or not an int."""
    now = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}
    return all(type(recorded.get(k)) is int and recorded[k] == now[k] for k in STAT_FIELDS)


def stat_of(path: Path) -> dict:
    """The status of ``path`` to record (in a manifest, or beside a remembered digest), taken before its bytes are read, or {} (it is
    then hashed every time) when it cannot be taken or when the file was modified less than
    ``RACY_NS`` before: a file written again within its timestamp's granularity (coarse clock ticks,
    seconds on some file systems) after the build read it could keep its mtime and size ("racily
    clean", in git's words). An older mtime always changes when the file is written."""
    now = time.time_ns()
    try:
        st = os.stat(path)
    except OSError:
        return {}
    if st.st_mtime_ns > now - RACY_NS:
        return {}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def remembered_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """sha256 of the bytes of ``path``, taken from ``cache_dir/digests.json`` when the file's status is
    the one recorded with it, else computed and recorded. A cache that cannot be read or written
    only costs the hashing."""
    path = Path(path).resolve()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    store = cache / DIGESTS_FILE
    try:
        known = json.loads(store.read_bytes().decode("utf-8"))
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError, RecursionError):
        known = {}
    entry = known.get(str(path))
    try:
        if isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and same_stat(entry, os.stat(path)):
            return entry["sha256"]
    except OSError:
        pass
    status = stat_of(path)
    digest = file_sha256(path)
    if status:
        known.pop(str(path), None)
        known[str(path)] = {**status, "sha256": digest}
        keep = dict(list(known.items())[-MAX_REMEMBERED:])
        try:
            cache.mkdir(parents=True, exist_ok=True)
            atomic_write(store, json.dumps(keep, indent=0))
        except OSError:
            pass
    return digest
