"""What every command-line entry point shares: logging set-up, and turning user errors into a clear
message and a non-zero exit status (1), never a traceback or a silent exit 0."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from decloud.core.errors import DecloudError
from decloud.core.interrupts import TERMINATED_STATUS, Terminated, sigterm_as_interrupt

log = logging.getLogger("decloud")


def run_command(
    parser: argparse.ArgumentParser,
    action: Callable[[argparse.Namespace], object],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` with ``parser`` and call ``action``; return the process exit status."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with sigterm_as_interrupt():
            action(args)
    except DecloudError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    except Terminated:
        print(f"{parser.prog}: terminated", file=sys.stderr)
        return TERMINATED_STATUS
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    return 0
