"""Class labels on the grid of a series store, from a raster (a class per pixel) or a vector file (polygons
with a class field), with the parcel each labelled pixel belongs to, so that training and test sets can be
split by parcel (neighbouring pixels of a parcel are near duplicates: a pixel split would leak).

- Vector: every polygon is a parcel; it is reprojected to the store's CRS when the file has another one and
  rasterised on the store's grid (pixel centres inside). Its class is the value of ``class_field``.
- Raster: reprojected (nearest neighbour) onto the store's grid when needed; ``nodata`` and 0 mean
  unlabelled; a parcel is a 4-connected group of pixels of the same class.

Classes are numbered 1..K in the sorted order of their values (0: unlabelled); their names are kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.warp import reproject, transform_geom
from scipy import ndimage
from shapely.geometry import mapping

from decloud.core.errors import InputNotFoundError, InvalidArgumentError, InvalidFileError
from decloud.core.raster import Grid, open_raster, read_window

#: Vector file extensions read as polygons; anything else is read as a raster.
VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb", ".sqlite", ".gml", ".kml")


@dataclass(frozen=True)
class Labels:
    """Class (0: unlabelled, 1..K) and parcel (0: none) of every pixel of a grid."""

    classes: np.ndarray  #: (H, W) int32
    parcels: np.ndarray  #: (H, W) int32
    names: tuple[str, ...]  #: name of class k at index k - 1


def read_labels(path: str | os.PathLike[str], grid: Grid, class_field: str | None = None) -> Labels:
    """The labels of ``path`` on ``grid``; vector files need ``class_field``."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(path, "label file")
    if path.suffix.lower() in VECTOR_SUFFIXES:
        if not class_field:
            raise InvalidArgumentError(f"{path} is a vector file: name its class field (--class_field)")
        return _vector_labels(path, grid, class_field)
    return _raster_labels(path, grid)


def _vector_labels(path: Path, grid: Grid, class_field: str) -> Labels:
    try:
        meta, _, wkb, fields = pyogrio.raw.read(path)
    except (DataSourceError, DataLayerError) as error:
        raise InvalidFileError(path, f"cannot read vector file: {error}") from error
    names = list(meta["fields"])
    if class_field not in names:
        raise InvalidFileError(path, f"no class field {class_field!r} (fields: {', '.join(names) or 'none'})")
    if not meta["crs"]:
        raise InvalidFileError(path, "the vector file has no CRS, so it cannot be placed on the grid")
    values = np.asarray(fields[names.index(class_field)])
    geometries = shapely.from_wkb(wkb)
    keep = ~shapely.is_missing(geometries) & np.array([value is not None and value == value for value in values])
    geometries, values = geometries[keep], values[keep]
    if not len(geometries):
        raise InvalidFileError(path, "no polygon with a class value")
    shapes = [mapping(geometry) for geometry in geometries]
    source_crs = CRS.from_user_input(meta["crs"])
    if grid.crs is not None and source_crs != grid.crs:
        shapes = transform_geom(source_crs, grid.crs, shapes)
    classes_found = sorted({str(value) for value in values})
    codes = np.array([classes_found.index(str(value)) + 1 for value in values], np.int32)
    shape = (grid.height, grid.width)
    parcels = rasterize(
        zip(shapes, range(1, len(shapes) + 1), strict=True),
        out_shape=shape,
        transform=grid.transform,
        fill=0,
        dtype="int32",
    )
    classes = np.where(parcels > 0, np.concatenate([[0], codes])[parcels], 0).astype(np.int32)
    return Labels(classes, parcels, tuple(classes_found))


def _raster_labels(path: Path, grid: Grid) -> Labels:
    with open_raster(path) as dataset:
        nodata = dataset.nodata
        if Grid.of(dataset).same_as(grid):
            values = read_window(dataset, None, 1)
        else:
            values = np.zeros((grid.height, grid.width), dataset.dtypes[0])
            reproject(
                read_window(dataset, None, 1),
                values,
                src_transform=dataset.transform,
                src_crs=dataset.crs,
                dst_transform=grid.transform,
                dst_crs=grid.crs or dataset.crs,
                resampling=Resampling.nearest,
                src_nodata=nodata,
                dst_nodata=0,
            )
    labelled = values != 0
    if nodata is not None:
        labelled &= values != nodata
    found = np.unique(values[labelled])
    if not len(found):
        raise InvalidFileError(path, "no labelled pixel on the grid of the series")
    classes = np.zeros(values.shape, np.int32)
    classes[labelled] = np.searchsorted(found, values[labelled]) + 1
    parcels = np.zeros(values.shape, np.int32)
    count = 0
    for code in range(1, len(found) + 1):
        components, number = ndimage.label(classes == code)
        parcels[components > 0] = components[components > 0] + count
        count += number
    return Labels(classes, parcels, tuple(str(value) for value in found))


def split_parcels(
    labels: Labels, *, test_share: float = 0.5, labelled_share: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Parcel ids for training and for testing: per class, ``test_share`` of its parcels held out, and
    ``labelled_share`` of the others used for training (at least one parcel per class on each side when the
    class has two parcels or more). No parcel is on both sides."""
    if not 0 < test_share < 1 or not 0 < labelled_share <= 1:
        raise InvalidArgumentError(f"test share {test_share} and labelled share {labelled_share} must be in (0, 1)")
    rng = np.random.default_rng(seed)
    labelled = labels.parcels > 0
    parcel_ids, first = np.unique(labels.parcels[labelled], return_index=True)
    parcel_classes = labels.classes[labelled][first]
    train, test = [], []
    for code in np.unique(parcel_classes):
        ids = rng.permutation(parcel_ids[parcel_classes == code])
        held = max(1, round(len(ids) * test_share)) if len(ids) > 1 else 0
        rest = ids[held:]
        test.extend(ids[:held])
        train.extend(rest[: max(1, round(len(rest) * labelled_share))])
    return np.sort(np.array(train, np.int32)), np.sort(np.array(test, np.int32))


def hold_out_validation(
    labels: Labels, train_ids: np.ndarray, share: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Training parcel ids split into (training, validation): per class, ``share`` of its training parcels (at
    least one) for validation when it has two or more, so every class keeps a training parcel; a class with a
    single training parcel gives none. ``share`` 0: no validation."""
    if not 0 <= share < 1:
        raise InvalidArgumentError(f"validation share {share} must be in [0, 1)")
    if share == 0:
        return train_ids, np.array([], np.int32)
    rng = np.random.default_rng(seed + 1)
    labelled = np.isin(labels.parcels, train_ids)
    parcel_ids, first = np.unique(labels.parcels[labelled], return_index=True)
    parcel_classes = labels.classes[labelled][first]
    train, validation = [], []
    for code in np.unique(parcel_classes):
        ids = rng.permutation(parcel_ids[parcel_classes == code])
        held = min(max(1, round(len(ids) * share)), len(ids) - 1)
        validation.extend(ids[:held])
        train.extend(ids[held:])
    return np.sort(np.array(train, np.int32)), np.sort(np.array(validation, np.int32))
