"""How good the demo's reconstruction is: the model's estimate of the cloudy pixels of every reconstructed date
compared with the generator's cloud-free truth, side by side with the baselines a user would try first, computed
per pixel over the whole series of prepared products (:mod:`decloud.models.series_baselines`):

- ``gapfilling_series``: linear interpolation in time between the nearest clear date before and the nearest clear
  date after (the one clear date where only one side has any);
- ``copy_nearest``: the value of the clear date nearest in time (earlier first on a tie).

Only pixels that are cloudy (CLM) and not no-data (EDG) in the input, and that every method estimates, count.
Scores come from :class:`decloud.models.scores.HoleScores` (reflectance; PSNR from the pooled MSE), over the
whole tile and over the test ROI alone (patches never trained on). The seam figure is the mean absolute gradient
across the cloud masks' boundaries in the reconstruction and in the truth (within each WINDOW_SIZE window).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

from decloud.core.constants import PATCH_SIZE, S2_BANDS_10M, S2_NODATA, S2_SUFFIX_EDG
from decloud.core.patches import patch_window
from decloud.core.products import S2Product
from decloud.core.raster import block_windows, open_raster, read_window
from decloud.models.scores import HoleScores, scorable, seam_sums
from decloud.models.series_baselines import copy_nearest, gap_fill

METHODS = ("model", "gapfilling_series", "copy_nearest")
#: Rows of the printed table: the tile's methods and the records' model-inputs baseline.
TABLE_METHODS = ("model", "gapfilling_series", "gapfilling_model_inputs", "copy_nearest")
SCOPES = ("tile_cloudy_pixels", "test_area_cloudy_pixels")
#: Window of the assessment: every date of the series is read at once over it, so it bounds the memory.
WINDOW_SIZE = 512


@dataclass(frozen=True)
class Reconstruction:
    """A reconstructed date: its prepared input product, its estimate and its cloud-free truth."""

    product: S2Product
    estimate: Path
    truth: Path


@dataclass
class _Series:
    """The open rasters of the prepared series: 10 m bands, cloud and no-data masks of every date."""

    bands: list[DatasetReader]
    clouds: list[DatasetReader]
    edges: list[DatasetReader]

    @classmethod
    def open(cls, stack: ExitStack, products: list[S2Product]) -> _Series:
        def each(paths):
            return [stack.enter_context(open_raster(path)) for path in paths]

        return cls(
            each(p.bands_10m for p in products),
            each(p.cloud_mask for p in products),
            each(p.file(S2_SUFFIX_EDG) for p in products),
        )

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values (n, rows, cols, bands), clear and valid (n, rows, cols), cloudy and valid (n, rows, cols))."""
        values = np.stack([np.moveaxis(read_window(d, window), 0, -1) for d in self.bands])
        cloudy = np.stack([read_window(d, window, 1) != 0 for d in self.clouds])
        nodata = np.stack([read_window(d, window, 1) != 0 for d in self.edges]) | (values == S2_NODATA).any(axis=-1)
        return values, ~cloudy & ~nodata, cloudy & ~nodata


def _area_mask(roi: np.ndarray, window: Window) -> np.ndarray:
    """The 10 m pixels of ``window`` inside the patches marked in the patch-grid raster ``roi``."""
    patches = roi[patch_window(window).toslices()]
    return np.kron(patches, np.ones((PATCH_SIZE, PATCH_SIZE), dtype=bool))[: window.height, : window.width]


