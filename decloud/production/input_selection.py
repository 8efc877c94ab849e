"""Input preparation for the processors, computed per pixel on windows (the job of Decloud's C++
time-series pre-processor, done with numpy):

- **pair selection**: among candidate S2 dates (before, or after, the target date), each pixel takes the
  closest date whose S2 pixel is clear (farther than the ``--keep_clear`` dilation from its clouds, whose
  masks miss the thin edges) and valid and that has a valid S1 pixel within ``max_gap_hours``
  (the S1 image closest in time to that S2 date, among those valid at the pixel);
- **S1 mosaic**: each pixel takes the valid S1 pixel of the date closest to the target date (closest
  on top).

The selection functions work on stacks and are what the tests check against a brute-force reference;
the sources read the candidates' windows and apply them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
from rasterio.windows import Window

from decloud.acquisitions.transplant import cloud_holes, holes_at_scale, punch_holes
from decloud.core import keys
from decloud.core.closeness import by_closeness
from decloud.core.constants import HOUR, S1_NODATA, S2_NODATA
from decloud.core.days import days_between
from decloud.core.errors import InvalidArgumentError
from decloud.core.products import S1Image, S2Product
from decloud.core.raster import Grid
from decloud.production.blending import estimated_mask
from decloud.production.sources import InputSource, KeyData, read_raster


def first_valid(valid: np.ndarray) -> np.ndarray:
    """For a (n, rows, cols) stack of validity, the index of the first valid layer per pixel, -1 if none."""
    chosen = np.full(valid.shape[1:], -1, dtype=np.int32)
    for index in reversed(range(len(valid))):  # a few layers: cheaper than argmax over a stacked axis
        chosen[valid[index]] = index
    return chosen


def take(stack: np.ndarray, index: np.ndarray, fill: float) -> np.ndarray:
    """Per pixel, layer ``index`` of a (n, rows, cols, channels) stack; ``fill`` where index is -1."""
    picked = np.full((*index.shape, stack.shape[-1]), fill, dtype=stack.dtype)
    for layer in range(len(stack)):
        np.copyto(picked, stack[layer], where=(index == layer)[..., np.newaxis])
    return picked


def mosaic(s1_values: np.ndarray, s1_valid: np.ndarray, s1_times: Sequence[float], target: float):
    """(values, valid, chosen) of the S1 mosaic: per pixel the valid image closest in time to ``target``."""
    order = by_closeness(s1_times, target)
    chosen_in_order = first_valid(s1_valid[order])
    chosen = np.where(chosen_in_order >= 0, np.asarray(order, dtype=np.int32)[chosen_in_order], -1)
    return take(s1_values, chosen, S1_NODATA), chosen >= 0, chosen


def select_pairs(
    s2_values: np.ndarray,
    s2_valid: np.ndarray,
    s2_times: Sequence[float],
    s1_values: np.ndarray | None,
    s1_valid: np.ndarray | None,
    s1_times: Sequence[float],
    target: float,
    max_gap_hours: float,
):
    """Per-pixel pair selection. Stacks are (n, rows, cols[, channels]); ``s2_valid`` is clear and
    valid. Without S1 (``s1_values`` None) only the S2 image is selected.

    Returns (s2, s1 or None, valid, chosen S2 index, chosen S1 index).
    """
    shape = s2_valid.shape[1:]
    chosen_s2 = np.full(shape, -1, dtype=np.int32)
    chosen_s1 = np.full(shape, -1, dtype=np.int32)
    for i in by_closeness(s2_times, target):
        open_pixels = (chosen_s2 < 0) & s2_valid[i]
        if not open_pixels.any():
            continue
        if s1_values is None:
            chosen_s2[open_pixels] = i
            continue
        near = [
            j for j in by_closeness(s1_times, s2_times[i]) if abs(s1_times[j] - s2_times[i]) <= max_gap_hours * HOUR
        ]
        s1_choice = first_valid(s1_valid[near]) if near else np.full(shape, -1, np.int32)
        paired = open_pixels & (s1_choice >= 0)
        chosen_s2[paired] = i
        chosen_s1[paired] = np.asarray(near, dtype=np.int32)[s1_choice[paired]]
    s2 = take(s2_values, chosen_s2, S2_NODATA)
    s1 = None if s1_values is None else take(s1_values, chosen_s1, S1_NODATA)
    return s2, s1, chosen_s2 >= 0, chosen_s2, chosen_s1


class _ProductsSource(InputSource):
    """Reads stacks of prepared Sentinel-2 products."""

    def _read_s2(self, datasets, window: Window) -> tuple[np.ndarray, np.ndarray]:
        data = [read_raster(dataset, window, S2_NODATA) for dataset in datasets]
        return np.stack([d.values for d in data]), np.stack([d.valid for d in data])


class PairSelectionSource(_ProductsSource):
    """``s2_<a>`` (and ``s2_20m_<a>``) and ``s1_<a>`` of acquisition ``a`` selected per pixel among
    candidate dates. The 20 m bands follow the date chosen for the 20 m pixel's upper-left 10 m pixel. With
    ``with_days``, also ``s2_days_<a>``: the days from the target date to the date chosen at each pixel (0 where
    none is, where the image is no-data)."""

    def __init__(
        self,
        acquisition: str,
        s2_products: Sequence[S2Product],
        s1_images: Sequence[S1Image] | None,
        target: datetime,
        max_gap_hours: float,
        reference: Grid,
        *,
        with_20m_bands: bool = False,
        with_days: bool = False,
    ) -> None:
        super().__init__(reference)
        if not s2_products:
            raise InvalidArgumentError(f"no Sentinel-2 candidate for {acquisition}")
        self.keys = {keys.key(keys.S2, acquisition): 1}
        if s1_images is not None:
            if not s1_images:
                raise InvalidArgumentError(f"no Sentinel-1 candidate for {acquisition}")
            self.keys[keys.key(keys.S1, acquisition)] = 1
        if with_20m_bands:
            self.keys[keys.key(keys.S2_20M, acquisition)] = 2
        if with_days:
            self.keys[keys.key(keys.S2_DAYS, acquisition)] = 1
        self.acquisition, self.target, self.max_gap_hours = acquisition, target.timestamp(), max_gap_hours
        self.s2_times = [product.acquired.timestamp() for product in s2_products]
        self.s1_times = [image.acquired.timestamp() for image in s1_images or []]
        try:
            self.s2 = [self._open_aligned(p.bands_10m, 1) for p in s2_products]
            self.clm = [self._open_aligned(p.cloud_mask, 1) for p in s2_products]
            self.s2_20m = [self._open_aligned(p.bands_20m, 2) for p in s2_products] if with_20m_bands else []
            self.s1 = None if s1_images is None else [self._open_aligned(i.path, 1) for i in s1_images]
        except BaseException:
            self._stack.close()
            raise

    def read(self, windows: dict[int, Window]) -> dict[str, KeyData]:
        window = windows[1]
        s2_values, s2_valid = self._read_s2(self.s2, window)
        # a candidate's pixel is clear away from its clouds only: cloud masks miss the thin edges of clouds
        s2_valid &= np.stack(
            [~estimated_mask(cloud_holes(read_raster(clm, window, None).values[..., 0])) for clm in self.clm]
        )
        s1_values = s1_valid = None
        if self.s1 is not None:
            s1 = [read_raster(dataset, window, S1_NODATA) for dataset in self.s1]
            s1_values, s1_valid = np.stack([d.values for d in s1]), np.stack([d.valid for d in s1])
        s2, s1, valid, chosen, _ = select_pairs(
            s2_values, s2_valid, self.s2_times, s1_values, s1_valid, self.s1_times, self.target, self.max_gap_hours
        )
        data = {keys.key(keys.S2, self.acquisition): KeyData(s2, valid)}
        if s1 is not None:
            data[keys.key(keys.S1, self.acquisition)] = KeyData(s1, valid)
        days_key = keys.key(keys.S2_DAYS, self.acquisition)
        if days_key in self.keys:
            days = days_between(np.asarray(self.s2_times)[np.maximum(chosen, 0)], self.target)
            data[days_key] = KeyData(np.where(valid, days, 0.0).astype(np.float32)[..., np.newaxis], valid)
        if self.s2_20m:
            window_20m = windows[2]
            chosen_20m = chosen[::2, ::2][: int(window_20m.height), : int(window_20m.width)]
            values_20m, _ = self._read_s2(self.s2_20m, window_20m)
            data[keys.key(keys.S2_20M, self.acquisition)] = KeyData(
                take(values_20m, chosen_20m, S2_NODATA), chosen_20m >= 0
            )
        return data


class S1MosaicSource(_ProductsSource):
    """``s1_<a>``: the S1 mosaic of ``images`` around ``target``, closest date on top."""

    def __init__(self, acquisition: str, images: Sequence[S1Image], target: datetime, reference: Grid) -> None:
        super().__init__(reference)
        if not images:
            raise InvalidArgumentError(f"no Sentinel-1 image for {acquisition}")
        self.keys = {keys.key(keys.S1, acquisition): 1}
        self.target = target.timestamp()
        self.times = [image.acquired.timestamp() for image in images]
        try:
            self.datasets = [self._open_aligned(image.path, 1) for image in images]
        except BaseException:
            self._stack.close()
            raise

    def read(self, windows: dict[int, Window]) -> dict[str, KeyData]:
        data = [read_raster(dataset, windows[1], S1_NODATA) for dataset in self.datasets]
        values, valid, _ = mosaic(
            np.stack([d.values for d in data]), np.stack([d.valid for d in data]), self.times, self.target
        )
        ((key, _),) = self.keys.items()
        return {key: KeyData(values, valid)}


class ClearMaskSource(_ProductsSource):
    """An auxiliary key (not fed to the model): where the product's cloud mask says clear (CLM 0)."""

    def __init__(self, key: str, product: S2Product, reference: Grid) -> None:
        super().__init__(reference)
        self.keys = {key: 1}
        self.auxiliary = frozenset(self.keys)
        try:
            self.dataset = self._open_aligned(product.cloud_mask, 1)
        except BaseException:
            self._stack.close()
            raise

    def read(self, windows: dict[int, Window]) -> dict[str, KeyData]:
        ((key, _),) = self.keys.items()
        clear = read_raster(self.dataset, windows[1], None).values[..., 0] == 0
        return {key: KeyData(clear[..., np.newaxis].astype(np.uint8), np.ones(clear.shape, dtype=bool))}


