"""The synthetic tile of the demo: a season of Sentinel-2 dates (THEIA products) over the farmland of
:mod:`decloud.testing.landscape` under the sky of :mod:`decloud.testing.sky`, Sentinel-1 every few days
(S1Tiling pairs, with speckle), a DEM, the cloud-free truth of every Sentinel-2 date and the class map.

The weather is planned first: cloudiness follows a persistent random series (cloudy spells and clear spells)
whose mean is the requested cloud share; clouds belong to weather systems that drift over consecutive dates;
some dates have cirrus streaks; rain falls on the cloudiest dates and the soil then dries, which darkens bare
soil and raises the radar backscatter. The plan is a function of its arguments only, so a seed always gives the
same scene.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.windows import Window

from decloud.core.atomic import atomic_file
from decloud.core.constants import (
    PATCH_SIZE,
    S2_BANDS_10M,
    S2_BANDS_20M,
    S2_NODATA,
    S2_REFLECTANCE_SCALE,
    S2_SUFFIX_FRE_10M,
    S2_SUFFIX_FRE_20M,
)
from decloud.core.progress import progress
from decloud.core.raster import block_windows, create_geotiff, geotiff_profile
from decloud.testing.dem import make_dem
from decloud.testing.landscape import BANDS, CLASSES, Conditions, backscatter, block_mean, class_map, reflectance
from decloud.testing.noise import gamma_speckle
from decloud.testing.s1tiling import make_s1tiling_pair
from decloud.testing.sky import Weather, clear_sky, observe, sun_position, with_cover
from decloud.testing.theia import DEFAULT_CRS, DEFAULT_ORIGIN, make_theia_product

log = logging.getLogger(__name__)

TILE = "T31TEJ"
#: Where the tile lies (for the sun's position): the middle of T31TEJ, in the south of France.
LATITUDE, LONGITUDE = 43.9, 3.3
#: First Sentinel-2 date (spring, when crops grow), at the usual morning pass over France.
FIRST_S2_DATE = datetime(2021, 4, 2, 10, 40)
#: Sentinel-1 passes in the evening (ascending orbit), starting the day before the first Sentinel-2 date.
FIRST_S1_DATE = datetime(2021, 4, 1, 17, 50)
S2_STEP_DAYS = 5
S1_STEP_DAYS = 3
#: Default mean share of the tile under flagged clouds over the dates (shadows and cirrus add to the CLM).
CLOUD_SHARE = 0.2
#: Correlation of the cloudiness of consecutive dates, and the chance that a cloudy date brings a new weather
#: system rather than the previous one drifting on.
CLOUD_PERSISTENCE, NEW_SYSTEM = 0.6, 0.4
#: The share of cloudy dates is CLOUDY_DATES_PER_SHARE times the cloud share; their covers rise along the power
#: COVER_POWER from the least to the most cloudy, none above MAX_COVER.
CLOUDY_DATES_PER_SHARE, COVER_POWER, MAX_COVER = 2.5, 1.5, 0.95
#: Sizes of the largest cloud structures of a system (scattered cumulus to large systems), pixels; cloud layer
#: heights, metres; drift speed of a system (standard deviation per axis), pixels per day.
CLOUD_CELLS, CLOUD_HEIGHTS, DRIFT_SPEED = (60.0, 120.0, 200.0), (600.0, 1800.0), 10.0
#: Chance of cirrus streaks on a date, their peak opacity range, and the largest opacity of the faint haze.
CIRRUS_CHANCE, CIRRUS_OPACITY, HAZE_MAX = 0.2, (0.15, 0.4), 0.04
#: Soil moisture (m3/m3): between rains, and the wetting of a rain that then dries out with DRYING_DAYS.
MOISTURE_BASE, RAIN_WETTING, DRYING_DAYS = 0.12, 0.12, 6.0
#: Dates at least this cloudy bring rain.
RAIN_COVER = 0.4
#: The date with a swath edge has no data west of a line leaving the top row at SWATH_EDGE of the tile's width
#: and slanting east by SWATH_SLOPE columns per row, as the edge of a Sentinel-2 swath crosses a tile.
SWATH_EDGE, SWATH_SLOPE = 0.2, 0.15
#: Looks of the Sentinel-1 intensity (speckle variance 1/looks), as a ground-range detected product has.
S1_LOOKS = 4
#: Pixel size of the generated source DEM (a coarse DEM, as SRTM is), metres.
DEM_SOURCE_PIXEL = 30.0
#: Suffixes of the cloud-free truth of a date (same bands and units as the prepared 10 m and 20 m stacks).
TRUTH_SUFFIX = "_truth" + S2_SUFFIX_FRE_10M
TRUTH_SUFFIX_20M = "_truth" + S2_SUFFIX_FRE_20M
#: The class map (uint8 codes, colour table) and the names of its classes, beside the products.
CLASS_MAP, CLASS_NAMES = "classes.tif", "classes.json"


@dataclass(frozen=True)
class S2Date:
    acquired: datetime
    weather: Weather
    swath_edge: float | None  #: column where the no-data west of the swath edge ends on the top row; None: none


@dataclass(frozen=True)
class ScenePlan:
    size: int  #: tile side, 10 m pixels
    seed: int
    s2: tuple[S2Date, ...]
    s1: tuple[datetime, ...]  #: Sentinel-1 acquisitions
    rains: tuple[datetime, ...]


@dataclass(frozen=True)
class Scene:
    """The written scene: raw products to prepare, the truth of each Sentinel-2 date by product name (10 m and
    20 m stacks) and the class map."""

    s2_products: tuple[Path, ...]
    s1_vh: tuple[Path, ...]
    dem_source: Path
    truth: dict[str, Path]
    truth_20m: dict[str, Path]
    classes: Path


def cloud_covers(rng: np.random.Generator, dates: int, share: float) -> np.ndarray:
    """Cloud cover of each date, of mean ``share``: the CLOUDY_DATES_PER_SHARE x ``share`` dates (at most 90 %)
    highest in a persistent random series (AR(1) of correlation CLOUD_PERSISTENCE) are cloudy, so that cloudy
    and clear dates come in spells; their covers, from the least to the most cloudy, rise along a power law
    (partly cloudy dates, a few overcast ones) scaled to the mean ``share``, at most MAX_COVER."""
    latent = np.empty(dates)
    latent[0] = rng.normal()
    for index in range(1, dates):
        latent[index] = CLOUD_PERSISTENCE * latent[index - 1] + math.sqrt(1 - CLOUD_PERSISTENCE**2) * rng.normal()
    cloudy = min(round(CLOUDY_DATES_PER_SHARE * share * dates), round(0.9 * dates))
    covers = np.zeros(dates)
    if share <= 0 or cloudy == 0:
        return covers
    levels = ((np.arange(cloudy) + 0.5) / cloudy) ** COVER_POWER
    for _ in range(5):  # scale to the mean share, the clipped ones staying at MAX_COVER
        levels = np.clip(levels * share * dates / levels.sum(), 0.0, MAX_COVER)
    covers[np.argsort(latent)[-cloudy:]] = levels
    return covers


def plan_scene(
    size: int, s2_dates: int, seed: int, *, cloud_share: float = CLOUD_SHARE, step_days: int = S2_STEP_DAYS
) -> ScenePlan:
    """Dates, weather, rains and no-data of a scene of ``size`` x ``size`` pixels with ``s2_dates`` Sentinel-2
    dates every ``step_days`` from FIRST_S2_DATE, clouds flagging a mean share ``cloud_share`` of the tile; the
    date three steps after the middle one has a no-data swath edge along its west side."""
    rng = np.random.default_rng([seed, size, s2_dates])
    covers = cloud_covers(rng, s2_dates, cloud_share)
    sample = np.arange(2.0, size, 4.0)
    rows, cols = sample[:, np.newaxis], sample[np.newaxis, :]
    with_edge = min(s2_dates // 2 + 3, s2_dates - 1)
    dates, system, offset, velocity, cell, height = [], 0, np.zeros(2), np.zeros(2), CLOUD_CELLS[0], 0.0
    for index in range(s2_dates):
        acquired = FIRST_S2_DATE + timedelta(days=step_days * index)
        fresh = rng.random() < NEW_SYSTEM
        new_velocity, new_cell = rng.normal(0.0, DRIFT_SPEED, 2), CLOUD_CELLS[rng.integers(len(CLOUD_CELLS))]
        new_height = rng.uniform(*CLOUD_HEIGHTS)
        if index == 0 or fresh or covers[index - 1] == 0:
            system, offset, velocity, cell, height = system + 1, np.zeros(2), new_velocity, new_cell, new_height
        else:
            offset = offset + velocity * step_days
        cirrus, cirrus_angle, haze = rng.random() < CIRRUS_CHANCE, rng.uniform(0, 180), rng.uniform(0, HAZE_MAX)
        zenith, azimuth = sun_position(acquired, LATITUDE, LONGITUDE)
        weather = Weather(
            system=system,
            date_key=index,
            offset=(float(offset[0]), float(offset[1])),
            cell=float(cell),
            height=float(height),
            sun_zenith=zenith,
            sun_azimuth=azimuth,
            cirrus=float(rng.uniform(*CIRRUS_OPACITY)) if cirrus else 0.0,
            cirrus_angle=float(cirrus_angle),
            haze=float(haze),
        )
        weather = with_cover(weather, float(covers[index]), rows, cols, seed)
        dates.append(S2Date(acquired, weather, SWATH_EDGE * size if index == with_edge else None))
    rains = tuple(date.acquired for date in dates if date.weather.cover >= RAIN_COVER)
    s1_dates = [FIRST_S1_DATE]  # from before the first Sentinel-2 date to after the last one
    while s1_dates[-1] < dates[-1].acquired:
        s1_dates.append(s1_dates[-1] + timedelta(days=S1_STEP_DAYS))
    return ScenePlan(size, seed, tuple(dates), tuple(s1_dates), rains)


def conditions(plan: ScenePlan, when: datetime) -> Conditions:
    """The ground's day of the year and soil moisture at ``when``: MOISTURE_BASE plus the wetting of every
    earlier rain, drying out exponentially."""
    days = [(when - rain).total_seconds() / 86400 for rain in plan.rains]
    moisture = MOISTURE_BASE + sum(RAIN_WETTING * math.exp(-d / DRYING_DAYS) for d in days if d >= 0)
    day = when.timetuple().tm_yday + (when.hour + when.minute / 60) / 24
    return Conditions(day=day, moisture=moisture)


def swath_nodata(date: S2Date, window: Window) -> np.ndarray:
    """True over the 10 m pixels of ``window`` west of the date's swath edge (none without one)."""
    if date.swath_edge is None:
        return np.zeros((window.height, window.width), dtype=bool)
    rows = np.arange(window.row_off, window.row_off + window.height)[:, np.newaxis] + 0.5
    cols = np.arange(window.col_off, window.col_off + window.width)[np.newaxis, :] + 0.5
    return cols < date.swath_edge + SWATH_SLOPE * rows


