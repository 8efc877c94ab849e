"""Models without training: the registry, the Model contract (keys, scaling, outputs and crops), the
gap-filling baseline, metrics and losses against numpy, and the records check."""

from __future__ import annotations

import sys
import textwrap

import keras
import numpy as np
import pytest

from decloud.core import keys
from decloud.core.constants import S2_NODATA
from decloud.core.errors import InvalidArgumentError
from decloud.core.keys import sample_keys
from decloud.models import metrics
from decloud.models.data import check_records, holes_of, on_holes, required_keys
from decloud.models.gapfilling import interpolate, interpolation_weight
from decloud.models.losses import MaskedL1, MaskedMSE, get_loss
from decloud.models.model import PADS, Crop, Model
from decloud.models.registry import available_models, create_model, import_modules, register
from decloud.sampling.tfrecords import RecordsError
from decloud.testing.records import LAYOUTS, write_records

#: Prepared Sentinel-2 values to reflectance (the data contract).
S2_SCALE = 1e-4
ARCHITECTURES = [
    "crga_os1_unet",
    "crga_os2_david",
    "crga_os2_unet",
    "gapfilling",
    "meraner_original",
    "meraner_unet",
    "monthly_synthesis_6_s2_images",
    "monthly_synthesis_6_s2s1_images",
]


def test_every_architecture_is_registered():
    assert set(ARCHITECTURES) <= set(available_models())


def test_unknown_model_and_bad_parameters_are_named():
    with pytest.raises(InvalidArgumentError, match=r"unknown model 'nope'.*crga_os2_unet"):
        create_model("nope")
    with pytest.raises(InvalidArgumentError, match=r"no parameter \['width'\].*filters"):
        create_model("crga_os2_unet", width=3)
    with pytest.raises(InvalidArgumentError, match="'filters' must be a int"):
        create_model("crga_os2_unet", filters="64")
    with pytest.raises(InvalidArgumentError, match="does not use the DEM"):
        create_model("gapfilling", with_dem=True)


