"""The baselines a user would otherwise use to fill a cloudy pixel, computed per pixel from a series of prepared
Sentinel-2 images and their clear-sky masks (CLM 0, EDG 0, all bands valid):

- linear gap-filling: the interpolation in time at the target date between the nearest clear observation before
  and the nearest clear observation after; the one clear observation when only one side has any;
- copy of the nearest clear observation (the earlier one on a tie).

Pixels with no clear observation at all are no-data. The series passed in must not hold the target date itself
(its image is the truth). Values stay in prepared units (reflectance x 10000).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

from decloud.core.constants import S2_NODATA, S2_SUFFIX_EDG
from decloud.core.products import prepared_s2_series
from decloud.core.raster import open_raster, read_window


def _nearest_clear(clear: np.ndarray, times: np.ndarray, target: float, before: bool) -> np.ndarray:
    """(rows, cols) index of the nearest clear date strictly before (or after) ``target``, -1 where none."""
    found = np.full(clear.shape[1:], -1, dtype=np.int64)
    side = np.flatnonzero(times < target) if before else np.flatnonzero(times > target)
    ordered = side[np.argsort(times[side], kind="stable")]
    for index in ordered if before else ordered[::-1]:  # the last assignment is the nearest date
        found = np.where(clear[index], index, found)
    return found


def _take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values (n, rows, cols, bands) at date ``index`` (rows, cols) per pixel, float64 (index -1: garbage)."""
    safe = np.maximum(index, 0)[np.newaxis, ..., np.newaxis]
    return np.take_along_axis(values, safe, axis=0)[0].astype(np.float64)


def gap_fill(values: np.ndarray, clear: np.ndarray, times: np.ndarray, target: float) -> np.ndarray:
    """Linear gap-filling at ``target`` of ``values`` (n, rows, cols, bands) with ``clear`` (n, rows, cols) and
    ``times`` (n,) in seconds; (rows, cols, bands) float32, S2_NODATA where no date is clear."""
    before = _nearest_clear(clear, times, target, before=True)
    after = _nearest_clear(clear, times, target, before=False)
    time_before, time_after = times[np.maximum(before, 0)], times[np.maximum(after, 0)]
    both = (before >= 0) & (after >= 0)
    weight = ((target - time_before) / np.where(both, time_after - time_before, 1.0))[..., np.newaxis]
    blended = _take(values, before) + weight * (_take(values, after) - _take(values, before))
    result = np.where((before >= 0)[..., np.newaxis], _take(values, before), S2_NODATA)
    result = np.where((after >= 0)[..., np.newaxis], _take(values, after), result)
    return np.where(both[..., np.newaxis], blended, result).astype(np.float32)


def copy_nearest(values: np.ndarray, clear: np.ndarray, times: np.ndarray, target: float) -> np.ndarray:
    """The value of the clear date nearest in time to ``target`` (the earlier one on a tie), (rows, cols, bands)
    float32, S2_NODATA where no date is clear."""
    before = _nearest_clear(clear, times, target, before=True)
    after = _nearest_clear(clear, times, target, before=False)
    gap_before = np.where(before >= 0, target - times[np.maximum(before, 0)], np.inf)
    gap_after = np.where(after >= 0, times[np.maximum(after, 0)] - target, np.inf)
    chosen = np.where(gap_after < gap_before, after, before)
    return np.where((chosen >= 0)[..., np.newaxis], _take(values, chosen), S2_NODATA).astype(np.float32)


@dataclass
class SeriesPatch:
    """Every date of a tile's series over a window: values (n, rows, cols, bands), clear (n, rows, cols), times."""

    values: np.ndarray
    clear: np.ndarray
    times: np.ndarray

    def without(self, keep: np.ndarray) -> SeriesPatch:
        return SeriesPatch(self.values[keep], self.clear[keep], self.times[keep])


class SeriesReader(AbstractContextManager):
    """Reads windows of the prepared series of tiles under ``s2_root`` (``<s2_root>/<TILE>/<product>/``), keeping
    each tile's rasters open until the reader is closed (use it as a context manager)."""

    def __init__(self, s2_root: str | Path) -> None:
        self.s2_root = Path(s2_root)
        self._stack = ExitStack()
        self._series: dict[str, tuple[np.ndarray, list[tuple[DatasetReader, DatasetReader, DatasetReader]]]] = {}

    def _open(self, tile: str) -> tuple[np.ndarray, list[tuple[DatasetReader, DatasetReader, DatasetReader]]]:
        if tile not in self._series:
            products = prepared_s2_series(self.s2_root / tile)
            opened = [
                tuple(self._stack.enter_context(open_raster(path))
                      for path in (p.bands_10m, p.cloud_mask, p.file(S2_SUFFIX_EDG)))
                for p in products
            ]  # fmt: skip
            self._series[tile] = (np.array([p.acquired.timestamp() for p in products]), opened)
        return self._series[tile]

    def read(self, tile: str, window: Window) -> SeriesPatch:
        times, opened = self._open(tile)
        values, clear = [], []
        for bands, clm, edg in opened:
            image = np.moveaxis(read_window(bands, window), 0, -1)
            ok = (read_window(clm, window, 1) == 0) & (read_window(edg, window, 1) == 0)
            values.append(image)
            clear.append(ok & (image != S2_NODATA).all(axis=-1))
        return SeriesPatch(np.stack(values), np.stack(clear), times)

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()
