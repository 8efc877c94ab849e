"""The one rule tying a 20 m raster to the 10 m grid of its product.

Every 20 m raster decloud uses (prepared 20 m bands, prepared DEM, 20 m outputs) lies on the **20 m grid
of the 10 m grid**: same CRS, pixels of exactly 2x2 10 m pixels, and an origin on a corner shared with the
10 m grid, so that 20 m pixel (i, j) covers 10 m pixels (2i..2i+1, 2j..2j+1) of a grid whose origin is
on it. Models rely on it (a 20 m input is half the 10 m input, pixel for pixel), and so do sampling and
the streaming engine, which read the 20 m window under a 10 m window by integer arithmetic.

Real products do not always follow it: crops of a THEIA tile can have their 20 m origin half a 20 m pixel
(10 m) off the 10 m one. Preparation resamples such bands bilinearly onto the rule's grid
(:func:`resample_bilinear`), which keeps each 20 m value at its georeferenced position; reading them with
integer offsets instead would shift them by 10 m.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from affine import Affine
from rasterio.windows import Window

from decloud.core.errors import GridMismatchError
from decloud.core.raster import Grid

#: 20 m pixels are SCALE_20M x SCALE_20M pixels of the 10 m grid.
SCALE_20M = 2
#: Tolerance, in pixels, on grid positions (geotransforms are stored as floats).
_PIXEL_TOLERANCE = 1e-6


def scaled_grid(grid: Grid, scale: int = SCALE_20M) -> Grid:
    """The grid of ``scale`` x ``scale`` pixels of ``grid``, with its origin, covering it (the last row or
    column reaches past ``grid`` when its size is odd)."""
    return Grid(grid.crs, grid.transform @ Affine.scale(scale), -(-grid.width // scale), -(-grid.height // scale))


def grid_offset(grid: Grid, reference: Grid, scale: int, name: str) -> tuple[int, int]:
    """(row, col) of the origin of ``reference`` in ``grid``, which must be the grid of ``scale`` x ``scale``
    pixels of ``reference`` (same CRS and pixel, origin on one of its pixel corners); the error names the
    raster ``name`` and what it should be."""
    expected = reference.transform @ Affine.scale(scale)
    transform = grid.transform
    col, row = ~transform @ (expected.c, expected.f)
    on_grid = (
        grid.crs == reference.crs
        and transform.almost_equals(Affine(expected.a, 0, transform.c, 0, expected.e, transform.f), precision=1e-6)
        and abs(col - round(col)) < _PIXEL_TOLERANCE
        and abs(row - round(row)) < _PIXEL_TOLERANCE
    )
    if not on_grid:
        raise GridMismatchError(
            f"{name} is not on the {10 * scale} m grid of the 10 m image: {grid.describe()}; expected CRS "
            f"{reference.crs}, pixel {expected.a:g} m, origin on the grid of ({expected.c:.3f}, {expected.f:.3f})"
            + (" (prepare the product again: preparation puts its 20 m bands on that grid)" if scale > 1 else "")
        )
    return round(row), round(col)


def _axis_sampling(
    start: float, step: float, count: int, source_start: float, source_step: float, source_count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``count`` target pixel centres along one axis: the source index before each centre, the
    weight of the next one, and whether the centre lies within the source's extent."""
    position = (start + step * (np.arange(count) + 0.5) - source_start) / source_step - 0.5
    inside = (position >= -0.5 - _PIXEL_TOLERANCE) & (position <= source_count - 0.5 + _PIXEL_TOLERANCE)
    before = np.floor(position + _PIXEL_TOLERANCE).astype(np.int64)
    weight = np.clip(position - before, 0.0, 1.0)
    weight[weight < _PIXEL_TOLERANCE] = 0.0
    return before, weight, inside


def resample_bilinear(
    read: Callable[[Window], np.ndarray], source: Grid, target: Grid, window: Window, nodata: float, bands: int
) -> np.ndarray:
    """(bands, rows, cols) values of the window ``window`` of ``target`` interpolated bilinearly from a
    source raster on ``source`` (same CRS and pixel size, any origin), read through ``read(window)``.

    Each target pixel takes the weighted mean of the (up to four) valid source pixels around its centre;
    a centre on the outer half pixel of the source takes the edge values (the source's extent is where
    its pixels are, not where their centres are), and a centre outside the source is ``nodata``. On the
    source's own grid this is an exact copy.
    """
    if source.crs != target.crs or not np.allclose(
        (source.transform.a, source.transform.e, source.transform.b, source.transform.d),
        (target.transform.a, target.transform.e, target.transform.b, target.transform.d),
    ):
        raise GridMismatchError(f"cannot resample {source.describe()} onto {target.describe()}: other CRS or pixel")
    rows = _axis_sampling(
        target.transform.f + target.transform.e * window.row_off, target.transform.e, int(window.height),
        source.transform.f, source.transform.e, source.height,
    )  # fmt: skip
    cols = _axis_sampling(
        target.transform.c + target.transform.a * window.col_off, target.transform.a, int(window.width),
        source.transform.c, source.transform.a, source.width,
    )  # fmt: skip
    (row_before, row_weight, row_inside), (col_before, col_weight, col_inside) = rows, cols
    if not row_inside.any() or not col_inside.any():
        return np.full((bands, int(window.height), int(window.width)), nodata)
    row_pairs = np.clip(np.stack([row_before, row_before + 1]), 0, source.height - 1)
    col_pairs = np.clip(np.stack([col_before, col_before + 1]), 0, source.width - 1)
    row0, row1 = int(row_pairs[:, row_inside].min()), int(row_pairs[:, row_inside].max())
    col0, col1 = int(col_pairs[:, col_inside].min()), int(col_pairs[:, col_inside].max())
    values = read(Window(col0, row0, col1 - col0 + 1, row1 - row0 + 1))
    row_pairs, col_pairs = np.clip(row_pairs - row0, 0, row1 - row0), np.clip(col_pairs - col0, 0, col1 - col0)
    total = np.zeros((values.shape[0], row_pairs.shape[1], col_pairs.shape[1]))
    weights = np.zeros(total.shape)
    for row_index, row_factor in ((0, 1 - row_weight), (1, row_weight)):
        for col_index, col_factor in ((0, 1 - col_weight), (1, col_weight)):
            neighbours = values[:, row_pairs[row_index]][:, :, col_pairs[col_index]]
            weight = np.outer(row_factor, col_factor)[np.newaxis] * (neighbours != nodata)
            total += weight * np.where(neighbours != nodata, neighbours, 0)
            weights += weight
    inside = np.outer(row_inside, col_inside)[np.newaxis] & (weights > 0)
    result = np.where(inside, np.rint(total / np.where(weights > 0, weights, 1)), nodata)
    return result.astype(values.dtype)
