"""Scores of reconstructed GeoTIFFs against a truth GeoTIFF under a mask (``decloud assess``), so that users
score their own runs the way the project scores its models (:mod:`decloud.models.scores`).

The rasters are read window by window with a halo (the SSIM window's radius), so a whole Sentinel-2 tile never
sits in memory and the figures equal those of the whole image at once. Every method is scored on the same
pixels: mask non-zero, truth and every prediction valid (no band at no-data).
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from decloud.core.errors import InvalidArgumentError
from decloud.core.raster import block_windows, open_raster, read_window, require_same_grid
from decloud.models.scores import SSIM_RADIUS, HoleScores, scorable, seam_sums

#: Extra pixels read around each window: the SSIM window's radius (also covers the seam's one neighbour).
HALO = SSIM_RADIUS
WINDOW_SIZE = 512


def _with_halo(window: Window, height: int, width: int) -> tuple[Window, tuple[slice, slice]]:
    """The window grown by HALO (clipped to the raster) and the slices of the original window inside it."""
    row0, col0 = max(0, window.row_off - HALO), max(0, window.col_off - HALO)
    row1 = min(height, window.row_off + window.height + HALO)
    col1 = min(width, window.col_off + window.width + HALO)
    inner = (
        slice(window.row_off - row0, window.row_off - row0 + window.height),
        slice(window.col_off - col0, window.col_off - col0 + window.width),
    )
    return Window(col0, row0, col1 - col0, row1 - row0), inner


def method_names(predictions: list[Path]) -> list[str]:
    """Each prediction's name in the report: its file stem, or its path when stems collide."""
    stems = [path.stem for path in predictions]
    return stems if len(set(stems)) == len(stems) else [str(path) for path in predictions]


def assess_rasters(
    predictions: list[str | os.PathLike[str]],
    truth: str | os.PathLike[str],
    mask: str | os.PathLike[str],
    window_size: int = WINDOW_SIZE,
) -> dict[str, Any]:
    """Scores of every prediction on the mask's pixels, with the seam figure of each and of the truth."""
    predictions = [Path(path) for path in predictions]
    if not predictions:
        raise InvalidArgumentError("give at least one --prediction raster")
    names = method_names(predictions)
    with ExitStack() as stack:
        truth_dataset = stack.enter_context(open_raster(truth))
        mask_dataset = stack.enter_context(open_raster(mask))
        estimates = [stack.enter_context(open_raster(path)) for path in predictions]
        require_same_grid([truth_dataset, mask_dataset, *estimates])
        for dataset in estimates:
            if dataset.count != truth_dataset.count:
                raise InvalidArgumentError(
                    f"{dataset.name} has {dataset.count} bands, the truth {truth} has {truth_dataset.count}"
                )
        bands = [d or str(i + 1) for i, d in enumerate(truth_dataset.descriptions)]
        scores = {name: HoleScores(bands) for name in names}
        seams = {name: [0.0, 0] for name in [*names, "truth"]}
        height, width = truth_dataset.height, truth_dataset.width
        for window in block_windows(height, width, window_size):
            grown, inner = _with_halo(window, height, width)
            core = np.zeros((grown.height, grown.width), dtype=bool)
            core[inner] = True
            reference = np.moveaxis(read_window(truth_dataset, grown), 0, -1)
            holes = read_window(mask_dataset, grown, 1) != 0
            images = [np.moveaxis(read_window(d, grown), 0, -1) for d in estimates]
            estimated = scorable(reference, holes, images)
            scored = estimated & core
            for name, image in zip([*names, "truth"], [*images, reference], strict=True):
                total, pairs = seam_sums(image, holes, core)
                seams[name][0] += total
                seams[name][1] += pairs
            for name, image in zip(names, images, strict=True):
                scores[name].update(reference, image, scored, estimated)
    pixels = scores[names[0]].pixels
    if not pixels:
        raise InvalidArgumentError(f"no pixel to score: the mask {mask} marks no pixel where the truth and every "
                                   "prediction are valid")  # fmt: skip
    methods = {
        name: {**scores[name].results(), "prediction": str(path)} for name, path in zip(names, predictions, strict=True)
    }
    seam = {name: (total / pairs if pairs else None) for name, (total, pairs) in seams.items()}
    return {
        "truth": str(truth),
        "mask": str(mask),
        "pixels": pixels,
        "methods": methods,
        "seam_gradient": seam,
    }
