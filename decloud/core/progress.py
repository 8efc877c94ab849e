"""Progress bars for the steps that take more than a few seconds.

Bars go to standard error and switch themselves off when it is not a terminal (batch jobs, CI), so
logs stay readable.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], *, desc: str, total: int | None = None, unit: str = "window") -> Iterator[T]:
    """Iterate ``items`` behind a progress bar labelled ``desc``."""
    yield from tqdm(items, desc=desc, total=total, unit=unit, disable=None, leave=False, dynamic_ncols=True)
