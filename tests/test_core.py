"""decloud.core: names, windows, patch statistics, atomic outputs, raster opening errors; and the TensorFlow setting
made when the package is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio._env
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from decloud.core.atomic import atomic_directory, atomic_file
from decloud.core.errors import (
    CorruptRasterError,
    GridMismatchError,
    InputNotFoundError,
    InvalidArgumentError,
    ProductFormatError,
)
from decloud.core.grid_20m import grid_offset, resample_bilinear, scaled_grid
from decloud.core.keys import sample_keys
from decloud.core.naming import parse_s1_name, parse_s2_product_name
from decloud.core.patches import count_per_patch, patch_grid_shape, patch_grid_transform, percent_per_patch
from decloud.core.products import prepared_s1_series, prepared_s2_series, s1_nodata_stats_path, s2_product
from decloud.core.raster import Grid, block_windows, gdal_environment, open_raster


def test_theia_name_is_parsed():
    name = parse_s2_product_name("/data/T31TEJ/SENTINEL2B_20201012-105848-497_L2A_T31TEJ_C_V2-2.zip")
    assert name.name == "SENTINEL2B_20201012-105848-497_L2A_T31TEJ_C_V2-2"
    assert name.satellite == "SENTINEL2B"
    assert name.tile == "T31TEJ"
    assert name.kind == "THEIA"
    assert name.acquired == datetime(2020, 10, 12, 10, 58, 48, 497000, tzinfo=UTC)


def test_safe_name_is_parsed_with_its_processing_baseline():
    name = parse_s2_product_name("S2B_MSIL2A_20230615T103629_N0509_R008_T31TEJ_20230615T140010.SAFE")
    assert (name.satellite, name.tile, name.kind) == ("S2B", "T31TEJ", "SAFE")
    assert name.processing_baseline == (5, 9)
    assert name.acquired == datetime(2023, 6, 15, 10, 36, 29, tzinfo=UTC)


def test_unknown_s2_name_is_rejected_with_the_name():
    with pytest.raises(ProductFormatError, match="LC08_L2SP_"):
        parse_s2_product_name("LC08_L2SP_196029_20200101")


def test_s1tiling_name_is_parsed_and_gives_the_prepared_name():
    name = parse_s1_name("/in/s1b_31TEJ_vh_DES_139_20201013txxxxxx.tif")
    assert (name.satellite, name.tile, name.polarisation, name.orbit_direction, name.relative_orbit) == (
        "s1b",
        "T31TEJ",
        "vh",
        "DES",
        139,
    )
    assert not name.time_known
    assert name.acquired == datetime(2020, 10, 13, tzinfo=UTC)
    assert name.prepared_name() == "s1b_31TEJ_vvvh_DES_139_20201013txxxxxx_from-10to3dB.tif"
    timed = parse_s1_name("s1a_30PVT_vv_ASC_045_20170407t182729.tif")
    assert timed.acquired == datetime(2017, 4, 7, 18, 27, 29, tzinfo=UTC)
    prepared = parse_s1_name(timed.with_polarisation("vvvh").prepared_name())
    assert (prepared.polarisation, prepared.suffix) == ("vvvh", "_from-10to3dB")


def test_block_windows_cover_the_raster_once_on_the_patch_grid():
    coverage = np.zeros((300, 330), dtype=int)
    for window in block_windows(300, 330, 128):
        assert window.row_off % 64 == 0 and window.col_off % 64 == 0
        coverage[window.toslices()] += 1
    assert (coverage == 1).all()
    with pytest.raises(InvalidArgumentError):
        list(block_windows(10, 10, 100))


def test_the_gdal_block_cache_of_every_step_is_128_mib():
    # GDAL's effective cache size, in bytes (a bare 128 given to rasterio.Env would make it 128 bytes: no cache)
    with gdal_environment():
        assert int(rasterio._env.get_gdal_config("GDAL_CACHEMAX")) == 134_217_728


def test_patch_counts_on_a_partial_grid():
    mask = np.zeros((100, 70), dtype=bool)
    mask[0:10, 0:5] = True  # 50 pixels in patch (0, 0)
    mask[64:100, 64:70] = True  # the whole image part of patch (1, 1): 36 x 6 pixels
    assert patch_grid_shape(100, 70) == (2, 2)
    assert count_per_patch(mask).tolist() == [[50, 0], [0, 216]]
    # Outside pixels counted as True: patch (0, 1) has 64 x 58 missing pixels.
    assert count_per_patch(np.zeros((100, 70), dtype=bool), outside=True).tolist() == [
        [0, 64 * 58],
        [28 * 64, 4096 - 36 * 6],
    ]
    np.testing.assert_allclose(percent_per_patch(mask), [[100 * 50 / 4096, 0], [0, 100.0]])


def test_patch_grid_transform_scales_the_pixel_by_64():
    assert patch_grid_transform(Affine(10, 0, 500000, 0, -10, 4900000)) == Affine(640, 0, 500000, 0, -640, 4900000)


def test_atomic_file_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.tif"
    with pytest.raises(RuntimeError), atomic_file(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_file(target) as temporary:
        temporary.write_text("whole")
    assert target.read_text() == "whole"
    assert [path.name for path in tmp_path.iterdir()] == ["out.tif"]


def test_atomic_directory_keeps_the_previous_version_on_error(tmp_path):
    final = tmp_path / "product"
    with atomic_directory(final) as work:
        (work / "a.txt").write_text("v1")
    with pytest.raises(RuntimeError), atomic_directory(final) as work:
        (work / "a.txt").write_text("v2")
        raise RuntimeError("boom")
    assert (final / "a.txt").read_text() == "v1"
    assert [path.name for path in tmp_path.iterdir()] == ["product"]
    with atomic_directory(final) as work:
        (work / "b.txt").write_text("v3")
    assert sorted(path.name for path in final.iterdir()) == ["b.txt", "decloud_prepared.json"]


def test_open_raster_names_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputNotFoundError, match=r"nothing\.tif"):
        open_raster(tmp_path / "nothing.tif")
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"this is not a tiff" * 10)
    with pytest.raises(CorruptRasterError, match=r"garbage\.tif"):
        open_raster(garbage)


def test_keys_of_source_finds_every_acquisition_and_skips_foreign_names():
    from decloud.core.keys import keys_of_source

    names = ["s2_holes_t", "s2_t", "s2_holes_d0", "s2_timestamp_t", "dem", "cloudfree", "s2_holes_"]
    assert keys_of_source(names, "s2_holes") == ["s2_holes_t", "s2_holes_d0"]
    assert keys_of_source(names, "s2") == ["s2_t"]


# --- The 20 m grid rule ------------------------------------------------------------------------

GRID_10M = Grid(CRS.from_epsg(32630), Affine(10, 0, 1000, 0, -10, 5000), 5, 3)  # 3 rows x 5 columns


def test_the_20m_grid_of_a_10m_grid_shares_its_origin_and_covers_it():
    grid = scaled_grid(GRID_10M)
    assert tuple(grid.transform)[:6] == (20, 0, 1000, 0, -20, 5000) and (grid.height, grid.width) == (2, 3)


def test_grid_offset_accepts_origins_on_the_grid_and_names_the_raster_otherwise():
    on_grid = Grid(GRID_10M.crs, Affine(20, 0, 960, 0, -20, 5020), 4, 4)
    assert grid_offset(on_grid, GRID_10M, 2, "b5.tif") == (1, 2)
    half_pixel_off = Grid(GRID_10M.crs, Affine(20, 0, 990, 0, -20, 5010), 4, 4)
    with pytest.raises(GridMismatchError, match=r"b5\.tif is not on the 20 m grid"):
        grid_offset(half_pixel_off, GRID_10M, 2, "b5.tif")


def test_bilinear_resampling_half_a_pixel_off_by_hand():
    # Source 20 m pixels start 10 m west and 10 m north of the target's: each target centre lies at the
    # corner of four source pixels; on the last row and column, on the source's outer edge.
    source = Grid(GRID_10M.crs, Affine(20, 0, 990, 0, -20, 5010), 3, 2)
    values = np.array([[[0, 4, 8], [40, 44, 48]]], dtype=np.int16)
    values[0, 0, 0] = -10000  # no data: left out of its neighbours' means

    def read(window: Window) -> np.ndarray:
        rows, cols = window.toslices()
        return values[:, rows, cols]

    target = scaled_grid(GRID_10M)
    result = resample_bilinear(read, source, target, Window(0, 0, 3, 2), -10000, 1)
    expected = [[(4 + 40 + 44) / 3, (4 + 8 + 44 + 48) / 4, (8 + 48) / 2], [(40 + 44) / 2, (44 + 48) / 2, 48]]
    np.testing.assert_array_equal(result[0], np.rint(expected))
    assert result.dtype == np.int16
    # on its own grid, a copy
    np.testing.assert_array_equal(resample_bilinear(read, source, source, Window(0, 0, 3, 2), -10000, 1), values)


def test_sample_keys_give_each_image_its_date_then_the_dem_and_the_trace_keys():
    acquisitions = {"tm1": ["s1", "s2"], "t": ["s2_holes", "s2"], "m": ["s2_timestamp"]}
    assert sample_keys(acquisitions, with_20m_bands=True, with_dem=True) == [
        "s1_tm1", "s1_timestamp_tm1", "s2_tm1", "s2_timestamp_tm1", "s2_20m_tm1",
        "s2_holes_t", "s2_t", "s2_timestamp_t", "s2_20m_t",
        "s2_timestamp_m",
        "dem", "tile", "patch_row", "patch_col",
    ]  # fmt: skip
    assert sample_keys({"t": ["s2"]}) == ["s2_t", "s2_timestamp_t", "tile", "patch_row", "patch_col"]


def _product_folder(tile_dir, name, *, marker=True):
    folder = tile_dir / name
    folder.mkdir(parents=True)
    if marker:
        (folder / "decloud_prepared.json").write_text("{}")
    return folder


def test_prepared_series_list_complete_products_in_time_order(tmp_path):
    late = "SENTINEL2A_20200301-105000-000_L2A_T31TEJ_C_V2-2"
    early = "SENTINEL2B_20200110-105000-000_L2A_T31TEJ_C_V2-2"
    _product_folder(tmp_path / "S2", late)
    _product_folder(tmp_path / "S2", early)
    _product_folder(tmp_path / "S2", "SENTINEL2B_20200120-105000-000_L2A_T31TEJ_C_V2-2", marker=False)
    _product_folder(tmp_path / "S2", f".decloud-tmp-1-{early.replace('0110', '0115')}")
    series = prepared_s2_series(tmp_path / "S2")
    assert [p.name for p in series] == [early, late]
    assert series[0].acquired == datetime(2020, 1, 10, 10, 50, tzinfo=UTC)
    assert series[1].bands_10m == tmp_path / "S2" / late / f"{late}_FRE_10m.tif"
    assert series[1].cloud_mask == tmp_path / "S2" / late / f"{late}_CLM_R1.tif"

    s1_dir = tmp_path / "S1"
    s1_dir.mkdir()
    for name in ("s1a_31TEJ_vvvh_DES_139_20200105t060000_from-10to3dB.tif",
                 "s1b_31TEJ_vvvh_ASC_088_20200102t173000_from-10to3dB.tif",
                 ".decloud-tmp-1-s1b_31TEJ_vvvh_ASC_088_20200101t173000_from-10to3dB.tif"):  # fmt: skip
        (s1_dir / name).write_bytes(b"")
    images = prepared_s1_series(s1_dir)
    assert [(i.acquired.day, i.orbit_direction) for i in images] == [(2, "ASC"), (5, "DES")]
    assert (
        images[0].nodata_stats == s1_dir / "s1b_31TEJ_vvvh_ASC_088_20200102t173000_from-10to3dB_STATS_NODATA_640m.tif"
    )
    assert s1_nodata_stats_path("a/x_from-10to3dB.tif") == Path("a/x_from-10to3dB_STATS_NODATA_640m.tif")


def test_a_folder_without_products_is_named(tmp_path):
    with pytest.raises(InputNotFoundError, match="missing"):
        prepared_s2_series(tmp_path / "missing")
    folder = _product_folder(tmp_path, "SENTINEL2A_20200301-105000-000_L2A_T31TEJ_C_V2-2", marker=False)
    with pytest.raises(InputNotFoundError, match="SENTINEL2A_20200301"):
        s2_product(folder)


ONEDNN_STATE = (
    "import decloud, os\nimport tensorflow\nfrom tensorflow.python.util import _pywrap_util_port\n"
    "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], _pywrap_util_port.IsMklEnabled())"
)


@pytest.mark.parametrize(("user_setting", "expected"), [(None, "1 True"), ("0", "0 False")])
def test_importing_decloud_turns_tensorflow_onednn_kernels_on_unless_the_user_set_it(user_setting, expected):
    """TensorFlow left them off on an AVX2-only AMD EPYC, where they trained 2.7 x faster; it reads the
    variable at its own import, which must come after decloud's."""
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if user_setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = user_setting
    result = subprocess.run([sys.executable, "-c", ONEDNN_STATE], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.splitlines()[-1] == expected
