"""Bad input to the time-series commands, through the installed ``decloud`` console script: products of two
tiles and a label file without its class field are one error line (exit 1, no output); polygons in another CRS
are reprojected; series with fewer valid dates than the view length train as documented (all their valid dates,
then padding), and a store where no pixel has two valid dates is one error line."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from test_errors import DECLOUD, decloud, error_line

from decloud.core.raster import Grid
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.sits.store import import_npy
from decloud.testing.series import write_series_npy
from decloud.testing.theia import make_theia_product

pytestmark = pytest.mark.skipif(DECLOUD is None, reason="the decloud console script is not installed")

BANDS = ("B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12")
#: 40 x 40 pixels of 10 m in UTM 31N.
GRID = Grid(CRS.from_epsg(32631), Affine(10, 0, 600000, 0, -10, 4900000), 40, 40)
#: Four 20 x 20 parcels: maize top-left and bottom-right, wheat top-right and bottom-left (row, col of corner).
PARCELS = {(0, 0): "maize", (20, 20): "maize", (0, 20): "wheat", (20, 0): "wheat"}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """12 dates, 30 % of the observations invalid: no pixel has 16 valid dates."""
    root = tmp_path_factory.mktemp("bad_sits")
    folder = write_series_npy(root / "processed", shape=(40, 40), dates=12)
    return import_npy(folder, root / "s.zarr", tile="T31TEJ", bands=BANDS, nodata=-10000, grid=GRID)


def _write_parcels(path: Path, crs: CRS, field: str) -> None:
    boxes = [
        shapely.box(600000 + 10 * col, 4900000 - 10 * (row + 20), 600000 + 10 * (col + 20), 4900000 - 10 * row)
        for row, col in PARCELS
    ]
    geometries = transform_geom(GRID.crs, crs, [box.__geo_interface__ for box in boxes])
    pyogrio.raw.write(
        path,
        shapely.to_wkb(np.array([shapely.geometry.shape(g) for g in geometries])),
        [np.array(list(PARCELS.values()), object)],
        [field],
        geometry_type="Polygon",
        crs=crs.to_string(),
        driver="GPKG",
    )


def test_products_of_two_tiles_are_one_error_line(tmp_path):
    for tile in ("T31TEJ", "T31TEK"):
        raw = make_theia_product(tmp_path / "raw", acquired=datetime(2023, 3, 1), tile=tile, shape=(64, 64))
        prepare_s2_product(raw, tmp_path / "S2")
    folders = [tmp_path / "S2" / "T31TEJ", tmp_path / "S2" / "T31TEK"]
    result = decloud("sits-extract", "--s2_dir", *folders, "--out", tmp_path / "mixed.zarr")
    line = error_line(result, "sits-extract")
    assert "T31TEJ" in line and "T31TEK" in line
    assert not (tmp_path / "mixed.zarr").exists()


def test_polygons_in_geographic_coordinates_are_reprojected_onto_the_store(store, tmp_path):
    _write_parcels(tmp_path / "parcels.gpkg", CRS.from_epsg(4326), "crop")
    result = decloud(
        "sits-finetune", "--store", store, "--labels", tmp_path / "parcels.gpkg", "--class_field", "crop",
        "--methods", "random_forest", "--max_pixels_per_parcel", "1000", "--out", tmp_path / "eval",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["classes"] == ["maize", "wheat"]
    # one held-out parcel per class, each its 20 x 20 pixels (lat/lon edges may move a pixel row or column)
    confusion = np.array(report["methods"]["random_forest"]["confusion"])
    assert np.abs(confusion.sum(axis=1) - 400).max() <= 20


def test_a_label_file_without_its_class_field_is_one_error_line(store, tmp_path):
    _write_parcels(tmp_path / "parcels.gpkg", GRID.crs, "culture")
    result = decloud(
        "sits-finetune", "--store", store, "--labels", tmp_path / "parcels.gpkg", "--class_field", "crop",
        "--methods", "random_forest", "--out", tmp_path / "eval",
    )  # fmt: skip
    line = error_line(result, "sits-finetune")
    assert "'crop'" in line and "culture" in line and "parcels.gpkg" in line
    assert not (tmp_path / "eval").exists()


def test_series_shorter_than_the_view_train_on_all_their_valid_dates(store, tmp_path):
    """Documented behaviour (README, decloud.sits.views): a pixel with fewer valid dates than --view_length gets
    all of them and padding, which the encoder masks; pretraining runs and saves an encoder of that length."""
    result = decloud(
        "sits-pretrain", "--store", store, "--out", tmp_path / "encoder", "--backbone", "mlp", "--dim", "8",
        "--view_length", "16", "--batch", "32", "--epochs", "1", "--steps_per_epoch", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metadata = json.loads((tmp_path / "encoder" / "sits_encoder.json").read_text())
    assert metadata["max_length"] == 16


def test_a_store_without_two_valid_dates_on_any_pixel_is_one_error_line(tmp_path):
    folder = write_series_npy(tmp_path / "processed", shape=(20, 20), dates=6)
    masks = np.zeros((6, 20, 20), np.uint8)
    masks[2] = 1  # one valid date everywhere
    np.save(folder / "masks.npy", masks)
    single = import_npy(folder, tmp_path / "single.zarr", tile="T31TEJ", bands=BANDS, nodata=-10000, grid=None)
    result = decloud(
        "sits-pretrain", "--store", single, "--out", tmp_path / "encoder", "--backbone", "mlp", "--dim", "8",
        "--view_length", "4", "--batch", "8", "--epochs", "1", "--steps_per_epoch", "1",
    )  # fmt: skip
    line = error_line(result, "sits-pretrain")
    assert "single.zarr" in line and "2 valid dates" in line
    assert not (tmp_path / "encoder").exists()
