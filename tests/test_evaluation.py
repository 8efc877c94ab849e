"""Evaluation of a SavedModel against the baselines: copy of the nearest date (known answers), the scores
of a model and of both baselines against numpy computations of them, the report and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from decloud.cli import main as decloud_main
from decloud.core.constants import S2_BANDS_10M, S2_BANDS_20M, S2_NODATA
from decloud.core.keys import sample_keys
from decloud.models.export import export_savedmodel
from decloud.models.model_evaluation import main
from decloud.models.record_scoring import copy_nearest_date, evaluate
from decloud.models.registry import create_model
from decloud.sampling.tfrecords import RecordsWriter
from decloud.testing.records import LAYOUTS, plausible_sample, write_records

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
    names = sample_keys(LAYOUTS["crga_os2"], with_20m_bands=True)
    return write_records(root / "test", names, n_samples=5, patchsize=64)


@pytest.fixture(scope="module")
def gapfilling_savedmodel(tmp_path_factory):
    model = create_model("gapfilling", with_20m_bands=True)
    return export_savedmodel(model.model(), model, tmp_path_factory.mktemp("gapfilling") / "savedmodel")


#: Days of tm1, t (the cloudy image, 10 minutes after the target) and tp1 from the target: tm1 is the nearest.
OFFSETS_DAYS = {"tm1": -4.0, "t": 600 / DAY, "tp1": 12.0, "target": 0.0}
#: The "model" under evaluation: a fixed blend of tm1 and tp1 (prepared units), no-data included.
BLEND = (0.75, 0.25)


def skewed_samples(n_samples: int) -> list[dict[str, np.ndarray]]:
    """CRGA OS2 samples with uneven dates around the target and no-data holes in tm1 and tp1 (disjoint)."""
    names = sample_keys(LAYOUTS["crga_os2"], with_20m_bands=True)
    samples = []
    for index in range(n_samples):
        sample = plausible_sample(names, 64, index, seed=3)
        reference = float(sample["s2_timestamp_target"])
        for acquisition, days in OFFSETS_DAYS.items():
            sample[f"s2_timestamp_{acquisition}"] = np.float64(reference + days * DAY)
        for source, size in (("s2", 64), ("s2_20m", 32)):
            sample[f"{source}_tm1"][: size // 4, size // 2 :] = N  # a corner of tm1 is no-data
            sample[f"{source}_tp1"][size // 2 :, : size // 4] = N  # another of tp1
        samples.append(sample)
    return samples


def blend_savedmodel(path):
    """A SavedModel outside decloud's models: s2_estim = 0.75 s2_tm1 + 0.25 s2_tp1 (and the same at 20 m)."""
    import keras

    inputs, outputs = {}, {}
    for source, channels in (("s2", 4), ("s2_20m", 6)):
        before = inputs[f"{source}_tm1"] = keras.Input((None, None, channels), name=f"{source}_tm1")
        after = inputs[f"{source}_tp1"] = keras.Input((None, None, channels), name=f"{source}_tp1")
        scaled = [keras.layers.Rescaling(weight)(image) for weight, image in zip(BLEND, (before, after), strict=True)]
        outputs[f"{source}_estim"] = keras.layers.Add()(scaled)
    keras.Model(inputs, outputs).export(str(path), verbose=False)
    return path


def scores(samples, source: str, estimate) -> dict[str, float]:
    """MAE, MSE (pooled over every value whose target is valid) and that count, in reflectance (x 1e-4)."""
    errors = []
    for sample in samples:
        target = sample[f"{source}_target"].astype(np.float64)
        valid = target != N
        errors.append((estimate(sample, source).astype(np.float64)[valid] - target[valid]) * 1e-4)
    errors = np.concatenate(errors)
    return {"mae": np.abs(errors).mean(), "mse": np.square(errors).mean(), "valid_pixels": errors.size}


def blend(sample, source):
    return BLEND[0] * sample[f"{source}_tm1"].astype(np.float64) + BLEND[1] * sample[f"{source}_tp1"]


def nearest_valid(sample, source):
    """tm1 (4 days away) where valid, else tp1 (12 days): the cloudy image of the target's day is never copied."""
    return np.where(sample[f"{source}_tm1"] == N, sample[f"{source}_tp1"], sample[f"{source}_tm1"])


