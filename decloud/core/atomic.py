"""Atomic outputs: everything is written under a temporary name in the destination folder and renamed
when complete, so that an interrupted or failed run never leaves a half-written file or folder behind
(and a rerun never mistakes one for finished work)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

TEMP_PREFIX = ".decloud-tmp-"


def _temporary_sibling(final: Path) -> Path:
    """A unique hidden name next to ``final`` (same file system, so the final rename is atomic)."""
    return final.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{final.name}")


@contextmanager
def atomic_file(final_path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``final_path`` on success, delete it on error."""
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(final)
    try:
        yield temporary
        os.replace(temporary, final)
    finally:
        with suppress(OSError):  # a clean-up that fails (read-only folder) must not hide the error that led to it
            temporary.unlink(missing_ok=True)


@contextmanager
def atomic_directory(final_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new, empty temporary folder; on success it replaces ``final_dir`` (which may exist),
    on error it is deleted and ``final_dir`` is left as it was."""
    final = Path(final_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(final)
    temporary.mkdir()
    try:
        yield temporary
        if final.exists():
            previous = _temporary_sibling(final)
            os.replace(final, previous)
            os.replace(temporary, final)
            shutil.rmtree(previous)
        else:
            os.replace(temporary, final)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