@dataclass(frozen=True)
class DateImage:
    """Everything of one Sentinel-2 date over a 10 m window: reflectances (0-1) in landscape band order."""

    truth: np.ndarray  #: under the date's clear sky (its faint haze, no cloud, shadow or cirrus)
    seen: np.ndarray  #: under the date's sky
    clm: np.ndarray  #: uint8 THEIA cloud mask
    nodata: np.ndarray  #: bool, outside the swath


@lru_cache(maxsize=2)
def date_image(plan: ScenePlan, index: int, window: Window) -> DateImage:
    """The :class:`DateImage` of date ``index`` over the 10 m ``window`` (cached: every band file of the date
    reads it, the 20 m ones through the same 10 m window)."""
    date = plan.s2[index]
    surface = reflectance(window, plan.seed, conditions(plan, date.acquired))
    rows = np.arange(window.row_off, window.row_off + window.height)[:, np.newaxis] + 0.5
    cols = np.arange(window.col_off, window.col_off + window.width)[np.newaxis, :] + 0.5
    seen, clm = observe(surface, rows, cols, date.weather, plan.seed)
    nodata = swath_nodata(date, window)
    return DateImage(clear_sky(surface, date.weather), seen, np.where(nodata, 0, clm).astype(np.uint8), nodata)


