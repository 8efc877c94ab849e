"""Split the tiles into datasets (train, valid, test...): one binary ROI raster per tile and dataset, with
one pixel per 64x64 elementary patch (1: the patch belongs to the dataset), and the ``rois.json`` summary
that the sampling step reads.

The split is drawn per training patch (``patchsize`` pixels, a multiple of 64): each group of k x k
elementary patches (k = patchsize / 64) goes to at most one dataset, so no two datasets share pixels and a
sample never straddles two datasets. Groups that do not fit entirely inside the image (right and bottom
borders) are never assigned. With one vector file per dataset, a group may only go to the datasets whose
polygons contain its whole footprint.

    python -m decloud.preprocessing.generate_roi_rasters --tiles tiles.json --datasets train valid test \
        --props 90 5 5 --output_dir ROI [--rois train.gpkg valid.gpkg test.gpkg] [--patchsize 256] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds, transform_geom
from shapely.geometry import mapping, shape

from decloud.core.atomic import (
    atomic_outputs,
    is_temporary,
    outputs_to_write,
    skip_message,
    written_by_decloud,
)
from decloud.core.cli import run_command
from decloud.core.constants import PATCH_SIZE
from decloud.core.errors import InputNotFoundError, InvalidArgumentError, InvalidFileError
from decloud.core.patches import patch_grid_shape, patch_grid_transform
from decloud.core.paths import require_output_folder
from decloud.core.progress import progress
from decloud.core.raster import Grid, open_raster, write_array
from decloud.preprocessing.rois import SUMMARY_NAME, RoisSummary, roi_raster_path
from decloud.preprocessing.tiles import TilesConfig, tile_reference_grid

log = logging.getLogger(__name__)

#: Dataset names end up in file names and JSON keys: keep them simple.
DATASET_NAME = re.compile(r"[A-Za-z0-9_]+")
#: Value, in the selection arrays, of the elementary patches assigned to no dataset.
UNASSIGNED = -1


def generate_roi_rasters(
    tiles_json: str | os.PathLike[str],
    datasets: Sequence[str],
    props: Sequence[float],
    output_dir: str | os.PathLike[str],
    *,
    rois: Sequence[str | os.PathLike[str]] | None = None,
    patchsize: int = 256,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write ``<output_dir>/<TILE>_<dataset>.tif`` for every tile of ``tiles_json`` and every dataset, and
    the summary ``<output_dir>/rois.json``; return the summary's path.

    ``props`` are the relative shares of the datasets (normalised); ``rois``, when given, holds one vector
    file per dataset. The draw is reproducible: it depends only on ``seed`` and the tile name. Every input
    is checked before anything is written, and the outputs appear together at the end, the summary last;
    the ROI rasters of an earlier split that the new one does not have are then removed.
    """
    weights = _dataset_weights(datasets, props)
    group_side = _group_side(patchsize)
    if seed < 0:
        raise InvalidArgumentError(f"seed must be >= 0, not {seed}")
    require_output_folder(output_dir, "--output_dir folder")
    config = TilesConfig.load(tiles_json)
    output_dir = Path(output_dir).absolute()
    outputs = [roi_raster_path(output_dir, tile, name) for tile in config.tiles for name in datasets]
    if not outputs_to_write([*outputs, output_dir / SUMMARY_NAME], overwrite):
        log.info(skip_message([output_dir / SUMMARY_NAME]))
        return output_dir / SUMMARY_NAME
    regions = _read_regions(rois, datasets) if rois is not None else None
    grids = {tile: tile_reference_grid(config.s2_root, tile) for tile in config.tiles}
    for tile, grid in grids.items():
        if grid.height < patchsize or grid.width < patchsize:
            raise InvalidArgumentError(
                f"tile {tile} is {grid.height}x{grid.width} pixels, smaller than the patch size {patchsize}: "
                f"it cannot hold a single training patch (use a smaller --patchsize or leave the tile out)"
            )
    selections = {
        tile: select_patches(tile, grids[tile], weights, group_side, seed, regions)
        for tile in progress(config.tiles, desc="ROI rasters", unit="tile")
    }
    for tile, selection in selections.items():
        counts = {name: int((selection == index).sum()) // group_side**2 for index, name in enumerate(datasets)}
        log.info("%s: %s training patches of %d pixels per dataset", tile, counts, patchsize)
    if not any((selection != UNASSIGNED).any() for selection in selections.values()):
        raise InvalidArgumentError(
            f"no training patch of {patchsize} pixels could be assigned to any dataset in the tiles of {tiles_json}"
            + (" (no patch lies entirely inside the --rois polygons)" if regions is not None else "")
        )
    summary = _write_outputs(output_dir, datasets, grids, selections, patchsize, seed)
    _remove_superseded_rasters(output_dir, keep=outputs)
    return summary


def _dataset_weights(datasets: Sequence[str], props: Sequence[float]) -> np.ndarray:
    """The datasets' probabilities, after checking the names and the proportions."""
    if not datasets:
        raise InvalidArgumentError("at least one dataset is needed")
    for name in datasets:
        if not DATASET_NAME.fullmatch(name):
            raise InvalidArgumentError(f"dataset name {name!r} must use only letters, digits and underscores")
    upper = [name.upper() for name in datasets]
    if len(set(upper)) != len(upper):
        raise InvalidArgumentError(f"dataset names must be unique (ignoring case): {list(datasets)}")
    if len(props) != len(datasets):
        raise InvalidArgumentError(f"{len(props)} proportions (--props) for {len(datasets)} datasets (--datasets)")
    weights = np.asarray(props, dtype=float)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise InvalidArgumentError(f"proportions must be finite, >= 0 and not all 0: {list(props)}")
    return weights / weights.sum()


def _group_side(patchsize: int) -> int:
    """Number k of elementary patches along a side of a training patch."""
    if patchsize <= 0 or patchsize % PATCH_SIZE:
        raise InvalidArgumentError(f"patch size {patchsize} is not a positive multiple of {PATCH_SIZE}")
    return patchsize // PATCH_SIZE


@dataclass(frozen=True)
class DatasetRegion:
    """The polygons of one dataset's vector file, in the file's CRS."""

    path: Path
    crs: CRS
    polygons: np.ndarray  #: shapely (multi)polygons

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> DatasetRegion:
        path = Path(path)
        if not path.exists():
            raise InputNotFoundError(path, "vector file")
        try:
            meta, _, wkb, _ = pyogrio.raw.read(path, columns=[])
        except (DataSourceError, DataLayerError) as error:
            raise InvalidFileError(path, f"cannot read vector file: {error}") from error
        if not meta["crs"]:
            raise InvalidFileError(path, "the vector file has no CRS, so it cannot be placed on the tiles")
        polygons = shapely.from_wkb(wkb)
        polygons = polygons[~shapely.is_missing(polygons)]
        types = set(shapely.get_type_id(polygons).tolist())
        other = types - {shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON}
        if other:
            names = sorted(shapely.GeometryType(type_id).name for type_id in other)
            raise InvalidFileError(path, f"ROIs must be polygons, the vector file holds {names}")
        try:
            crs = CRS.from_user_input(meta["crs"])
        except RasterioError as error:
            raise InvalidFileError(path, f"unknown CRS {meta['crs']!r}: {error}") from error
        return cls(path, crs, polygons)

    def covers(self, footprints: np.ndarray, crs: CRS) -> np.ndarray:
        """Which ``footprints`` (shapely polygons in ``crs``) lie entirely inside the polygons.

        Only the polygons near the footprints are reprojected: a country-wide file costs little per tile,
        and polygons far outside the tile's UTM zone (where the projection degenerates) are never touched.
        """
        near = transform_bounds(crs, self.crs, *shapely.total_bounds(footprints), densify_pts=21)
        candidates = self.polygons[shapely.intersects(self.polygons, shapely.box(*near))]
        if not len(candidates):
            return np.zeros(len(footprints), dtype=bool)
        reprojected = transform_geom(self.crs, crs, [mapping(p) for p in candidates])
        area = shapely.union_all(shapely.make_valid(np.array([shape(g) for g in reprojected])))
        shapely.prepare(area)
        return shapely.covers(area, footprints)


def _read_regions(rois: Sequence[str | os.PathLike[str]], datasets: Sequence[str]) -> list[DatasetRegion]:
    if len(rois) != len(datasets):
        raise InvalidArgumentError(f"{len(rois)} vector files (--rois) for {len(datasets)} datasets (--datasets)")
    return [DatasetRegion.read(path) for path in rois]


def _rng(seed: int, tile: str) -> np.random.Generator:
    """A generator that depends only on the seed and the tile name (not on the tiles' order or count)."""
    return np.random.default_rng([seed, *tile.encode("ascii")])


def group_footprints(grid: Grid, patchsize: int, shape: tuple[int, int]) -> np.ndarray:
    """Polygons (in the grid's CRS) of the ``shape`` = (rows, cols) first training patches of the grid."""
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    corners = [(0, 0), (0, 1), (1, 1), (1, 0)]
    x, y = grid.transform @ (
        np.stack([(cols.ravel() + dc) * patchsize for _, dc in corners], axis=1),
        np.stack([(rows.ravel() + dr) * patchsize for dr, _ in corners], axis=1),
    )
    return shapely.polygons(np.stack([x, y], axis=-1))


def select_patches(
    tile: str,
    grid: Grid,
    weights: np.ndarray,
    group_side: int,
    seed: int,
    regions: Sequence[DatasetRegion] | None = None,
) -> np.ndarray:
    """Dataset index of every elementary patch of ``tile`` (:data:`UNASSIGNED` where none), as int16 on
    the elementary patch grid of ``grid``."""
    patchsize = group_side * PATCH_SIZE
    groups_shape = (grid.height // patchsize, grid.width // patchsize)
    eligible = np.ones((len(weights), *groups_shape), dtype=bool)
    if regions is not None and math.prod(groups_shape):
        footprints = group_footprints(grid, patchsize, groups_shape)
        for index, region in enumerate(regions):
            eligible[index] = region.covers(footprints, grid.crs).reshape(groups_shape)
    chosen = draw_datasets(weights, eligible, _rng(seed, tile))
    selection = np.full(patch_grid_shape(grid.height, grid.width), UNASSIGNED, dtype=np.int16)
    covered = (groups_shape[0] * group_side, groups_shape[1] * group_side)
    selection[: covered[0], : covered[1]] = np.kron(chosen, np.ones((group_side, group_side), dtype=np.int16))
    return selection


def draw_datasets(weights: np.ndarray, eligible: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each group, one dataset drawn among its eligible ones with their weights renormalised
    (:data:`UNASSIGNED` when none is eligible). One uniform number per group, whatever the eligibility,
    so a group's draw does not depend on the other groups."""
    cumulative = np.cumsum(weights[:, np.newaxis, np.newaxis] * eligible, axis=0)
    total = cumulative[-1]
    threshold = rng.random(total.shape) * total  # < total wherever total > 0
    chosen = (cumulative <= threshold).sum(axis=0).astype(np.int16)
    return np.where(total > 0, chosen, UNASSIGNED).astype(np.int16)


def _write_outputs(
    output_dir: Path,
    datasets: Sequence[str],
    grids: dict[str, Grid],
    selections: dict[str, np.ndarray],
    patchsize: int,
    seed: int,
) -> Path:
    """Write every ROI raster and the summary under temporary names, and publish them all at the end,
    the summary last (a reader never pairs a new summary with rasters of another split)."""
    with atomic_outputs() as outputs:
        for tile, selection in selections.items():
            grid = grids[tile]
            for index, dataset in enumerate(datasets):
                path = outputs.file(roi_raster_path(output_dir, tile, dataset))
                write_array(
                    path,
                    (selection == index).astype(np.uint8),
                    crs=grid.crs,
                    transform=patch_grid_transform(grid.transform),
                    descriptions=[f"{dataset}: 1 where the {PATCH_SIZE}x{PATCH_SIZE} patch belongs to it"],
                    tags={"TILE": tile, "DATASET": dataset, "PATCHSIZE": patchsize, "SEED": seed},
                )
        summary = RoisSummary(
            output_dir,
            {
                dataset: tuple(tile for tile, sel in selections.items() if (sel == index).any())
                for index, dataset in enumerate(datasets)
            },
        )
        summary_path = outputs.file(output_dir / SUMMARY_NAME)
        summary_path.write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")
    return output_dir / SUMMARY_NAME


def _remove_superseded_rasters(output_dir: Path, keep: Sequence[Path]) -> None:
    """Delete the ROI rasters decloud wrote in ``output_dir`` for an earlier split (other tiles or
    datasets) that are not among ``keep``: left there, they would read as part of the new split."""
    for path in sorted(set(output_dir.glob("*_*.tif")) - set(keep)):
        if not is_temporary(path) and written_by_decloud(path) and _is_roi_raster(path):
            log.info("removing %s, from an earlier split", path)
            path.unlink()


def _is_roi_raster(path: Path) -> bool:
    with open_raster(path) as dataset:
        tags = dataset.tags()
    return path.name == f"{tags.get('TILE')}_{tags.get('DATASET')}.tif"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud generate-roi-rasters",
        description="Split the tiles' patch grids into datasets (train, valid, test...): one binary raster per "
        "tile and dataset (one pixel per 64x64 patch) and a rois.json summary.",
    )
    parser.add_argument("--tiles", required=True, help="tiles JSON file (S2_ROOT_DIR, TILES...)")
    parser.add_argument("--datasets", required=True, nargs="+", help="dataset names, e.g. train valid test")
    parser.add_argument(
        "--props", required=True, nargs="+", type=float, help="relative share of each dataset, e.g. 90 5 5"
    )
    parser.add_argument("--output_dir", required=True, help="folder of the ROI rasters and of rois.json")
    parser.add_argument(
        "--rois",
        nargs="+",
        help="one vector file of polygons per dataset (e.g. GeoPackage): a training patch may go to a dataset "
        "only if it lies inside that dataset's polygons",
    )
    parser.add_argument(
        "--patchsize", type=int, default=256, help="training patch size in 10 m pixels, multiple of 64 (256)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random split (0)")
    parser.add_argument("--overwrite", action="store_true", help="replace a split already written by decloud")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(
        build_parser(),
        lambda args: generate_roi_rasters(
            args.tiles,
            args.datasets,
            args.props,
            args.output_dir,
            rois=args.rois,
            patchsize=args.patchsize,
            seed=args.seed,
            overwrite=args.overwrite,
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
