"""Where prepared products go, and the completion marker that makes preparation steps idempotent."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import decloud
from decloud.core.atomic import COMPLETION_MARKER, SIGNATURE_KEY


def tile_directory(out_dir: str | os.PathLike[str], tile: str) -> Path:
    """The folder of ``tile`` in an output root: ``<out_dir>/<tile>``, or ``out_dir`` itself when the
    user already named the tile folder (``--out_s2_dir /data/S2_PREPARE/T31TEJ``, as the user guide does)."""
    out = Path(out_dir)
    return out if out.name == tile else out / tile


def write_completion_marker(product_dir: Path, source: str | os.PathLike[str], **details: Any) -> None:
    """Write the marker last: its presence says every other file of the folder is complete."""
    record = {
        "source": str(source),
        SIGNATURE_KEY: decloud.__version__,
        "prepared_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **details,
    }
    (product_dir / COMPLETION_MARKER).write_text(json.dumps(record, indent=2) + "\n")