def _fine_window(window: Window, scale: int) -> Window:
    """The 10 m window covering ``window`` of the grid of ``scale`` x 10 m."""
    return Window(window.col_off * scale, window.row_off * scale, window.width * scale, window.height * scale)


def to_stored(values: np.ndarray, nodata: np.ndarray) -> np.ndarray:
    """Reflectances (0-1) as stored: int16 x S2_REFLECTANCE_SCALE (at least 1), S2_NODATA where ``nodata``."""
    scaled = np.clip(np.rint(values * S2_REFLECTANCE_SCALE), 1, np.iinfo(np.int16).max).astype(np.int16)
    return np.where(nodata, np.int16(S2_NODATA), scaled)


def s2_bands(plan: ScenePlan, index: int, window: Window, bands: tuple[str, ...], scale: int, truth: bool):
    """int16 ``bands`` (bands, rows, cols) over ``window`` of the ``scale`` x 10 m grid, seen or cloud-free:
    20 m pixels are the mean of the 10 m pixels they cover, no data if any of those is."""
    image = date_image(plan, index, _fine_window(window, scale))
    values = (image.truth if truth else image.seen)[[BANDS.index(band) for band in bands]]
    nodata = image.nodata
    if scale > 1:
        values, nodata = block_mean(values, scale), block_mean(nodata.astype(np.float64), scale) > 0
    return to_stored(values, nodata)


