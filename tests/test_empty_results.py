"""An empty result is an error, not a success: an output without a single valid pixel is not written
(exit 1), a run with few valid pixels says how many, and a tile smaller than the training patch cannot
be split into datasets."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio

from decloud.core.constants import S2_NODATA
from decloud.core.errors import InvalidArgumentError
from decloud.core.raster import Grid, write_array
from decloud.models.export import export_savedmodel
from decloud.models.registry import create_model
from decloud.preprocessing import generate_roi_rasters
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.production import crga_processor
from decloud.production.backends import ModelBackend
from decloud.production.sources import RasterSource
from decloud.production.streaming import EmptyResultError, OutputSpec, StreamingEngine
from decloud.testing.regions import Rect
from decloud.testing.theia import make_theia_product

CRS = "EPSG:32631"
TRANSFORM = rasterio.Affine(10, 0, 600000, 0, -10, 4900020)
SHAPE = (120, 100)


class ConstantModel(ModelBackend):
    """Gives 1000 everywhere."""

    def __init__(self) -> None:
        self.inputs, self.outputs = {"s2_t": 4}, ["s2_estim"]

    def run(self, inputs, outputs):
        return {"s2_estim": np.full((*inputs["s2_t"].shape[:3], 4), 1000.0, np.float32)}


def run_engine(tmp_path: Path, values: np.ndarray) -> Path:
    source_path = tmp_path / "s2.tif"
    write_array(source_path, values, crs=CRS, transform=TRANSFORM, nodata=S2_NODATA)
    with rasterio.open(source_path) as dataset:
        grid = Grid.of(dataset)
    output = tmp_path / "out" / "estim.tif"
    spec = OutputSpec("s2_estim", output, ["B2", "B3", "B4", "B8"])
    with RasterSource("s2_t", source_path, grid, nodata=S2_NODATA) as source:
        StreamingEngine(ConstantModel(), [source], grid, [spec], chunk_size=32, pad=8).run()
    return output


def test_an_output_without_valid_pixel_is_an_error_and_not_written(tmp_path: Path) -> None:
    with pytest.raises(EmptyResultError, match=r"estim\.tif would hold no valid pixel: no pixel of the 120x100 image"):
        run_engine(tmp_path, np.full((4, *SHAPE), S2_NODATA, np.int16))
    assert list((tmp_path / "out").iterdir()) == []


def test_few_valid_pixels_are_counted_in_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    values = np.full((4, *SHAPE), S2_NODATA, np.int16)
    values[:, 50:53, 10:14] = 700  # 12 valid pixels
    with caplog.at_level(logging.INFO, logger="decloud"):
        output = run_engine(tmp_path, values)
    with rasterio.open(output) as dataset:
        assert (dataset.read(1) != S2_NODATA).sum() == 12
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [f"{output}: only 12 valid pixels of 12000 (0.10 %): the rest lacks a required input"]


def test_a_mostly_valid_output_reports_its_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    values = np.full((4, *SHAPE), 700, np.int16)
    values[:, :20, :] = S2_NODATA  # 2000 of 12000 pixels without data
    with caplog.at_level(logging.INFO, logger="decloud"):
        output = run_engine(tmp_path, values)
    assert f"{output}: 10000 valid pixels of 12000 (83.3 %)" in [record.getMessage() for record in caplog.records]


@pytest.fixture(scope="module")
def cloudy_before(tmp_path_factory) -> dict[str, Path]:
    """A clear target, a fully cloudy product before it, and an S2-only CRGA SavedModel."""
    root = tmp_path_factory.mktemp("cloudy")
    before = make_theia_product(
        root / "raw", acquired=datetime(2021, 6, 2, 10), shape=SHAPE, clouds=[Rect(0, 0, *SHAPE)]
    )
    target = make_theia_product(root / "raw", acquired=datetime(2021, 6, 7, 10), shape=SHAPE, seed=1)
    model = create_model("crga_os1_unet", filters=4, depth=2, with_s1=False)
    return {
        "before": prepare_s2_product(before, root / "S2"),
        "target": prepare_s2_product(target, root / "S2"),
        "model": export_savedmodel(model.model(), model, root / "savedmodel"),
    }


def test_crga_processor_with_a_fully_cloudy_date_before_fails(
    cloudy_before: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out" / "rec.tif"
    argv = ["--il_s2before", str(cloudy_before["before"]), "--in_s2", str(cloudy_before["target"])]
    status = crga_processor.main([*argv, "--savedmodel", str(cloudy_before["model"]), "--output", str(output)])

    assert status == 1
    stderr = capsys.readouterr().err.strip()
    assert stderr == (
        f"decloud crga-processor: error: {output} would hold no valid pixel: no pixel of the 120x100 image has all "
        "the inputs the model needs (no data, or no clear acquisition, in a required input)"
    )
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


def test_a_tile_smaller_than_the_patch_is_an_error(tmp_path: Path) -> None:
    product = make_theia_product(tmp_path / "raw", acquired=datetime(2020, 5, 1, 10), shape=(200, 300))
    prepare_s2_product(product, tmp_path / "S2")
    tiles = tmp_path / "tiles.json"
    tiles.write_text(json.dumps({"S2_ROOT_DIR": "S2", "TILES": ["T31TEJ"]}))
    argv = ["--tiles", str(tiles), "--datasets", "train", "valid", "--props", "1", "1"]
    out = tmp_path / "rois"

    with pytest.raises(InvalidArgumentError) as raised:
        generate_roi_rasters.generate_roi_rasters(tiles, ["train", "valid"], [1, 1], out, patchsize=256)
    assert str(raised.value) == (
        "tile T31TEJ is 200x300 pixels, smaller than the patch size 256: it cannot hold a single training patch "
        "(use a smaller --patchsize or leave the tile out)"
    )
    assert not out.exists()
    assert generate_roi_rasters.main([*argv, "--output_dir", str(out), "--patchsize", "256"]) == 1
    assert generate_roi_rasters.main([*argv, "--output_dir", str(out), "--patchsize", "192"]) == 0  # it fits