class HoledS2Source(_ProductsSource):
    """``s2_<acquisition>`` (and ``s2_20m_<acquisition>``) of a product with its cloudy pixels set to no-data,
    for models trained on transplanted masks (:mod:`decloud.acquisitions.transplant`): the holes are the cloud
    mask dilated as for ``--keep_clear`` (:func:`decloud.production.blending.estimated_mask`). Holes stay
    valid pixels: they are what the model must produce, not missing input."""

    def __init__(self, acquisition: str, product: S2Product, reference: Grid, *, with_20m_bands: bool) -> None:
        super().__init__(reference)
        self.keys = {keys.key(keys.S2, acquisition): 1}
        if with_20m_bands:
            self.keys[keys.key(keys.S2_20M, acquisition)] = 2
        try:
            self.bands = {1: self._open_aligned(product.bands_10m, 1)}
            if with_20m_bands:
                self.bands[2] = self._open_aligned(product.bands_20m, 2)
            self.clm = self._open_aligned(product.cloud_mask, 1)
        except BaseException:
            self._stack.close()
            raise

    def read(self, windows: dict[int, Window]) -> dict[str, KeyData]:
        holes = estimated_mask(cloud_holes(read_raster(self.clm, windows[1], None).values[..., 0]))
        result = {}
        for key, scale in self.keys.items():
            data = read_raster(self.bands[scale], windows[scale], S2_NODATA)
            scaled = holes_at_scale(holes, scale)[: data.values.shape[0], : data.values.shape[1]]
            result[key] = KeyData(punch_holes(data.values, scaled), data.valid)
        return result