def test_a_users_module_registers_an_architecture(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent(
            """
            from decloud.core import keys
            from decloud.models.model import Model
            from decloud.models.registry import register

            @register("copy_t")
            class CopyT(Model):
                S2_ACQUISITIONS = ("t",)
                DEFAULTS = {"gain": 1.0}

                def get_outputs(self, inputs):
                    return {keys.S2: inputs["s2_t"] * self.params["gain"]}
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import_modules(["my_models"])
    model = create_model("copy_t", gain=2)
    image = np.full((1, 8, 8, 4), 1000.0, np.float32)
    np.testing.assert_allclose(model.model()({"s2_t": image})["s2_estim"], 2 * image, rtol=1e-6)
    with pytest.raises(InvalidArgumentError, match="already taken"):
        register("copy_t")(type("Other", (sys.modules["my_models"].CopyT,), {}))
    with pytest.raises(InvalidArgumentError, match="cannot import model module 'no_such_module'"):
        import_modules(["no_such_module"])


def test_input_keys_and_outputs_follow_the_parameters():
    plain = create_model("crga_os2_unet")
    assert plain.input_keys() == ["s1_tm1", "s1_t", "s1_tp1", "s2_tm1", "s2_t", "s2_tp1"]
    assert plain.target_keys() == {"s2_estim": "s2_target"}
    full = create_model("crga_os2_unet", with_20m_bands=True, with_dem=True)
    assert full.input_keys()[-4:] == ["s2_20m_tm1", "s2_20m_t", "s2_20m_tp1", "dem"]
    assert full.target_keys() == {"s2_estim": "s2_target", "s2_20m_estim": "s2_20m_target"}
    assert full.has_dem() and full.size_multiple == 32
    assert create_model("crga_os2_david").size_multiple == 4
    assert create_model("gapfilling").input_keys() == [
        "s2_tm1",
        "s2_tp1",
        "s2_timestamp_tm1",
        "s2_timestamp_t",
        "s2_timestamp_tp1",
    ]
    assert create_model("monthly_synthesis_6_s2s1_images").input_keys()[:2] == ["s1_d0", "s1_d1"]
    s2_only = create_model("crga_os2_unet", with_s1=False)
    assert s2_only.input_keys() == ["s2_tm1", "s2_t", "s2_tp1"]
    assert set(s2_only.model().inputs[i].name for i in range(3)) == {"s2_tm1", "s2_t", "s2_tp1"}


def test_inputs_are_scaled_by_their_source():
    model = create_model("meraner_original", with_dem=True)
    values = {
        "s1_t": np.full((1, 2, 2, 2), 65535.0),
        "s2_t": np.full((1, 2, 2, 4), 2500.0),
        "dem": np.full((1, 1, 1, 1), 800.0),
    }
    scaled = {name: np.asarray(tensor) for name, tensor in model.normalize_model_inputs(values).items()}
    # The data contract: S1 / 65535, S2 and DEM x 1e-4.
    np.testing.assert_allclose(scaled["s1_t"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(scaled["s2_t"], 0.25, rtol=1e-6)
    np.testing.assert_allclose(scaled["dem"], 0.08, rtol=1e-6)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_outputs_and_crops_have_the_contract_shapes(name):
    params = {} if name == "gapfilling" else {"with_dem": True}
    params |= {"filters": 4, "depth": 2} if "unet" in name or "synthesis" in name else {}
    model = create_model(name, with_20m_bands=True, **params)
    network = model.model()
    size = 64
    rng = np.random.default_rng(0)
    feed = {}
    for tensor in network.inputs:
        scale = keys.spec_of(tensor.name).scale
        shape = (2, *(size // scale if dim is None else dim for dim in tensor.shape[1:]))
        feed[tensor.name] = rng.uniform(0, 3000, shape).astype(tensor.dtype)
    outputs = {key: np.asarray(value) for key, value in network(feed).items()}
    expected = {"s2_estim": (size, 4), "s2_20m_estim": (size // 2, 6)}
    assert set(outputs) == {f"{out}_pad{pad}" for out in expected for pad in PADS} | set(expected)
    for out, (side, bands) in expected.items():
        assert outputs[out].shape == (2, side, side, bands)
        scale = size // side
        for pad in PADS:
            margin = pad // scale
            cropped = outputs[f"{out}_pad{pad}"]
            assert cropped.shape == (2, max(side - 2 * margin, 0), max(side - 2 * margin, 0), bands)
            np.testing.assert_array_equal(cropped, outputs[out][:, margin : side - margin, margin : side - margin])


def test_crop_of_a_small_image_is_empty_not_an_error():
    assert np.asarray(Crop(32)(np.zeros((1, 40, 20, 3), np.float32))).shape == (1, 0, 0, 3)
    assert np.asarray(Crop(4)(np.zeros((1, 10, 12, 3), np.float32))).shape == (1, 2, 4, 3)


def test_gapfilling_interpolates_in_time_and_falls_back_on_the_valid_date():
    before = np.array([[[[0.1, 0.2]], [[0.1, S2_NODATA * S2_SCALE]]]], np.float32)  # (1, 2, 1, 2)
    after = np.array([[[[0.3, S2_NODATA * S2_SCALE]], [[0.5, S2_NODATA * S2_SCALE]]]], np.float32)
    day = 86400.0
    weight = interpolation_weight(np.array([1.6e9]), np.array([1.6e9 + 5 * day]), np.array([1.6e9 + 20 * day]))
    assert np.asarray(weight).shape == (1, 1, 1, 1)
    np.testing.assert_allclose(np.asarray(weight), 0.25)
    result = np.asarray(interpolate(before, after, weight))
    np.testing.assert_allclose(result[0, 0, 0], [0.1 + 0.25 * 0.2, 0.2], rtol=1e-6)
    np.testing.assert_allclose(result[0, 1, 0], [0.1 + 0.25 * 0.4, S2_NODATA * S2_SCALE], rtol=1e-6)
    same = interpolation_weight(np.array([1.6e9]), np.array([1.6e9]), np.array([1.6e9]))
    np.testing.assert_allclose(np.asarray(same), 0.5)


def test_a_residual_crga_adds_its_correction_to_the_clear_pixels_or_the_mean_of_the_neighbouring_dates():
    """With the correction head zeroed, the residual network outputs its baseline: the clear pixels of t, else
    the mean of tm1 and tp1, else the valid one of them, else 0; the head's output adds to it everywhere."""
    network = create_model("crga_os2_unet", filters=4, depth=2, residual=True).model()
    head = network.get_layer("s2_head")
    kernel, bias = head.get_weights()
    feed = {tensor.name: np.full((1, 4, 4, tensor.shape[-1]), 1000.0, np.float32) for tensor in network.inputs}
    feed["s2_t"][:] = S2_NODATA
    feed["s2_t"][0, 0, 0] = 500.0  # a clear pixel of t
    feed["s2_tm1"][:] = 2000.0
    feed["s2_tp1"][:] = 4000.0
    feed["s2_tp1"][0, 1, 1] = S2_NODATA  # tm1 only
    feed["s2_tm1"][0, 2, 2] = S2_NODATA  # tp1 only
    feed["s2_tm1"][0, 3, 3] = feed["s2_tp1"][0, 3, 3] = S2_NODATA  # nothing to start from
    expected = np.full((4, 4, 4), 3000.0)
    expected[0, 0], expected[1, 1], expected[2, 2], expected[3, 3] = 500.0, 2000.0, 4000.0, 0.0
    head.set_weights([np.zeros_like(kernel), np.zeros_like(bias)])
    np.testing.assert_allclose(np.asarray(network(feed)["s2_estim"])[0], expected, atol=1e-3)
    head.set_weights([np.zeros_like(kernel), np.full_like(bias, 0.01)])  # +0.01 reflectance = +100
    np.testing.assert_allclose(np.asarray(network(feed)["s2_estim"])[0], expected + 100.0, atol=1e-2)
    assert create_model("crga_os2_unet").get_config()["residual"] is False


def test_a_time_weighted_residual_crga_starts_from_the_interpolation_in_time_at_each_pixel():
    """With the correction head zeroed, the time-weighted residual network outputs linear gap-filling between
    tm1 and tp1 at the dates its days maps give per pixel: tm1 5 days before and tp1 15 days after weigh tp1
    5 / 20; tm1 20 days before and tp1 5 days after weigh it 20 / 25; equal days give the mean."""
    model = create_model("crga_os2_unet", filters=4, depth=2, residual=True, time_weighted=True)
    assert {"s2_days_tm1", "s2_days_tp1"} <= set(model.input_keys())
    assert {"s2_timestamp_tm1", "s2_timestamp_t", "s2_timestamp_tp1"} <= set(model.record_keys())
    assert "s2_days_tm1" not in model.record_keys()
    network = model.model()
    head = network.get_layer("s2_head")
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.zeros_like(bias)])
    feed = {tensor.name: np.full((1, 4, 4, tensor.shape[-1]), 1000.0, np.float32) for tensor in network.inputs}
    feed["s2_t"][:] = S2_NODATA
    feed["s2_tm1"][:] = 2000.0
    feed["s2_tp1"][:] = 4000.0
    feed["s2_days_tm1"][:], feed["s2_days_tp1"][:] = -5.0, 15.0
    feed["s2_days_tm1"][0, 1, :], feed["s2_days_tp1"][0, 1, :] = -20.0, 5.0
    feed["s2_days_tm1"][0, 2, :], feed["s2_days_tp1"][0, 2, :] = 0.0, 0.0
    expected = np.full((4, 4, 4), 2000.0 + 2000.0 * 5 / 20)
    expected[1], expected[2] = 2000.0 + 2000.0 * 20 / 25, 3000.0
    np.testing.assert_allclose(np.asarray(network(feed)["s2_estim"])[0], expected, atol=1e-2)
    with pytest.raises(InvalidArgumentError, match="residual"):
        create_model("crga_os2_unet", time_weighted=True)


