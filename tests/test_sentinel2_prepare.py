"""Sentinel-2 preparation: outputs compared with the source files and with statistics computed
independently here, on generated THEIA and SAFE products, their .zip forms, and the real THEIA crop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio

from decloud.core.atomic import COMPLETION_MARKER
from decloud.core.constants import (
    S2_BANDS_10M,
    S2_BANDS_20M,
    S2_NODATA,
    S2_SUFFIX_CLM,
    S2_SUFFIX_CLOUD_STATS,
    S2_SUFFIX_EDG,
    S2_SUFFIX_FRE_10M,
    S2_SUFFIX_FRE_20M,
    S2_SUFFIX_NODATA_STATS,
)
from decloud.core.errors import CorruptRasterError, GridMismatchError, InputNotFoundError, ProductFormatError
from decloud.preprocessing.sentinel2_prepare import main, prepare_s2_product
from decloud.testing.regions import Rect
from decloud.testing.safe import make_safe_product
from decloud.testing.theia import THEIA_CLOUD_VALUE, make_theia_product

ACQUIRED = datetime(2020, 10, 12, 10, 58, 48, 497000, tzinfo=UTC)
SHAPE = (300, 330)  # not a multiple of the 64-pixel patch: the last row and column of patches are partial
CLOUD = Rect(10, 20, 40, 50)
NODATA = Rect(200, 0, 20, 64)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def prepared_file(product_dir: Path, suffix: str) -> Path:
    return product_dir / f"{product_dir.name}{suffix}"


def patch_sums(mask: np.ndarray, outside: bool) -> np.ndarray:
    """Independent per-64x64-patch count, padding with ``outside`` beyond the image."""
    rows, cols = -(-mask.shape[0] // 64), -(-mask.shape[1] // 64)
    padded = np.full((rows * 64, cols * 64), outside)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    return np.array(
        [[padded[r * 64 : r * 64 + 64, c * 64 : c * 64 + 64].sum() for c in range(cols)] for r in range(rows)]
    )


def output_files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def theia_product(tmp_path_factory) -> Path:
    return make_theia_product(
        tmp_path_factory.mktemp("raw"), acquired=ACQUIRED, shape=SHAPE, clouds=[CLOUD], nodata=[NODATA], seed=3
    )


@pytest.fixture(scope="module")
def prepared_theia(theia_product, tmp_path_factory) -> Path:
    return prepare_s2_product(theia_product, tmp_path_factory.mktemp("prepared"), window_size=128)


def test_prepared_product_goes_to_its_tile_folder(prepared_theia, theia_product):
    assert prepared_theia.parent.name == "T31TEJ"
    assert prepared_theia.name == theia_product.name
    marker = json.loads((prepared_theia / COMPLETION_MARKER).read_text())
    assert marker["bands_10m"] == list(S2_BANDS_10M) and marker["bands_20m"] == list(S2_BANDS_20M)


@pytest.mark.parametrize(("suffix", "bands"), [(S2_SUFFIX_FRE_10M, S2_BANDS_10M), (S2_SUFFIX_FRE_20M, S2_BANDS_20M)])
def test_stacks_hold_the_source_bands_in_order(prepared_theia, theia_product, suffix, bands):
    name = theia_product.name
    expected = np.stack([read(theia_product / f"{name}_FRE_{band}.tif")[0] for band in bands])
    with (
        rasterio.open(prepared_file(prepared_theia, suffix)) as stack,
        rasterio.open(theia_product / f"{name}_FRE_{bands[0]}.tif") as source,
    ):
        np.testing.assert_array_equal(stack.read(), expected)
        assert stack.descriptions == bands
        assert stack.nodata == S2_NODATA and stack.dtypes[0] == "int16"
        assert (stack.crs, stack.transform, stack.shape) == (source.crs, source.transform, source.shape)
        assert stack.profile["compress"] == "deflate" and stack.profile["tiled"]


def test_masks_are_copied(prepared_theia, theia_product):
    name = theia_product.name
    for suffix, mask in ((S2_SUFFIX_CLM, "CLM"), (S2_SUFFIX_EDG, "EDG")):
        np.testing.assert_array_equal(
            read(prepared_file(prepared_theia, suffix)), read(theia_product / "MASKS" / f"{name}_{mask}_R1.tif")
        )
    clm = read(prepared_file(prepared_theia, S2_SUFFIX_CLM))[0]
    assert clm[CLOUD.row, CLOUD.col] == THEIA_CLOUD_VALUE and clm[0, 0] == 0


def test_statistics_of_chosen_patches(prepared_theia):
    cloud = read(prepared_file(prepared_theia, S2_SUFFIX_CLOUD_STATS))[0]
    nodata = read(prepared_file(prepared_theia, S2_SUFFIX_NODATA_STATS))[0]
    assert cloud.shape == nodata.shape == (5, 6)
    # Cloud rows 10-49, cols 20-69: 40 x 44 pixels in patch (0, 0), 40 x 6 in patch (0, 1).
    assert cloud[0, 0] == pytest.approx(100 * 40 * 44 / 4096)
    assert cloud[0, 1] == pytest.approx(100 * 40 * 6 / 4096)
    assert cloud[1, 0] == 0
    # No-data rows 200-219, cols 0-63: 20 x 64 pixels of patch (3, 0).
    assert nodata[3, 0] == 20 * 64
    assert nodata[0, 0] == 0
    # Last column of patches: 330 = 5 x 64 + 10, so 54 columns of each patch there are outside the image.
    assert nodata[0, 5] == 64 * 54
    # Last row: 300 = 4 x 64 + 44; the corner patch has 44 x 10 image pixels.
    assert nodata[4, 5] == 4096 - 44 * 10


def test_statistics_equal_an_independent_computation(prepared_theia, theia_product):
    name = theia_product.name
    clm = read(theia_product / "MASKS" / f"{name}_CLM_R1.tif")[0] != 0
    edg = read(theia_product / "MASKS" / f"{name}_EDG_R1.tif")[0] != 0
    pixels = patch_sums(np.ones(SHAPE, dtype=bool), outside=False)
    np.testing.assert_allclose(
        read(prepared_file(prepared_theia, S2_SUFFIX_CLOUD_STATS))[0], 100 * patch_sums(clm, False) / pixels, rtol=1e-6
    )
    np.testing.assert_array_equal(read(prepared_file(prepared_theia, S2_SUFFIX_NODATA_STATS))[0], patch_sums(edg, True))
    with (
        rasterio.open(prepared_file(prepared_theia, S2_SUFFIX_CLOUD_STATS)) as stats,
        rasterio.open(prepared_file(prepared_theia, S2_SUFFIX_FRE_10M)) as image,
    ):
        assert stats.transform.a == 640 and stats.transform.e == -640
        assert (stats.transform.c, stats.transform.f) == (image.transform.c, image.transform.f)
        assert stats.crs == image.crs


def test_zip_input_equals_folder_input(theia_product, prepared_theia, tmp_path):
    archive = make_theia_product(
        tmp_path / "raw", acquired=ACQUIRED, shape=SHAPE, clouds=[CLOUD], nodata=[NODATA], seed=3, as_zip=True
    )
    assert archive.suffix == ".zip"
    from_zip = prepare_s2_product(archive, tmp_path / "prepared")
    assert output_files(from_zip) == output_files(prepared_theia)
    for name in output_files(from_zip):
        if name.endswith(".tif"):
            np.testing.assert_array_equal(read(from_zip / name), read(prepared_theia / name))


def test_rerun_skips_a_complete_product_unless_overwrite(theia_product, tmp_path):
    product = prepare_s2_product(theia_product, tmp_path)
    stack = prepared_file(product, S2_SUFFIX_FRE_10M)
    first = stack.stat().st_mtime_ns
    assert prepare_s2_product(theia_product, tmp_path) == product
    assert stack.stat().st_mtime_ns == first
    prepare_s2_product(theia_product, tmp_path, overwrite=True)
    assert stack.stat().st_mtime_ns != first
    assert output_files(tmp_path) == sorted(f"T31TEJ/{product.name}/{name}" for name in output_files(product))


def test_out_dir_already_named_after_the_tile_is_not_nested(theia_product, tmp_path):
    product = prepare_s2_product(theia_product, tmp_path / "S2_PREPARE" / "T31TEJ")
    assert product == tmp_path / "S2_PREPARE" / "T31TEJ" / theia_product.name


# --- ESA SAFE ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "with_metadata", "offset"), [((5, 9), True, -1000), ((5, 9), False, -1000), ((2, 14), False, 0)]
)
def test_safe_input_gives_the_documented_scaling(tmp_path, baseline, with_metadata, offset):
    safe = make_safe_product(
        tmp_path / "raw",
        acquired=ACQUIRED,
        shape=(256, 320),
        clouds=[CLOUD],
        nodata=[NODATA],
        baseline=baseline,
        with_metadata=with_metadata,
    )
    product = prepare_s2_product(safe, tmp_path / "prepared")
    assert product.name == safe.name.removesuffix(".SAFE")
    image_data = next(safe.glob("GRANULE/*/IMG_DATA"))
    for suffix, folder, bands in ((S2_SUFFIX_FRE_10M, "R10m", S2_BANDS_10M), (S2_SUFFIX_FRE_20M, "R20m", S2_BANDS_20M)):
        digital_numbers = np.stack(
            [read(next((image_data / folder).glob(f"*_B{band[1:]:0>2}_{folder[1:]}.jp2")))[0] for band in bands]
        ).astype(np.int32)
        expected = np.where(digital_numbers == 0, S2_NODATA, digital_numbers + offset)
        np.testing.assert_array_equal(read(prepared_file(product, suffix)), expected)
    scl = read(next((image_data / "R20m").glob("*_SCL_20m.jp2")))[0].repeat(2, axis=0).repeat(2, axis=1)
    clm = read(prepared_file(product, S2_SUFFIX_CLM))[0]
    np.testing.assert_array_equal(clm, np.where(np.isin(scl, [3, 8, 9, 10]), scl, 0))
    np.testing.assert_array_equal(read(prepared_file(product, S2_SUFFIX_EDG))[0], scl == 0)
    assert clm[CLOUD.row, CLOUD.col] == 9
    nodata = read(prepared_file(product, S2_SUFFIX_NODATA_STATS))[0]
    assert nodata[3, 0] == 20 * 64 and nodata[0, 0] == 0


def test_safe_zip_equals_safe_folder(tmp_path):
    kwargs = {"acquired": ACQUIRED, "shape": (128, 192), "clouds": [CLOUD], "nodata": [NODATA]}
    folder = prepare_s2_product(make_safe_product(tmp_path / "a", **kwargs), tmp_path / "pa")
    archive = make_safe_product(tmp_path / "b", as_zip=True, **kwargs)
    zipped = prepare_s2_product(archive, tmp_path / "pb")
    assert output_files(zipped) == output_files(folder)
    for name in output_files(folder):
        if name.endswith(".tif"):
            np.testing.assert_array_equal(read(zipped / name), read(folder / name))


# --- Real data ---------------------------------------------------------------------------------

THEIA_REAL = "theia/T30TYP/SENTINEL2B_20181023-105107-455_L2A_T30TYP_D_V1-9"


def test_real_theia_crop(shared_data, tmp_path):
    source = shared_data / THEIA_REAL
    name = source.name
    product = prepare_s2_product(source, tmp_path)
    assert product == tmp_path / "T30TYP" / name
    expected = np.stack([read(source / f"{name}_FRE_{band}.tif")[0] for band in S2_BANDS_10M])
    np.testing.assert_array_equal(read(prepared_file(product, S2_SUFFIX_FRE_10M)), expected)
    with rasterio.open(prepared_file(product, S2_SUFFIX_FRE_20M)) as stack:
        # The crop's 20 m origin (742900, 4848620) is half a 20 m pixel off the 10 m one (742910, 4848610):
        # the prepared 20 m stack is on the 20 m grid of the 10 m grid.
        assert stack.shape == (585, 599) and tuple(stack.transform)[:6] == (20, 0, 742910, 0, -20, 4848610)
        prepared = stack.read()
    # Each prepared pixel centre (742920 + 20 j, 4848600 - 20 i) lies at the corner of source pixels
    # (i, j), (i, j + 1), (i + 1, j), (i + 1, j + 1): bilinear interpolation is their mean; on the last row
    # and column the centre lies on the source's outer edge, where the edge pixels count twice.
    for index, band in enumerate(S2_BANDS_20M):
        raw = np.pad(read(source / f"{name}_FRE_{band}.tif")[0].astype(np.float64), ((0, 1), (0, 1)), mode="edge")
        mean = (raw[:-1, :-1] + raw[:-1, 1:] + raw[1:, :-1] + raw[1:, 1:]) / 4
        assert np.abs(prepared[index] - mean).max() <= 0.5, band
    marker = json.loads((product / "decloud_prepared.json").read_text())
    assert marker["resampled_20m"] is True and "origin (742900.000, 4848620.000)" in marker["source_grid_20m"]
    clm = read(prepared_file(product, S2_SUFFIX_CLM))[0]
    assert np.count_nonzero(clm) == 6688 and set(np.unique(clm)) == {0, 11}
    cloud = read(prepared_file(product, S2_SUFFIX_CLOUD_STATS))[0]
    pixels = patch_sums(np.ones((1170, 1198), dtype=bool), outside=False)
    assert cloud.shape == (19, 19)
    assert np.sum(cloud * pixels / 100) == pytest.approx(6688, abs=1e-2)
    np.testing.assert_allclose(cloud, 100 * patch_sums(clm != 0, False) / pixels, rtol=1e-6)
    nodata = read(prepared_file(product, S2_SUFFIX_NODATA_STATS))[0]
    # EDG is all 0: only the parts of the border patches outside the 1170 x 1198 crop count.
    assert nodata[:18, :18].max() == 0
    assert nodata[0, 18] == 64 * (64 - 46) and nodata[18, 0] == 64 * (64 - 18) and nodata[18, 18] == 4096 - 18 * 46


# --- Bad input ---------------------------------------------------------------------------------


def run_cli_expecting_failure(in_image: Path, out_dir: Path, capsys) -> str:
    status = main(["--in_image", str(in_image), "--out_s2_dir", str(out_dir)])
    assert status != 0
    assert not out_dir.exists() or output_files(out_dir) == []
    return capsys.readouterr().err


def test_missing_band_file_is_named(tmp_path, capsys):
    product = make_theia_product(tmp_path / "raw", acquired=ACQUIRED, shape=(64, 64), omit=["B4"])
    assert "band B4" in run_cli_expecting_failure(product, tmp_path / "out", capsys)
    with pytest.raises(InputNotFoundError, match="FRE_B4"):
        prepare_s2_product(product, tmp_path / "out")


def test_missing_mask_is_named(tmp_path, capsys):
    product = make_theia_product(tmp_path / "raw", acquired=ACQUIRED, shape=(64, 64), omit=["CLM"])
    assert "CLM_R1" in run_cli_expecting_failure(product, tmp_path / "out", capsys)


def test_corrupt_band_file_is_named(tmp_path, capsys):
    product = make_theia_product(tmp_path / "raw", acquired=ACQUIRED, shape=(64, 64))
    band = product / f"{product.name}_FRE_B3.tif"
    band.write_bytes(b"II*\x00garbage" * 50)
    assert band.name in run_cli_expecting_failure(product, tmp_path / "out", capsys)


def test_truncated_band_file_is_named(tmp_path, capsys):
    product = make_theia_product(tmp_path / "raw", acquired=ACQUIRED, shape=(512, 512), seed=1)
    band = product / f"{product.name}_FRE_B8.tif"
    band.write_bytes(band.read_bytes()[: band.stat().st_size // 3])
    with pytest.raises(CorruptRasterError, match=r"FRE_B8\.tif"):
        prepare_s2_product(product, tmp_path / "out")
    assert "FRE_B8.tif" in run_cli_expecting_failure(product, tmp_path / "out", capsys)


def test_band_on_another_grid_is_named(tmp_path, capsys):
    product = make_theia_product(tmp_path / "raw", acquired=ACQUIRED, shape=(64, 64))
    other = make_theia_product(tmp_path / "other", acquired=ACQUIRED, shape=(64, 64), origin=(600640.0, 4900020.0))
    os.replace(other / f"{other.name}_FRE_B3.tif", product / f"{product.name}_FRE_B3.tif")
    with pytest.raises(GridMismatchError, match=r"FRE_B3\.tif"):
        prepare_s2_product(product, tmp_path / "out")
    assert "FRE_B3.tif" in run_cli_expecting_failure(product, tmp_path / "out", capsys)


def test_nonexistent_path_is_named(tmp_path, capsys):
    assert "no_such_product" in run_cli_expecting_failure(tmp_path / "no_such_product", tmp_path / "out", capsys)


def test_unknown_product_type_is_rejected(tmp_path, capsys):
    folder = tmp_path / "LC08_L2SP_196029_20200101"
    folder.mkdir()
    (folder / "LC08_B1.TIF").write_bytes(b"x")
    with pytest.raises(ProductFormatError, match="neither a THEIA"):
        prepare_s2_product(folder, tmp_path / "out")
    assert "LC08_L2SP_196029_20200101" in run_cli_expecting_failure(folder, tmp_path / "out", capsys)


def test_failure_keeps_a_previous_complete_product(tmp_path):
    product = make_theia_product(tmp_path / "raw", acquired=ACQUIRED, shape=(128, 128))
    prepared = prepare_s2_product(product, tmp_path / "out")
    before = output_files(tmp_path / "out")
    (product / f"{product.name}_FRE_B2.tif").write_bytes(b"II*\x00garbage" * 50)
    with pytest.raises(CorruptRasterError):
        prepare_s2_product(product, tmp_path / "out", overwrite=True)
    assert output_files(tmp_path / "out") == before
    assert (prepared / COMPLETION_MARKER).exists()


def test_command_line_exit_status(tmp_path):
    command = [sys.executable, "-m", "decloud.preprocessing.sentinel2_prepare", "--out_s2_dir", str(tmp_path / "out")]
    failed = subprocess.run([*command, "--in_image", str(tmp_path / "missing")], capture_output=True, text=True)
    assert failed.returncode == 1 and "missing" in failed.stderr and "Traceback" not in failed.stderr
    product = make_theia_product(tmp_path / "raw", acquired=ACQUIRED, shape=(64, 64))
    done = subprocess.run([*command, "--in_image", str(product)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "T31TEJ" / product.name / COMPLETION_MARKER).exists()
