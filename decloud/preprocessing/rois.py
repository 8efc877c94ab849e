"""What ``generate-roi-rasters`` writes and sampling reads: the names of the ROI rasters (one per tile and
dataset, one pixel per 64x64 elementary patch) and the ``rois.json`` summary (the ROI folder and the tiles
of each dataset)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import decloud
from decloud.core.atomic import SIGNATURE_KEY
from decloud.core.errors import InputNotFoundError, InvalidArgumentError, InvalidFileError

#: Name of the summary JSON written in the output folder.
SUMMARY_NAME = "rois.json"
#: Keys of the summary: the ROI folder, and the tiles of each dataset under <DATASET>_TILES.
ROIS_ROOT_KEY = "ROIS_ROOT_DIR"
TILES_KEY_SUFFIX = "_TILES"


def roi_raster_path(rois_root: Path, tile: str, dataset: str) -> Path:
    return rois_root / f"{tile}_{dataset}.tif"


@dataclass(frozen=True)
class RoisSummary:
    """The content of a ROI summary JSON (``rois.json``): the ROI folder and the tiles of each dataset."""

    root: Path
    tiles: dict[str, tuple[str, ...]]  #: dataset name (lower case) -> tiles

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RoisSummary:
        path = Path(path).absolute()
        if not path.is_file():
            raise InputNotFoundError(path, "ROI summary JSON file")
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvalidFileError(path, f"not valid JSON: {error}") from error
        if not isinstance(content, dict) or not isinstance(content.get(ROIS_ROOT_KEY), str):
            raise InvalidFileError(path, f"expected a JSON object with a folder under {ROIS_ROOT_KEY!r}")
        tiles = {}
        for key, value in content.items():
            if key in (ROIS_ROOT_KEY, SIGNATURE_KEY):
                continue
            if not key.endswith(TILES_KEY_SUFFIX) or not isinstance(value, list):
                raise InvalidFileError(path, f"{key!r}: expected <DATASET>{TILES_KEY_SUFFIX} with a list of tiles")
            tiles[key.removesuffix(TILES_KEY_SUFFIX).lower()] = tuple(value)
        return cls(path.parent / Path(content[ROIS_ROOT_KEY]).expanduser(), tiles)

    def to_json(self) -> dict[str, object]:
        """The JSON form :meth:`load` reads, signed by this version of decloud."""
        content: dict[str, object] = {ROIS_ROOT_KEY: str(self.root), SIGNATURE_KEY: decloud.__version__}
        for dataset, tiles in self.tiles.items():
            content[f"{dataset.upper()}{TILES_KEY_SUFFIX}"] = list(tiles)
        return content

    def tiles_of(self, dataset: str) -> tuple[str, ...]:
        if dataset.lower() not in self.tiles:
            raise InvalidArgumentError(f"the ROI summary has no {dataset.upper()}{TILES_KEY_SUFFIX} list")
        return self.tiles[dataset.lower()]