def test_a_time_weighted_crga_sees_what_changed_since_the_clear_dates():
    """The change features of the time-weighted network, at half resolution: S1 at t minus its interpolation in
    time (0.5 vs 0.4 + 0.25 x 0.2 = 0.45 scaled, x 20 = 1.0), the S2 change from tm1 to tp1 (0.2 - 0.1
    reflectance, x 10 = 1.0; 0 where tp1 is no-data), the weight of tp1 (0.25) and the 20 days between the
    clear dates (/ 30)."""
    network = create_model("crga_os2_unet", filters=4, depth=2, residual=True, time_weighted=True).model()
    features = keras.Model(network.inputs, network.get_layer("change_features").output)
    feed = {tensor.name: np.zeros((1, 4, 4, tensor.shape[-1]), np.float32) for tensor in network.inputs}
    feed["s1_t"][:], feed["s1_tm1"][:], feed["s1_tp1"][:] = 0.5 * 65535, 0.4 * 65535, 0.6 * 65535
    feed["s2_tm1"][:], feed["s2_tp1"][:] = 1000.0, 2000.0
    feed["s2_tp1"][0, :2, :2] = S2_NODATA
    feed["s2_days_tm1"][:], feed["s2_days_tp1"][:] = -5.0, 15.0
    result = np.asarray(features(feed))
    assert result.shape == (1, 2, 2, 2 + 4 + 2)
    np.testing.assert_allclose(result[0, ..., :2], 1.0, atol=1e-3)
    np.testing.assert_allclose(result[0, 0, 0, 2:6], 0.0, atol=1e-6)
    np.testing.assert_allclose(result[0, 1, 1, 2:6], 1.0, atol=1e-5)
    np.testing.assert_allclose(result[0, ..., 6], 0.25, atol=1e-6)
    np.testing.assert_allclose(result[0, ..., 7], 20 / 30, atol=1e-6)


