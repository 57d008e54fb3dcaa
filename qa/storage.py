"""The index folder on disk: generations, the CURRENT pointer, locks, and the one ``atomic_write``.

Layout of the index folder::

    CURRENT           name of the live generation (replaced atomically)
    gen-<id>/         one complete index: manifest.json (see qa.manifest) and the files it lists
    .lock             held by the build in progress (one at a time)
    cache/<model>/    embedding cache by text key (qa.embcache)

A build writes a new generation folder, then points CURRENT at it (``publish``): a crash at
any moment leaves the previous index intact. A reader holds a shared lock on the generation
it loads (``reading``), and a build deletes an old generation only when no reader holds it; a
reader that finds its generation gone (replaced between reading CURRENT and locking it) reads
CURRENT again. A write that fails (disk full, read-only folder) raises a one-line
``IndexWriteError`` naming the file and leaves no temporary file behind.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from qa.datatypes import QAError

CURRENT = "CURRENT"
GENERATION_NAME = re.compile(r"gen-[0-9A-Za-z_-]{1,100}")
READ_ATTEMPTS = 5  # a reader re-reads CURRENT this often when builds replace the generation under it


class IndexWriteError(QAError, OSError):
    """Writing into the index folder failed (disk full, read-only, no permission): one line naming
    the file. Also an ``OSError`` with the original errno, for callers that handle those."""

    def __init__(self, path: Path | str, cause: OSError):
        code = cause.errno
        if code in (errno.ENOSPC, errno.EDQUOT):
            message = f"disk full writing {path}"
        elif code == errno.EROFS:
            message = f"read-only file system: cannot write {path}"
        elif code in (errno.EACCES, errno.EPERM):
            message = f"permission denied writing {path}"
        else:
            message = f"cannot write {path} ({cause.strerror or cause})"
        super().__init__(message)
        self.errno, self.strerror, self.filename = code, cause.strerror, str(path)

    def __str__(self) -> str:
        return str(self.args[0])


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` into an ``IndexWriteError`` naming it."""
    try:
        yield
    except IndexWriteError:
        raise
    except OSError as e:
        raise IndexWriteError(path, e) from e


def atomic_write(path: Path, data: str | bytes | Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` with ``data`` (text as UTF-8, bytes, or a function writing into the open
    file) so that readers see the old or the new file, never a torn one; on any failure no
    temporary file is left. The one atomic write of the project: every file replaced in place
    (CURRENT, cache shards, calibrations, saved settings) goes through it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        remove(tmp)


def remove(path: Path) -> None:
    """Delete the file ``path`` if it is there; never raises."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


def damaged(folder: Path, what: str) -> QAError:
    return QAError(f"index in {folder} is damaged ({what}): run `qa index --rebuild`")


def read_current(folder: Path) -> str | None:
    """The generation name CURRENT holds; None when there is no CURRENT; QAError when it holds
    anything but a generation name (hand-edited, binary, a folder, unreadable)."""
    folder = Path(folder)
    try:
        with open(folder / CURRENT, "rb") as f:
            raw = f.read(1024)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise damaged(folder, f"{CURRENT} is unreadable: {e.strerror or e}") from None
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        name = ""
    if not GENERATION_NAME.fullmatch(name):
        raise damaged(folder, f"{CURRENT} does not name a generation")
    return name


def moved(folder: Path, name: str) -> bool:
    """Whether CURRENT names another generation than ``name`` now."""
    try:
        return read_current(folder) not in (None, name)
    except QAError:
        return False


def current_generation(folder: Path) -> Path | None:
    """The live generation's folder; None when there is no index."""
    name = read_current(folder)
    if name is None:
        return None
    gen = Path(folder) / name
    if not gen.is_dir():
        raise damaged(folder, f"{CURRENT} points nowhere")
    return gen


def with_current(folder: Path, read: Callable[[Path], object]):
    """``read(generation folder)`` for the live generation, holding it (see ``reading``); when a
    build replaced it meanwhile and ``read`` failed, again with the new one. None when there is no
    index."""
    folder = Path(folder)
    for attempt in range(READ_ATTEMPTS):
        name = read_current(folder)
        if name is None:
            return None
        try:
            with reading(folder, folder / name):
                return read(folder / name)
        except QAError:
            if attempt + 1 < READ_ATTEMPTS and moved(folder, name):
                continue  # a build replaced the generation meanwhile: read the new one
            raise
    raise AssertionError("unreachable")


@contextmanager
def reading(folder: Path, gen: Path) -> Iterator[None]:
    """Hold a shared lock on generation ``gen`` while it is read: builds delete no generation a
    reader holds. QAError when ``gen`` is not there (any more)."""
    import fcntl

    try:
        fd = os.open(gen, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        raise damaged(folder, f"{CURRENT} points nowhere") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError:
            pass  # no locks on this file system: readers still read CURRENT again when files vanish
        try:
            still_there = os.path.samestat(os.fstat(fd), os.stat(gen))
        except OSError:
            still_there = False
        if not still_there:  # deleted while we waited for the lock
            raise damaged(folder, f"{CURRENT} points nowhere")
        yield
    finally:
        os.close(fd)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One build at a time per index folder (other processes wait)."""
    import fcntl

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise QAError(f"cannot create the index folder {folder}: {e.strerror}") from e
    with writing(folder / ".lock"):
        lock = open(folder / ".lock", "a")
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def new_generation_name() -> str:
    import time

    return f"gen-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"


def publish(folder: Path, write: Callable[[Path], None]) -> Path:
    """Make a new generation: ``write`` fills a temporary folder, which is renamed into place, then
    CURRENT is pointed at it. Anything failing leaves the previous generation live and no
    temporary folder behind. Returns the new generation's folder."""
    gen = folder / new_generation_name()
    tmp = folder / f".tmp-{gen.name}"
    try:
        with writing(tmp):
            tmp.mkdir(parents=True)
        write(tmp)
        with writing(gen):
            os.replace(tmp, gen)
        with writing(folder / CURRENT):
            atomic_write(folder / CURRENT, gen.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return gen


def fsync_files(folder: Path) -> None:
    """Flush every file of ``folder`` to disk (before the folder is made live)."""
    for f in folder.iterdir():
        with writing(f), open(f, "rb") as fh:
            os.fsync(fh.fileno())


def drop_unused(folder: Path) -> None:
    """Delete what no reader can use: generations CURRENT does not name (a build that failed
    before switching to its generation, old ones a reader held), leftovers of killed builds."""
    try:
        live = read_current(folder)
    except QAError:
        return  # which generation is live is unknown: keep them all
    drop_old_generations(folder, keep=live)


def drop_old_generations(folder: Path, keep: str | None) -> None:
    """Delete every generation but ``keep`` that no reader holds (see ``reading``); one still
    held is deleted by a later build. Leftovers of killed builds go too."""
    import fcntl

    for old in folder.glob("gen-*"):
        if old.name == keep:
            continue
        try:
            fd = os.open(old, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a reader is loading it
            except OSError:
                pass  # no locks on this file system: readers whose generation vanishes read CURRENT again
            trash = folder / f".del-{old.name}"
            try:
                os.rename(old, trash)  # gone from its name at once: a reader now waiting for it retries
            except OSError:
                continue
        finally:
            os.close(fd)
        shutil.rmtree(trash, ignore_errors=True)
    for tmp in [*folder.glob(".tmp-gen-*"), *folder.glob(".del-gen-*")]:
        shutil.rmtree(tmp, ignore_errors=True)
