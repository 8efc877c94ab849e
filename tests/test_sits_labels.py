"""Labels on the series grid (raster or polygons, reprojected when needed), parcel splits without leakage, and
the scores of a classification."""

from __future__ import annotations

import numpy as np
import pyogrio.raw
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_geom

from decloud.core.errors import InvalidFileError
from decloud.core.raster import Grid, write_array
from decloud.sits.finetune import score
from decloud.sits.labels import Labels, hold_out_validation, read_labels, split_parcels

#: A 20 x 30 grid of 10 m pixels in UTM 31N.
GRID = Grid(CRS.from_epsg(32631), Affine(10, 0, 600000, 0, -10, 4900000), 30, 20)


def _write_polygons(path, crs, field_name="crop"):
    """Two parcels in UTM pixel coordinates: rows 0-9 x cols 0-9 ('maize'), rows 10-19 x cols 10-29 ('wheat')."""
    boxes = [shapely.box(600000, 4899900, 600100, 4900000), shapely.box(600100, 4899800, 600300, 4899900)]
    geometries = [
        shapely.geometry.shape(g) for g in transform_geom(GRID.crs, crs, [b.__geo_interface__ for b in boxes])
    ]
    pyogrio.raw.write(
        path,
        shapely.to_wkb(np.array(geometries)),
        [np.array(["maize", "wheat"], object)],
        [field_name],
        geometry_type="Polygon",
        crs=crs.to_string(),
        driver="GPKG",
    )


def test_polygons_in_another_crs_are_reprojected_and_rasterised(tmp_path):
    path = tmp_path / "parcels.gpkg"
    _write_polygons(path, CRS.from_epsg(4326))
    labels = read_labels(path, GRID, "crop")
    assert labels.names == ("maize", "wheat")
    expected = np.zeros((20, 30), int)
    expected[:10, :10] = 1
    expected[10:20, 10:30] = 2
    # lat/lon edges land within a fraction of a metre of the UTM pixel edges: compare away from them
    np.testing.assert_array_equal(labels.classes[1:9, 1:9], 1)
    np.testing.assert_array_equal(labels.classes[11:19, 11:29], 2)
    assert (labels.classes != expected).sum() <= 4
    assert set(np.unique(labels.parcels[labels.classes == 2])) == {2}


def test_a_missing_class_field_is_an_error_naming_it(tmp_path):
    path = tmp_path / "parcels.gpkg"
    _write_polygons(path, GRID.crs, field_name="culture")
    with pytest.raises(InvalidFileError, match=r"'crop'.*culture"):
        read_labels(path, GRID, "crop")


def test_a_label_raster_in_another_crs_is_reprojected(tmp_path):
    classes = np.zeros((20, 30), np.uint8)
    classes[:, 15:] = 3
    classes[5:10, :5] = 7
    # the same pixels described in UTM 31N with a shifted origin in another (equivalent) grid: 5 m pixels
    fine = classes.repeat(2, 0).repeat(2, 1)
    write_array(tmp_path / "classes.tif", fine, crs=GRID.crs, transform=Affine(5, 0, 600000, 0, -5, 4900000), nodata=0)
    labels = read_labels(tmp_path / "classes.tif", GRID)
    np.testing.assert_array_equal(labels.classes, np.searchsorted([3, 7], classes) + 1 - (classes == 0))
    assert labels.names == ("3", "7")
    assert len(np.unique(labels.parcels[labels.parcels > 0])) == 2


def test_parcel_splits_never_share_a_parcel_and_keep_every_class():
    classes = np.repeat(np.arange(1, 4), 40).reshape(12, 10)
    parcels = np.arange(1, 121).reshape(12, 10)

    labels = Labels(classes.astype(np.int32), parcels.astype(np.int32), ("a", "b", "c"))
    train, test = split_parcels(labels, test_share=0.5, labelled_share=0.1, seed=3)
    assert not set(train) & set(test)
    assert len(test) == 60 and len(train) == 6  # 20 of each class's 40 held out, 10 % of the other 20 (2)
    assert {int(classes.flat[p - 1]) for p in train} == {1, 2, 3}


def test_scores_of_a_hand_counted_prediction():
    truth = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 1, 0])
    scores = score(truth, predicted, ("a", "b", "c"))
    assert scores.overall_accuracy == pytest.approx(4 / 6)
    # a: precision 2/3, recall 2/3 -> 2/3; b: precision 2/3, recall 1 -> 0.8; c: 0
    assert scores.f1 == pytest.approx({"a": 2 / 3, "b": 0.8, "c": 0.0})
    assert scores.macro_f1 == pytest.approx((2 / 3 + 0.8) / 3)
    assert scores.confusion == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_validation_parcels_come_from_the_training_parcels_and_leave_each_class_one():
    # class 1: parcels 1-5, class 2: parcels 6-7, class 3: parcel 8 (one pixel each)
    parcels = np.arange(1, 9, dtype=np.int32).reshape(2, 4)
    classes = np.array([[1, 1, 1, 1], [1, 2, 2, 3]], np.int32)
    labels = Labels(classes, parcels, ("a", "b", "c"))
    train, validation = hold_out_validation(labels, np.array([1, 2, 3, 4, 5, 6, 7, 8]), 0.4, seed=0)
    assert len(validation) == 2 + 1  # round(5 x 0.4) of class 1, one of class 2's two, none of class 3's one
    assert sorted([*train, *validation]) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert {int(p) for p in validation} <= {1, 2, 3, 4, 5, 6, 7} and 8 in train
    assert len(set(train) & {6, 7}) == 1 and len(set(train) & {1, 2, 3, 4, 5}) == 3
    train, validation = hold_out_validation(labels, np.array([1, 6, 8]), 0.5)  # one parcel per class
    assert train.tolist() == [1, 6, 8] and validation.size == 0
    assert hold_out_validation(labels, np.array([1, 2]), 0.0)[1].size == 0
