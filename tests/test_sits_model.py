"""The time-series encoder's objective and metric against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from decloud.sits.barlow import barlow_twins_loss, cross_correlation, effective_rank


def test_barlow_twins_loss_of_a_hand_computed_2x2_example():
    # Columns standardised over the 2 samples: first (-1, 1) and (1, -1), second (-1, 1) and (-1, 1).
    first = np.array([[1.0, 5.0], [3.0, 1.0]], np.float32)
    second = np.array([[0.0, 0.0], [2.0, 2.0]], np.float32)
    np.testing.assert_allclose(np.asarray(cross_correlation(first, second)), [[1, 1], [-1, -1]], atol=1e-6)
    # diagonal (1, -1): (1 - 1)^2 + (1 + 1)^2 = 4; off-diagonal 1^2 + (-1)^2 = 2
    assert float(barlow_twins_loss(first, second, 0.005)) == pytest.approx(4.0 + 0.005 * 2, abs=1e-5)


def test_barlow_twins_loss_of_a_hand_computed_3x3_example():
    # Every column is a permutation of (0, 1, 2), standardised to a permutation of (-a, 0, a), a^2 = 3/2;
    # C_ij is the dot product of the two permutations divided by 3.
    first = np.array([[0, 2, 1], [1, 1, 0], [2, 0, 2]], np.float32)
    second = np.array([[0, 0, 2], [1, 2, 0], [2, 1, 1]], np.float32)
    expected = [[1, 0.5, -0.5], [-1, -0.5, 0.5], [0.5, -0.5, 0.5]]
    np.testing.assert_allclose(np.asarray(cross_correlation(first, second)), expected, atol=1e-6)
    # diagonal (1, -0.5, 0.5): 0 + 2.25 + 0.25 = 2.5; off-diagonal squares: 0.25 * 5 + 1 = 2.25
    assert float(barlow_twins_loss(first, second, 0.1)) == pytest.approx(2.5 + 0.1 * 2.25, abs=1e-5)


def test_identical_decorrelated_views_have_zero_loss():
    views = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float32)
    assert float(barlow_twins_loss(views, views, 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_effective_rank_of_identity_and_rank_one_matrices():
    assert effective_rank(np.eye(6)) == pytest.approx(6.0)
    assert effective_rank(np.outer([1.0, 2.0, 3.0, 4.0], [1.0, -1.0, 0.5])) == pytest.approx(1.0)
    # singular values (3, 1): p = (3/4, 1/4)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(np.diag([3.0, 1.0])) == pytest.approx(expected)
    assert effective_rank(np.zeros((3, 3))) == 0.0


# --- views, encoders, pretraining --------------------------------------------------------------------------

from pathlib import Path  # noqa: E402

from decloud.sits.encoder import build_encoder  # noqa: E402
from decloud.sits.pretrain import PretrainConfig, load_encoder, pretrain, view_pairs  # noqa: E402
from decloud.sits.store import SeriesStore, import_npy  # noqa: E402
from decloud.sits.views import sample_view, sample_views  # noqa: E402
from decloud.testing.series import write_series_npy  # noqa: E402

BANDS = ("B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12")


def test_a_view_is_a_sorted_subset_of_distinct_valid_dates():
    values = np.arange(6 * 2, dtype=np.int16).reshape(6, 2)
    doys = np.array([10, 20, 30, 40, 50, 60])
    valid = np.array([1, 0, 1, 1, 0, 1], bool)
    for seed in range(20):
        view = sample_view(values, doys, valid, 3, np.random.default_rng(seed))
        assert view.mask.tolist() == [True, True, True]
        assert len(set(view.doys)) == 3 and set(view.doys) <= {10, 30, 40, 60}
        assert list(view.doys) == sorted(view.doys)
        np.testing.assert_array_equal(view.values, values[(view.doys.astype(int) // 10) - 1])


def test_a_series_shorter_than_the_view_is_padded_and_masked():
    values = np.arange(6 * 2, dtype=np.int16).reshape(6, 2) + 1
    valid = np.array([1, 0, 1, 1, 0, 1], bool)
    view = sample_view(values, np.arange(1, 7) * 10, valid, 6, np.random.default_rng(0))
    assert view.mask.tolist() == [True, True, True, True, False, False]
    np.testing.assert_array_equal(view.doys, [10, 30, 40, 60, 0, 0])
    np.testing.assert_array_equal(view.values, [[1, 2], [5, 6], [7, 8], [11, 12], [0, 0], [0, 0]])


def test_brightness_jitter_multiplies_a_whole_view_by_one_factor():
    values = np.arange(1, 1 + 3 * 5 * 2, dtype=np.int16).reshape(3, 5, 2) * 100
    valid = np.ones((3, 5), bool)
    views = sample_views(values, np.arange(5) * 10, valid, 5, np.random.default_rng(0), brightness=0.1)
    ratios = views.values / values  # all dates are drawn, in order
    assert np.allclose(ratios, ratios[:, :1, :1], rtol=1e-6)  # one factor per pixel and view
    assert np.ptp(ratios[:, 0, 0]) > 0.01 and np.all(np.abs(ratios[:, 0, 0] - 1) < 0.5)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    folder = write_series_npy(tmp_path_factory.mktemp("npy") / "processed")
    return import_npy(folder, folder.parent / "small.zarr", tile="T31TEJ", bands=BANDS, nodata=-10000)


def test_training_samples_trace_back_to_their_tile_pixel(small_store):
    store = SeriesStore(small_store)
    values, valid = store.read("s2")
    config = PretrainConfig(store=small_store, out_dir=Path("unused"), view_length=4, brightness=0.0)
    for inputs, trace in view_pairs(store, config).take(50):
        row, col = int(trace["row"]), int(trace["col"])
        assert trace["tile"].numpy() == b"T31TEJ"
        assert not (row < 5 and col < 5)  # a single valid date: not a sample
        for view in (inputs["first"], inputs["second"]):
            assert view["mask"].numpy().all()
            dates = [int(np.flatnonzero(store.sources["s2"].doys == doy)[0]) for doy in view["doys"].numpy()]
            assert valid[dates, row, col].all()
            np.testing.assert_array_equal(view["values"].numpy(), values[dates, row, col])


@pytest.mark.parametrize("backbone", ["mlp", "transformer", "cnn"])
def test_padding_does_not_change_the_representation(backbone):
    encoder = build_encoder(backbone, bands=10, band_mean=[1000.0] * 10, band_std=[500.0] * 10, dim=8, depth=1, heads=2)
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 5000, (2, 3, 10)).astype(np.float32)
    doys = np.array([[10, 50, 200], [30, 31, 400]], np.float32)
    short = encoder.predict({"values": values, "doys": doys, "mask": np.ones((2, 3), np.float32)}, verbose=0)
    padded_values = np.concatenate([values, rng.uniform(0, 9000, (2, 2, 10)).astype(np.float32)], axis=1)
    padded = {
        "values": padded_values,
        "doys": np.concatenate([doys, [[500, 9], [77, 1]]], axis=1).astype(np.float32),
        "mask": np.array([[1, 1, 1, 0, 0]] * 2, np.float32),
    }
    np.testing.assert_allclose(encoder.predict(padded, verbose=0), short, atol=1e-5)
    other = {"values": values, "doys": doys + 100, "mask": np.ones((2, 3), np.float32)}
    assert np.abs(encoder.predict(other, verbose=0) - short).max() > 1e-3  # the day numbers matter


def test_day_number_encoding_of_hand_computed_days():
    from decloud.sits.encoder import DayOfYearEncoding

    # dim 4: periods 16 and 1000 days; columns sin(2 pi d / 16), sin(2 pi d / 1000), cos(...), cos(...)
    encoded = np.asarray(DayOfYearEncoding(4)(np.array([[4.0, 250.0]], np.float32)))
    expected = [[[1.0, math.sin(math.pi / 125), 0.0, math.cos(math.pi / 125)], [math.sin(math.pi * 31.25), 1.0, 0, 0]]]
    expected[0][1][2] = math.cos(math.pi * 31.25)
    np.testing.assert_allclose(encoded, expected, atol=1e-5)


@pytest.mark.parametrize("backbone", ["mlp", "transformer", "cnn"])
def test_masked_dates_inside_a_series_are_ignored(backbone):
    # What the maps feed: every date of the store, invalid ones masked wherever they fall.
    encoder = build_encoder(backbone, bands=10, band_mean=[1000.0] * 10, band_std=[500.0] * 10, dim=8, depth=2, heads=2)
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 5000, (1, 4, 10)).astype(np.float32)
    doys = np.array([[20, 90, 150, 300]], np.float32)
    compact = encoder.predict({"values": values, "doys": doys, "mask": np.ones((1, 4), np.float32)}, verbose=0)
    spread = {
        "values": np.insert(values, [0, 2, 2, 4], rng.uniform(0, 9000, (4, 10)).astype(np.float32), axis=1),
        "doys": np.insert(doys, [0, 2, 2, 4], [5, 100, 120, 330], axis=1),
        "mask": np.array([[0, 1, 1, 0, 0, 1, 1, 0]], np.float32),
    }
    np.testing.assert_allclose(encoder.predict(spread, verbose=0), compact, atol=1e-5)


def test_the_cnn_backbone_gives_one_vector_per_series_and_depends_on_the_order_of_dates():
    encoder = build_encoder("cnn", bands=10, band_mean=[1000.0] * 10, band_std=[500.0] * 10, dim=12, depth=2)
    rng = np.random.default_rng(4)
    values = rng.uniform(0, 5000, (3, 6, 10)).astype(np.float32)
    doys = np.tile(np.array([10, 40, 80, 120, 200, 260], np.float32), (3, 1))
    inputs = {"values": values, "doys": doys, "mask": np.ones((3, 6), np.float32)}
    assert encoder.predict(inputs, verbose=0).shape == (3, 12)
    # Convolutions see neighbours: swapping two observations' values (day numbers kept) changes the output,
    # where a mean of per-observation features of the same (value, day) pairs would not move for a swap of pairs.
    swapped = dict(inputs, values=values[:, [1, 0, 2, 3, 4, 5]], doys=doys[:, [1, 0, 2, 3, 4, 5]])
    assert np.abs(encoder.predict(swapped, verbose=0) - encoder.predict(inputs, verbose=0)).max() > 1e-4


def test_a_saved_cnn_encoder_loads_back_and_gives_the_same_representations(tmp_path):
    from decloud.sits.pretrain import save_encoder

    encoder = build_encoder("cnn", bands=10, band_mean=[1000.0] * 10, band_std=[500.0] * 10, dim=8, depth=2)
    save_encoder(encoder, {"source": "s2"}, tmp_path / "cnn")
    loaded, metadata = load_encoder(tmp_path / "cnn")
    inputs = {
        "values": np.random.default_rng(5).uniform(0, 5000, (2, 5, 10)).astype(np.float32),
        "doys": np.tile(np.array([10, 40, 80, 120, 200], np.float32), (2, 1)),
        "mask": np.array([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]], np.float32),
    }
    assert metadata == {"source": "s2"}
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0), encoder.predict(inputs, verbose=0), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["single", "mirrored"])
def test_pretraining_lowers_the_loss_logs_the_effective_rank_and_saves_the_encoder(small_store, tmp_path, strategy):
    config = PretrainConfig(
        strategy=strategy,
        store=small_store,
        out_dir=tmp_path / "encoder",
        backbone="mlp",
        dim=8,
        depth=1,
        projector=16,
        view_length=4,
        batch=64,
        epochs=3,
        steps_per_epoch=8,
        logdir=tmp_path / "logs",
    )
    result = pretrain(config)
    assert len(result.loss) == 3 and result.loss[-1] < result.loss[0]
    assert len(result.effective_rank) == 4 and all(1.0 <= value <= 8.0 for value in result.effective_rank)
    encoder, metadata = load_encoder(tmp_path / "encoder")
    assert metadata["bands"] == list(BANDS) and metadata["max_length"] == 4
    probe = {
        "values": np.full((1, 2, 10), 1500, np.float32),
        "doys": np.array([[100, 200]], np.float32),
        "mask": np.ones((1, 2), np.float32),
    }
    np.testing.assert_allclose(encoder.predict(probe, verbose=0), result.encoder.predict(probe, verbose=0), atol=1e-6)
    assert any((tmp_path / "logs").rglob("*tfevents*"))


def test_pretraining_a_missing_store_is_one_error_line(tmp_path, capsys):
    from decloud.cli import main as decloud_main

    status = decloud_main(["sits-pretrain", "--store", str(tmp_path / "none.zarr"), "--out", str(tmp_path / "e")])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(error) == 1 and "none.zarr" in error[0]
    assert not (tmp_path / "e").exists()


def test_pretraining_never_replaces_an_existing_folder(small_store, tmp_path, capsys):
    from decloud.cli import main as decloud_main

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's notes")
    assert decloud_main(["sits-pretrain", "--store", str(small_store), "--out", str(tmp_path / "mine")]) == 1
    assert (tmp_path / "mine" / "notes.txt").read_text() == "a user's notes"
    assert "exists" in capsys.readouterr().err


# --- fine-tuning losses and learning-rate schedule ------------------------------------------------------------

from decloud.sits.losses import SparseFocalLoss  # noqa: E402
from decloud.sits.schedule import warmup_cosine  # noqa: E402


def test_focal_loss_against_a_hand_computed_value():
    # logits (0, ln 3): probabilities (1/4, 3/4).
    # true class 1: p = 3/4, (1/4)^2 * -ln(3/4) = 0.0179801; true class 0: p = 1/4, (3/4)^2 * ln 4 = 0.7797905
    logits = np.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)]], np.float32)
    loss = SparseFocalLoss(gamma=2.0)
    assert float(loss(np.array([1]), logits[:1])) == pytest.approx(0.0179801, abs=1e-6)
    assert float(loss(np.array([1, 0]), logits)) == pytest.approx((0.0179801 + 0.7797905) / 2, abs=1e-6)


def test_focal_loss_with_gamma_0_is_the_cross_entropy():
    logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0], [-2.0, 1.0, 1.0]], np.float32)
    labels = np.array([0, 1, 2])
    # independent numpy cross-entropy: log-sum-exp minus the true logit
    expected = np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(3), labels])
    assert float(SparseFocalLoss(gamma=0.0)(labels, logits)) == pytest.approx(expected, abs=1e-6)


def test_warmup_cosine_schedule_at_chosen_steps():
    schedule = warmup_cosine(1e-3, total_steps=110, warmup_share=10 / 110)  # 10 warm-up steps, 100 of decay
    expected = {0: 0.0, 5: 5e-4, 10: 1e-3, 60: 5e-4, 35: 1e-3 * (1 + math.cos(math.pi / 4)) / 2, 110: 0.0, 200: 0.0}
    for step, rate in expected.items():
        assert float(schedule(step)) == pytest.approx(rate, abs=1e-9), step
    assert float(warmup_cosine(2e-3, total_steps=10, warmup_share=0.0)(0)) == pytest.approx(2e-3)
