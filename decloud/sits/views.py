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


def sample_views(
    values: np.ndarray,
    doys: np.ndarray,
    valid: np.ndarray,
    length: int,
    rng: np.random.Generator,
    noise: np.ndarray | None = None,
    brightness: float = 0.0,
) -> View:
    """One view of each of N pixels (values (N, T, C), day numbers (T,), validity (N, T)), at once: per pixel,
    ``length`` distinct valid dates drawn at random (all of them, then padding, when it has fewer), sorted by
    date. ``brightness`` is the relative standard deviation of a factor multiplying all values of a view (the
    same illumination change on every band and date: a field is no other field for being brighter); ``noise``
    (C,) is the standard deviation of a Gaussian jitter then added to each chosen value."""
    count, dates = valid.shape
    keys = np.where(valid, rng.random((count, dates)), 2.0)  # invalid dates sort last, never chosen
    chosen = np.argsort(keys, axis=1)[:, :length]
    if chosen.shape[1] < length:
        chosen = np.pad(chosen, ((0, 0), (0, length - chosen.shape[1])), constant_values=dates - 1)
    mask = np.take_along_axis(valid, chosen, axis=1)
    if chosen.shape[1] > dates:
        mask[:, dates:] = False
    chosen = np.sort(np.where(mask, chosen, dates), axis=1)  # by date, padding last
    mask = chosen < dates
    chosen = np.minimum(chosen, dates - 1)
    out_values = np.take_along_axis(values, chosen[..., np.newaxis], axis=1).astype(np.float32)
    if brightness > 0:
        out_values *= (1 + brightness * rng.standard_normal((count, 1, 1))).astype(np.float32)
    if noise is not None:
        out_values += rng.normal(size=out_values.shape).astype(np.float32) * noise
    out_values[~mask] = 0
    return View(out_values, np.where(mask, doys[chosen], 0).astype(np.float32), mask)


def sample_view(
    values: np.ndarray,
    doys: np.ndarray,
    valid: np.ndarray,
    length: int,
    rng: np.random.Generator,
    noise: np.ndarray | None = None,
) -> View:
    """A view of one pixel's series (values (T, C), day numbers (T,), validity (T,)): see :func:`sample_views`."""
    views = sample_views(values[np.newaxis], doys, valid[np.newaxis], length, rng, noise)
    return View(views.values[0], views.doys[0], views.mask[0])


def full_view(values: np.ndarray, doys: np.ndarray, valid: np.ndarray) -> View:
    """All observations of pixels (…, T, C) with their validity as the mask (what the maps encode)."""
    shape = valid.shape
    return View(values.astype(np.float32), np.broadcast_to(doys, shape).astype(np.float32), valid.astype(bool))
