"""Hole-pixel scores and ``decloud assess``: hand-computed values, and an independent numpy computation of every
figure (SSIM by an explicit 11x11 Gaussian window, seam by explicit pixel pairs) on hand-built rasters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine

from decloud.cli import main as decloud
from decloud.models.raster_assessment import assess_rasters
from decloud.models.scores import HoleScores, seam_gradient

TRANSFORM = Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 5000000.0)


def write(path, array, nodata=None):
    """(rows, cols, bands) or (rows, cols) array -> GeoTIFF."""
    array = array if array.ndim == 3 else array[..., np.newaxis]
    profile = {"driver": "GTiff", "height": array.shape[0], "width": array.shape[1], "count": array.shape[2]}
    profile.update(dtype=array.dtype.name, crs="EPSG:32631", transform=TRANSFORM, nodata=nodata)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(np.moveaxis(array, -1, 0))
    return path


def reference_ssim_map(x, y):
    """SSIM map of one band by an explicit 11x11 Gaussian (sigma 1.5) window, edges mirrored (d c b a | a b c d)."""
    offsets = np.arange(-5, 6)
    kernel_1d = np.exp(-(offsets**2) / (2 * 1.5**2))
    kernel = np.outer(kernel_1d, kernel_1d) / np.outer(kernel_1d, kernel_1d).sum()

    def blur(image):
        padded = np.pad(image, 5, mode="symmetric")
        out = np.zeros_like(image)
        for i, di in enumerate(offsets):
            for j, dj in enumerate(offsets):
                out += kernel[i, j] * padded[5 + di : 5 + di + image.shape[0], 5 + dj : 5 + dj + image.shape[1]]
        return out

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def test_hand_computed_scores():
    """Truth 1000 everywhere; the estimate is 1100 on the two hole pixels: errors of 0.01 reflectance, so MAE and
    RMSE 0.01, PSNR 40 dB, SAM 0 (proportional spectra); pixels outside the holes do not count."""
    truth = np.full((12, 12, 4), 1000, np.int16)
    estimate = np.full((12, 12, 4), 5000, np.int16)  # wrong outside the holes: must not count
    holes = np.zeros((12, 12), bool)
    holes[5, 5] = holes[5, 6] = True
    estimate[holes] = 1100
    scores = HoleScores(["B2", "B3", "B4", "B8"])
    scores.update(truth, estimate, holes)
    result = scores.results()
    assert result["pixels"] == 2
    assert result["overall"]["mae"] == pytest.approx(0.01)
    assert result["overall"]["rmse"] == pytest.approx(0.01)
    assert result["overall"]["psnr"] == pytest.approx(40.0)
    assert result["overall"]["sam_degrees"] == pytest.approx(0.0, abs=1e-6)
    assert result["per_band"]["B8"]["psnr"] == pytest.approx(40.0)


def test_psnr_is_from_the_pooled_mse():
    """Two images, errors 0.01 and 0.03 on one pixel each: pooled MSE 5e-4 gives 33.01 dB, not the mean of the
    images' PSNRs (40 and 30.46 dB -> 35.23)."""
    scores = HoleScores(["b"])
    hole = np.ones((1, 1), bool)
    scores.update(np.full((1, 1, 1), 1000, np.int16), np.full((1, 1, 1), 1100, np.int16), hole)
    scores.update(np.full((1, 1, 1), 1000, np.int16), np.full((1, 1, 1), 1300, np.int16), hole)
    assert scores.results()["overall"]["psnr"] == pytest.approx(10 * np.log10(1 / 5e-4))
    assert scores.results()["overall"]["psnr"] == pytest.approx(33.0103, abs=1e-4)


def test_seam_gradient_hand_computed():
    """A 3x3 image: hole in the centre (value 100 everywhere else 0 -> 0.01 reflectance across each of its 4
    boundary pairs)."""
    image = np.zeros((3, 3, 1), np.int16)
    image[1, 1] = 100
    holes = np.zeros((3, 3), bool)
    holes[1, 1] = True
    assert seam_gradient(image, holes) == pytest.approx(0.01)


