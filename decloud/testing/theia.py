"""Generated THEIA (MAJA) L2A products: ``<NAME>/<NAME>_FRE_<band>.tif`` and ``MASKS/<NAME>_{CLM,EDG}_R1.tif``,
as a folder or a .zip holding that folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.windows import Window

from decloud.core.constants import S2_BANDS_10M, S2_BANDS_20M, S2_NODATA
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


#: Pixel values drawn by the caller instead of the rectangles: ``(window, band, scale)`` gives the int16
#: reflectance x10000 of a band (no-data included) on the grid of ``scale`` x 10 m, ``(window, mask)`` the uint8
#: values of a mask ("CLM" or "EDG") on the 10 m grid.
BandValues = Callable[[Window, str, int], np.ndarray]
MaskValues = Callable[[Window, str], np.ndarray]


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
    band_values: BandValues | None = None,
    mask_values: MaskValues | None = None,
) -> Path:
    """Write a THEIA product of ``shape`` (rows, cols at 10 m) under ``out_dir``; return its folder
    (or its .zip when ``as_zip``). ``omit`` names files to leave out (a band such as "B4", or "CLM", "EDG")
    to make broken products. The bands are independent textures per band with bright ``clouds`` and no-data
    rectangles, unless ``band_values`` and ``mask_values`` draw the product."""
    name = theia_product_name(acquired, tile)
    product = Path(out_dir) / name
    height, width = shape
    transform_10m = Affine(10.0, 0.0, origin[0], 0.0, -10.0, origin[1])

    def rectangles(window: Window, band: str, scale: int) -> np.ndarray:
        clear = reflectance(window, band, seed, scale)
        out = np.where(union_mask(clouds, window, scale), cloudy_reflectance(window, band, seed, scale), clear)
        return np.where(union_mask(nodata, window, scale), S2_NODATA, out)

    def rectangle_masks(window: Window, mask: str) -> np.ndarray:
        if mask == "EDG":
            return union_mask(nodata, window)
        return np.where(union_mask(clouds, window) & ~union_mask(nodata, window), THEIA_CLOUD_VALUE, 0)

    draw_band, draw_mask = band_values or rectangles, mask_values or rectangle_masks

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
                values=lambda window, band=band, scale=scale: draw_band(window, band, scale),
                compress="deflate",
            )

    for mask in ("CLM", "EDG"):
        if mask in omit:
            continue
        write_generated_band(
            product / "MASKS" / f"{name}_{mask}_R1.tif",
            height=height,
            width=width,
            transform=transform_10m,
            crs=crs,
            dtype="uint8",
            values=lambda window, mask=mask: draw_mask(window, mask),
            compress="deflate",
        )

    if not as_zip:
        return product
    archive = shutil.make_archive(str(product), "zip", root_dir=product.parent, base_dir=name)
    shutil.rmtree(product)
    return Path(archive)
