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
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from decloud.cli import COMMANDS
from decloud.demo.assessment import METHODS, gap_filling
from decloud.demo.main import main
from decloud.demo.pipeline import QUICK, dataset_rows
from decloud.demo.scene import TRUTH_SUFFIX, plan_scene
from decloud.preprocessing.constants import S2_BANDS_10M, S2_NODATA
from decloud.testing.s1tiling import sigma0
from decloud.testing.theia import greenness, seasonal_reflectance

SCOPES = ("test_records", "test_area_cloudy_pixels", "tile_cloudy_pixels")
GAP = 8  #: white columns between the quicklook's panels


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


def test_every_date_with_neighbours_is_reconstructed_on_the_tile_grid_keeping_clear_pixels(quick):
    reconstructed = sorted((quick.out / "reconstructed").glob("*.tif"))
    products = sorted((quick.out / "prepared" / "S2" / "T31TEJ").iterdir())
    assert len(products) == QUICK.s2_dates
    # the first and last dates lack a date before / after them
    assert [p.name.split("_reconstructed")[0] for p in reconstructed] == [p.name for p in products[1:-1]]
    for path in reconstructed:
        product = quick.product(path.name.split("_reconstructed")[0])
        with rasterio.open(path) as output, rasterio.open(product / f"{product.name}_FRE_10m.tif") as source:
            assert (output.crs, output.transform, output.shape) == (source.crs, source.transform, source.shape)
            assert output.count == len(S2_BANDS_10M) and output.dtypes[0] == "int16" and output.nodata == S2_NODATA
            estimate, cloudy = output.read(), source.read()
        clear = read(product / f"{product.name}_CLM_R1.tif")[0] == 0
        kept = clear & (estimate != S2_NODATA).all(axis=0) & (cloudy != S2_NODATA).all(axis=0)
        assert kept.mean() > 0.5
        np.testing.assert_array_equal(estimate[:, kept], cloudy[:, kept])


def stretched(rgb: np.ndarray, low: float, high: float) -> np.ndarray:
    """(rows, cols, 3) uint8 of a (3, rows, cols) image, linear from [low, high]; no-data black."""
    values = np.clip(np.rint((rgb.astype(np.float64) - low) / (high - low) * 255.0), 0, 255)
    values[:, (rgb == S2_NODATA).any(axis=0)] = 0
    return np.moveaxis(values.astype(np.uint8), 0, -1)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # a PNG picture, not a map
def test_the_quicklook_shows_input_reconstruction_and_reference_with_one_stretch(quick):
    date = quick.metrics["quicklook_date"]
    rgb = [S2_BANDS_10M.index(band) + 1 for band in ("B4", "B3", "B2")]
    sources = [
        quick.product(date) / f"{date}_FRE_10m.tif",
        quick.out / "reconstructed" / f"{date}_reconstructed_FRE_10m.tif",
        quick.out / "generated" / "truth" / f"{date}{TRUTH_SUFFIX}",
    ]
    images = []
    for path in sources:
        with rasterio.open(path) as dataset:
            images.append(dataset.read(rgb))
    reference = images[2]
    low, high = np.percentile(reference[:, (reference != S2_NODATA).all(axis=0)], [2, 98])
    with rasterio.open(quick.out / "quicklook.png") as png:
        assert png.driver == "PNG" and png.count == 3 and png.dtypes[0] == "uint8"
        picture = np.moveaxis(png.read(), 0, -1)
    size = QUICK.tile
    assert picture.shape == (size, 3 * size + 2 * GAP, 3)
    for index, image in enumerate(images):
        panel = picture[:, index * (size + GAP) : index * (size + GAP) + size]
        np.testing.assert_array_equal(panel, stretched(image, low, high))
    assert (picture[:, size : size + GAP] == 255).all() and (picture[:, -size - GAP : -size] == 255).all()
    # the input shows its clouds in white, the reconstruction has none left where the reference is not white
    cloudy = read(quick.product(date) / f"{date}_CLM_R1.tif")[0] != 0
    assert (picture[:, :size][cloudy] == 255).all()
    assert (picture[:, size + GAP : 2 * size + GAP][cloudy] == 255).all(axis=-1).mean() < 0.05


