"""Quiet the start-up lines TensorFlow's native libraries write straight to the standard error (oneDNN,
"Could not find cuda drivers", "failed call to cuInit" on a machine without a GPU...), which would bury
a command's own message. They are hidden unless the user asks for them with ``--verbose``.

Those lines bypass Python: some are written while ``tensorflow`` is imported (hidden by pointing the
process's standard error at the null device for the duration of that import), the later ones obey
``TF_CPP_MIN_LOG_LEVEL``, read once by TensorFlow at its import (so it is set before it). The import is
intercepted when it happens, so commands that never load TensorFlow do not pay for it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

#: TensorFlow's C++ log level that keeps only fatal messages.
QUIET_LEVEL = "3"
VERBOSE_FLAG = "--verbose"


def quiet_tensorflow(verbose: bool) -> None:
    """Unless ``verbose``, hide TensorFlow's native start-up lines and its Python warnings. A level the
    user set in ``TF_CPP_MIN_LOG_LEVEL`` is kept; nothing can be done once TensorFlow is imported."""
    if verbose or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LEVEL)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if not any(isinstance(finder, _QuietImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImportFinder())


def verbose_requested(argv: Sequence[str]) -> bool:
    return VERBOSE_FLAG in argv


class _QuietImportFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` with the ordinary finder and has its loader execute it with the standard error
    silenced (the loader itself is kept, so the module's spec and resources are as usual)."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: any later import goes the ordinary way
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader.exec_module = _silenced(spec.loader.exec_module)
        return spec


def _silenced(execute: Callable[[ModuleType], None]) -> Callable[[ModuleType], None]:
    def exec_module(module: ModuleType) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
            execute(module)
        finally:
            os.dup2(saved, 2)
            os.close(null)
            os.close(saved)

    return exec_module
