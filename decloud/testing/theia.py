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


#: Reflectance x10000 of bare soil and of full green vegetation, per band (S2_BANDS_10M + S2_BANDS_20M): the
#: two ends of the seasonal landscape (red low and near infrared high over vegetation, as in the real spectra).
SOIL_SPECTRUM = (900, 1200, 1500, 2300, 1700, 2000, 2200, 2400, 3100, 2600)
VEGETATION_SPECTRUM = (350, 700, 350, 4000, 1000, 2800, 3500, 4100, 1900, 950)
#: Side, in 10 m pixels, of the parcels of the seasonal landscape (before their borders are bent).
PARCEL_SIZE = 48
#: Length of a parcel's green-up, as a share of the season.
GROWTH_DURATION = 0.25
#: Vegetation cover left on a parcel after its harvest (stubble).
STUBBLE_COVER = 0.1
#: Texture indices of the seasonal landscape, apart from the bands' (0-9) and Sentinel-1's (100, 101).
_BRIGHTNESS_TEXTURE, _WARP_TEXTURES = 30, (31, 32)


def reflectance(window: Window, band: str, seed: int, scale: int, season: float | None = None) -> np.ndarray:
    """Clear-sky reflectance x10000 of ``band`` over ``window``: a texture between 200 and 4200, or, for a
    ``season`` position (0: start, 1: end of the season), the seasonal landscape of :func:`seasonal_reflectance`."""
    if season is not None:
        return seasonal_reflectance(window, band, seed, scale, season)
    band_index = (S2_BANDS_10M + S2_BANDS_20M).index(band)
    return (200 + 4000 * texture(window, band_index, seed, scale)).astype(np.int16)


def cloudy_reflectance(window: Window, band: str, seed: int, scale: int, season: float | None = None) -> np.ndarray:
    """Reflectance under a generated cloud: bright, with a little of the ground texture."""
    return (7000 + reflectance(window, band, seed, scale, season) // 4).astype(np.int16)


def _hash01(parcel_rows: np.ndarray, parcel_cols: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """A uniform number in [0, 1) per parcel (splitmix64 finaliser of its indices): the same parcel gets the
    same number in every window, at every scale."""
    with np.errstate(over="ignore"):
        x = parcel_rows.astype(np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x ^= parcel_cols.astype(np.int64).astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
        x ^= np.uint64((seed * 1000003 + salt) & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x165667B19E3779F9)
        for shift, factor in ((33, 0xFF51AFD7ED558CCD), (33, 0xC4CEB9FE1A85EC53)):
            x ^= x >> np.uint64(shift)
            x *= np.uint64(factor)
        x ^= x >> np.uint64(33)
    return (x >> np.uint64(11)).astype(np.float64) / 2.0**53


def _parcels(window: Window, seed: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Parcel row and column indices of every pixel: a grid of PARCEL_SIZE squares whose borders a smooth
    texture bends, so that the fields look drawn rather than ruled."""
    rows = (np.arange(window.row_off, window.row_off + window.height, dtype=np.float64) + 0.5) * scale
    cols = (np.arange(window.col_off, window.col_off + window.width, dtype=np.float64) + 0.5) * scale
    bend_rows, bend_cols = (PARCEL_SIZE * (texture(window, band, seed, scale) - 0.5) for band in _WARP_TEXTURES)
    parcel_rows = np.floor((rows[:, np.newaxis] + bend_rows) / PARCEL_SIZE)
    parcel_cols = np.floor((cols[np.newaxis, :] + bend_cols) / PARCEL_SIZE)
    return parcel_rows, parcel_cols


def greenness(window: Window, seed: int, scale: int, season: float) -> np.ndarray:
    """Vegetation cover in [0, 1] of every pixel at ``season`` (0: start, 1: end of the season). Each parcel
    greens up along a smooth S-curve lasting GROWTH_DURATION from its own date, then is harvested at once
    (cover STUBBLE_COVER) at its own date, during the season for some parcels, after it for the others: the
    landscape changes smoothly but not linearly in time, sometimes abruptly, and differently per parcel. The
    Sentinel-2 and the Sentinel-1 generators both read it."""
    parcel_rows, parcel_cols = _parcels(window, seed, scale)
    onset = -0.3 + _hash01(parcel_rows, parcel_cols, seed, 1)
    progress = np.clip((season - onset) / GROWTH_DURATION, 0.0, 1.0)
    harvest = onset + GROWTH_DURATION + 0.1 + 0.8 * _hash01(parcel_rows, parcel_cols, seed, 2)
    return np.where(season >= harvest, STUBBLE_COVER, progress * progress * (3.0 - 2.0 * progress))


def seasonal_reflectance(window: Window, band: str, seed: int, scale: int, season: float) -> np.ndarray:
    """Reflectance x10000 of ``band`` at ``season``: per pixel, the mix of the soil and vegetation spectra
    weighted by :func:`greenness`, times a brightness of the parcel and of the ground (shared by the dates of
    a ``seed``), with a little texture of the band's own."""
    band_index = (S2_BANDS_10M + S2_BANDS_20M).index(band)
    parcel_rows, parcel_cols = _parcels(window, seed, scale)
    brightness = (0.75 + 0.5 * _hash01(parcel_rows, parcel_cols, seed, 3)) * (
        0.85 + 0.3 * texture(window, _BRIGHTNESS_TEXTURE, seed, scale)
    )
    cover = greenness(window, seed, scale, season)
    mixed = (1.0 - cover) * SOIL_SPECTRUM[band_index] + cover * VEGETATION_SPECTRUM[band_index]
    detail = 0.92 + 0.16 * texture(window, band_index, seed, scale)
    return np.clip(np.rint(mixed * brightness * detail), 1, 9999).astype(np.int16)


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
    season: float | None = None,
) -> Path:
    """Write a THEIA product of ``shape`` (rows, cols at 10 m) under ``out_dir``; return its folder
    (or its .zip when ``as_zip``). ``omit`` names files to leave out (a band such as "B4", or "CLM", "EDG")
    to make broken products. With ``season`` (the date's position in the season, 0 to 1) the ground is the
    seasonal landscape of :func:`seasonal_reflectance`, shared by the products of a ``seed``; without it,
    independent textures per band."""
    name = theia_product_name(acquired, tile)
    product = Path(out_dir) / name
    height, width = shape
    transform_10m = Affine(10.0, 0.0, origin[0], 0.0, -10.0, origin[1])

    def band_values(band: str, scale: int):
        def values(window: Window) -> np.ndarray:
            clear = reflectance(window, band, seed, scale, season)
            cloudy = cloudy_reflectance(window, band, seed, scale, season)
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
