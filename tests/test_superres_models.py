"""Super-resolution architectures: registry, Wald training pairs, bicubic baselines, and ``decloud train`` /
``decloud evaluate`` on generated records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from decloud.cli import main as decloud_main
from decloud.core.keys import sample_keys
from decloud.models.export import export_savedmodel
from decloud.models.registry import available_models, create_model
from decloud.superres.degradation import degrade
from decloud.superres.upsampling import upsample
from decloud.testing.records import LAYOUTS, write_records

SMALL = '{"filters": 8, "blocks": 1, "units": 1, "groups": 2}'


def test_the_four_architectures_are_registered():
    assert {"superres_carn", "superres_bicubic", "sharpen_carn", "sharpen_bicubic"} <= set(available_models())


def _sample():
    rng = np.random.default_rng(0)
    return {
        "s2_t": rng.integers(0, 4000, (2, 64, 64, 4)).astype(np.int16),
        "s2_20m_t": rng.integers(0, 4000, (2, 32, 32, 6)).astype(np.int16),
    }


@pytest.mark.parametrize("factor", [2, 4])
def test_wald_pairs_of_the_upsampler(factor):
    sample = _sample()
    inputs, targets = create_model("superres_carn", factor=factor).training_pair(sample)
    assert np.array_equal(inputs["s2_t"], degrade(sample["s2_t"], factor))
    assert np.array_equal(inputs["s2_20m_t"], degrade(sample["s2_20m_t"], factor))
    assert inputs["s2_t"].shape == (2, 64 // factor, 64 // factor, 4)
    assert np.array_equal(targets["s2_estim"], sample["s2_t"].astype(np.float32))
    assert np.allclose(targets["s2_20m_estim"], upsample(sample["s2_20m_t"], 2))


def test_wald_pairs_of_the_sharpener():
    sample = _sample()
    inputs, targets = create_model("sharpen_carn").training_pair(sample)
    assert inputs["s2_t"].shape == (2, 32, 32, 4) and inputs["s2_20m_t"].shape == (2, 16, 16, 6)
    assert np.array_equal(targets["s2_20m_estim"], sample["s2_20m_t"].astype(np.float32))


def test_bicubic_baselines_are_the_bicubic_layer():
    sample = {name: value.astype(np.float32) for name, value in _sample().items()}
    x4 = create_model("superres_bicubic", factor=4).model()(sample)
    stack = np.concatenate([sample["s2_t"], upsample(sample["s2_20m_t"], 2)], axis=-1)
    expected = upsample(stack, 4)
    assert np.allclose(np.concatenate([x4["s2_estim"], x4["s2_20m_estim"]], -1), expected, atol=0.05)
    sharpened = create_model("sharpen_bicubic").model()(sample)["s2_20m_estim"]
    assert np.allclose(sharpened, upsample(sample["s2_20m_t"], 2), atol=0.05)


def test_an_untrained_carn_starts_near_bicubic_and_is_not_it():
    sample = {name: value.astype(np.float32) for name, value in _sample().items()}
    carn = create_model("sharpen_carn").model()(sample)["s2_20m_estim"]
    difference = np.abs(np.asarray(carn) - upsample(sample["s2_20m_t"], 2))
    assert 0 < difference.mean() < 100  # 1 % of reflectance


def test_the_sharpener_adds_detail_relative_to_each_bands_brightness():
    """A brighter guide (snow: visible bands 5 times brighter) leaves the sharpened bands as they are, and bands
    3 times brighter come out 3 times brighter: the detail added is relative to the local levels."""
    model = create_model("sharpen_carn", filters=8, blocks=1, units=1)
    network = model.model()
    rng = np.random.default_rng(1)
    for weight in network.weights:  # far from the bicubic start, so the residual shows
        if weight.path.endswith("residual/kernel"):
            weight.assign(rng.normal(0, 0.05, weight.shape))
    sample = {name: value.astype(np.float32) + 500 for name, value in _sample().items()}  # levels above 1 %

    def sharpened(guide_gain: float, gain: float) -> np.ndarray:
        feed = {"s2_t": sample["s2_t"] * guide_gain * gain, "s2_20m_t": sample["s2_20m_t"] * gain}
        return np.asarray(network(feed)["s2_20m_estim"], dtype=np.float64)

    reference = sharpened(1, 1)
    assert np.abs(reference - upsample(sample["s2_20m_t"], 2)).mean() > 10  # the network adds detail
    assert np.allclose(sharpened(5, 1), reference, rtol=1e-4, atol=0.05)
    assert np.allclose(sharpened(1, 3), 3 * reference, rtol=1e-4, atol=0.1)


def test_factor_must_be_2_or_4():
    with pytest.raises(Exception, match="factor 3 is not supported"):
        create_model("superres_carn", factor=3)


def test_train_and_evaluate_with_the_usual_commands(tmp_path, capsys):
    names = sample_keys(LAYOUTS["superres"], with_20m_bands=True)
    train = write_records(tmp_path / "train", names, n_samples=4, patchsize=64)
    test = write_records(tmp_path / "test", names, n_samples=3, patchsize=64, seed=5)
    args = ["train", "--training_record", train, "--model", "sharpen_carn", "--model_params", SMALL, "-bt", "2",
            "-e", "1", "--out_savedmodel", tmp_path / "sharpen"]  # fmt: skip
    assert decloud_main([str(arg) for arg in args]) == 0
    description = json.loads((tmp_path / "sharpen" / "decloud_model.json").read_text())
    assert [(o["name"], o["pixel_size_m"]) for o in description["outputs"]] == [("s2_20m_estim", 10.0)]
    output = tmp_path / "metrics.json"
    args = ["evaluate", "--savedmodel", tmp_path / "sharpen", "--test_records", test, "--output", output]
    assert decloud_main([str(arg) for arg in args]) == 0
    report = json.loads(output.read_text())
    assert report["samples"] == 3
    result = report["outputs"]["s2_20m_estim"]
    assert result["bands"] == ["B5", "B6", "B7", "B8A", "B11", "B12"]
    assert set(result["methods"]) == {"model", "bicubic"}
    assert "| B11 |" in capsys.readouterr().out


def test_the_bicubic_baseline_scores_zero_gain_and_restores_nothing(tmp_path):
    from decloud.superres.evaluation import evaluate_superres

    names = sample_keys(LAYOUTS["superres"], with_20m_bands=True)
    test = write_records(tmp_path / "test", names, n_samples=3, patchsize=64)
    model = create_model("superres_bicubic")
    export_savedmodel(model.model(), model, tmp_path / "bicubic")
    report = evaluate_superres(tmp_path / "bicubic", test)
    for output in report["outputs"].values():
        ours, theirs = (output["methods"][name]["overall"] for name in ("model", "bicubic"))
        assert ours["psnr"] == pytest.approx(theirs["psnr"], abs=1e-3)
        assert 20 < theirs["psnr"] < 60
        assert theirs["psnr"] == pytest.approx(-20 * np.log10(theirs["rmse"]))  # from the pooled MSE
        assert output["frequency"]["overall"]["frr"] == pytest.approx(0.0, abs=1e-6)
        assert output["frequency"]["overall"]["fru"] == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize(
    ("name", "params", "multiple", "radius"),
    [
        # One 20 m pixel (a 2 x 2 block of 10 m pixels) reaches the 10 m outputs up to 3 pixels beyond it: the
        # cubic kernel spans 2 input pixels, i.e. 10 m outputs 2j - 3 .. 2j + 4.
        ("sharpen_bicubic", {}, 2, 3),
        # One 10 m pixel k reaches the 2.5 m outputs 4k - 6 .. 4k + 9: 1.5 10 m pixels beyond it, rounded up.
        ("superres_bicubic", {"factor": 4, "with_20m_bands": False}, 1, 2),
    ],
)
def test_export_measures_the_tiling_at_the_output_pixel_size(tmp_path, name, params, multiple, radius):
    model = create_model(name, **params)
    export_savedmodel(model.model(), model, tmp_path / name)
    description = json.loads((tmp_path / name / "decloud_model.json").read_text())
    assert description["size_multiple"] == multiple
    assert description["receptive_field"] == {"radius_10m_pixels": radius, "at_least": False}
    assert description["tiling"]["cropped_outputs"] == []  # super-resolution models have no cropped copies