def linear_in_time(sample, source):
    """Independent gap-filling: interpolate at t's date; copy the valid date where the other is no-data."""
    before, after = (sample[f"{source}_{name}"].astype(np.float64) for name in ("tm1", "tp1"))
    stamps = {name: float(sample[f"s2_timestamp_{name}"]) for name in ("tm1", "t", "tp1")}
    weight = (stamps["t"] - stamps["tm1"]) / (stamps["tp1"] - stamps["tm1"])
    blended = before + weight * (after - before)
    return np.where(before == N, after, np.where(after == N, before, blended))


def test_the_model_and_the_baselines_score_as_numpy_computes_them(tmp_path):
    samples = skewed_samples(5)
    with RecordsWriter(tmp_path / "test", 2) as writer:
        for sample in samples:
            writer.write(sample)
    report = evaluate(blend_savedmodel(tmp_path / "blend"), tmp_path / "test", batch_size=2)
    assert report["samples"] == 5
    assert set(report["outputs"]) == {"s2_estim", "s2_20m_estim"}
    # the generated targets are no-data in their upper-left 1/8 x 1/8 corner: 5 x (64² - 8²) x 4 bands at 10 m
    counted = {"s2_estim": 5 * (64 * 64 - 8 * 8) * 4, "s2_20m_estim": 5 * (32 * 32 - 4 * 4) * 6}
    for output, source, bands in (("s2_estim", "s2", S2_BANDS_10M), ("s2_20m_estim", "s2_20m", S2_BANDS_20M)):
        methods = report["outputs"][output]["methods"]
        assert set(methods) == {"model", "gapfilling_model_inputs", "copy_nearest"}
        assert list(methods["model"]["per_band"]) == list(bands)
        expected = {
            "model": scores(samples, source, blend),
            "gapfilling_model_inputs": scores(samples, source, linear_in_time),
            "copy_nearest": scores(samples, source, nearest_valid),
        }
        for method, values in expected.items():
            overall = methods[method]["overall"]
            assert methods[method]["pixels"] * len(bands) == values["valid_pixels"] == counted[output]
            assert overall["mae"] == pytest.approx(values["mae"], rel=1e-5), (output, method)
            assert overall["rmse"] ** 2 == pytest.approx(values["mse"], rel=1e-5), (output, method)
        # three different answers: the check above tells them apart
        maes = [expected[method]["mae"] for method in expected]
        assert min(abs(a - b) for i, a in enumerate(maes) for b in maes[i + 1 :]) > 1e-3


def test_command_line_prints_and_writes_the_report(gapfilling_savedmodel, crga_records, tmp_path, capsys):
    output = tmp_path / "metrics.json"
    arguments = ["--savedmodel", str(gapfilling_savedmodel), "--test_records", str(crga_records)]
    assert main([*arguments, "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "s2_estim vs s2_target (5 samples" in printed and "copy_nearest" in printed
    written = json.loads(output.read_text())
    expected = json.loads(json.dumps(evaluate(gapfilling_savedmodel, crga_records)))
    assert written == {**expected, "decloud_version": "0.1.0"}
    assert decloud_main(["evaluate", *arguments]) == 0
    # a report already written is shown again, not recomputed; the user's own JSON is never replaced
    inode = output.stat().st_ino
    assert main([*arguments, "--output", str(output)]) == 0 and output.stat().st_ino == inode
    assert "s2_estim vs s2_target (5 samples; scored: every valid target pixel" in capsys.readouterr().out
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "notes"}')
    assert main([*arguments, "--output", str(mine), "--overwrite"]) == 1
    assert f"{mine} exists and was not written complete by decloud" in capsys.readouterr().err
    assert mine.read_text() == '{"my": "notes"}'


def test_records_without_the_model_inputs_are_refused(gapfilling_savedmodel, tmp_path):
    meraner = write_records(tmp_path / "meraner", sample_keys(LAYOUTS["meraner"]), n_samples=1, patchsize=64)
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
        raw = make_theia_product(root / "raw", acquired=acquired, shape=(64, 64), clouds=clouds, seed=day)
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