def test_the_clear_offset_is_the_mean_difference_of_t_away_from_its_holes_within_the_radius():
    """On a 64 x 64 input (8 x 8 cells of 8 pixels), t is clear over cells (0-3, 0-3) only, at 1600 where the
    interpolation is 1500 (1000 and 2000, 5 days either side). Only cells (0-2, 0-2) are a cell away from the
    holes: the offset is 100 = 0.01 reflectance, x 10 = 0.1, over the cells whose window (radius 24 pixels: 3
    cells) reaches them (cells 0-5), 0 beyond; at cell (0, 0) they are 9 of the 16 cells of its window."""
    network = create_model(
        "crga_os2_unet", filters=4, depth=3, residual=True, time_weighted=True, offset_radius=24
    ).model()
    features = keras.Model(network.inputs, network.get_layer("clear_offset").output)
    feed = {tensor.name: np.zeros((1, 64, 64, tensor.shape[-1]), np.float32) for tensor in network.inputs}
    feed["s2_tm1"][:], feed["s2_tp1"][:] = 1000.0, 2000.0
    feed["s2_days_tm1"][:], feed["s2_days_tp1"][:] = -5.0, 5.0
    feed["s2_t"][:] = S2_NODATA
    feed["s2_t"][0, :32, :32] = 1600.0
    result = np.asarray(features(feed))[0]
    assert result.shape == (32, 32, 4 + 1)  # half resolution: the offset of the 4 bands and the share
    np.testing.assert_allclose(result[0, 0], [0.1, 0.1, 0.1, 0.1, 9 / 16], atol=1e-5)
    np.testing.assert_allclose(result[:22, :22, :4], 0.1, atol=1e-5)  # cells 0 to 5
    np.testing.assert_allclose(result[25:, :, :], 0.0, atol=1e-6)  # cells 6 and 7
    np.testing.assert_allclose(result[:, 25:, :], 0.0, atol=1e-6)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"residual": True, "offset_radius": 16}, "time_weighted"),
        ({"residual": True, "time_weighted": True, "depth": 2, "offset_radius": 16}, "depth must be >= 3"),
        ({"residual": True, "time_weighted": True, "offset_radius": -1}, "integer >= 0"),
        ({"residual": True, "offset_radius": "64"}, "parameter 'offset_radius' must be a int"),
    ],
)
def test_a_clear_offset_needs_the_time_weighted_base_and_cells_the_network_aligns(params, message):
    with pytest.raises(InvalidArgumentError, match=message):
        create_model("crga_os2_unet", **params)