def test_assess_rasters_matches_an_independent_computation(tmp_path):
    rng = np.random.default_rng(3)
    rows, cols = 70, 131  # windows of 64: halos inside the raster and at its edges
    truth = rng.integers(200, 4000, (rows, cols, 4)).astype(np.int16)
    truth[0, 0] = -10000  # no-data truth pixel inside the mask: not scored
    first = (truth + rng.normal(0, 150, truth.shape)).clip(0, 10000).astype(np.int16)
    second = (truth + rng.normal(0, 400, truth.shape)).clip(0, 10000).astype(np.int16)
    second[3, 4] = -10000  # a method's no-data pixel: excluded for every method
    holes = np.zeros((rows, cols), np.uint8)
    holes[:40, :50] = 1
    holes[50:68, 60:129] = 2
    report = assess_rasters(
        [write(tmp_path / "a.tif", first), write(tmp_path / "b.tif", second)],
        write(tmp_path / "truth.tif", truth),
        write(tmp_path / "mask.tif", holes),
        window_size=64,
    )
    scored = (holes != 0).copy()
    scored[0, 0] = scored[3, 4] = False
    assert report["pixels"] == scored.sum() == 40 * 50 + 18 * 69 - 2
    x = truth.astype(np.float64) / 1e4
    for name, estimate in (("a", first), ("b", second)):
        y = np.where(scored[..., None], estimate / 1e4, x)
        error = (y - x)[scored]
        mse = np.mean(error**2)
        ssim = np.mean([reference_ssim_map(x[..., b], y[..., b])[scored] for b in range(4)])
        cosine = (x * y).sum(-1) / np.linalg.norm(x, axis=-1) / np.linalg.norm(y, axis=-1)
        sam = np.degrees(np.arccos(np.clip(cosine[scored], -1, 1))).mean()
        overall = report["methods"][name]["overall"]
        assert overall["mae"] == pytest.approx(np.abs(error).mean(), rel=1e-9)
        assert overall["rmse"] == pytest.approx(np.sqrt(mse), rel=1e-9)
        assert overall["psnr"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-9)
        assert overall["ssim"] == pytest.approx(ssim, rel=1e-6)
        assert overall["sam_degrees"] == pytest.approx(sam, rel=1e-6)
    for name, image in (("a", first), ("b", second), ("truth", truth)):
        inside, valid, values = holes != 0, (image != -10000).all(-1), image / 1e4
        differences = []
        for r in range(rows):
            for c in range(cols):
                for rr, cc in ((r + 1, c), (r, c + 1)):
                    if rr < rows and cc < cols and inside[r, c] != inside[rr, cc] and valid[r, c] and valid[rr, cc]:
                        differences.append(np.abs(values[r, c] - values[rr, cc]).mean())
        assert report["seam_gradient"][name] == pytest.approx(np.mean(differences), rel=1e-9)


def test_assess_command_writes_json_and_refuses_other_grids(tmp_path, capsys):
    truth = np.full((8, 8, 4), 1000, np.int16)
    estimate = truth.copy()
    estimate[2:4, 2:4] = 1200
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:4] = 1
    paths = [write(tmp_path / n, a) for n, a in (("e.tif", estimate), ("t.tif", truth), ("m.tif", mask))]
    output = tmp_path / "scores.json"
    arguments = ["--prediction", str(paths[0]), "--truth", str(paths[1]), "--mask", str(paths[2])]
    assert decloud(["assess", *arguments, "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["pixels"] == 4
    assert report["methods"]["e"]["overall"]["mae"] == pytest.approx(0.02)
    assert report["methods"]["e"]["overall"]["psnr"] == pytest.approx(10 * np.log10(1 / 0.02**2))
    capsys.readouterr()
    small = write(tmp_path / "small.tif", mask[:4])
    assert decloud(["assess", "--prediction", str(paths[0]), "--truth", str(paths[1]), "--mask", str(small)]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "small.tif" in error
    empty = write(tmp_path / "empty.tif", np.zeros((8, 8), np.uint8))
    assert decloud(["assess", "--prediction", str(paths[0]), "--truth", str(paths[1]), "--mask", str(empty)]) == 1
    assert "no pixel to score" in capsys.readouterr().err
