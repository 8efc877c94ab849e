"""Time-series extraction: the store holds the prepared values and validity at chosen pixels and dates, day
numbers follow the season convention across a year boundary, and the .npy layout round-trips."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio

from decloud.cli import main as decloud_main
from decloud.core.errors import InvalidArgumentError
from decloud.core.products import prepared_s2_series
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.sits.dates import day_of_season, days_of_season
from decloud.sits.observations import PreparedS2Series
from decloud.sits.store import SeriesStore, export_npy, extract_series
from decloud.testing.regions import Rect
from decloud.testing.theia import make_theia_product

#: Two dates on each side of a year boundary; a cloud on the first, a no-data stripe on the second.
DATES = (datetime(2022, 11, 15, 10, 30), datetime(2023, 1, 10, 10, 30), datetime(2023, 2, 4, 10, 30))
CLOUD = Rect(10, 20, 30, 40)
NODATA = Rect(100, 0, 20, 150)
SHAPE = (150, 140)  # not a multiple of the chunk side, odd number of 20 m pixels in neither direction


def test_day_numbers_count_from_1_january_of_the_reference_year_through_the_boundary():
    assert day_of_season(date(2022, 1, 1), 2022) == 1
    assert day_of_season(date(2022, 12, 31), 2022) == 365
    assert day_of_season(date(2023, 1, 1), 2022) == 366
    assert day_of_season(date(2025, 1, 1), 2024) == 367  # 2024 is a leap year
    assert days_of_season([datetime(2022, 11, 15), datetime(2023, 1, 10)]) == [319, 375]
    with pytest.raises(InvalidArgumentError, match="2021-12-31"):
        day_of_season(date(2021, 12, 31), 2022)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("series")
    for index, acquired in enumerate(DATES):
        raw = make_theia_product(
            root / "raw",
            acquired=acquired,
            tile="T31TEJ",
            shape=SHAPE,
            seed=3,
            clouds=[CLOUD] if index == 0 else [],
            nodata=[NODATA] if index == 1 else [],
        )
        prepare_s2_product(raw, root / "S2")
    return root / "S2" / "T31TEJ"


@pytest.fixture(scope="module")
def store(prepared, tmp_path_factory) -> SeriesStore:
    with PreparedS2Series(prepared_s2_series(prepared)) as source:
        path = extract_series([source], tmp_path_factory.mktemp("store") / "T31TEJ.zarr", window_size=128)
    return SeriesStore(path)


def _prepared_rasters(product_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    name = product_dir.name
    with (
        rasterio.open(product_dir / f"{name}_FRE_10m.tif") as fine,
        rasterio.open(product_dir / f"{name}_FRE_20m.tif") as coarse,
    ):
        return fine.read(), coarse.read()


def test_store_values_equal_the_prepared_rasters(prepared, store):
    values, _ = store.read("s2")
    assert values.shape == (3, 150, 140, 10)
    assert store.sources["s2"].bands == ("B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12")
    for t, product in enumerate(sorted(prepared.iterdir())):
        fine, coarse = _prepared_rasters(product)
        for row, col in ((0, 0), (37, 101), (149, 139), (128, 129), (75, 64)):
            np.testing.assert_array_equal(values[t, row, col, :4], fine[:, row, col])
            np.testing.assert_array_equal(values[t, row, col, 4:], coarse[:, row // 2, col // 2])


def test_every_20m_value_is_its_prepared_pixel_on_its_2x2_10m_pixels(prepared, store):
    values, _ = store.read("s2")
    for t, product in enumerate(sorted(prepared.iterdir())):
        _, coarse = _prepared_rasters(product)
        expected = coarse.repeat(2, axis=1).repeat(2, axis=2)[:, :150, :140]
        np.testing.assert_array_equal(np.moveaxis(values[t, ..., 4:], -1, 0), expected)


def test_the_engine_is_fed_the_same_series_from_the_products_and_from_the_store(prepared, store):
    """SeriesSource keys: values (rows, cols, dates x bands, date-major), per-date mask, valid where any date is."""
    from affine import Affine
    from rasterio.windows import Window

    from decloud.core.raster import Grid
    from decloud.production.sources import SeriesSource

    window = Window(30, 17, 50, 40)
    reference = Grid(store.grid.crs, store.grid.transform @ Affine.translation(30, 17), 50, 40)
    options = {"dates": 3, "bands": 10, "origin": (17, 30), "shape": (150, 140)}
    with PreparedS2Series(prepared_s2_series(prepared)) as products:
        fed = SeriesSource("s2", products.read, reference, **options).read({1: window})
    stored = SeriesSource("s2", lambda part: store.read("s2", part), reference, **options).read({1: window})
    values, valid = store.read("s2", window)
    for data in (fed, stored):
        assert set(data) == {"s2_values", "s2_mask"}
        np.testing.assert_array_equal(data["s2_values"].values[5, 7].reshape(3, 10), values[:, 5, 7])
        np.testing.assert_array_equal(data["s2_values"].values.reshape(40, 50, 3, 10), np.moveaxis(values, 0, 2))
        np.testing.assert_array_equal(data["s2_mask"].values, np.moveaxis(valid, 0, 2))
        np.testing.assert_array_equal(data["s2_values"].valid, valid.any(axis=0))


def test_validity_is_clear_and_not_nodata(store):
    _, valid = store.read("s2")
    expected = np.ones((3, 150, 140), bool)
    expected[0, 10:40, 20:60] = False  # the cloud
    expected[1, 100:120, :] = False  # the no-data stripe (all bands no-data, EDG set)
    np.testing.assert_array_equal(valid, expected)


def test_day_numbers_and_dates_across_the_year_boundary(store):
    info = store.sources["s2"]
    assert info.dates == ("2022-11-15", "2023-01-10", "2023-02-04")
    np.testing.assert_array_equal(info.doys, [319, 375, 400])
    assert info.reference_year == 2022
    assert store.tile == "T31TEJ"


def test_band_statistics_are_over_valid_observations(store):
    values, valid = store.read("s2")
    selected = values[valid].astype(np.float64)
    np.testing.assert_allclose(store.sources["s2"].band_mean, selected.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(store.sources["s2"].band_std, selected.std(axis=0), rtol=1e-4)


def test_window_extraction_is_traceable_to_tile_pixels(prepared, tmp_path, store):
    from rasterio.windows import Window

    with PreparedS2Series(prepared_s2_series(prepared)) as source:
        part = SeriesStore(extract_series([source], tmp_path / "part.zarr", window=Window(30, 17, 50, 40)))
    assert part.origin == (17, 30)
    np.testing.assert_array_equal(part.read("s2")[0], store.read("s2", Window(30, 17, 50, 40))[0])
    assert part.grid.transform.c == store.grid.transform.c + 30 * 10


def test_npy_layout_round_trips(store, tmp_path):
    folder = export_npy(store, tmp_path / "processed")
    bands, masks = np.load(folder / "bands.npy"), np.load(folder / "masks.npy")
    assert bands.dtype == np.int16 and bands.shape == (3, 150, 140, 10)
    assert masks.dtype == np.uint8 and set(np.unique(masks)) == {0, 1}
    np.testing.assert_array_equal(np.load(folder / "doys.npy"), [319, 375, 400])
    status = decloud_main(
        ["sits-extract", "--from_npy", str(folder), "--tile", "T31TEJ", "--out", str(tmp_path / "back.zarr")]
    )
    assert status == 0
    back = SeriesStore(tmp_path / "back.zarr")
    np.testing.assert_array_equal(back.read("s2")[0], bands)
    np.testing.assert_array_equal(back.read("s2")[1], masks == 1)
    np.testing.assert_array_equal(back.sources["s2"].doys, [319, 375, 400])
    np.testing.assert_array_equal(back.sources["s2"].band_mean, np.load(folder / "band_mean.npy"))


def test_products_of_different_tiles_are_refused(prepared, tmp_path, capsys):
    other = make_theia_product(tmp_path / "raw", acquired=datetime(2023, 3, 1), tile="T31TEK", shape=(64, 64))
    prepare_s2_product(other, tmp_path / "S2")
    status = decloud_main(
        [
            "sits-extract",
            "--s2_dir",
            str(prepared),
            str(tmp_path / "S2" / "T31TEK"),
            "--out",
            str(tmp_path / "mixed.zarr"),
        ]
    )
    assert status == 1
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and "T31TEK" in message[0] and "T31TEJ" in message[0]
    assert not (tmp_path / "mixed.zarr").exists()


def test_a_rerun_skips_its_store_and_overwrite_replaces_it(prepared, tmp_path):
    args = ["sits-extract", "--s2_dir", str(prepared), "--out", str(tmp_path / "s.zarr")]
    args += ["--window", "0", "0", "64", "64"]
    assert decloud_main(args) == 0
    written = (tmp_path / "s.zarr" / "zarr.json").stat().st_mtime_ns
    assert decloud_main(args) == 0  # ours: skipped, untouched
    assert (tmp_path / "s.zarr" / "zarr.json").stat().st_mtime_ns == written
    assert decloud_main([*args, "--overwrite"]) == 0
    assert (tmp_path / "s.zarr" / "zarr.json").stat().st_mtime_ns > written
    assert SeriesStore(tmp_path / "s.zarr").read("s2")[0].shape == (3, 64, 64, 10)


def test_an_existing_output_is_not_replaced_without_overwrite(prepared, tmp_path):
    existing = tmp_path / "mine.zarr"
    existing.mkdir()
    (existing / "notes.txt").write_text("a user's folder")
    args = ["sits-extract", "--s2_dir", str(prepared), "--out", str(existing)]
    assert decloud_main(args) == 1
    assert decloud_main([*args, "--overwrite"]) == 1  # not a store of ours: never replaced
    assert (existing / "notes.txt").read_text() == "a user's folder"


@pytest.fixture(scope="module")
def eolearn_store(shared_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eolearn")
    for product in sorted((shared_data / "eolearn-timeseries" / "S2" / "T33TVL").iterdir()):
        prepare_s2_product(product, root / "S2")
    assert decloud_main(["sits-extract", "--s2_dir", str(root / "S2" / "T33TVL"), "--out", str(root / "eo.zarr")]) == 0
    return root / "eo.zarr"


def test_real_eolearn_series_equals_the_source_values(shared_data, eolearn_store):
    """The real 5-date series: 10 m values are the eo-learn TOA reflectances x 10000, 20 m values the
    2x2-block products' pixels, validity the eo-learn cloud mask, day numbers of 2015."""
    store = SeriesStore(eolearn_store)
    values, valid = store.read("s2")
    source = np.load(shared_data / "eolearn-timeseries" / "s2_l1c_5dates_with_masks.npz")
    names = list(source["band_names"])
    for row, col in ((0, 0), (50, 49), (100, 99), (13, 87)):
        for t in range(5):
            for position, band in enumerate(("B02", "B03", "B04", "B08")):
                expected = round(float(source["bands"][t, row, col, names.index(band)]) * 10000)
                assert values[t, row, col, position] == expected
    np.testing.assert_array_equal(valid, source["clm"] == 0)
    assert valid[:, 0, 0].tolist() == [True, False, False, True, True]
    np.testing.assert_array_equal(store.sources["s2"].doys, [192, 212, 232, 242, 252])
    b5 = next((shared_data / "eolearn-timeseries" / "S2" / "T33TVL").glob("*20150711*/*_FRE_B5.tif"))
    with rasterio.open(b5) as dataset:
        coarse = dataset.read(1)
    np.testing.assert_array_equal(values[0, :, :, 4], coarse.repeat(2, 0).repeat(2, 1)[:101, :100])


