"""``decloud demo``: the whole chain on a generated tile. The quick variant (``--quick``, a 256-pixel tile and a
few training steps) runs once for the module and its outputs are checked against independent computations;
the full demo is a slow test."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.windows import Window
from scipy import ndimage

from decloud.cli import COMMANDS
from decloud.core.constants import S2_BANDS_10M, S2_NODATA
from decloud.demo.assessment import METHODS, TABLE_METHODS
from decloud.demo.main import main
from decloud.demo.pipeline import FULL, QUICK, dataset_rows
from decloud.demo.scene import TRUTH_SUFFIX, plan_scene
from decloud.models.series_baselines import gap_fill as gap_filling

SCOPES = ("test_records", "test_area_cloudy_pixels", "tile_cloudy_pixels")


@dataclass
class DemoRun:
    out: Path
    status: int
    stdout: str

    @property
    def listed(self) -> list[Path]:
        """The files the command listed at the end (one per line, an optional "<- note" after the path)."""
        lines = self.stdout.split(" files written:\n", 1)[1].splitlines()
        return [Path(line.split("   <- ")[0].strip()) for line in lines if line.startswith("  ")]

    @property
    def metrics(self) -> dict:
        return json.loads((self.out / "metrics.json").read_text())

    def product(self, name: str) -> Path:
        return self.out / "prepared" / "S2" / "T31TEJ" / name


def run_demo_command(out: Path, *flags: str) -> DemoRun:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(["--out", str(out), *flags])
    return DemoRun(out, status, stdout.getvalue())


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> DemoRun:
    run = run_demo_command(tmp_path_factory.mktemp("demo") / "out", "--quick")
    assert run.status == 0, run.stdout
    return run


def read(path: Path, window: Window | None = None) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(window=window)


def test_demo_is_a_command_of_the_umbrella():
    assert COMMANDS["demo"] == "decloud.demo.main"


def test_every_file_written_is_listed_once(quick):
    listed = quick.listed
    assert len(listed) == len(set(listed))
    on_disk = sorted(path for path in quick.out.rglob("*") if path.is_file())
    assert sorted(listed) == on_disk
    assert f"{len(listed)} files written:" in quick.stdout
    names = {path.relative_to(quick.out).as_posix() for path in listed}
    assert {"quicklook.png", "metrics.json", "tiles.json", "rois/rois.json", "records/train/0.records"} <= names
    assert not [name for name in names if ".decloud-tmp-" in name]


def test_every_date_is_reconstructed_or_kept_on_the_tile_grid_keeping_clear_pixels(quick):
    reconstructed = sorted((quick.out / "reconstructed").glob("*.tif"))
    products = sorted((quick.out / "prepared" / "S2" / "T31TEJ").iterdir())
    assert len(products) == QUICK.s2_dates
    # the first and last dates lack a date before / after them: with --keep_clear they are written as
    # themselves when their cloud mask flags nothing, and skipped otherwise
    first_last_clear = [p for p in (products[0], products[-1]) if not read(p / f"{p.name}_CLM_R1.tif").any()]
    expected = sorted([p.name for p in products[1:-1] + first_last_clear])
    assert [p.name.split("_reconstructed")[0] for p in reconstructed] == expected
    shares = []
    for path in reconstructed:
        product = quick.product(path.name.split("_reconstructed")[0])
        with rasterio.open(path) as output, rasterio.open(product / f"{product.name}_FRE_10m.tif") as source:
            assert (output.crs, output.transform, output.shape) == (source.crs, source.transform, source.shape)
            assert output.count == len(S2_BANDS_10M) and output.dtypes[0] == "int16" and output.nodata == S2_NODATA
            estimate, cloudy = output.read(), source.read()
        clouds = read(product / f"{product.name}_CLM_R1.tif")[0] != 0
        near_clouds = ndimage.binary_dilation(clouds, np.ones((15, 15), bool))  # the cross-fade reaches 7 pixels
        kept = ~near_clouds & (estimate != S2_NODATA).all(axis=0) & (cloudy != S2_NODATA).all(axis=0)
        np.testing.assert_array_equal(estimate[:, kept], cloudy[:, kept])
        shares.append(kept.mean())
    # some dates are mostly cloudy (and the blend zone widens their masks); over the series most pixels are kept
    assert min(shares) > 0 and np.mean(shares) > 0.5, shares


def test_the_quicklook_shows_the_date_nearest_half_cloudy(quick):
    """The panels themselves are checked in test_quicklook.py; here, that the demo draws the date whose cloudy
    share is nearest one half."""
    counts = quick.metrics["cloudy_pixels_per_date"]
    shares = {date: count / 256**2 for date, count in counts.items()}
    assert quick.metrics["quicklook_date"] == min(shares, key=lambda date: abs(shares[date] - 0.5))
    with Image.open(quick.out / "quicklook.png") as png:
        # four panels of 256 pixels, 8-pixel gaps; a 22-pixel title strip above, 40 pixels of colour scale below
        assert png.size == (4 * 256 + 3 * 8, 22 + 256 + 40)


def test_the_metrics_table_holds_every_method_and_scope_with_finite_numbers(quick):
    scopes = quick.metrics["scopes"]
    assert set(scopes) == set(SCOPES)
    for scope in SCOPES:
        expected = set(TABLE_METHODS) if scope == "test_records" else set(METHODS)
        assert set(scopes[scope]["methods"]) == expected
        for results in scopes[scope]["methods"].values():
            assert math.isfinite(results["mae"]) and results["mae"] >= 0
            assert math.isfinite(results["psnr"])
    table = quick.stdout.split(" files written:")[0]
    for method in TABLE_METHODS:
        row = next(line for line in table.splitlines() if line.startswith(method + " "))
        numbers = [float(value) if value != "-" else None for value in row.split()[1:]]
        expected = [
            scopes[scope]["methods"][method][metric] if method in scopes[scope]["methods"] else None
            for scope in SCOPES
            for metric in ("mae", "psnr")
        ]
        assert numbers == [None if e is None else pytest.approx(e, abs=1e-4) for e in expected]
    seam = quick.metrics["seam_gradient"]
    assert seam["model"] > 0 and seam["truth"] > 0 and "seam (mean |gradient|" in table


def test_tile_metrics_match_an_independent_count_of_the_cloudy_pixels(quick):
    """The model's MAE on the tile: |estimate - truth| over the cloudy, valid pixels of every reconstructed date
    that some other date sees clear (where the baselines have a value), recomputed here."""
    products = sorted((quick.out / "prepared" / "S2" / "T31TEJ").iterdir())

    def clear(product):
        return (read(product / f"{product.name}_CLM_R1.tif")[0] == 0) & (
            read(product / f"{product.name}_EDG_R1.tif")[0] == 0
        )

    clears = [clear(product) for product in products]
    errors, pixels = [], 0
    for index, product in enumerate(products[1:-1], start=1):
        estimate = read(quick.out / "reconstructed" / f"{product.name}_reconstructed_FRE_10m.tif").astype(float)
        truth = read(quick.out / "generated" / "truth" / f"{product.name}{TRUTH_SUFFIX}").astype(float)
        seen_elsewhere = np.any([c for k, c in enumerate(clears) if k != index], axis=0)
        cloudy = (read(product / f"{product.name}_CLM_R1.tif")[0] != 0) & (
            read(product / f"{product.name}_EDG_R1.tif")[0] == 0
        )
        scored = cloudy & seen_elsewhere & (estimate != S2_NODATA).all(axis=0)
        errors.append(np.abs(estimate - truth)[:, scored].ravel())
        pixels += int(scored.sum())
    tile = quick.metrics["scopes"]["tile_cloudy_pixels"]
    assert tile["pixels"] == pixels > 0
    assert tile["methods"]["model"]["mae"] == pytest.approx(np.concatenate(errors).mean() * 1e-4, rel=1e-6)


def test_a_non_empty_output_folder_is_refused_with_a_non_zero_status(tmp_path):
    (tmp_path / "earlier.txt").write_text("an earlier run")
    result = subprocess.run(
        [sys.executable, "-m", "decloud.demo.main", "--out", str(tmp_path), "--quick"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"{tmp_path} exists and was not written complete by decloud" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["earlier.txt"]


def test_the_same_seed_gives_the_same_results(quick, tmp_path):
    again = run_demo_command(tmp_path / "out", "--quick")
    assert again.status == 0
    assert again.metrics["scopes"] == quick.metrics["scopes"]
    for path in sorted((quick.out / "reconstructed").glob("*.tif")):
        np.testing.assert_array_equal(read(path), read(again.out / "reconstructed" / path.name))


def test_the_scene_plan_depends_on_the_seed_only():
    assert plan_scene(256, 12, 5) == plan_scene(256, 12, 5)
    assert plan_scene(256, 12, 5).s2 != plan_scene(256, 12, 6).s2
    plan = plan_scene(256, 12, 5)
    assert any(date.weather.cover > 0 for date in plan.s2) and any(date.weather.cover == 0 for date in plan.s2)
    assert [date.swath_edge is not None for date in plan.s2].count(True) == 1
    s1_hours = np.array([acquired.timestamp() for acquired in plan.s1]) / 3600
    assert set(np.diff(s1_hours)) == {72.0}
    # every Sentinel-2 date has a Sentinel-1 image within 1.5 days (the layout's pairs accept 3)
    for date in plan.s2:
        assert np.abs(s1_hours - date.acquired.timestamp() / 3600).min() <= 36


def test_dataset_rows_split_north_to_south_without_gaps():
    assert dataset_rows(8) == [(0, 5), (5, 6), (6, 8)]
    assert dataset_rows(4) == [(0, 2), (2, 3), (3, 4)]
    assert dataset_rows(3) == [(0, 1), (1, 2), (2, 3)]


def test_gap_filling_interpolates_between_the_nearest_clear_dates_pixel_by_pixel():
    rng = np.random.default_rng(0)
    times = np.array([0.0, 10.0, 20.0, 40.0, 50.0])
    values = rng.integers(100, 5000, (5, 3, 4, 2)).astype(np.int16)
    clear = rng.random((5, 3, 4)) < 0.5
    target = 30.0
    result = gap_filling(values, clear, times, target)
    for row in range(3):
        for col in range(4):
            before = [k for k in range(5) if times[k] < target and clear[k, row, col]]
            after = [k for k in range(5) if times[k] > target and clear[k, row, col]]
            if before and after:
                b, a = before[-1], after[0]
                weight = (target - times[b]) / (times[a] - times[b])
                expected = values[b, row, col] + weight * (values[a, row, col].astype(float) - values[b, row, col])
            elif before or after:
                expected = values[(before or after)[-1 if before else 0], row, col]
            else:
                expected = np.full(2, S2_NODATA)
            np.testing.assert_allclose(result[row, col], expected, atol=1)


def scores_on_the_test_area(out: Path) -> dict[str, tuple[float, float]]:
    """(MAE, PSNR from the pooled MSE) in reflectance of the model and of linear gap-filling over the whole series,
    on the cloudy, valid pixels of every reconstructed date inside the test rows of the full demo's tile, recomputed
    from the GeoTIFFs (gap-filling by the function checked against a brute force above)."""
    first, last = (row * FULL.patchsize for row in dataset_rows(FULL.tile // FULL.patchsize)[2])
    window = Window(0, first, FULL.tile, last - first)
    products = sorted((out / "prepared" / "S2" / "T31TEJ").iterdir())
    times = np.array([datetime.strptime(p.name.split("_")[1], "%Y%m%d-%H%M%S-%f").timestamp() for p in products])
    values = np.stack([np.moveaxis(read(p / f"{p.name}_FRE_10m.tif", window), 0, -1) for p in products])
    clm = np.stack([read(p / f"{p.name}_CLM_R1.tif", window)[0] != 0 for p in products])
    valid = np.stack([read(p / f"{p.name}_EDG_R1.tif", window)[0] == 0 for p in products])
    valid &= (values != S2_NODATA).all(axis=-1)
    sums = {"model": [0.0, 0.0, 0], "gapfilling_series": [0.0, 0.0, 0]}
    for index, product in enumerate(products):
        reconstruction = out / "reconstructed" / f"{product.name}_reconstructed_FRE_10m.tif"
        if not reconstruction.exists() or not (clm[index] & valid[index]).any():
            continue
        others = np.arange(len(products)) != index
        estimates = {
            "model": np.moveaxis(read(reconstruction, window), 0, -1).astype(float),
            "gapfilling_series": gap_filling(
                values[others], (~clm & valid)[others], times[others], times[index]
            ).astype(float),
        }
        truth = np.moveaxis(read(out / "generated" / "truth" / f"{product.name}{TRUTH_SUFFIX}", window), 0, -1)
        scored = clm[index] & valid[index]
        for estimate in estimates.values():
            scored &= (estimate != S2_NODATA).all(axis=-1)
        for method, estimate in estimates.items():
            error = (estimate[scored] - truth[scored]) * 1e-4
            sums[method][0] += np.abs(error).sum()
            sums[method][1] += np.square(error).sum()
            sums[method][2] += error.size
    return {method: (total / n, 10 * math.log10(1 / (squares / n))) for method, (total, squares, n) in sums.items()}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_full_demo_beats_gap_filling_on_the_cloudy_pixels_without_seams(seed, tmp_path):
    """On the cloudy pixels of the test area (patches never trained on), against the generator's cloud-free truth
    (the date under its clear sky):
    the model's MAE is at most 0.8 x that of linear gap-filling over the whole series and its PSNR (pooled MSE)
    higher, both recomputed here from the rasters and matching metrics.json; the mean gradient across the cloud
    masks' edges is within 20 % of the truth's."""
    run = run_demo_command(tmp_path / "out", "--seed", str(seed))
    assert run.status == 0
    scores = scores_on_the_test_area(run.out)
    (model_mae, model_psnr), (gap_mae, gap_psnr) = scores["model"], scores["gapfilling_series"]
    assert model_mae <= 0.8 * gap_mae, scores
    assert model_psnr > gap_psnr, scores
    methods = run.metrics["scopes"]["test_area_cloudy_pixels"]["methods"]
    for method, (mae, psnr) in scores.items():
        assert methods[method]["mae"] == pytest.approx(mae, rel=1e-6)
        assert methods[method]["psnr"] == pytest.approx(psnr, rel=1e-6)
    seam = run.metrics["seam_gradient"]
    assert abs(seam["model"] / seam["truth"] - 1) <= 0.2
    assert sorted(run.listed) == sorted(path for path in run.out.rglob("*") if path.is_file())
