"""Generated THEIA (MAJA) L2A products: ``<NAME>/<NAME>_FRE_<band>.tif`` and ``MASKS/<NAME>_{CLM,EDG}_R1.tif``,
as a folder or a .zip holding that folder."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.windows import Window

from decloud.preprocessing.constants import S2_BANDS_10M, S2_BANDS_20M, S2_NODATA
from decloud.testing.rasters import write_generated_band
from decloud.testing.regions import Rect, union_mask
from decloud.testing.texture import texture

#: THEIA cloud mask value written under generated clouds (bits 1 and 3: "all clouds" and "cloud from MAJA").
THEIA_CLOUD_VALUE = 0b1010
#: Upper-left corner and CRS used when a test does not choose them (inside tile 31TEJ).
DEFAULT_ORIGIN = (600000.0, 4900020.0)
DEFAULT_CRS = "EPSG:32631"


def theia_product_name(acquired: datetime, tile: str, satellite: str = "SENTINEL2B") -> str:
    stamp = acquired.strftime("%Y%m%d-%H%M%S-") + f"{acquired.microsecond // 1000:03d}"
    return f"{satellite}_{stamp}_L2A_{tile}_C_V2-2"


def reflectance(window: Window, band: str, seed: int, scale: int) -> np.ndarray:
    """Clear-sky reflectance x10000 of ``band`` over ``window``: a texture between 200 and 4200."""
    band_index = (S2_BANDS_10M + S2_BANDS_20M).index(band)
    return (200 + 4000 * texture(window, band_index, seed, scale)).astype(np.int16)


def cloudy_reflectance(window: Window, band: str, seed: int, scale: int) -> np.ndarray:
    """Reflectance under a generated cloud: bright, with a little of the ground texture."""
    return (7000 + reflectance(window, band, seed, scale) // 4).astype(np.int16)


def make_theia_product(
    out_dir: str | Path,
    *,
    acquired: datetime,
    tile: str = "T31TEJ",
    shape: tuple[int, int] = (256, 256),
    origin: tuple[float, float] = DEFAULT_ORIGIN,
    crs: str = DEFAULT_CRS,
    clouds: Sequence[Rect] = (),
    nodata: Sequence[Rect] = (),
    seed: int = 0,
    as_zip: bool = False,
    omit: Sequence[str] = (),
) -> Path:
    """Write a THEIA product of ``shape`` (rows, cols at 10 m) under ``out_dir``; return its folder
    (or its .zip when ``as_zip``). ``omit`` names files to leave out (a band such as "B4", or "CLM", "EDG")
    to make broken products."""
    name = theia_product_name(acquired, tile)
    product = Path(out_dir) / name
    height, width = shape
    transform_10m = Affine(10.0, 0.0, origin[0], 0.0, -10.0, origin[1])

    def band_values(band: str, scale: int):
        def values(window: Window) -> np.ndarray:
            clear = reflectance(window, band, seed, scale)
            cloudy = cloudy_reflectance(window, band, seed, scale)
            out = np.where(union_mask(clouds, window, scale), cloudy, clear)
            return np.where(union_mask(nodata, window, scale), S2_NODATA, out)

        return values

    for bands, scale in ((S2_BANDS_10M, 1), (S2_BANDS_20M, 2)):
        for band in bands:
            if band in omit:
                continue
            write_generated_band(
                product / f"{name}_FRE_{band}.tif",
                height=-(-height // scale),
                width=-(-width // scale),
                transform=transform_10m @ Affine.scale(scale),
                crs=crs,
                dtype="int16",
                nodata=S2_NODATA,
                values=band_values(band, scale),
                compress="deflate",
            )

    masks = {
        "CLM": lambda w: np.where(union_mask(clouds, w) & ~union_mask(nodata, w), THEIA_CLOUD_VALUE, 0),
        "EDG": lambda w: union_mask(nodata, w),
    }
    for mask, values in masks.items():
        if mask in omit:
            continue
        write_generated_band(
            product / "MASKS" / f"{name}_{mask}_R1.tif",
            height=height,
            width=width,
            transform=transform_10m,
            crs=crs,
            dtype="uint8",
            values=values,
            compress="deflate",
        )

    if not as_zip:
        return product
    archive = shutil.make_archive(str(product), "zip", root_dir=product.parent, base_dir=name)
    shutil.rmtree(product)
    return Path(archive)
