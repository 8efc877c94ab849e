"""Run a decloud command with a fault injected at a chosen point: the seam of the fault-injection tests
and of ``benchmarks/fault_injection.py``. The process sends itself a signal

* ``progress N``: after the N-th item of the command's progress loops (in the middle of writing);
* ``publish N``: just before the N-th output is published under its final name;
* ``published N``: just after it (before the next one, and before replaced versions are deleted).

    python -m decloud.testing.faults <point> <N> <KILL|TERM|INT> <command> [flags...]
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import decloud.core.atomic as atomic
import decloud.core.progress as progress_module

POINTS = ("progress", "publish", "published")


def ctrl_c_as_from_a_terminal() -> None:
    """Give SIGINT Python's own handler (KeyboardInterrupt), as in a command started from a terminal: a shell makes
    the commands it starts in the background ignore SIGINT, and their children inherit that (tests or benchmarks
    run under nohup). Called in a child before it starts (``preexec_fn``), the child gets SIGINT's default action,
    which Python turns into the same handler."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def inject(point: str, count: int, signum: int) -> None:
    """Patch the seam of ``point`` so that its ``count``-th passage sends ``signum`` to this process.
    Call before the command's modules are imported (they import ``progress`` by name)."""
    passages = 0
    if signum == signal.SIGINT:
        ctrl_c_as_from_a_terminal()

    def passage() -> None:
        nonlocal passages
        passages += 1
        if passages == count:
            os.kill(os.getpid(), signum)

    if point == "progress":
        original_progress = progress_module.progress

        def progress(items, **options) -> Iterator:
            for item in original_progress(items, **options):
                yield item
                passage()

        progress_module.progress = progress
    elif point in ("publish", "published"):
        original_publish = atomic._publish

        def publish(temporary: Path, final: Path) -> Path | None:
            if point == "publish":
                passage()
            replaced = original_publish(temporary, final)
            if point == "published":
                passage()
            return replaced

        atomic._publish = publish
    else:
        raise ValueError(f"unknown fault point {point!r} (known: {', '.join(POINTS)})")


def main(argv: Sequence[str] | None = None) -> int:
    point, count, name, *command = sys.argv[1:] if argv is None else argv
    inject(point, int(count), getattr(signal, f"SIG{name}"))
    from decloud.cli import main as decloud_main

    return decloud_main(command)


if __name__ == "__main__":
    sys.exit(main())
