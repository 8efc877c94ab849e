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
        assert set(methods) == {"model", "gapfilling", "copy_nearest_date"}
        assert list(methods["model"]["per_band"]) == list(bands)
        for metric, value in methods["model"]["overall"].items():
            assert value == pytest.approx(methods["gapfilling"]["overall"][metric], rel=1e-6), metric
        # copying the nearest date (tm1 and tp1 are 10 days away) is not interpolating between them
        assert methods["copy_nearest_date"]["overall"]["mae"] != methods["gapfilling"]["overall"]["mae"]
        assert methods["model"]["overall"]["valid_pixels"] < 5 * 64 * 64 * len(bands)  # target no-data left out


def test_command_line_prints_and_writes_the_report(gapfilling_savedmodel, crga_records, tmp_path, capsys):
    output = tmp_path / "metrics.json"
    arguments = ["--savedmodel", str(gapfilling_savedmodel), "--test_records", str(crga_records)]
    assert main([*arguments, "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "s2_estim vs s2_target (5 samples)" in printed and "copy_nearest_date" in printed
    written = json.loads(output.read_text())
    expected = json.loads(json.dumps(evaluate(gapfilling_savedmodel, crga_records)))
    assert written == {**expected, "decloud_version": "0.1.0"}
    assert decloud_main(["evaluate", *arguments]) == 0
    # a report already written is shown again, not recomputed; the user's own JSON is never replaced
    inode = output.stat().st_ino
    assert main([*arguments, "--output", str(output)]) == 0 and output.stat().st_ino == inode
    assert "s2_estim vs s2_target (5 samples)" in capsys.readouterr().out
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "notes"}')
    assert main([*arguments, "--output", str(mine), "--overwrite"]) == 1
    assert f"{mine} exists and was not written complete by decloud" in capsys.readouterr().err
    assert mine.read_text() == '{"my": "notes"}'


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
