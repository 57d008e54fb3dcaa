"""The one progress bar (tqdm on stderr), shared by encoding, index builds, eval and calibration."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


class _Silent:
    """What ``progress`` gives when disabled: the same calls, doing nothing (tqdm is not imported)."""

    def __init__(self, iterable: Iterable | None = None) -> None:
        self.iterable = iterable

    def __iter__(self) -> Iterator:
        return iter(self.iterable or ())

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str, unit: str = "text",
             enabled: bool = True):
    """A tqdm bar on stderr (iterate it, or ``update(n)`` then ``close()``), refreshed at most twice a
    second; a silent stand-in when not ``enabled``."""
    if not enabled:
        return _Silent(iterable)
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=0.5)
