"""The tiles JSON file, which tells the ROI and sampling steps where the prepared products are and which
tiles to use, and the reference 10 m grid of a tile (read from one of its prepared Sentinel-2 products).

    {
      "S1_ROOT_DIR": "/data/decloud/S1_PREPARE",      (optional)
      "S2_ROOT_DIR": "/data/decloud/S2_PREPARE",
      "DEM_ROOT_DIR": "/data/decloud/DEM_PREPARE",    (optional)
      "TILES": ["T31TCK", "T31TDJ", "T31TEJ"]
    }

Relative folders are relative to the JSON file's folder, so a data set and its JSON can be moved together.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decloud.core.errors import InputNotFoundError, InvalidFileError
from decloud.core.paths import require_input_file
from decloud.core.products import prepared_s2_series
from decloud.core.raster import Grid, open_raster

log = logging.getLogger(__name__)

#: Sentinel-2 (MGRS) tile names as decloud writes them: a leading T, the UTM zone, three letters.
TILE_NAME = re.compile(r"T\d{2}[A-Z]{3}")

_S1_ROOT, _S2_ROOT, _DEM_ROOT, _TILES = "S1_ROOT_DIR", "S2_ROOT_DIR", "DEM_ROOT_DIR", "TILES"
_KNOWN_KEYS = {_S1_ROOT, _S2_ROOT, _DEM_ROOT, _TILES}


@dataclass(frozen=True)
class TilesConfig:
    """The content of a tiles JSON file, with folders made absolute."""

    s1_root: Path | None
    s2_root: Path
    dem_root: Path | None
    tiles: tuple[str, ...]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TilesConfig:
        """Read and validate a tiles JSON file; every error names the file and the key at fault."""
        path = Path(path).absolute()
        content = _read_json_object(path)
        unknown = sorted(set(content) - _KNOWN_KEYS)
        if unknown:
            log.warning("%s: ignored unknown keys %s (known: %s)", path, unknown, sorted(_KNOWN_KEYS))
        return cls(
            s1_root=_folder(path, content, _S1_ROOT, required=False),
            s2_root=_folder(path, content, _S2_ROOT, required=True),
            dem_root=_folder(path, content, _DEM_ROOT, required=False),
            tiles=_tile_names(path, content),
        )


def _read_json_object(path: Path) -> dict[str, Any]:
    require_input_file(path, "tiles JSON file")
    try:
        with path.open(encoding="utf-8") as file:
            content = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidFileError(path, f"not valid JSON: {error}") from error
    except RecursionError:
        raise InvalidFileError(path, "its JSON is nested too deep to be read") from None
    if not isinstance(content, dict):
        raise InvalidFileError(path, f"expected a JSON object with keys {sorted(_KNOWN_KEYS)}")
    return content


def _folder(path: Path, content: dict[str, Any], key: str, *, required: bool) -> Path | None:
    """The folder under ``key``, relative to the JSON file's folder unless absolute; None when optional
    and absent (or null)."""
    value = content.get(key)
    if value is None:
        if required:
            raise InvalidFileError(path, f"missing key {key!r} (the folder of the prepared products)")
        return None
    if not isinstance(value, str) or not value:
        raise InvalidFileError(path, f"{key!r} must be a folder path (a non-empty string), not {value!r}")
    return path.parent / Path(value).expanduser()


def _tile_names(path: Path, content: dict[str, Any]) -> tuple[str, ...]:
    if _TILES not in content:
        raise InvalidFileError(path, f"missing key {_TILES!r} (the list of tile names, e.g. ['T31TEJ'])")
    tiles = content[_TILES]
    if not isinstance(tiles, list) or not tiles:
        raise InvalidFileError(path, f"{_TILES!r} must be a non-empty list of tile names, not {tiles!r}")
    for tile in tiles:
        if not isinstance(tile, str) or not TILE_NAME.fullmatch(tile):
            raise InvalidFileError(path, f"{_TILES!r}: {tile!r} is not a tile name like 'T31TEJ'")
    duplicates = sorted({tile for tile in tiles if tiles.count(tile) > 1})
    if duplicates:
        raise InvalidFileError(path, f"{_TILES!r}: tiles listed more than once: {duplicates}")
    return tuple(tiles)


def tile_reference_grid(s2_root: str | os.PathLike[str], tile: str) -> Grid:
    """The 10 m grid of ``tile``: that of the first completely prepared Sentinel-2 product in
    ``<s2_root>/<tile>/``. All the products of a tile share it, so any complete one will do."""
    tile_dir = Path(s2_root) / tile
    products = prepared_s2_series(tile_dir) if tile_dir.is_dir() else []
    if not products:
        raise InputNotFoundError(tile_dir, f"prepared Sentinel-2 product (folder with a completion marker) of {tile}")
    with open_raster(products[0].bands_10m) as dataset:
        return Grid.of(dataset)