def test_time_weighted_training_samples_get_days_maps_from_their_timestamps():
    """Records carry dates, not days maps: a training pair holds, over the whole patch, the days from t to the
    date of tm1 and of tp1 (here 7.5 days before and 12 days after)."""
    model = create_model("crga_os2_unet", filters=4, depth=2, residual=True, time_weighted=True, with_s1=False)
    day, t = 86400.0, 1.6e9
    sample = {name: np.zeros((1, 8, 8, 4), np.int16) for name in ("s2_tm1", "s2_t", "s2_tp1", "s2_target")}
    sample.update(s2_timestamp_tm1=np.array([t - 7.5 * day]), s2_timestamp_t=np.array([t]))
    sample["s2_timestamp_tp1"] = np.array([t + 12 * day])
    inputs, _ = model.training_pair(sample)
    np.testing.assert_allclose(np.asarray(inputs["s2_days_tm1"]), np.full((1, 8, 8, 1), -7.5))
    np.testing.assert_allclose(np.asarray(inputs["s2_days_tp1"]), np.full((1, 8, 8, 1), 12.0))


def test_a_loss_on_the_holes_counts_the_holes_and_a_margin_around_them_only():
    """One hole pixel at (3, 4) with a margin of 1: the 3 x 3 pixels around it keep their target, every other pixel
    becomes no-data (which the losses skip); the 20 m target keeps the 2 x 2 blocks that overlap them."""
    holes = np.zeros((1, 8, 8, 1), np.uint8)
    holes[0, 3, 4] = 1
    targets = {"s2_estim": np.full((1, 8, 8, 4), 500.0, np.float32), "s2_20m_estim": np.full((1, 4, 4, 6), 700.0)}
    focused = {name: np.asarray(value) for name, value in on_holes(targets, holes, 1).items()}
    kept = np.zeros((8, 8), bool)
    kept[2:5, 3:6] = True
    np.testing.assert_array_equal(focused["s2_estim"][0, ..., 0], np.where(kept, 500.0, S2_NODATA))
    kept_20m = np.zeros((4, 4), bool)
    kept_20m[1:3, 1:3] = True
    np.testing.assert_array_equal(focused["s2_20m_estim"][0, ..., 5], np.where(kept_20m, 700.0, S2_NODATA))
    alone = np.asarray(on_holes(targets, holes, 0)["s2_estim"])[0, ..., 0]
    assert (alone != S2_NODATA).sum() == 1 and alone[3, 4] == 500.0


def test_a_loss_on_the_holes_needs_records_with_holes(tmp_path):
    write_records(tmp_path / "plain", sample_keys(LAYOUTS["crga_os2"]), n_samples=1, patchsize=32)
    with pytest.raises(RecordsError, match="same-date truth"):
        holes_of(tmp_path / "plain")


def _pair(seed=0, shape=(2, 16, 16, 4)):
    rng = np.random.default_rng(seed)
    target = rng.uniform(100, 3000, shape).astype(np.float32)
    target[0, :3] = S2_NODATA
    estimate = target + rng.normal(0, 80, shape).astype(np.float32)
    estimate[0, :3] = 99999.0  # wild values where the target is no-data must not count
    return target, estimate


