"""Wald degradation, bicubic upsampling and the frequency-domain scores, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
import tensorflow as tf

from decloud.superres.degradation import degrade, mtf_sigma
from decloud.superres.frequency import frequency_scores, radial_profile, referenceless_frr, write_profiles_png
from decloud.superres.upsampling import upsample

# --- frequency scores on hand-built profiles ----------------------------------------------------------
INPUT = np.array([4.0, 2.0, 1.0, 0.5])
TARGET = np.array([4.0, 3.0, 2.0, 1.0])


def test_prediction_equal_to_target_restores_everything():
    scores = frequency_scores(INPUT, TARGET, TARGET)
    assert scores.frr == pytest.approx(100.0)
    assert scores.fro == 0.0
    assert scores.fru == 0.0


def test_prediction_equal_to_input_restores_nothing_and_loses_nothing():
    scores = frequency_scores(INPUT, INPUT, TARGET)
    assert scores.frr == 0.0
    assert scores.fru == 0.0
    assert scores.fro == 0.0


def test_partial_restoration_over_and_undershoot_by_hand():
    # missing = [0, 1, 1, 0.5] (2.5); restored = [0, 0.5, 1, 0] (1.5) -> 60 %
    # above target: ring 2 by 0.5 -> 0.5 / 10 = 5 %; below input: ring 3 by 0.25 -> 0.25 / 7.5
    prediction = np.array([4.0, 2.5, 2.5, 0.25])
    scores = frequency_scores(INPUT, prediction, TARGET)
    assert scores.frr == pytest.approx(60.0)
    assert scores.fro == pytest.approx(5.0)
    assert scores.fru == pytest.approx(100 * 0.25 / 7.5)


def test_referenceless_frr_by_hand():
    assert referenceless_frr([2.0, 2.0], [2.0, 3.0]) == pytest.approx(25.0)
    assert referenceless_frr(INPUT, INPUT) == 0.0


def test_high_frequency_noise_over_restores_and_a_perfect_prediction_restores_all():
    rng = np.random.default_rng(0)
    target = tf.image.resize(rng.uniform(0, 1, (1, 16, 16, 3)), (64, 64), "bicubic").numpy()
    low = upsample(degrade(target, 2).numpy(), 2)
    noisy = target + rng.normal(0, 0.05, target.shape)
    profiles = [radial_profile(image) for image in (low, noisy, target)]
    assert frequency_scores(*profiles).fro > 0
    perfect = frequency_scores(profiles[0], profiles[2], profiles[2])
    assert perfect.frr == pytest.approx(100.0) and perfect.fro == 0.0


def test_radial_profile_of_a_cosine_peaks_in_its_ring():
    size, cycles, bins = 64, 8, 32
    rows = np.arange(size)[:, None] * np.ones((1, size))
    image = 3.0 + np.cos(2 * np.pi * cycles * rows / size)  # frequency 8/64 = 0.125 = Nyquist / 4
    profile = radial_profile(image, bins)
    ring = int(0.125 / 0.5 * bins)  # ring 8
    assert np.argmax(profile) == ring
    assert np.delete(profile, ring).max() < 1e-12
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    in_ring = ((frequency / 0.5 * bins).astype(int) == ring).sum()
    assert profile[ring] == pytest.approx(2 * 0.5 / in_ring)  # two peaks of amplitude 1/2, mean over the ring


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_profiles_png(tmp_path):
    path = tmp_path / "profiles.png"
    write_profiles_png({"input": INPUT, "prediction": TARGET}, path, size=64)
    with rasterio.open(path) as png:
        pixels = png.read()
    assert pixels.shape == (3, 64, 64)
    assert (pixels == 0).any() and (pixels == 255).any()


# --- Wald degradation ------------------------------------------------------------------------------------


def test_mtf_sigma_by_hand():
    assert mtf_sigma(2, 0.3) == pytest.approx(2 * math.sqrt(-2 * math.log(0.3)) / math.pi)
    assert mtf_sigma(2, 0.3) == pytest.approx(0.98788, abs=1e-4)
    assert mtf_sigma(4, 0.3) == pytest.approx(2 * mtf_sigma(2, 0.3))


@pytest.mark.parametrize("factor", [2, 4])
def test_degradation_keeps_the_mtf_at_the_coarse_nyquist_frequency(factor):
    """A cosine at the coarse grid's Nyquist frequency, peaking at the block centres, comes out with the
    amplitude of the MTF (0.3): the Gaussian was chosen for that."""
    size = 16 * factor
    centre = (factor - 1) / 2
    rows = np.arange(size) - centre
    wave = np.cos(np.pi * rows / factor)[None, :, None, None] * np.ones((1, size, size, 1))
    coarse = degrade(wave, factor).numpy()
    inner = coarse[0, 4:-4, 4:-4, 0]
    assert np.abs(inner) == pytest.approx(np.full_like(inner, 0.3), abs=0.015)


def test_degradation_is_centred_on_each_block_and_keeps_constants():
    assert degrade(np.full((1, 8, 8, 2), 7.0), 2).numpy() == pytest.approx(np.full((1, 4, 4, 2), 7.0))
    first, second = np.zeros((1, 16, 16, 1)), np.zeros((1, 16, 16, 1))
    first[0, 8, 8], second[0, 9, 9] = 1.0, 1.0  # opposite corners of the block (4, 4)
    a, b = degrade(first, 2).numpy()[0, ..., 0], degrade(second, 2).numpy()[0, ..., 0]
    assert np.unravel_index(np.argmax(a), a.shape) == (4, 4)
    assert a[4, 4] == pytest.approx(b[4, 4])
    assert a[3, 3] == pytest.approx(b[5, 5])  # mirror images about the block's centre


# --- bicubic upsampling --------------------------------------------------------------------------------


def _keys(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x <= 1, 1.5 * x**3 - 2.5 * x**2 + 1, np.where(x < 2, -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2, 0))


@pytest.mark.parametrize("factor", [2, 4])
def test_cubic_upsampling_matches_the_keys_formula_with_repeated_edges(factor):
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (7, 5))
    fine = upsample(image[None, :, :, None], factor)[0, :, :, 0]
    expected = np.zeros((7 * factor, 5 * factor))
    for i in range(7 * factor):
        for j in range(5 * factor):
            u, v = (i + 0.5) / factor - 0.5, (j + 0.5) / factor - 0.5
            for r in range(int(np.floor(u)) - 1, int(np.floor(u)) + 3):
                for c in range(int(np.floor(v)) - 1, int(np.floor(v)) + 3):
                    weight = _keys(u - r) * _keys(v - c)
                    expected[i, j] += weight * image[min(max(r, 0), 6), min(max(c, 0), 4)]
    assert fine == pytest.approx(expected, abs=1e-5)


def test_cubic_upsampling_agrees_with_tensorflow_bicubic_away_from_borders():
    image = np.random.default_rng(2).uniform(0, 1, (1, 12, 12, 3)).astype(np.float32)
    ours = upsample(image, 2)
    theirs = tf.image.resize(image, (24, 24), "bicubic").numpy()
    assert ours[:, 6:-6, 6:-6] == pytest.approx(theirs[:, 6:-6, 6:-6], abs=1e-5)
