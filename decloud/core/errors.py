"""One exception hierarchy for every error a user can cause with bad input.

The command-line entry points catch :class:`DecloudError` (and only it), print its message and exit
with a non-zero status; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from os import PathLike


class DecloudError(Exception):
    """Base class of the errors caused by the user's input or environment."""


class InputNotFoundError(DecloudError):
    """A file or folder that the user named (or that a product must contain) does not exist."""

    def __init__(self, path: str | PathLike[str], what: str = "input") -> None:
        self.path = str(path)
        super().__init__(f"{what} not found: {self.path}")


class CorruptRasterError(DecloudError):
    """A raster exists but cannot be opened or read."""

    def __init__(self, path: str | PathLike[str], reason: str) -> None:
        self.path = str(path)
        super().__init__(f"cannot read raster {self.path}: {reason}")


class GridMismatchError(DecloudError):
    """Rasters that must share a CRS and a pixel grid do not."""


class ProductFormatError(DecloudError):
    """A product's name or content does not follow a format decloud knows."""


class InvalidArgumentError(DecloudError):
    """A command-line or function argument has a value that cannot be used."""


class InvalidFileError(DecloudError):
    """A file exists but its content cannot be used: malformed JSON, missing key, unreadable vector file..."""

    def __init__(self, path: str | PathLike[str], reason: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {reason}")


class OutputWriteError(DecloudError):
    """An output could not be written completely (full disk, I/O error): it is not published."""

    def __init__(self, path: str | PathLike[str], reason: str) -> None:
        self.path = str(path)
        super().__init__(f"cannot write {self.path}: {reason}")


class UnusableOutputError(DecloudError):
    """An output path cannot be written: a folder where a file goes, a file where a folder goes, a symbolic
    link loop, a read-only or forbidden folder."""

    def __init__(self, path: str | PathLike[str], reason: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path} {reason}")
