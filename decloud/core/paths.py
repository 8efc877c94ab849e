"""Checks of the paths a user names, made before any expensive work: an input that must be a file, an
output file or folder that can be written. Each failure is one message naming the path and what is
wrong with it (a folder where a file is expected, a file where a folder is expected, a symbolic link
loop, a read-only or forbidden folder), instead of an OSError after minutes of work."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from decloud.core.errors import InputNotFoundError, InvalidArgumentError, UnusableOutputError


def require_input_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path when it is an existing file; a folder or a missing path is an error naming it."""
    path = Path(path)
    try:
        kind = _kind(path)
    except OSError as error:
        raise InvalidArgumentError(f"{_culprit(path, error)}: {_reason(error)}: cannot read the {what}") from None
    if kind is None:
        raise InputNotFoundError(path, what)
    if kind == "folder":
        raise InvalidArgumentError(f"{path} is a folder, not a file: expected the {what}")
    return path


def require_output_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """``path`` as a Path when a file can be written there: not an existing folder, in a folder that
    exists or can be created, and that can be written."""
    path = Path(path)
    if _output_kind(path, what) == "folder":
        raise UnusableOutputError(path, f"is a folder; the {what} must be a file path")
    _require_writable_parent(path.parent, what)
    return path


def require_output_folder(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """``path`` as a Path when files can be written under it: an existing writable folder, or a path that
    can be created in a writable folder."""
    path = Path(path)
    kind = _output_kind(path, what)
    if kind == "file":
        raise UnusableOutputError(path, f"is a file; the {what} must be a folder")
    if kind == "folder":
        _require_writable(path, what)
    else:
        _require_writable_parent(path.parent, what)
    return path


def _kind(path: Path) -> str | None:
    """Whether ``path`` is a "file", a "folder" or nothing (None); OSError when it cannot be examined
    (ELOOP, EACCES, ENAMETOOLONG...)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # under a file: the walk up the parents names that file
        return None
    return "folder" if stat.S_ISDIR(mode) else "file"


def _output_kind(path: Path, what: str) -> str | None:
    """:func:`_kind` of an output path; a path that cannot be examined is an error naming it."""
    try:
        return _kind(path)
    except OSError as error:
        raise UnusableOutputError(_culprit(path, error), f"cannot hold the {what}: {_reason(error)}") from None


def _require_writable_parent(folder: Path, what: str) -> None:
    """The nearest existing ancestor of ``folder`` (``folder`` itself if it exists) must be a writable
    folder: then ``folder`` and the output in it can be created."""
    for ancestor in (folder, *folder.parents):
        kind = _output_kind(ancestor, what)
        if kind == "file":
            raise UnusableOutputError(ancestor, f"is a file, not a folder: the {what} cannot be created under it")
        if kind == "folder":
            _require_writable(ancestor, what)
            return


def _require_writable(folder: Path, what: str) -> None:
    """Create (and at once delete) a file in ``folder``: the only test that a read-only file system, a
    permission or a quota does not forbid the output."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UnusableOutputError(
            folder, f"cannot be written, so it cannot hold the {what}: {_reason(error)}"
        ) from None


def _reason(error: OSError) -> str:
    return error.strerror or os.strerror(error.errno or errno.EIO)


def _culprit(path: Path, error: OSError) -> Path:
    """The path an OSError is about (the one the system names, else ``path``)."""
    return Path(error.filename) if error.filename else path
