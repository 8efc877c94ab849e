"""Thread pools that read or write rasters beside the main thread's work, and that are always waited for.

The main thread closes the datasets once the work is done or has failed; a thread still reading or writing one
of them then crashes the process (GDAL frees the dataset under it). A ``ThreadPoolExecutor`` waits for its
threads when it shuts down, but a Ctrl-C landing while a thread starts (the thread then runs unrecorded) or while
the pool waits for its threads (the wait is cut short) leaves a thread running: seen as a segmentation fault
after ``interrupted``. :class:`IOThreads` holds interruptions over both steps (:func:`interruptions_held`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

from decloud.core.interrupts import interruptions_held


class IOThreads(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose threads, named ``name``, are always recorded and waited for. Leaving its
    ``with`` block on an error (or an interruption) drops the work not started and waits for the work running."""

    def __init__(self, name: str, max_workers: int = 1, initializer: Callable[[], object] | None = None) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=name, initializer=initializer)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        with interruptions_held():  # submitting may start a thread, which must be recorded to be waited for
            return super().submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with interruptions_held():  # a wait cut short would let the caller close datasets a thread still uses
            super().shutdown(wait=wait, cancel_futures=cancel_futures)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> bool:
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
        return False