def write_scene(plan: ScenePlan, folder: Path) -> Scene:
    """Write the raw products of ``plan`` under ``folder``: ``S2/`` THEIA folders, ``S1/`` S1Tiling pairs,
    ``dem_source.tif``, ``truth/<PRODUCT>_truth_FRE_{10m,20m}.tif``, and ``classes.tif`` with ``classes.json``."""
    shape = (plan.size, plan.size)
    products, truth, truth_20m = [], {}, {}
    for index, date in enumerate(progress(plan.s2, desc="Sentinel-2 dates", unit="date")):

        def band_values(window: Window, band: str, scale: int, index: int = index) -> np.ndarray:
            return s2_bands(plan, index, window, (band,), scale, truth=False)[0]

        def mask_values(window: Window, mask: str, index: int = index) -> np.ndarray:
            image = date_image(plan, index, window)
            return image.clm if mask == "CLM" else image.nodata.astype(np.uint8)

        product = make_theia_product(
            folder / "S2",
            acquired=date.acquired,
            tile=TILE,
            shape=shape,
            seed=plan.seed,
            band_values=band_values,
            mask_values=mask_values,
        )
        products.append(product)
        truth[product.name] = write_truth(folder / "truth" / f"{product.name}{TRUTH_SUFFIX}", plan, index, 1)
        truth_20m[product.name] = write_truth(folder / "truth" / f"{product.name}{TRUTH_SUFFIX_20M}", plan, index, 2)
    s1_vh = [
        make_s1tiling_pair(
            folder / "S1",
            acquired=acquired,
            tile=TILE,
            shape=shape,
            seed=plan.seed,
            sigma0_values=lambda window, polarisation, index=index: s1_sigma0(plan, index, window, polarisation),
        )[1]
        for index, acquired in enumerate(progress(plan.s1, desc="Sentinel-1 dates", unit="date"))
    ]
    classes = write_class_map(folder / CLASS_MAP, plan)
    return Scene(
        tuple(products), tuple(s1_vh), write_dem_source(folder / "dem_source.tif", plan.size), truth, truth_20m, classes
    )