def test_metrics_and_losses_count_only_valid_target_pixels():
    target, estimate = _pair()
    valid = target != S2_NODATA
    error = (estimate - target) * S2_SCALE
    for kind, expected in {"mae": np.abs(error)[valid].mean(), "mse": np.square(error)[valid].mean()}.items():
        metric = metrics.MaskedImageMetric(kind)
        metric.update_state(target[:1], estimate[:1])
        metric.update_state(target[1:], estimate[1:])
        np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-4)
    per_image_mse = [np.square(error[i][valid[i]]).mean() for i in range(2)]
    psnr = metrics.MaskedImageMetric("psnr")
    psnr.update_state(target, estimate)
    np.testing.assert_allclose(float(psnr.result()), np.mean([10 * np.log10(1 / m) for m in per_image_mse]), rtol=1e-4)
    reference, predicted = target * S2_SCALE, estimate * S2_SCALE
    cosine = (reference * predicted).sum(-1) / np.linalg.norm(reference, axis=-1) / np.linalg.norm(predicted, axis=-1)
    pixels = valid.all(-1)
    sam = metrics.MaskedImageMetric("sam")
    sam.update_state(target, estimate)
    np.testing.assert_allclose(
        float(sam.result()), np.degrees(np.arccos(np.clip(cosine[pixels], -1, 1))).mean(), rtol=1e-3
    )
    per_sample_l1 = [np.abs(error[i][valid[i]]).mean() for i in range(2)]
    np.testing.assert_allclose(float(MaskedL1()(target, estimate)), np.mean(per_sample_l1), rtol=1e-4)
    per_sample_l2 = [np.square(error[i][valid[i]]).mean() for i in range(2)]
    np.testing.assert_allclose(float(MaskedMSE()(target, estimate)), np.mean(per_sample_l2), rtol=1e-4)
    with pytest.raises(InvalidArgumentError, match="unknown loss"):
        get_loss("l3")


def test_ssim_is_one_for_identical_images_and_ignores_nodata_pixels():
    target, estimate = _pair(shape=(2, 32, 32, 4))
    identical = np.where(target == S2_NODATA, 5000.0, target)  # differs only where the target is no-data
    ssim = metrics.MaskedImageMetric("ssim")
    ssim.update_state(target, identical)
    np.testing.assert_allclose(float(ssim.result()), 1.0, rtol=1e-5)
    noisy = metrics.MaskedImageMetric("ssim")
    noisy.update_state(target, estimate)
    assert 0.0 < float(noisy.result()) < 0.999


def test_records_are_checked_against_the_model(tmp_path):
    model = create_model("crga_os2_unet", depth=2)
    write_records(tmp_path / "ok", sample_keys(LAYOUTS["crga_os2"]), n_samples=2, patchsize=32)
    assert check_records(tmp_path / "ok", model) == 32
    assert set(required_keys(model)) <= set(sample_keys(LAYOUTS["crga_os2"]))
    write_records(tmp_path / "os1", sample_keys(LAYOUTS["crga_os1"]), n_samples=1, patchsize=32)
    with pytest.raises(RecordsError, match=r"missing keys \['s1_tp1', 's2_tp1'\]"):
        check_records(tmp_path / "os1", model)
    with pytest.raises(RecordsError, match="not a multiple of 64"):
        check_records(tmp_path / "ok", create_model("crga_os2_unet", depth=6))
    bad = {name: np.zeros((32, 32, 4), np.int16) for name in required_keys(model)}
    bad["s1_t"] = np.zeros((32, 32, 3), np.uint16)
    from decloud.sampling.tfrecords import RecordsWriter

    with RecordsWriter(tmp_path / "bad", 1) as writer:
        writer.write(bad)
    with pytest.raises(
        RecordsError, match=r"'s1_tm1' is int16.*'s1_t' is uint16 \[32, 32, 3\] instead of uint16 \[32, 32, 2\]"
    ):
        check_records(tmp_path / "bad", model)


def test_a_model_without_get_outputs_cannot_be_instantiated():
    with pytest.raises(TypeError):
        Model()
