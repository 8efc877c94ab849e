"""How good the demo's reconstruction is: the model's estimate of the cloudy pixels of every reconstructed date
compared with the generator's cloud-free truth, side by side with the two baselines a user would try first,
computed per pixel over the whole series of prepared products:

- ``gapfilling``: linear interpolation in time between the nearest clear date before and the nearest clear date
  after (:func:`decloud.models.gapfilling.interpolate`; the one clear date where only one side has any);
- ``copy_nearest_date``: the value of the clear date nearest in time (earlier first on a tie).

Only pixels that are cloudy (CLM) and not no-data (EDG) in the input, and that every method estimates, count.
Metrics come from :class:`decloud.models.metrics.BandAccumulator` (reflectance; PSNR for a peak of 1, mean over
the dates of each date's PSNR, per WINDOW_SIZE window on larger tiles), over the whole tile and over the test ROI
alone (patches never trained on).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

from decloud.core.patches import patch_window
from decloud.core.raster import block_windows, open_raster, read_window
from decloud.models.gapfilling import interpolate
from decloud.models.metrics import BandAccumulator
from decloud.preprocessing.constants import PATCH_SIZE, S2_BANDS_10M, S2_MODEL_SCALE, S2_NODATA, S2_SUFFIX_EDG
from decloud.production.input_selection import select_pairs
from decloud.sampling.catalog import S2Product

METHODS = ("model", "gapfilling", "copy_nearest_date")
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


def gap_filling(values: np.ndarray, clear: np.ndarray, times: np.ndarray, target: float) -> np.ndarray:
    """Per pixel, the linear interpolation at ``target`` between the nearest clear dates before and after it."""
    sides = []
    for side in (times < target, times > target):
        chosen, _, found, index, _ = select_pairs(values[side], clear[side], times[side], None, None, [], target, 0.0)
        sides.append((chosen, np.where(found, times[side][np.maximum(index, 0)], np.nan)))
    (before, time_before), (after, time_after) = sides
    span = time_after - time_before
    weight = np.clip(np.nan_to_num((target - time_before) / np.where(span > 0, span, 1.0), nan=0.5), 0.0, 1.0)
    scaled = [(image * S2_MODEL_SCALE).astype(np.float32) for image in (before, after)]
    blended = interpolate(*scaled, weight[..., np.newaxis].astype(np.float32))
    return np.rint(np.asarray(blended) / S2_MODEL_SCALE).astype(np.int16)


def copy_nearest(values: np.ndarray, clear: np.ndarray, times: np.ndarray, target: float) -> np.ndarray:
    """Per pixel, the value of the clear date nearest to ``target``."""
    return select_pairs(values, clear, times, None, None, [], target, 0.0)[0]


def _area_mask(roi: np.ndarray, window: Window) -> np.ndarray:
    """The 10 m pixels of ``window`` inside the patches marked in the patch-grid raster ``roi``."""
    patches = roi[patch_window(window).toslices()]
    return np.kron(patches, np.ones((PATCH_SIZE, PATCH_SIZE), dtype=bool))[: window.height, : window.width]


def assess(series: list[S2Product], reconstructions: list[Reconstruction], test_roi: Path) -> dict[str, Any]:
    """Metrics of the model and the baselines on the cloudy pixels of ``reconstructions``, over the tile and
    over the test ROI, and the number of cloudy pixels scored on each date."""
    accumulators = {
        scope: {method: BandAccumulator(S2_BANDS_10M, with_ssim=False) for method in METHODS} for scope in SCOPES
    }
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
                    "gapfilling": gap_filling(values[others], clear[others], times[others], times[index]),
                    "copy_nearest_date": copy_nearest(values[others], clear[others], times[others], times[index]),
                }
                scored = cloudy[index] & np.all([(m != S2_NODATA).all(axis=-1) for m in methods.values()], axis=0)
                counts[reconstruction.product.name] += int(scored.sum())
                reference = np.moveaxis(read_window(truth, window), 0, -1)
                for scope, area in areas.items():
                    y_true = np.where((scored & area)[..., np.newaxis], reference, S2_NODATA)[np.newaxis]
                    for method, y_pred in methods.items():
                        accumulators[scope][method].update(y_true, y_pred[np.newaxis])
    return {
        "cloudy_pixels_per_date": counts,
        "scopes": {
            scope: {
                "pixels": accumulators[scope]["model"].results()["overall"]["valid_pixels"] // len(S2_BANDS_10M),
                "methods": {method: acc.results()["overall"] for method, acc in accumulators[scope].items()},
            }
            for scope in SCOPES
        },
    }


#: Titles of the scopes in the printed table, in its column order.
TABLE_SCOPES = {
    "test_records": "test records",
    "test_area_cloudy_pixels": "test area, cloudy",
    "tile_cloudy_pixels": "whole tile, cloudy",
}
TABLE_METRICS = ("mae", "psnr")


def records_scope(report: dict[str, Any]) -> dict[str, Any]:
    """The overall metrics of :func:`decloud.models.evaluation.evaluate`'s report, as a scope of the table."""
    output = report["outputs"]["s2_estim"]
    return {
        "samples": report["samples"],
        "reference": f"{output['target']}: a clear date within 10 days of the cloudy one (the layout's target)",
        "methods": {method: results["overall"] for method, results in output["methods"].items()},
    }


def format_table(scopes: dict[str, dict[str, Any]]) -> str:
    """MAE and PSNR of every method (rows) in every scope (columns), with what each scope counts."""
    cell = 9
    width = len(TABLE_METRICS) * cell
    lines = [
        f"{'':<20}" + "".join(f"{title:>{width + 3}}" for title in TABLE_SCOPES.values()),
        f"{'method':<20}"
        + "".join("   " + "".join(f"{m.upper():>{cell}}" for m in TABLE_METRICS) for _ in TABLE_SCOPES),
    ]
    for method in METHODS:
        row = f"{method:<20}"
        for scope in TABLE_SCOPES:
            results = scopes[scope]["methods"].get(method, {})
            values = [results.get(metric) for metric in TABLE_METRICS]
            row += "   " + "".join(f"{'-':>{cell}}" if v is None else f"{v:>{cell}.4f}" for v in values)
        lines.append(row)
    lines.append(
        f"test records: {scopes['test_records']['samples']} samples vs {scopes['test_records']['reference']}; "
        f"cloudy: {scopes['test_area_cloudy_pixels']['pixels']} / {scopes['tile_cloudy_pixels']['pixels']} "
        "cloudy pixels of the reconstructed dates vs the generator's cloud-free truth. "
        "MAE in reflectance, PSNR in dB for a peak of 1."
    )
    return "\n".join(lines)
