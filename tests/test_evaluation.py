"""Evaluation of a SavedModel against the baselines: copy of the nearest date (known answers), linear
gap-filling (the gap-filling SavedModel must score exactly like the baseline), the report and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from decloud.cli import main as decloud_main
from decloud.models.evaluation import copy_nearest_date, evaluate
from decloud.models.export import export_savedmodel
from decloud.models.model_evaluation import main
from decloud.models.registry import create_model
from decloud.preprocessing.constants import S2_BANDS_10M, S2_BANDS_20M, S2_NODATA
from decloud.testing.records import LAYOUTS, layout_keys, write_records

DAY = 86400.0
N = S2_NODATA


def test_copy_nearest_date_takes_the_nearest_valid_date_and_the_target_day_last():
    def image(*values):
        return np.array(values, np.int16).reshape(1, 1, len(values), 1)

    batch = {
        "s2_timestamp_target": np.array([100 * DAY]),
        "s2_timestamp_tm1": np.array([90 * DAY]),
        "s2_timestamp_t": np.array([100 * DAY + 600]),  # the cloudy image, same day as the target
        "s2_timestamp_tp1": np.array([103 * DAY]),
        "s2_tm1": image(10, 11, N, N),
        "s2_t": image(20, 21, 22, N),
        "s2_tp1": image(30, N, N, N),
    }
    result = copy_nearest_date(batch, "s2", ["tm1", "t", "tp1"])
    np.testing.assert_array_equal(result[0, 0, :, 0], [30, 11, 22, N])
    only_same_day = copy_nearest_date(batch, "s2", ["t"])
    np.testing.assert_array_equal(only_same_day[0, 0, :, 0], [20, 21, 22, N])


@pytest.fixture(scope="module")
def crga_records(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    names = layout_keys(LAYOUTS["crga_os2"], with_20m_bands=True)
    return write_records(root / "test", names, n_samples=5, patchsize=64)


@pytest.fixture(scope="module")
def gapfilling_savedmodel(tmp_path_factory):
    model = create_model("gapfilling", with_20m_bands=True)
    return export_savedmodel(model.model(), model, tmp_path_factory.mktemp("gapfilling") / "savedmodel")


def test_the_gapfilling_model_scores_exactly_like_the_gapfilling_baseline(gapfilling_savedmodel, crga_records):
    report = evaluate(gapfilling_savedmodel, crga_records, batch_size=2)
    assert report["samples"] == 5
    assert set(report["outputs"]) == {"s2_estim", "s2_20m_estim"}
    for output, bands in (("s2_estim", S2_BANDS_10M), ("s2_20m_estim", S2_BANDS_20M)):
        methods = report["outputs"][output]["methods"]
        assert set(methods) == {"model", "gapfilling_model_inputs", "copy_nearest"}
        assert list(methods["model"]["per_band"]) == list(bands)
        for metric, value in methods["model"]["overall"].items():
            assert value == pytest.approx(methods["gapfilling_model_inputs"]["overall"][metric], rel=1e-6), metric
        # copying the nearest date (tm1 and tp1 are 10 days away) is not interpolating between them
        assert methods["copy_nearest"]["overall"]["mae"] != methods["gapfilling_model_inputs"]["overall"]["mae"]
        assert methods["model"]["pixels"] < 5 * 64 * 64 // (2 if "20m" in output else 1) ** 2  # no-data left out


def test_command_line_prints_and_writes_the_report(gapfilling_savedmodel, crga_records, tmp_path, capsys):
    output = tmp_path / "metrics.json"
    arguments = ["--savedmodel", str(gapfilling_savedmodel), "--test_records", str(crga_records)]
    assert main([*arguments, "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "s2_estim vs s2_target (5 samples" in printed and "copy_nearest" in printed
    written = json.loads(output.read_text())
    assert written == json.loads(json.dumps(evaluate(gapfilling_savedmodel, crga_records)))
    assert decloud_main(["evaluate", *arguments]) == 0


def test_records_without_the_model_inputs_are_refused(gapfilling_savedmodel, tmp_path):
    meraner = write_records(tmp_path / "meraner", layout_keys(LAYOUTS["meraner"]), n_samples=1, patchsize=64)
    done = subprocess.run(
        [sys.executable, "-m", "decloud.models.model_evaluation", "--savedmodel", str(gapfilling_savedmodel),
         "--test_records", str(meraner)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1
    assert "lacks keys" in done.stderr and "s2_tm1" in done.stderr and str(meraner) in done.stderr
    assert main(["--savedmodel", str(tmp_path / "nothing"), "--test_records", str(meraner)]) == 1


# --- same-date truth: hole pixels only, series baselines ------------------------------------------------


@pytest.fixture(scope="module")
def same_date_series(tmp_path_factory):
    """A 64 x 64 tile: clear dates 1 and 11 May and 1 June, a cloudy date 21 May (cloud on rows 8-23, columns 4-19);
    same-date records at patch (16, 0) of 32 pixels: every clear date is a target."""
    from datetime import UTC, datetime

    from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
    from decloud.testing.regions import Rect
    from decloud.testing.series_records import Scene, write_series_records
    from decloud.testing.theia import make_theia_product

    root = tmp_path_factory.mktemp("same_date")
    for day, clouds in ((1, []), (11, []), (21, [Rect(8, 4, 16, 16)]), (31, [])):
        acquired = datetime(2021, 5 + day // 31, day - 30 if day == 31 else day, 10, 30, tzinfo=UTC)
        raw = make_theia_product(root / "raw", acquired=acquired, shape=(64, 64), clouds=clouds, season=day / 40)
        prepare_s2_product(raw, root / "S2")
    scene = Scene.load(root / "S2" / "T31TEJ")
    assert write_series_records(scene, root / "records", [(0, 0)], 32) == 6
    return root, scene


def test_same_date_records_score_hole_pixels_against_independent_baselines(gapfilling_savedmodel_10m,
                                                                          same_date_series):  # fmt: skip
    root, scene = same_date_series
    report = evaluate(gapfilling_savedmodel_10m, root / "records", s2_root=root / "S2")
    methods = report["outputs"]["s2_estim"]["methods"]
    assert set(methods) == {"model", "gapfilling_series", "gapfilling_model_inputs", "copy_nearest"}
    assert methods["model"]["pixels"] == 6 * 16 * 16  # the 16 x 16 cloud, in each of the 6 samples
    images = scene.images[:, :32, :32].astype(np.float64) / 1e4
    holes = np.zeros((32, 32), bool)
    holes[8:24, 4:20] = True
    days = np.array([1.0, 11.0, 21.0, 32.0])  # 1, 11, 21 May, 1 June
    errors = {"gapfilling_series": [], "copy_nearest": []}
    for target in (0, 1, 3):  # clear dates; each is a target in 2 samples (2 orders of its inputs)
        others = [d for d in (0, 1, 3) if d != target]  # date 2 is cloudy over the holes
        before = [d for d in others if days[d] < days[target]]
        after = [d for d in others if days[d] > days[target]]
        if before and after:
            b, a = before[-1], after[0]
            w = (days[target] - days[b]) / (days[a] - days[b])
            gap = images[b] + w * (images[a] - images[b])
        else:
            gap = images[before[-1] if before else after[0]]
        nearest = min(others, key=lambda d: (abs(days[d] - days[target]), days[d]))
        for name, estimate in (("gapfilling_series", gap), ("copy_nearest", images[nearest])):
            errors[name] += [np.abs(estimate - images[target])[holes]] * 2
    for name, values in errors.items():
        assert methods[name]["overall"]["mae"] == pytest.approx(np.concatenate(values).mean(), abs=2e-5), name
    # the records' inputs are the two other clear dates: the model-input baseline is the series one here
    assert methods["gapfilling_model_inputs"]["overall"] == pytest.approx(methods["gapfilling_series"]["overall"])
    assert report["scored_pixels"].startswith("hole pixels (s2_holes_t)")


def test_records_tell_how_training_showed_the_cloudy_pixels(same_date_series, crga_records):
    from decloud.models.data import cloudy_pixels_of

    assert cloudy_pixels_of(same_date_series[0] / "records") == "nodata"
    assert cloudy_pixels_of(crga_records) == "as_acquired"


@pytest.fixture(scope="module")
def gapfilling_savedmodel_10m(tmp_path_factory):
    model = create_model("gapfilling")
    return export_savedmodel(model.model(), model, tmp_path_factory.mktemp("gapfilling10") / "savedmodel")
