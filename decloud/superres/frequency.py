"""Frequency-domain analysis of super-resolved images: radial (ring-averaged) amplitude spectra and the
frequency restoration ratios of Michel, Kalinicheva and Inglada (2024), written from their definitions.

All three images (the input upsampled to the output grid, the prediction, the target) are compared on
the same grid. A profile holds, for ``bins`` rings of normalised spatial frequency between 0 and the grid's
Nyquist frequency (0.5 cycle per pixel), the mean FFT amplitude of the mean-removed images (averaged over
images and bands). With profiles ``I`` (input), ``P`` (prediction) and ``T`` (target), summed over rings:

- **FRR** (frequency restoration ratio): of the content missing from the input, ``max(T - I, 0)``, the share
  the prediction restores, ``min(max(P - I, 0), max(T - I, 0))``, in %. 100 % when P = T, 0 when P = I.
- **FRO** (over-restoration): the amplitude the prediction adds above the target, ``max(P - T, 0)``, in % of
  the target's, ``T``.
- **FRU** (undershoot): the amplitude the prediction loses below the input, ``max(I - P, 0)``, in % of the
  input's, ``I``.
- **referenceless FRR**, for outputs with no reference (real 5 m products): the amplitude the prediction
  adds to the input's, ``P - I``, in % of the input's, ``I``.

Only rings above ``low_frequency`` (a fraction of Nyquist, 0 by default) count, so that a user can leave out
the low frequencies every method keeps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from decloud.superres.drawing import plot_lines

#: Rings of the profiles between frequency 0 and Nyquist.
PROFILE_BINS = 32


def radial_profile(images: np.ndarray, bins: int = PROFILE_BINS) -> np.ndarray:
    """Mean FFT amplitude per ring of normalised frequency (0 to Nyquist, ``bins`` rings) of images
    (batch, rows, cols, bands) or (rows, cols), each image and band mean-removed, averaged over all."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 2:
        images = images[np.newaxis, :, :, np.newaxis]
    rows, cols = images.shape[1:3]
    centred = images - images.mean(axis=(1, 2), keepdims=True)
    amplitude = np.abs(np.fft.fft2(centred, axes=(1, 2))).mean(axis=(0, 3)) / (rows * cols)
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(rows), np.fft.fftfreq(cols), indexing="ij"))
    ring = np.minimum((frequency / 0.5 * bins).astype(int), bins)  # ring `bins` holds the corners, beyond Nyquist
    sums = np.bincount(ring.ravel(), amplitude.ravel(), minlength=bins + 1)[:bins]
    counts = np.bincount(ring.ravel(), minlength=bins + 1)[:bins]
    return sums / np.maximum(counts, 1)


def ring_frequencies(bins: int = PROFILE_BINS) -> np.ndarray:
    """Centre of each ring, as a fraction of the Nyquist frequency."""
    return (np.arange(bins) + 0.5) / bins


@dataclass(frozen=True)
class FrequencyScores:
    frr: float  #: % of the missing content restored
    fro: float  #: % of the target's amplitude added above it
    fru: float  #: % of the input's amplitude lost below it


def _selected(profile: np.ndarray, low_frequency: float) -> np.ndarray:
    return np.asarray(profile, dtype=np.float64)[ring_frequencies(len(profile)) >= low_frequency]


def frequency_scores(
    input_profile: Any, prediction_profile: Any, target_profile: Any, low_frequency: float = 0.0
) -> FrequencyScores:
    """FRR, FRO, FRU (%) from the three profiles (see the module's definitions)."""
    i, p, t = (_selected(profile, low_frequency) for profile in (input_profile, prediction_profile, target_profile))
    missing = np.maximum(t - i, 0.0)
    restored = np.minimum(np.maximum(p - i, 0.0), missing)
    return FrequencyScores(
        frr=_percent(restored.sum(), missing.sum()),
        fro=_percent(np.maximum(p - t, 0.0).sum(), t.sum()),
        fru=_percent(np.maximum(i - p, 0.0).sum(), i.sum()),
    )


def referenceless_frr(input_profile: Any, prediction_profile: Any, low_frequency: float = 0.0) -> float:
    """Amplitude the prediction adds to the input, in % of the input's (no reference needed)."""
    i, p = (_selected(profile, low_frequency) for profile in (input_profile, prediction_profile))
    return _percent((p - i).sum(), i.sum())


def _percent(part: float, whole: float) -> float:
    return float(100.0 * part / whole) if whole > 0 else 0.0


def write_profiles_png(profiles: dict[str, np.ndarray], path: str | os.PathLike[str], size: int = 320) -> None:
    """A plot of the profiles (log amplitude against frequency, from the second ring to Nyquist: the first
    holds little but the removed mean) as a PNG, one colour per profile, in the order given: grey, blue,
    orange, green, with their names (no plotting library: drawn with numpy and Pillow)."""
    plot_lines({name: np.log10(np.maximum(profile[1:], 1e-12)) for name, profile in profiles.items()}, path, size)