def test_real_eolearn_series_embedding_and_pca_quicklook(eolearn_store, tmp_path):
    """An (untrained) encoder over the real series: the maps lie on the products' grid, every pixel (three clear
    dates each) has an embedding, and the PCA quicklook is written."""
    from decloud.sits.encoder import build_encoder
    from decloud.sits.pretrain import save_encoder

    info = SeriesStore(eolearn_store).sources["s2"]
    encoder = build_encoder("transformer", bands=10, band_mean=info.band_mean, band_std=info.band_std, dim=8, depth=1)
    save_encoder(encoder, {"source": "s2", "bands": list(info.bands), "max_length": 5}, tmp_path / "encoder")
    args = ["sits-embed", "--encoder", str(tmp_path / "encoder"), "--store", str(eolearn_store)]
    assert decloud_main([*args, "--out", str(tmp_path / "eo.tif")]) == 0
    with rasterio.open(tmp_path / "eo.tif") as embedding, rasterio.open(tmp_path / "eo_pca.tif") as colour:
        assert embedding.crs == "EPSG:32633" and (embedding.height, embedding.width) == (101, 100)
        assert embedding.transform.almost_equals(
            rasterio.Affine(9.99479222, 0, 465181.0522, 0, -9.99744847, 5080254.6335), precision=1e-3
        )
        assert (embedding.read() != -128).all()
        assert colour.transform == embedding.transform and colour.crs == embedding.crs
        false_colour = colour.read()
        assert (false_colour > 0).all()
    with rasterio.open(tmp_path / "eo_pca.png") as png:
        assert (png.count, png.height, png.width) == (3, 101, 100)
        np.testing.assert_array_equal(png.read(), false_colour)  # under 1024 pixels a side: not decimated
    assert len({tuple(pixel) for pixel in false_colour.reshape(3, -1).T}) > 100  # real pixels, many colours
