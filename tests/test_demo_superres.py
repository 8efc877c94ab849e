"""``decloud demo-superres``: x2 super-resolution trained under the Wald protocol on a generated tile. The quick
variant (``--quick``: a 192-pixel tile, one date, two training steps) runs here; its scores mean little, so the
tests check that what it draws and reports is what it wrote, against independent numpy computations."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from decloud.cli import main as decloud_main

#: The quick run: a 192 x 192 tile of 64-pixel patches, the southern row of patches (rows 128-192) held out.
TILE, TEST_FIRST_ROW = 192, 128
#: Quicklook layout: 22-pixel title strips, 8-pixel gaps between panels.
TITLE, GAP = 22, 8


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo_superres") / "demo"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert decloud_main(["demo-superres", "--out", str(out), "--quick", "--seed", "3"]) == 0
    return out, printed.getvalue()


def _held_out(out: Path, name: str) -> np.ndarray:
    with rasterio.open(out / "held_out" / f"{name}.tif") as dataset:
        assert list(dataset.descriptions) == ["B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12"]
        return np.moveaxis(dataset.read(), 0, -1)


def test_the_held_out_images_cover_the_test_band_on_the_tile_grid(quick):
    out, _ = quick
    product = next((out / "prepared" / "S2" / "T31TEJ").iterdir())
    with rasterio.open(product / f"{product.name}_FRE_10m.tif") as tile:
        transform = tile.transform
        real = np.moveaxis(tile.read(window=((TEST_FIRST_ROW, TILE), (0, TILE))), 0, -1)
    with rasterio.open(out / "held_out" / "model.tif") as dataset:
        assert (dataset.height, dataset.width) == (TILE - TEST_FIRST_ROW, TILE)
        assert dataset.transform == transform @ rasterio.Affine.translation(0, TEST_FIRST_ROW)
    assert np.array_equal(_held_out(out, "reference")[..., :4], real)  # the real 10 m bands are the reference


def test_the_quicklook_panels_are_bicubic_ours_and_the_reference_written(quick):
    out, _ = quick
    picture = np.asarray(Image.open(out / "quicklook.png").convert("RGB"))
    rows = TILE - TEST_FIRST_ROW
    assert picture.shape == (3 * (TITLE + rows) + 2 * GAP, TILE, 3)
    rgb = {name: _held_out(out, name)[..., [2, 1, 0]].astype(np.float64) for name in ("bicubic", "model", "reference")}
    low, high = np.percentile(rgb["reference"], (2, 98))  # one stretch: the reference's, all three bands together
    for index, name in enumerate(("bicubic", "model", "reference")):
        top = TITLE + index * (rows + GAP + TITLE)
        expected = np.clip(np.rint((rgb[name] - low) / (high - low) * 255), 0, 255).astype(np.uint8)
        assert np.array_equal(picture[top : top + rows], expected), name
        assert (picture[top - TITLE : top] < 100).any()  # a title above each panel
    assert not np.array_equal(rgb["model"], rgb["bicubic"])


def test_the_scores_are_those_of_the_images_written(quick):
    out, printed = quick
    metrics = json.loads((out / "metrics.json").read_text())
    area = metrics["held_out_area"]
    reference, bicubic, model = (_held_out(out, name) / 1e4 for name in ("reference", "bicubic", "model"))
    for name, estimate in (("model", model), ("bicubic", bicubic)):
        assert area["psnr"][name] == pytest.approx(-10 * np.log10(np.mean((estimate - reference) ** 2)), abs=1e-6)
    profiles = {name: np.asarray(area["profiles"][name]) for name in ("input", "prediction", "target")}
    assert len(profiles["target"]) == 32
    # Ring 0 (frequencies below 1/64 cycle per pixel): the mean FFT amplitude (mean over the bands, normalised by the
    # pixel count) of the mean-removed reference.
    prepared = reference * 1e4  # profiles are in prepared units
    spectrum = np.abs(np.fft.fft2(prepared - prepared.mean(axis=(0, 1)), axes=(0, 1))).mean(axis=-1)
    rows = TILE - TEST_FIRST_ROW
    ring_0 = np.hypot(*np.meshgrid(np.fft.fftfreq(rows), np.fft.fftfreq(TILE), indexing="ij")) < 1 / 64
    assert profiles["target"][0] == pytest.approx(spectrum[ring_0].mean() / (rows * TILE), rel=1e-9)
    i, p, t = profiles["input"], profiles["prediction"], profiles["target"]
    missing = np.maximum(t - i, 0)
    restored = np.minimum(np.maximum(p - i, 0), missing)
    assert area["frequency"]["frr"] == pytest.approx(100 * restored.sum() / missing.sum())
    assert area["frequency"]["fro"] == pytest.approx(100 * np.maximum(p - t, 0).sum() / t.sum())
    assert area["frequency"]["fru"] == pytest.approx(100 * np.maximum(i - p, 0).sum() / i.sum())
    report = metrics["test_records_report"]
    assert report["samples"] == 3 and report["test_records"] == "records/test"  # 3 patches of the test band
    assert set(report["outputs"]["s2_estim"]["methods"]) == {"model", "bicubic"}
    assert f"| superres_carn | {area['psnr']['model']:.2f} |" in printed
    assert f"| bicubic | {area['psnr']['bicubic']:.2f} |" in printed


def test_the_profiles_png_draws_the_three_profiles_with_their_names(quick):
    out, printed = quick
    picture = np.asarray(Image.open(out / "profiles.png").convert("RGB"))
    assert picture.shape == (320, 320, 3)
    drawn = {colour: int((picture == colour).all(axis=-1).sum()) for colour in ((31, 119, 180), (255, 127, 14))}
    assert min(drawn.values()) > 300  # prediction blue and target orange: lines 3 pixels thick across 288 pixels
    assert (picture == (128, 128, 128)).all(axis=-1).any()  # input grey (here under the blue: at least its name)
    assert "profiles.png" in printed and "quicklook.png" in printed


def test_the_rois_summary_names_the_published_folder(quick):
    out, _ = quick
    summary = json.loads((out / "rois" / "rois.json").read_text())
    assert str(out / "rois") in json.dumps(summary) and ".decloud-tmp" not in json.dumps(summary)
