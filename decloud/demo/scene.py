"""The synthetic tile of the demo: a season of Sentinel-2 dates (THEIA products, clouds of varied sizes on some
dates, no-data on one), Sentinel-1 every few days (S1Tiling pairs), a DEM, and the cloud-free truth of every
Sentinel-2 date.

All of it is drawn from :mod:`decloud.testing`'s seasonal landscape: fields that green up or are harvested
each at its own date, seen by both sensors, so that a model can learn from the neighbouring dates and from
the radar. The plan (dates, clouds) is a function of the seed only, so a seed always gives the same scene.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.windows import Window

from decloud.core.atomic import atomic_file
from decloud.core.progress import progress
from decloud.core.raster import block_windows, create_geotiff, geotiff_profile
from decloud.preprocessing.constants import PATCH_SIZE, S2_BANDS_10M, S2_NODATA, S2_SUFFIX_FRE_10M
from decloud.testing.dem import make_dem
from decloud.testing.regions import Rect
from decloud.testing.s1tiling import make_s1tiling_pair
from decloud.testing.theia import DEFAULT_CRS, DEFAULT_ORIGIN, make_theia_product, reflectance

log = logging.getLogger(__name__)

TILE = "T31TEJ"
#: First Sentinel-2 date (spring, when crops grow), at the usual morning pass over France.
FIRST_S2_DATE = datetime(2021, 4, 2, 10, 40)
#: Sentinel-1 passes in the evening (ascending orbit), starting the day before the first Sentinel-2 date.
FIRST_S1_DATE = datetime(2021, 4, 1, 17, 50)
S2_STEP_DAYS = 5
S1_STEP_DAYS = 3
#: Cloud systems per date: each covers one to MAX_PERSISTENCE consecutive dates, drifting between them.
SYSTEMS_PER_DATE = 1.6
MAX_PERSISTENCE = 4
#: Cloud radii, as shares of the tile side: small, medium and large clouds.
CLOUD_RADII = ((0.015, 0.035), (0.05, 0.1), (0.14, 0.25))
#: Pixel size of the generated source DEM (a coarse DEM, as SRTM is), metres.
DEM_SOURCE_PIXEL = 30.0
#: Suffix of the cloud-free truth of a date (same bands and units as a prepared 10 m stack).
TRUTH_SUFFIX = "_truth" + S2_SUFFIX_FRE_10M


@dataclass(frozen=True)
class S2Date:
    acquired: datetime
    season: float  #: position in the season, 0 (first date) to 1 (last)
    clouds: tuple[Rect, ...]
    nodata: tuple[Rect, ...]


@dataclass(frozen=True)
class ScenePlan:
    size: int  #: tile side, 10 m pixels
    seed: int
    s2: tuple[S2Date, ...]
    s1: tuple[tuple[datetime, float], ...]  #: (date, season) of each Sentinel-1 acquisition


@dataclass(frozen=True)
class Scene:
    """The written scene: raw products to prepare, and the truth of each Sentinel-2 date by product name."""

    s2_products: tuple[Path, ...]
    s1_vh: tuple[Path, ...]
    dem_source: Path
    truth: dict[str, Path]


def plan_scene(size: int, s2_dates: int, seed: int) -> ScenePlan:
    """Dates, seasons, clouds and no-data of a scene of ``size`` x ``size`` pixels. Clouds come in systems that
    last one to a few dates and drift, so some places stay hidden for weeks, as in a rainy spring; the middle
    date always has clouds of every size (so the quicklook has something to show); the date three steps later
    has a no-data strip along its west edge, as at the edge of a swath."""
    rng = np.random.default_rng([seed, size, s2_dates])
    clouds: list[list[Rect]] = [[] for _ in range(s2_dates)]
    for _ in range(round(SYSTEMS_PER_DATE * s2_dates)):
        radii = CLOUD_RADII[rng.integers(len(CLOUD_RADII))]
        first, persistence = rng.integers(s2_dates), rng.integers(1, MAX_PERSISTENCE + 1)
        centre, drift = rng.uniform(0, size, 2), rng.normal(0.0, 0.05 * size, 2)
        for step, index in enumerate(range(first, min(first + persistence, s2_dates))):
            clouds[index] += _cloud(rng, size, radii, centre + step * drift)
    middle, with_nodata = s2_dates // 2, min(s2_dates // 2 + 3, s2_dates - 1)
    for radii in (CLOUD_RADII[2], CLOUD_RADII[1], CLOUD_RADII[0], CLOUD_RADII[0]):
        clouds[middle] += _cloud(rng, size, radii, rng.uniform(0, size, 2))
    span = timedelta(days=S2_STEP_DAYS * (s2_dates - 1))
    dates = []
    for index in range(s2_dates):
        acquired = FIRST_S2_DATE + timedelta(days=S2_STEP_DAYS * index)
        nodata = (Rect(0, 0, size, size // 5),) if index == with_nodata else ()
        dates.append(S2Date(acquired, (acquired - FIRST_S2_DATE) / span, tuple(clouds[index]), nodata))
    s1_dates = [FIRST_S1_DATE]  # from before the first Sentinel-2 date to after the last one
    while s1_dates[-1] < dates[-1].acquired:
        s1_dates.append(s1_dates[-1] + timedelta(days=S1_STEP_DAYS))
    return ScenePlan(size, seed, tuple(dates), tuple((d, (d - FIRST_S2_DATE) / span) for d in s1_dates))


def _cloud(rng: np.random.Generator, size: int, radii: tuple[float, float], centre: np.ndarray) -> list[Rect]:
    """A cloud as a cluster of 3 to 6 overlapping rectangles around ``centre``, so its outline is ragged."""
    radius = rng.uniform(*radii) * size
    rects = []
    for _ in range(rng.integers(3, 7)):
        row, col = centre + rng.normal(0.0, radius / 2, 2)
        height, width = rng.uniform(0.6, 1.4, 2) * radius
        top, left = max(0, round(row - height / 2)), max(0, round(col - width / 2))
        bottom, right = min(size, round(row + height / 2)), min(size, round(col + width / 2))
        if bottom > top and right > left:
            rects.append(Rect(top, left, bottom - top, right - left))
    return rects


def write_scene(plan: ScenePlan, folder: Path) -> Scene:
    """Write the raw products of ``plan`` under ``folder``: ``S2/`` THEIA folders, ``S1/`` S1Tiling pairs,
    ``dem_source.tif``, and ``truth/<PRODUCT>_truth_FRE_10m.tif``."""
    shape = (plan.size, plan.size)
    products, truth = [], {}
    for date in progress(plan.s2, desc="Sentinel-2 dates", unit="date"):
        product = make_theia_product(
            folder / "S2",
            acquired=date.acquired,
            tile=TILE,
            shape=shape,
            clouds=date.clouds,
            nodata=date.nodata,
            seed=plan.seed,
            season=date.season,
        )
        products.append(product)
        truth[product.name] = write_truth(folder / "truth" / f"{product.name}{TRUTH_SUFFIX}", plan, date.season)
    s1_vh = [
        make_s1tiling_pair(folder / "S1", acquired=acquired, tile=TILE, shape=shape, seed=plan.seed, season=season)[1]
        for acquired, season in progress(plan.s1, desc="Sentinel-1 dates", unit="date")
    ]
    return Scene(tuple(products), tuple(s1_vh), write_dem_source(folder / "dem_source.tif", plan.size), truth)


def write_truth(path: Path, plan: ScenePlan, season: float) -> Path:
    """The cloud-free 10 m bands of the date at ``season``: what the generator draws without clouds or no-data."""
    profile = geotiff_profile(
        width=plan.size,
        height=plan.size,
        count=len(S2_BANDS_10M),
        dtype="int16",
        crs=DEFAULT_CRS,
        transform=Affine(10.0, 0.0, DEFAULT_ORIGIN[0], 0.0, -10.0, DEFAULT_ORIGIN[1]),
        nodata=S2_NODATA,
    )
    with atomic_file(path) as temporary, create_geotiff(temporary, profile, S2_BANDS_10M, {"SEASON": season}) as out:
        for window in block_windows(plan.size, plan.size):
            out.write(truth_window(plan, season, window), window=window)
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


def truth_window(plan: ScenePlan, season: float, window: Window) -> np.ndarray:
    """The cloud-free 10 m bands over ``window``, (bands, rows, cols), as the generator draws them."""
    return np.stack([reflectance(window, band, plan.seed, 1, season) for band in S2_BANDS_10M])
