"""Per-pixel pair selection and S1 mosaics, against brute-force per-pixel references, on stacks and on
generated prepared products."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from scipy import ndimage

from decloud.core.constants import S1_NODATA, S2_NODATA
from decloud.core.products import s1_image, s2_product
from decloud.core.raster import Grid
from decloud.preprocessing.sentinel1_prepare import prepare_s1_image
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.production.input_selection import (
    PairSelectionSource,
    S1MosaicSource,
    mosaic,
    select_pairs,
)
from decloud.production.streaming import _mirror_read
from decloud.testing.regions import Rect
from decloud.testing.s1tiling import make_s1tiling_pair
from decloud.testing.theia import make_theia_product

HOUR = 3600.0


def random_stack(rng, n: int, shape: tuple[int, int], channels: int, invalid_share: float):
    values = rng.integers(1, 5000, size=(n, *shape, channels)).astype(np.float32)
    valid = rng.random((n, *shape)) > invalid_share
    return values, valid


def brute_force_pairs(s2_valid, s2_times, s1_valid, s1_times, target, max_gap_hours):
    """Per pixel, loop over S2 dates from the closest to the target, then over the S1 dates near it."""
    rows, cols = s2_valid.shape[1:]
    chosen_s2 = np.full((rows, cols), -1)
    chosen_s1 = np.full((rows, cols), -1)
    s2_order = sorted(range(len(s2_times)), key=lambda i: (abs(s2_times[i] - target), s2_times[i]))
    for r in range(rows):
        for c in range(cols):
            for i in s2_order:
                if not s2_valid[i, r, c]:
                    continue
                near = [j for j in range(len(s1_times)) if abs(s1_times[j] - s2_times[i]) <= max_gap_hours * HOUR]
                near = [
                    j
                    for j in sorted(near, key=lambda j: (abs(s1_times[j] - s2_times[i]), s1_times[j]))
                    if s1_valid[j, r, c]
                ]
                if near:
                    chosen_s2[r, c], chosen_s1[r, c] = i, near[0]
                    break
    return chosen_s2, chosen_s1


@pytest.mark.parametrize("seed", range(5))
def test_pair_selection_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    target = 1_600_000_000.0
    s2_times = sorted(target - rng.integers(1, 40, 5) * 24 * HOUR)  # dates before the target, with gaps
    s1_times = sorted(target - rng.integers(0, 45, 7) * 24 * HOUR + rng.integers(-12, 12, 7) * HOUR)
    s2_values, s2_valid = random_stack(rng, 5, (23, 19), 4, 0.5)
    s1_values, s1_valid = random_stack(rng, 7, (23, 19), 2, 0.3)
    s2, s1, valid, chosen_s2, chosen_s1 = select_pairs(
        s2_values, s2_valid, s2_times, s1_values, s1_valid, s1_times, target, max_gap_hours=72
    )
    expected_s2, expected_s1 = brute_force_pairs(s2_valid, s2_times, s1_valid, s1_times, target, 72)
    np.testing.assert_array_equal(chosen_s2, expected_s2)
    np.testing.assert_array_equal(chosen_s1, expected_s1)
    assert 0 < valid.mean() < 1  # the case exercises both outcomes
    rows, cols = np.nonzero(valid)
    np.testing.assert_array_equal(s2[rows, cols], s2_values[expected_s2[rows, cols], rows, cols])
    np.testing.assert_array_equal(s1[rows, cols], s1_values[expected_s1[rows, cols], rows, cols])
    assert (s2[~valid] == S2_NODATA).all() and (s1[~valid] == S1_NODATA).all()


def test_pair_selection_without_s1_takes_the_closest_clear_date():
    rng = np.random.default_rng(7)
    s2_values, s2_valid = random_stack(rng, 4, (10, 10), 4, 0.6)
    times = [100 * HOUR, 10 * HOUR, 50 * HOUR, 300 * HOUR]
    _, s1, _, chosen, _ = select_pairs(s2_values, s2_valid, times, None, None, [], 0.0, 72)
    assert s1 is None
    for r in range(10):
        for c in range(10):
            order = [1, 2, 0, 3]  # by distance to 0
            first = next((i for i in order if s2_valid[i, r, c]), -1)
            assert chosen[r, c] == first


def test_s1_mosaic_puts_the_closest_date_on_top():
    rng = np.random.default_rng(3)
    values, valid = random_stack(rng, 4, (12, 12), 2, 0.5)
    times = [0.0, 5 * HOUR, 30 * HOUR, -2 * HOUR]
    mosaicked, mosaic_valid, chosen = mosaic(values, valid, times, target=4 * HOUR)
    order = [1, 0, 3, 2]  # 1 h, 4 h, 6 h and 26 h away from the target
    for r in range(12):
        for c in range(12):
            first = next((i for i in order if valid[i, r, c]), -1)
            assert chosen[r, c] == first
            if first >= 0:
                np.testing.assert_array_equal(mosaicked[r, c], values[first, r, c])
    assert mosaic_valid.sum() == (chosen >= 0).sum()


def test_sources_select_from_prepared_products(tmp_path):
    start = datetime(2021, 3, 1, 10, 30, tzinfo=UTC)
    s2 = []
    for i, clouds in enumerate([[Rect(0, 0, 64, 64)], [Rect(32, 32, 64, 64)], []]):
        raw = make_theia_product(
            tmp_path / "raw", acquired=start + timedelta(days=5 * i), shape=(128, 128), clouds=clouds, seed=i
        )
        s2.append(s2_product(prepare_s2_product(raw, tmp_path / "S2")))
    s1 = []
    for i in range(4):
        date = (start + timedelta(days=3 * i)).replace(hour=6)
        _, vh = make_s1tiling_pair(
            tmp_path / "raw_s1", acquired=date, shape=(128, 128), nodata=[Rect(0, 64 * (i % 2), 128, 64)], seed=i
        )
        s1.append(s1_image(prepare_s1_image(vh, tmp_path / "S1")))
    with rasterio.open(s2[0].bands_10m) as dataset:
        grid = Grid.of(dataset)
    target = start + timedelta(days=12)
    with PairSelectionSource("tm1", s2, s1, target, 72, grid, with_20m_bands=True, with_days=True) as source:
        data = _mirror_read(source, -16, -16, 160)
    assert set(data) == {"s2_tm1", "s1_tm1", "s2_20m_tm1", "s2_days_tm1"}

    def read_all(paths):
        stack = []
        for path in paths:
            with rasterio.open(path) as dataset:
                stack.append(np.moveaxis(dataset.read(), 0, -1).astype(np.float32))
        return np.stack(stack)

    s2_values = read_all([p.bands_10m for p in s2])
    clm = read_all([p.cloud_mask for p in s2])[..., 0]
    s1_values = read_all([i.path for i in s1])
    # clear: more than 2 pixels (Euclidean) from the date's clouds, whose masks miss the thin edges
    far_from_clouds = np.stack([ndimage.distance_transform_edt(c == 0) > 2 if c.any() else c == 0 for c in clm])
    expected_s2, expected_s1, expected_valid, _, _ = select_pairs(
        s2_values, (s2_values != S2_NODATA).all(-1) & far_from_clouds, [p.acquired.timestamp() for p in s2],
        s1_values, (s1_values != S1_NODATA).all(-1), [i.acquired.timestamp() for i in s1], target.timestamp(), 72,
    )  # fmt: skip
    values, valid = data["s2_tm1"]
    np.testing.assert_array_equal(values[16:144, 16:144], expected_s2)
    np.testing.assert_array_equal(valid[16:144, 16:144], expected_valid)
    np.testing.assert_array_equal(data["s1_tm1"][0][16:144, 16:144], expected_s1)
    # Mirrored margin: row -1 is row 0.
    np.testing.assert_array_equal(values[15], values[16])
    assert expected_valid.mean() > 0.5
    # The 20 m bands follow the date chosen (by the brute-force reference) for the upper-left 10 m pixel of
    # each 20 m pixel, read from that product's own 20 m raster.
    chosen, _ = brute_force_pairs(
        (s2_values != S2_NODATA).all(-1) & far_from_clouds, [p.acquired.timestamp() for p in s2],
        (s1_values != S1_NODATA).all(-1), [i.acquired.timestamp() for i in s1], target.timestamp(), 72,
    )  # fmt: skip
    assert len(set(np.unique(chosen)) - {-1}) >= 2  # several dates are picked
    # The days from the target to the date chosen at each pixel: the products are 12, 7 and 2 days before it.
    days, days_valid = data["s2_days_tm1"]
    expected_days = np.where(chosen >= 0, np.array([-12.0, -7.0, -2.0])[np.maximum(chosen, 0)], 0.0)
    assert days.dtype == np.float32 and days.shape == (160, 160, 1)
    np.testing.assert_allclose(days[16:144, 16:144, 0], expected_days)
    np.testing.assert_array_equal(days_valid[16:144, 16:144], chosen >= 0)
    s2_20m = read_all([p.bands_20m for p in s2])
    chosen_20m = chosen[::2, ::2]
    expected_20m = np.full((64, 64, 6), S2_NODATA, np.float32)
    for r in range(64):
        for c in range(64):
            if chosen_20m[r, c] >= 0:
                expected_20m[r, c] = s2_20m[chosen_20m[r, c], r, c]
    values_20m, valid_20m = data["s2_20m_tm1"]
    assert values_20m.shape == (80, 80, 6)
    np.testing.assert_array_equal(values_20m[8:72, 8:72], expected_20m)
    np.testing.assert_array_equal(valid_20m[8:72, 8:72], chosen_20m >= 0)
    with S1MosaicSource("t", s1, target, grid) as source:
        mosaicked = source.read({1: Window(0, 0, 128, 128)})["s1_t"]
    expected_mosaic, expected_mosaic_valid, _ = mosaic(
        s1_values, (s1_values != S1_NODATA).all(-1), [i.acquired.timestamp() for i in s1], target.timestamp()
    )
    np.testing.assert_array_equal(mosaicked.values, expected_mosaic)
    np.testing.assert_array_equal(mosaicked.valid, expected_mosaic_valid)
    assert expected_mosaic_valid.all()  # the no-data halves alternate between dates
