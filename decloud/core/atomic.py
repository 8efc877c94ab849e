"""Outputs that never lose, hide or half-write data: the one rule every writing command follows.

* Everything is written under a temporary name next to its final name (same file system) and published
  by a rename when complete, so an interrupted or failed run never leaves a partial file or folder under
  a final name, and readers never observe a half-published one.
* A temporary name says which process owns it (host, pid, start time): discovery ignores temporaries; a
  command removes the temporaries of its own outputs whose owner is no longer running (killed runs).
* An output that exists and was not written complete by decloud is never touched: the command stops with
  one line naming it. One of ours is skipped (reruns are idempotent) or, with ``--overwrite``, replaced
  atomically, the old one staying in place until the new one is complete.
* Outputs written together (several folders, rasters and their summary...) are published together,
  in the order they were declared (metadata last), only when all of them are complete.

"Written complete by decloud" is recognised from the output itself (:func:`written_by_decloud`): a
folder holds :data:`COMPLETION_MARKER` (written inside it before the rename that publishes it); a
GeoTIFF carries :data:`WRITER` as its TIFF ``Software`` tag (a PNG, in a text chunk of that name); a JSON
object or an ONNX model carries :data:`SIGNATURE_KEY`. A temporary under a final name never exists, so a
signed output is complete.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import decloud
from decloud.core.errors import DecloudError

log = logging.getLogger(__name__)

TEMP_PREFIX = ".decloud-tmp-"
#: File inside every folder output, written last, before the folder is published under its final name.
COMPLETION_MARKER = "decloud_prepared.json"
#: Top-level key of decloud's JSON outputs and metadata key of its ONNX models: its value is the version.
SIGNATURE_KEY = "decloud_version"
#: TIFF ``Software`` tag of every GeoTIFF decloud writes.
WRITER = f"decloud {decloud.__version__}"
#: GDAL's name of the TIFF ``Software`` tag in a dataset's metadata.
WRITER_TAG = "TIFFTAG_SOFTWARE"

# .decloud-tmp-<host>.<pid>.<process start>-<random>-<final name>: the host, because a shared folder
# (a cluster's) sees processes of other machines, whose pids mean nothing here; the start time tells a
# reused pid apart.
_TEMP_NAME = re.compile(rf"^{re.escape(TEMP_PREFIX)}([0-9a-f]{{8}})\.(\d+)\.(\d+)-[0-9a-f]{{8}}-(.+)$")
_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"
# Name used before owners were recorded: .decloud-tmp-<random>-<final name>.
_OWNERLESS_TEMP_NAME = re.compile(rf"^{re.escape(TEMP_PREFIX)}[0-9a-f]{{8}}-(.+)$")


class ForeignOutputError(DecloudError):
    """An output path is taken by something decloud did not write complete: it is left untouched."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        super().__init__(
            f"{self.path} exists and was not written complete by decloud: left untouched "
            "(move it away or choose another output)"
        )


def _process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux /proc), None when unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after the command name "(...)"


