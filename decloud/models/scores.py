"""Scores of reconstructed images where users look: on the hole pixels (the pixels a method had to produce)
only, against same-date truth, in reflectance (prepared value x S2_MODEL_SCALE). Pure numpy, so that scoring
GeoTIFFs (``decloud assess``) does not wait for TensorFlow.

- MAE and RMSE pool every scored value of every image;
- PSNR is computed from that pooled MSE (data range 1), never as a mean of per-image PSNRs, so that it ranks
  methods as the MSE does;
- SSIM is the mean, over the scored pixels, of the local SSIM map (Gaussian window of sigma 1.5, 11 pixels
  wide, as Wang et al. 2004), computed per band on the estimate composited into the truth outside the holes
  (what ``--keep_clear`` writes): it measures the holes in their context, whatever a method wrote elsewhere;
- SAM is the mean spectral angle (degrees) over the scored pixels.

The seam figure (:func:`seam_gradient`) is the mean absolute difference between 4-neighbour pixels on either
side of the holes' boundary: an output whose seam figure is far above the truth's shows the holes' outline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from decloud.core.constants import S2_MODEL_SCALE, S2_NODATA

#: PSNR peak value, in reflectance.
PSNR_DATA_RANGE = 1.0
#: Floor of the MSE in PSNR, so a perfect estimate gives 100 dB instead of infinity.
MIN_MSE = 1e-10
#: SSIM: Gaussian window (sigma, and truncation in sigmas giving an 11-pixel window) and stabilising constants.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
#: Radius of that window (scipy's rounding of truncate x sigma): an SSIM value depends on the pixels this close.
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
SSIM_K1, SSIM_K2 = 0.01, 0.03
#: The figures of a score, in their printed order.
SCORE_NAMES = ("mae", "rmse", "psnr", "ssim", "sam_degrees")


def psnr(mse: float) -> float:
    """PSNR (dB) of a pooled MSE in reflectance, for a peak of PSNR_DATA_RANGE."""
    return float(10.0 * np.log10(PSNR_DATA_RANGE**2 / max(mse, MIN_MSE)))


def ssim_map(truth: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Local SSIM of each pixel and band, (rows, cols, bands), of two reflectance images (rows, cols, bands)."""

    def blur(image: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(image, sigma=(SSIM_SIGMA, SSIM_SIGMA, 0), truncate=SSIM_TRUNCATE, mode="reflect")

    c1, c2 = (SSIM_K1 * PSNR_DATA_RANGE) ** 2, (SSIM_K2 * PSNR_DATA_RANGE) ** 2
    mu_x, mu_y = blur(truth), blur(estimate)
    var_x = blur(truth * truth) - mu_x**2
    var_y = blur(estimate * estimate) - mu_y**2
    cov = blur(truth * estimate) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def around(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Slices of the smallest box holding every True pixel of ``mask`` (rows, cols; at least one) and ``margin``
    pixels around them, clipped to the image."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (
        slice(max(0, rows[0] - margin), min(mask.shape[0], rows[-1] + 1 + margin)),
        slice(max(0, cols[0] - margin), min(mask.shape[1], cols[-1] + 1 + margin)),
    )


def spectral_angles(truth: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Angle (degrees) between the spectra of each pixel, (n, bands) -> (n,); 0 where either spectrum is null."""
    norms = np.linalg.norm(truth, axis=-1) * np.linalg.norm(estimate, axis=-1)
    cosine = np.sum(truth * estimate, axis=-1) / np.where(norms > 0, norms, 1.0)
    return np.where(norms > 0, np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))), 0.0)


def scorable(truth: np.ndarray, holes: np.ndarray, estimates: Sequence[np.ndarray]) -> np.ndarray:
    """The hole pixels where the truth and every estimate are valid (no band at S2_NODATA): the pixels on which
    methods are compared (all of them on the same pixels)."""
    mask = holes & (truth != S2_NODATA).all(axis=-1)
    for estimate in estimates:
        mask &= (estimate != S2_NODATA).all(axis=-1)
    return mask


class HoleScores:
    """Running scores of one method over images (prepared values, (rows, cols, bands)) and their scored pixels."""

    def __init__(self, bands: Sequence[str]) -> None:
        self.bands = list(bands)
        zeros = np.zeros(len(self.bands))
        self.abs, self.sq, self.ssim = zeros.copy(), zeros.copy(), zeros.copy()
        self.pixels = 0
        self.sam = 0.0

    def update(
        self, truth: np.ndarray, estimate: np.ndarray, scored: np.ndarray, estimated: np.ndarray | None = None
    ) -> None:
        """Add an image: ``truth`` and ``estimate`` (rows, cols, bands) in prepared units, ``scored`` (rows, cols)
        the pixels to score (hole pixels where both are valid, see :func:`scorable`), ``estimated`` the pixels
        taken from the estimate in the SSIM composite (default ``scored``; a window read with a halo gives its
        halo's hole pixels too, so that its SSIM equals the whole image's)."""
        if truth.shape != estimate.shape or truth.shape[:2] != scored.shape or truth.shape[-1] != len(self.bands):
            raise ValueError(
                f"truth {truth.shape}, estimate {estimate.shape} and mask {scored.shape} do not match "
                f"({len(self.bands)} bands)"
            )
        if not scored.any():
            return
        reference = truth.astype(np.float64) * S2_MODEL_SCALE
        estimated = scored if estimated is None else estimated | scored
        composite = np.where(estimated[..., np.newaxis], estimate.astype(np.float64) * S2_MODEL_SCALE, reference)
        error = composite[scored] - reference[scored]
        self.abs += np.abs(error).sum(axis=0)
        self.sq += np.square(error).sum(axis=0)
        # the SSIM map over the scored pixels' box only (its values there need nothing farther than SSIM_RADIUS,
        # and where the box meets the image's edge it is reflected as the whole image's): the same sums, faster
        box = around(scored, SSIM_RADIUS)
        self.ssim += ssim_map(reference[box], composite[box])[scored[box]].sum(axis=0)
        self.sam += float(spectral_angles(reference[scored], composite[scored]).sum())
        self.pixels += int(scored.sum())

    def results(self) -> dict[str, Any]:
        """Overall and per-band scores (None when no pixel was scored) and the number of scored pixels."""
        if not self.pixels:
            return {"overall": dict.fromkeys(SCORE_NAMES), "per_band": {}, "pixels": 0}
        n = self.pixels
        mse = self.sq.sum() / (n * len(self.bands))
        overall = {
            "mae": float(self.abs.sum() / (n * len(self.bands))),
            "rmse": float(np.sqrt(mse)),
            "psnr": psnr(mse),
            "ssim": float(self.ssim.sum() / (n * len(self.bands))),
            "sam_degrees": self.sam / n,
        }
        per_band = {
            band: {
                "mae": float(self.abs[i] / n),
                "rmse": float(np.sqrt(self.sq[i] / n)),
                "psnr": psnr(self.sq[i] / n),
                "ssim": float(self.ssim[i] / n),
            }
            for i, band in enumerate(self.bands)
        }
        return {"overall": overall, "per_band": per_band, "pixels": n}


def seam_sums(image: np.ndarray, holes: np.ndarray, counted: np.ndarray | None = None) -> tuple[float, int]:
    """(sum of absolute differences, number of pairs) of the 4-neighbour pixel pairs, both valid, one inside
    and one outside ``holes``; the differences are in reflectance, averaged over bands. ``counted`` (rows, cols)
    keeps the pairs whose upper or left pixel it marks (so that windows read with a halo count each pair once)."""
    values = image.astype(np.float64) * S2_MODEL_SCALE
    valid = (image != S2_NODATA).all(axis=-1)
    counted = np.ones(holes.shape, dtype=bool) if counted is None else counted
    total, pairs = 0.0, 0
    for a, b in (((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                 ((slice(None), slice(None, -1)), (slice(None), slice(1, None)))):  # fmt: skip
        across = (holes[a] != holes[b]) & valid[a] & valid[b] & counted[a]
        total += float(np.abs(values[a][across] - values[b][across]).mean(axis=-1).sum())
        pairs += int(across.sum())
    return total, pairs


def seam_gradient(image: np.ndarray, holes: np.ndarray) -> float | None:
    """Mean absolute gradient across the boundary of ``holes`` (see :func:`seam_sums`); None without boundary."""
    total, pairs = seam_sums(image, holes)
    return total / pairs if pairs else None


def format_scores(methods: dict[str, dict[str, Any]], title: str) -> str:
    """One row per method: its overall scores and scored pixels."""
    lines = [title, f"  {'method':<28}" + "".join(f"{name:>12}" for name in (*SCORE_NAMES, "pixels"))]
    for method, results in methods.items():
        values = [results["overall"][name] for name in SCORE_NAMES]
        cells = "".join(f"{'-':>12}" if v is None else f"{v:12.5g}" for v in values)
        lines.append(f"  {method:<28}{cells}{results['pixels']:>12}")
    return "\n".join(lines)