def s1_sigma0(plan: ScenePlan, index: int, window: Window, polarisation: str) -> np.ndarray:
    """Linear sigma0 of Sentinel-1 acquisition ``index``: the landscape's backscatter times gamma speckle of
    S1_LOOKS looks, independent per pixel, date and polarisation."""
    rows = np.arange(window.row_off, window.row_off + window.height)[:, np.newaxis]
    cols = np.arange(window.col_off, window.col_off + window.width)[np.newaxis, :]
    clean = backscatter(window, plan.seed, conditions(plan, plan.s1[index]), polarisation)
    salt = 2 * index + ("vv", "vh").index(polarisation)
    return (clean * gamma_speckle(rows, cols, S1_LOOKS, plan.seed, salt)).astype(np.float32)


def _profile(size: int, count: int, dtype: str, scale: int, nodata: float | None) -> dict:
    return geotiff_profile(
        width=-(-size // scale),
        height=-(-size // scale),
        count=count,
        dtype=dtype,
        crs=DEFAULT_CRS,
        transform=Affine(10.0 * scale, 0.0, DEFAULT_ORIGIN[0], 0.0, -10.0 * scale, DEFAULT_ORIGIN[1]),
        nodata=nodata,
    )


def write_truth(path: Path, plan: ScenePlan, index: int, scale: int) -> Path:
    """The cloud-free bands of date ``index`` on the grid of ``scale`` x 10 m (the 10 m or the 20 m stack, in
    prepared order and units): the date under its clear sky (:func:`decloud.testing.sky.clear_sky`, the same-date
    truth that training on transplanted masks learns); no data outside the swath."""
    bands = S2_BANDS_10M if scale == 1 else S2_BANDS_20M
    profile = _profile(plan.size, len(bands), "int16", scale, S2_NODATA)
    with atomic_file(path) as temporary, create_geotiff(temporary, profile, bands) as out:
        for window in block_windows(profile["height"], profile["width"]):
            out.write(s2_bands(plan, index, window, bands, scale, truth=True), window=window)
    return path


def write_class_map(path: Path, plan: ScenePlan) -> Path:
    """The uint8 class of every 10 m pixel of the tile, with a colour table, and ``classes.json`` beside it
    (code, name and colour of each class): the labels of the scene."""
    profile = _profile(plan.size, 1, "uint8", 1, 0)
    with atomic_file(path) as temporary, create_geotiff(temporary, profile, ["class"]) as out:
        out.write_colormap(1, {c.code: tuple(int(c.colour[i : i + 2], 16) for i in (1, 3, 5)) for c in CLASSES})
        for window in block_windows(plan.size, plan.size):
            out.write(class_map(window, plan.seed)[np.newaxis], window=window)
    names = {"classes": [{"code": c.code, "name": c.name, "colour": c.colour} for c in CLASSES], "nodata": 0}
    with atomic_file(path.with_name(CLASS_NAMES)) as temporary:
        temporary.write_text(json.dumps(names, indent=2) + "\n")
    return path


def write_dem_source(path: Path, size: int) -> Path:
    """A coarse DEM covering the tile with a margin of one elementary patch, for ``dem-prepare`` to resample."""
    margin = PATCH_SIZE * 10.0
    pixels = int(np.ceil((size * 10.0 + 2 * margin) / DEM_SOURCE_PIXEL))
    transform = Affine(
        DEM_SOURCE_PIXEL, 0.0, DEFAULT_ORIGIN[0] - margin, 0.0, -DEM_SOURCE_PIXEL, DEFAULT_ORIGIN[1] + margin
    )
    with atomic_file(path) as temporary:
        make_dem(temporary, crs=DEFAULT_CRS, transform=transform, shape=(pixels, pixels))
    return path