def _is_running(pid: int, start: int) -> bool:
    if Path("/proc/self/stat").exists():
        return _process_start(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temporary_sibling(final: Path) -> Path:
    """A unique hidden name next to ``final`` (same file system, so publishing it is a rename),
    recording the process that owns it."""
    pid = os.getpid()
    owner = f"{_HOST}.{pid}.{_process_start(pid) or 0}"
    return final.with_name(f"{TEMP_PREFIX}{owner}-{uuid.uuid4().hex[:8]}-{final.name}")


def is_temporary(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a decloud temporary (never a product, an image or a shard to read)."""
    return Path(path).name.startswith(TEMP_PREFIX)


def _stale_owner(name: str, final_name: str) -> bool:
    """Whether ``name`` is a temporary of ``final_name`` whose owner, a process of this machine, is no
    longer running (one of another machine may still be: it is left alone)."""
    if match := _TEMP_NAME.match(name):
        return match[4] == final_name and match[1] == _HOST and not _is_running(int(match[2]), int(match[3]))
    return False


def remove_stale_temporaries(final: Path) -> None:
    """Delete the temporaries of ``final`` left by runs that were killed (their owner is gone, or, for
    names that record no owner, they are older than this process)."""
    if not final.parent.is_dir():
        return
    started = _this_process_started()
    for entry in final.parent.iterdir():
        stale = _stale_owner(entry.name, final.name)
        if not stale and (match := _OWNERLESS_TEMP_NAME.match(entry.name)) and match[1] == final.name:
            stale = entry.lstat().st_mtime < started
        if stale:
            log.info("removing %s, left by an interrupted run", entry)
            _remove(entry)


def _this_process_started() -> float:
    """Wall-clock time this process started (its /proc entry's creation), or now when unknown."""
    try:
        return Path(f"/proc/{os.getpid()}").stat().st_mtime
    except OSError:
        return time.time()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def written_by_decloud(path: str | os.PathLike[str]) -> bool:
    """Whether the existing ``path`` is a complete output of decloud (see the module's docstring)."""
    path = Path(path)
    if path.is_dir():
        return (path / COMPLETION_MARKER).is_file()
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff", ".png"):
            import rasterio

            with rasterio.open(path) as dataset:
                return dataset.tags().get(WRITER_TAG, "").startswith("decloud ")
        if suffix == ".json":
            content = json.loads(path.read_text(encoding="utf-8"))
            return isinstance(content, dict) and SIGNATURE_KEY in content
        if suffix == ".onnx":
            import onnx

            model = onnx.load(str(path), load_external_data=False)
            return any(prop.key == SIGNATURE_KEY for prop in model.metadata_props)
    except Exception:  # unreadable, truncated, not what its name says: not a complete output of ours
        return False
    return False


def _is_free(path: Path) -> bool:
    """An absent path, or an empty folder (nothing in it can be lost)."""
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def outputs_to_write(paths: Iterable[str | os.PathLike[str]], overwrite: bool) -> bool:
    """Apply the rule to the outputs of a command before it writes anything (and remove what killed runs
    left of them): raise
    :class:`ForeignOutputError` for the first one that exists and is not a complete output of decloud;
    return False when all of them are ours and complete and ``overwrite`` is not set (nothing to do),
    True otherwise."""
    paths = [Path(path) for path in paths]
    for path in paths:
        remove_stale_temporaries(path)
    taken = [path for path in paths if not _is_free(path)]
    for path in taken:
        if not written_by_decloud(path):
            raise ForeignOutputError(path)
    return overwrite or len(taken) < len(paths)


def skip_message(paths: Iterable[str | os.PathLike[str]]) -> str:
    return f"{', '.join(str(p) for p in paths)} already written, skipped (--overwrite to write again)"


_RENAME_EXCHANGE = 2  # <linux/fs.h>
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap ``first`` and ``second`` in one atomic step (Linux renameat2 RENAME_EXCHANGE); False when the
    system or file system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _publish(temporary: Path, final: Path) -> Path | None:
    """Make the complete ``temporary`` visible as ``final`` in one step; return where the previous
    ``final`` folder now is (a temporary name, deleted by the caller), if there was one. An existing
    folder is swapped out atomically where the system allows: readers see the old or the new, never none."""
    if final.is_dir() and not final.is_symlink() and any(final.iterdir()):
        if _exchange(temporary, final):
            return temporary  # now the previous version
        previous = temporary_sibling(final)
        os.replace(final, previous)
        os.replace(temporary, final)
        return previous
    if final.is_dir() and not temporary.is_dir():
        final.rmdir()  # an empty folder in the way of a file
    os.replace(temporary, final)
    return None


class Outputs:
    """Temporaries of outputs that are published together, in the order they were declared (declare
    metadata last), once every one of them is complete."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []  #: (temporary, final) not yet published
        self._replaced: list[Path] = []  #: previous versions of published folders, under temporary names

    def file(self, final_path: str | os.PathLike[str]) -> Path:
        """A temporary path to write instead of ``final_path``."""
        return self._declare(Path(final_path), folder=False)

    def directory(self, final_dir: str | os.PathLike[str]) -> Path:
        """A new, empty temporary folder to fill instead of ``final_dir`` (its completion marker is added
        when it is published, unless the writer wrote its own)."""
        return self._declare(Path(final_dir), folder=True)

    def _declare(self, final: Path, folder: bool) -> Path:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(final)
        temporary = temporary_sibling(final)
        if folder:
            temporary.mkdir()
        self._pending.append((temporary, final))
        return temporary

    def _publish_all(self) -> None:
        for temporary, _ in self._pending:
            marker = temporary / COMPLETION_MARKER
            if temporary.is_dir() and not marker.exists():
                marker.write_text(json.dumps({SIGNATURE_KEY: decloud.__version__}) + "\n")
        while self._pending:
            temporary, final = self._pending[0]
            replaced = _publish(temporary, final)
            self._pending.pop(0)
            if replaced is not None:
                self._replaced.append(replaced)
        self._remove_all()  # the previous versions, once every new output is in place

    def _remove_all(self) -> None:
        for temporary in [t for t, _ in self._pending] + self._replaced:
            _remove(temporary)
        self._pending.clear()
        self._replaced.clear()


@contextmanager
def atomic_outputs() -> Iterator[Outputs]:
    """Declare outputs with :meth:`Outputs.file` / :meth:`Outputs.directory` and write their temporaries;
    at the end of the block all of them are published, or, on any error or interruption, none (their
    temporaries are deleted)."""
    outputs = Outputs()
    try:
        yield outputs
        outputs._publish_all()
    finally:
        outputs._remove_all()


@contextmanager
def atomic_file(final_path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``final_path`` on success, delete it on error."""
    with atomic_outputs() as outputs:
        yield outputs.file(final_path)


@contextmanager
def atomic_directory(final_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new, empty temporary folder; on success it replaces ``final_dir`` (which may exist),
    on error it is deleted and ``final_dir`` is left as it was."""
    with atomic_outputs() as outputs:
        yield outputs.directory(final_dir)