def test_the_metrics_table_holds_every_method_and_scope_with_finite_numbers(quick):
    scopes = quick.metrics["scopes"]
    assert set(scopes) == set(SCOPES)
    for scope in SCOPES:
        assert set(scopes[scope]["methods"]) == set(METHODS)
        for results in scopes[scope]["methods"].values():
            assert math.isfinite(results["mae"]) and results["mae"] >= 0
            assert math.isfinite(results["psnr"])
    table = quick.stdout.split(" files written:")[0]
    for method in METHODS:
        row = next(line for line in table.splitlines() if line.startswith(method + " "))
        numbers = [float(value) for value in row.split()[1:]]
        expected = [scopes[scope]["methods"][method][metric] for scope in SCOPES for metric in ("mae", "psnr")]
        assert numbers == pytest.approx(expected, abs=1e-4)


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
    middle = plan.s2[6]
    assert len(middle.clouds) >= 4 and not middle.nodata
    assert [bool(date.nodata) for date in plan.s2].count(True) == 1
    assert [date.season for date in (plan.s2[0], plan.s2[-1])] == [0.0, 1.0]
    s1_hours = np.array([acquired.timestamp() for acquired, _ in plan.s1]) / 3600
    assert set(np.diff(s1_hours)) == {72.0}
    # every Sentinel-2 date has a Sentinel-1 image within 1.5 days (the layout's pairs accept 3)
    for date in plan.s2:
        assert np.abs(s1_hours - date.acquired.timestamp() / 3600).min() <= 36


def test_dataset_rows_split_north_to_south_without_gaps():
    assert dataset_rows(8) == [(0, 5), (5, 6), (6, 8)]
    assert dataset_rows(4) == [(0, 2), (2, 3), (3, 4)]
    assert dataset_rows(3) == [(0, 1), (1, 2), (2, 3)]


def test_the_seasonal_landscape_is_shared_by_the_dates_and_by_both_sensors():
    window = Window(0, 0, 128, 128)
    early, late = (seasonal_reflectance(window, "B8", 1, 1, season) for season in (0.2, 0.25))
    assert np.corrcoef(early.ravel(), late.ravel())[0, 1] > 0.8  # the same fields, a little greener
    cover = greenness(window, 1, 1, 0.5)
    assert cover.min() >= 0.0 and cover.max() <= 1.0 and cover.std() > 0.1
    # near infrared rises and red falls with the vegetation cover; radar backscatter rises with it too
    for band, sign in (("B8", 1), ("B4", -1)):
        values = seasonal_reflectance(window, band, 1, 1, 0.5)
        assert sign * np.corrcoef(values.ravel(), cover.ravel())[0, 1] > 0.5
    vh = 10 * np.log10(sigma0(window, "vh", 1, 0.5))
    assert np.corrcoef(vh.ravel(), cover.ravel())[0, 1] > 0.8
    # a 20 m pixel sees the same place as the 10 m pixels it covers
    coarse = seasonal_reflectance(Window(0, 0, 64, 64), "B8", 1, 2, 0.5).astype(float)
    fine = seasonal_reflectance(window, "B8", 1, 1, 0.5).astype(float).reshape(64, 2, 64, 2).mean(axis=(1, 3))
    assert np.median(np.abs(coarse - fine)) < 0.05 * np.median(fine)


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


@pytest.mark.slow
def test_the_full_demo_runs_and_the_model_beats_gap_filling_on_the_test_records(tmp_path):
    """On the test records (target: a clear date within 10 days; baselines blind to the clouds of tm1/tp1)
    the model beats gap-filling by 3 to 4 times for seeds 0, 1 and 2. On the tile's cloudy pixels, where the
    baselines pick clear dates with the cloud masks, gap-filling beats this small model for all three seeds:
    that is reported in metrics.json, not asserted."""
    run = run_demo_command(tmp_path / "out")
    assert run.status == 0
    methods = run.metrics["scopes"]["test_records"]["methods"]
    assert methods["model"]["mae"] < methods["gapfilling"]["mae"]
    assert methods["model"]["mae"] < methods["copy_nearest_date"]["mae"]
    assert sorted(run.listed) == sorted(path for path in run.out.rglob("*") if path.is_file())
