"""Views of a pixel's time series: random subsets of its valid observations, of a fixed length.

Two views of the same pixel are two independent draws; Barlow Twins learns what they share. A view holds
``length`` observations sorted by date (values, day numbers) and a mask that is 1 on real observations.

Documented behaviour for short series: a pixel with at least ``length`` valid dates gets ``length`` distinct
ones; a pixel with fewer gets all of its valid dates followed by padding (mask 0, values 0), which the
encoders ignore; a pixel with fewer than :data:`MIN_VALID_DATES` valid dates is not a training sample (its two
views could not differ), but it is still encoded by the maps (no valid date at all: no-data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Fewest valid dates a pixel needs to be a training sample.
MIN_VALID_DATES = 2


@dataclass(frozen=True)
class View:
    """``length`` observations of a pixel: values (length, C) float32, day numbers (length,), mask (length,)."""

    values: np.ndarray
    doys: np.ndarray
    mask: np.ndarray


def sample_view(
    values: np.ndarray,
    doys: np.ndarray,
    valid: np.ndarray,
    length: int,
    rng: np.random.Generator,
    noise: np.ndarray | None = None,
) -> View:
    """A view of one pixel's series (values (T, C), day numbers (T,), validity (T,)). ``noise`` (C,) is the
    standard deviation of a Gaussian jitter added to the values of the chosen observations."""
    dates = np.flatnonzero(valid)
    if len(dates) > length:
        dates = np.sort(rng.choice(dates, size=length, replace=False))
    count = len(dates)
    out_values = np.zeros((length, values.shape[-1]), np.float32)
    out_doys = np.zeros(length, np.float32)
    mask = np.zeros(length, bool)
    out_values[:count] = values[dates]
    if noise is not None and count:
        out_values[:count] += rng.normal(size=(count, values.shape[-1])).astype(np.float32) * noise
    out_doys[:count] = doys[dates]
    mask[:count] = True
    return View(out_values, out_doys, mask)


def full_view(values: np.ndarray, doys: np.ndarray, valid: np.ndarray) -> View:
    """All observations of pixels (…, T, C) with their validity as the mask (what the maps encode)."""
    shape = valid.shape
    return View(values.astype(np.float32), np.broadcast_to(doys, shape).astype(np.float32), valid.astype(bool))