def assess(series: list[S2Product], reconstructions: list[Reconstruction], test_roi: Path) -> dict[str, Any]:
    """Metrics of the model and the baselines on the cloudy pixels of ``reconstructions``, over the tile and
    over the test ROI, and the number of cloudy pixels scored on each date."""
    accumulators = {scope: {method: HoleScores(S2_BANDS_10M) for method in METHODS} for scope in SCOPES}
    seams = {name: [0.0, 0] for name in ("model", "truth")}
    counts = {r.product.name: 0 for r in reconstructions}
    times = np.array([p.acquired.timestamp() for p in series])
    names = [p.name for p in series]
    with open_raster(test_roi) as dataset:
        roi = read_window(dataset, None, 1) != 0
    with ExitStack() as stack:
        opened = _Series.open(stack, series)
        estimates = [stack.enter_context(open_raster(r.estimate)) for r in reconstructions]
        truths = [stack.enter_context(open_raster(r.truth)) for r in reconstructions]
        height, width = opened.bands[0].height, opened.bands[0].width
        for window in block_windows(height, width, WINDOW_SIZE):
            values, clear, cloudy = opened.read(window)
            everywhere = np.ones((window.height, window.width), dtype=bool)
            areas = dict(zip(SCOPES, (everywhere, _area_mask(roi, window)), strict=True))
            for reconstruction, estimate, truth in zip(reconstructions, estimates, truths, strict=True):
                index = names.index(reconstruction.product.name)
                others = np.arange(len(series)) != index
                methods = {
                    "model": np.moveaxis(read_window(estimate, window), 0, -1),
                    "gapfilling_series": gap_fill(values[others], clear[others], times[others], times[index]),
                    "copy_nearest": copy_nearest(values[others], clear[others], times[others], times[index]),
                }
                reference = np.moveaxis(read_window(truth, window), 0, -1)
                scored = scorable(reference, cloudy[index], list(methods.values()))
                counts[reconstruction.product.name] += int(scored.sum())
                for scope, area in areas.items():
                    for method, y_pred in methods.items():
                        accumulators[scope][method].update(reference, y_pred, scored & area, scored)
                for name, image in (("model", methods["model"]), ("truth", reference)):
                    total, pairs = seam_sums(image, cloudy[index])
                    seams[name][0] += total
                    seams[name][1] += pairs
    return {
        "cloudy_pixels_per_date": counts,
        "scopes": {
            scope: {
                "pixels": accumulators[scope]["model"].pixels,
                "methods": {method: acc.results()["overall"] for method, acc in accumulators[scope].items()},
            }
            for scope in SCOPES
        },
        "seam_gradient": {name: (total / pairs if pairs else None) for name, (total, pairs) in seams.items()},
    }


#: Titles of the scopes in the printed table, in its column order.
TABLE_SCOPES = {
    "test_records": "test records",
    "test_area_cloudy_pixels": "test area, cloudy",
    "tile_cloudy_pixels": "whole tile, cloudy",
}
TABLE_METRICS = ("mae", "psnr")


def records_scope(report: dict[str, Any]) -> dict[str, Any]:
    """The overall metrics of :func:`decloud.models.record_scoring.evaluate`'s report, as a scope of the table."""
    output = report["outputs"]["s2_estim"]
    return {
        "samples": report["samples"],
        "reference": f"{output['target']}: {report['scored_pixels']}",
        "methods": {method: results["overall"] for method, results in output["methods"].items()},
    }


def format_table(scopes: dict[str, dict[str, Any]], seam: dict[str, float | None] | None = None) -> str:
    """MAE and PSNR of every method (rows) in every scope (columns), with what each scope counts, and the seam
    figure of the reconstruction beside the truth's."""
    cell = 9
    width = len(TABLE_METRICS) * cell
    lines = [
        f"{'':<24}" + "".join(f"{title:>{width + 3}}" for title in TABLE_SCOPES.values()),
        f"{'method':<24}"
        + "".join("   " + "".join(f"{m.upper():>{cell}}" for m in TABLE_METRICS) for _ in TABLE_SCOPES),
    ]
    for method in TABLE_METHODS:
        row = f"{method:<24}"
        for scope in TABLE_SCOPES:
            results = scopes[scope]["methods"].get(method, {})
            values = [results.get(metric) for metric in TABLE_METRICS]
            row += "   " + "".join(f"{'-':>{cell}}" if v is None else f"{v:>{cell}.4f}" for v in values)
        lines.append(row)
    lines.append(
        f"test records: {scopes['test_records']['samples']} samples vs {scopes['test_records']['reference']}; "
        f"cloudy: {scopes['test_area_cloudy_pixels']['pixels']} / {scopes['tile_cloudy_pixels']['pixels']} "
        "cloudy pixels of the reconstructed dates vs the generator's cloud-free truth. "
        "MAE in reflectance, PSNR (pooled MSE) in dB for a peak of 1."
    )
    if seam and seam.get("model") is not None and seam.get("truth"):
        lines.append(
            f"seam (mean |gradient| across the cloud masks' edges): reconstruction {seam['model']:.4f}, "
            f"truth {seam['truth']:.4f} (ratio {seam['model'] / seam['truth']:.2f})"
        )
    return "\n".join(lines)
