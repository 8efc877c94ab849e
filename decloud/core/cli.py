"""What every command-line entry point shares: logging set-up, and turning user errors into a clear
message and a non-zero exit status (1), never a traceback or a silent exit 0."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from decloud.core.errors import DecloudError
from decloud.core.interrupts import TERMINATED_STATUS, Terminated, received_interruption, signals_as_interrupts
from decloud.core.native_logs import VERBOSE_FLAG, quiet_tensorflow

log = logging.getLogger("decloud")


def run_command(
    parser: argparse.ArgumentParser,
    action: Callable[[argparse.Namespace], object],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` with ``parser`` and call ``action``; return the process exit status."""
    if VERBOSE_FLAG not in parser._option_string_actions:
        parser.add_argument(
            VERBOSE_FLAG, action="store_true", help="also show TensorFlow's and CUDA's start-up messages"
        )
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with signals_as_interrupts():
            try:
                action(args)
            except Exception as error:
                interruption = received_interruption()
                if interruption is not None:
                    raise interruption from error
                raise
    except DecloudError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # what no check foresaw (disk full, a file removed meanwhile...): the path and why
        print(f"{parser.prog}: error: {describe_os_error(error)}", file=sys.stderr)
        return 1
    except Terminated:
        print(f"{parser.prog}: terminated", file=sys.stderr)
        return TERMINATED_STATUS
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    return 0


def describe_os_error(error: OSError) -> str:
    """One line: the path(s) the system names and its reason, e.g. ``out.tif: No space left on device``."""
    paths = [str(name) for name in (error.filename, error.filename2) if name is not None]
    reason = error.strerror or str(error)
    return f"{' -> '.join(paths)}: {reason}" if paths else " ".join(reason.split())
