"""Interruptions of a command: Ctrl-C (SIGINT) and SIGTERM (what Slurm, container runtimes and ``kill`` send)
raise an exception in the main thread, so every ``finally`` runs and no temporary output is left behind; and
they are remembered, because one that lands while C code runs can come out of it as another error."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

#: Exit status of a process ended by SIGTERM (128 + 15), as a shell reports it.
TERMINATED_STATUS = 128 + signal.SIGTERM

#: The interruptions received within the current :func:`signals_as_interrupts` block, first first.
_received: list[type[KeyboardInterrupt]] = []


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM; a kind of interruption."""


def _ignore_further_interruptions() -> None:
    """The clean-up that an interruption starts runs to its end: a second Ctrl-C or SIGTERM cannot cut it short
    and leave a temporary output, or a thread reading a closed dataset (it was seen to crash the process).
    Ctrl-\\ (SIGQUIT) still ends the process at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    _ignore_further_interruptions()
    _received.append(Terminated)
    raise Terminated


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    _ignore_further_interruptions()
    _received.append(KeyboardInterrupt)
    raise KeyboardInterrupt


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` and Ctrl-C ``KeyboardInterrupt`` (as Python's own
    handler does; a process started with SIGINT ignored, e.g. under nohup, keeps ignoring it), both are
    remembered for :func:`received_interruption`, and the first one makes the block ignore the next ones. Only
    the main thread can install handlers; elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous_term = signal.signal(signal.SIGTERM, _raise_terminated)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


@contextmanager
def interruptions_held() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM wait: the first one received is raised when the block ends. For the
    few steps that must not be cut in the middle: starting a thread and recording it (a thread started but not
    recorded cannot be waited for), and waiting for threads to end before the datasets they use are closed (a
    thread still reading a closed dataset crashes the process), and a model call of the streaming engine (see
    ``StreamingEngine.run_model``). Only signals with a Python handler are held (an ignored signal stays ignored);
    only the main thread receives them, elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[tuple[int, FrameType | None]] = []
    handlers: dict[int, Callable[[int, FrameType | None], object]] = {}
    try:  # a signal landing while the handlers are swapped still finds them restored
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if callable(handler):
                handlers[signum] = handler
                signal.signal(signum, lambda number, frame: held.append((number, frame)))
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if held:
            signum, frame = held[0]
            handlers[signum](signum, frame)


def received_interruption() -> type[KeyboardInterrupt] | None:
    """The first interruption received within the current :func:`signals_as_interrupts` block, if any. An
    interruption raised while C code runs may come out of it as another error: a Ctrl-C during a TensorFlow
    model call was seen to come out as a ``SystemError``, then a ``ValueError`` about the call's arguments. An
    error raised after an interruption is that interruption."""
    return _received[0] if _received else None
