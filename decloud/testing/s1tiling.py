"""Generated S1Tiling Sentinel-1 pairs: ``s1a_31TEJ_vv_ASC_030_20200101t060000.tif`` and its ``vh`` twin,
single-band float32 linear sigma0 with the S1Tiling no-data value 0, on the grid of the generated
Sentinel-2 products (same default origin and CRS) so that S1 and S2 generated for a tile overlap."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.windows import Window

from decloud.core.constants import S1_NODATA
from decloud.testing.rasters import write_generated_band
from decloud.testing.regions import Rect, union_mask
from decloud.testing.texture import texture
from decloud.testing.theia import DEFAULT_CRS, DEFAULT_ORIGIN

#: Backscatter range (dB) of each polarisation: cross-polarised VH is weaker than VV, as over land.
DB_RANGES = {"vv": (-20.0, 0.0), "vh": (-25.0, -5.0)}
#: Texture band of each polarisation, apart from the Sentinel-2 bands' (0-9) so S1 and S2 differ.
_TEXTURE_BANDS = {"vv": 100, "vh": 101}


def s1tiling_name(
    *,
    acquired: datetime,
    tile: str,
    polarisation: str,
    satellite: str = "s1a",
    orbit_direction: str = "ASC",
    relative_orbit: int = 30,
    time_unknown: bool = False,
) -> str:
    """S1Tiling file name; S1Tiling writes ``txxxxxx`` when it does not know the acquisition time."""
    time = "txxxxxx" if time_unknown else acquired.strftime("t%H%M%S")
    stamp = acquired.strftime("%Y%m%d") + time
    return f"{satellite}_{tile.removeprefix('T')}_{polarisation}_{orbit_direction}_{relative_orbit:03d}_{stamp}.tif"


def sigma0(window: Window, polarisation: str, seed: int) -> np.ndarray:
    """Linear sigma0 (float32, never 0) of ``polarisation`` over ``window``: a texture in dB converted to linear."""
    low, high = DB_RANGES[polarisation]
    share = texture(window, _TEXTURE_BANDS[polarisation], seed).astype(np.float64)
    decibels = low + (high - low) * share
    return (10.0 ** (decibels / 10.0)).astype(np.float32)


def make_s1tiling_pair(
    out_dir: str | Path,
    *,
    acquired: datetime,
    tile: str = "T31TEJ",
    satellite: str = "s1a",
    orbit_direction: str = "ASC",
    relative_orbit: int = 30,
    shape: tuple[int, int] = (256, 256),
    origin: tuple[float, float] = DEFAULT_ORIGIN,
    crs: str = DEFAULT_CRS,
    nodata: Sequence[Rect] = (),
    seed: int = 0,
    time_unknown: bool = False,
    sigma0_values: Callable[[Window, str], np.ndarray] | None = None,
) -> tuple[Path, Path]:
    """Write the vv and vh files of one acquisition of ``shape`` (rows, cols at 10 m) in ``out_dir``,
    0 (no data) inside the ``nodata`` rectangles; return their paths (vv, vh). The linear sigma0 of
    ``(window, polarisation)`` is ``sigma0_values``' when given, :func:`sigma0`'s textures otherwise."""
    draw = sigma0_values or (lambda window, polarisation: sigma0(window, polarisation, seed))
    height, width = shape
    transform = Affine(10.0, 0.0, origin[0], 0.0, -10.0, origin[1])
    paths = []
    for polarisation in ("vv", "vh"):
        name = s1tiling_name(
            acquired=acquired,
            tile=tile,
            polarisation=polarisation,
            satellite=satellite,
            orbit_direction=orbit_direction,
            relative_orbit=relative_orbit,
            time_unknown=time_unknown,
        )

        def values(window: Window, polarisation: str = polarisation) -> np.ndarray:
            return np.where(union_mask(nodata, window), S1_NODATA, draw(window, polarisation))

        paths.append(
            write_generated_band(
                Path(out_dir) / name,
                height=height,
                width=width,
                transform=transform,
                crs=crs,
                dtype="float32",
                nodata=S1_NODATA,
                values=values,
                tags={"CALIBRATION": "sigma0", "UNIT": "linear", "POLARIZATION": polarisation.upper()},
                compress="deflate",
            )
        )
    vv, vh = paths
    return vv, vh
