"""What lies between the generated landscape and Sentinel-2 on one date: clouds with ragged edges (thresholded
fractal noise), their shadows cast along the sun's direction, streaks of thin cirrus and a faint haze, and the
THEIA cloud mask (CLM) that flags them as MAJA does, missing the thinnest cloud edges as real masks do.

Like the landscape, every pixel is a function of its position, the seed and the date's :class:`Weather` only,
so any window is computed on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from decloud.testing.landscape import spectrum
from decloud.testing.noise import fractal_noise, smoothstep, value_noise

#: Reflectance of the top of a thick cloud (bright and white, darker in the SWIR where water droplets absorb),
#: of thin cirrus and haze (bluish: small particles scatter short wavelengths more), and the share of the
#: light lost in a cloud's shadow (less in blue, which the sky's diffuse light still brings).
CLOUD_TOP = spectrum(0.62, 0.60, 0.60, 0.63, 0.61, 0.62, 0.62, 0.62, 0.45, 0.30)
CIRRUS = spectrum(0.28, 0.25, 0.23, 0.21, 0.22, 0.21, 0.21, 0.21, 0.16, 0.10)
SHADOW_LOSS = spectrum(0.55, 0.62, 0.66, 0.72, 0.68, 0.70, 0.71, 0.72, 0.74, 0.75)

#: THEIA CLM bits (MAJA): 0 clouds or shadows, 1 clouds, 2 shadows of detected clouds, 4 clouds found by the
#: mono-temporal thresholds, 6 thin clouds, 7 high clouds (cirrus band at 1.38 um).
CLM_CLOUD = 0b0001_0011
CLM_SHADOW = 0b0000_0101
CLM_CIRRUS = 0b1100_0000
#: Thresholds of the mask: cloud opacity, shadow depth and cirrus opacity from which a pixel is flagged. Cloud
#: edges thinner than MASK_OPACITY stay unflagged, as do the faint haze and the lightest shadows.
MASK_OPACITY, SHADOW_MASK, CIRRUS_MASK = 0.15, 0.4, 0.12
#: Range of cloud density over which the opacity goes from 0 to 1: the width of the soft cloud edges.
EDGE = 0.08
#: Octaves of the cloud field (its largest structures are the weather's ``cell``), and the share of the date's
#: own field in the density (the rest is the drifting weather system's, shared by consecutive dates).
CLOUD_OCTAVES, OWN_SHARE = 5, 0.35
#: Cirrus streaks: stretch of the noise along the streaks, cell across them (pixels), and the range of noise
#: levels over which their opacity rises from 0 to its peak.
CIRRUS_STRETCH, CIRRUS_CELL, CIRRUS_LEVELS = 5.0, 50.0, (0.42, 0.72)
#: Spacing of the grid on which the density is sampled to find the threshold giving a cloud cover, pixels.
COVER_SAMPLING = 4
_SYSTEM, _DATE, _TOPS, _CIRRUS = 60, 61, 62, 63


@dataclass(frozen=True)
class Weather:
    """The sky of one date. Clouds are where the density (the drifting ``system`` field shifted by ``offset``,
    mixed with the date's own ``date_key`` field) exceeds ``threshold``, which the plan chooses to flag a share
    ``cover`` of the tile (see :func:`with_cover`)."""

    system: int  #: key of the weather system's cloud field (shared by the dates it lasts)
    date_key: int  #: key of the date's own part of the field
    offset: tuple[float, float]  #: drift of the system's field (rows, cols), pixels
    cell: float  #: size of the largest cloud structures, pixels
    height: float  #: height of the cloud layer above the ground, metres
    sun_zenith: float  #: degrees
    sun_azimuth: float  #: degrees clockwise from north
    cover: float = 0.0  #: share of the tile under flagged clouds (0: no cloud)
    threshold: float = math.inf
    cirrus: float = 0.0  #: peak opacity of the cirrus streaks (0: none)
    cirrus_angle: float = 0.0  #: direction of the streaks, degrees from the columns' axis
    haze: float = 0.0  #: opacity of the faint haze over the whole scene (never flagged)


def sun_position(when: datetime, latitude: float, longitude: float) -> tuple[float, float]:
    """Sun (zenith, azimuth clockwise from north), degrees, at ``when`` (UTC) over (latitude, longitude): the
    declination from the day of the year and the hour angle from the local solar time, ignoring the equation of
    time (a few minutes), which is within a degree of the ephemerides."""
    day = when.timetuple().tm_yday
    declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + day) / 365)
    solar_hours = when.hour + when.minute / 60 + longitude / 15
    hour_angle = math.radians(15 * (solar_hours - 12))
    lat = math.radians(latitude)
    cos_zenith = math.sin(lat) * math.sin(declination) + math.cos(lat) * math.cos(declination) * math.cos(hour_angle)
    azimuth = math.atan2(
        math.sin(hour_angle), math.cos(hour_angle) * math.sin(lat) - math.tan(declination) * math.cos(lat)
    )
    return math.degrees(math.acos(cos_zenith)), (math.degrees(azimuth) + 180.0) % 360.0


def shadow_offset(weather: Weather, pixel: float = 10.0) -> tuple[float, float]:
    """(rows, cols) from a cloud to its shadow, pixels of ``pixel`` metres: the cloud's height times the tangent
    of the sun's zenith angle, away from the sun (rows grow southwards, columns eastwards)."""
    length = weather.height * math.tan(math.radians(weather.sun_zenith)) / pixel
    azimuth = math.radians(weather.sun_azimuth)
    return length * math.cos(azimuth), -length * math.sin(azimuth)


def cloud_density(rows: np.ndarray, cols: np.ndarray, weather: Weather, seed: int) -> np.ndarray:
    """The cloud density field of the date (about 0.2 to 0.8) at the points (``rows``, ``cols``)."""
    shifted_r, shifted_c = rows - weather.offset[0], cols - weather.offset[1]
    system = fractal_noise(shifted_r, shifted_c, weather.cell, CLOUD_OCTAVES, seed, _SYSTEM * 1000 + weather.system)
    own = fractal_noise(rows, cols, weather.cell / 2, CLOUD_OCTAVES - 1, seed, _DATE * 1000 + weather.date_key)
    return (1 - OWN_SHARE) * system + OWN_SHARE * own


def cloud_opacity(rows: np.ndarray, cols: np.ndarray, weather: Weather, seed: int) -> np.ndarray:
    """Opacity of the clouds (0 clear to 1 opaque): rising linearly over EDGE above the threshold."""
    if weather.cover <= 0:
        return np.zeros(np.broadcast_shapes(np.shape(rows), np.shape(cols)))
    return np.clip((cloud_density(rows, cols, weather, seed) - weather.threshold) / EDGE, 0.0, 1.0)


def shadow_depth(rows: np.ndarray, cols: np.ndarray, weather: Weather, seed: int) -> np.ndarray:
    """Depth of the cloud shadows (0 lit to 1 fully shaded): the opacity of the cloud one :func:`shadow_offset`
    back towards the sun."""
    d_rows, d_cols = shadow_offset(weather)
    return cloud_opacity(rows - d_rows, cols - d_cols, weather, seed)


def cirrus_opacity(rows: np.ndarray, cols: np.ndarray, weather: Weather, seed: int) -> np.ndarray:
    """Opacity of the cirrus: noise stretched CIRRUS_STRETCH times along ``cirrus_angle``, rising with the noise
    over CIRRUS_LEVELS (smoothstep) to the weather's peak opacity."""
    if weather.cirrus <= 0:
        return np.zeros(np.broadcast_shapes(np.shape(rows), np.shape(cols)))
    angle = math.radians(weather.cirrus_angle)
    along = (cols * math.cos(angle) + rows * math.sin(angle)) / CIRRUS_STRETCH
    across = rows * math.cos(angle) - cols * math.sin(angle)
    streaks = fractal_noise(across, along, CIRRUS_CELL, 4, seed, _CIRRUS * 1000 + weather.date_key)
    low, high = CIRRUS_LEVELS
    return weather.cirrus * smoothstep((streaks - low) / (high - low))


def with_cover(weather: Weather, cover: float, rows: np.ndarray, cols: np.ndarray, seed: int) -> Weather:
    """``weather`` with the threshold that flags a share ``cover`` of the points (``rows``, ``cols``) (a sample
    of the tile) as cloud, i.e. puts their opacity at MASK_OPACITY or more."""
    if cover <= 0:
        return replace(weather, cover=0.0, threshold=math.inf)
    density = cloud_density(rows, cols, weather, seed)
    threshold = float(np.quantile(density, 1.0 - cover)) - MASK_OPACITY * EDGE
    return replace(weather, cover=cover, threshold=threshold)


def veiled(surface: np.ndarray, opacity: float | np.ndarray) -> np.ndarray:
    """``surface`` (bands, rows, cols) seen through haze or cirrus of ``opacity`` (a number or (rows, cols))."""
    return surface * (1.0 - opacity) + opacity * CIRRUS[:, None, None]


def clear_sky(surface: np.ndarray, weather: Weather) -> np.ndarray:
    """What Sentinel-2 would see of ``surface`` on the date without its clouds, their shadows and its cirrus: the
    ground under the date's faint haze, which veils the whole scene (the clear pixels a user keeps included) and
    which no cloud mask flags. The same-date truth of a cloudy pixel, as a clear image of that date would give it."""
    return veiled(surface, weather.haze)


def observe(surface: np.ndarray, rows: np.ndarray, cols: np.ndarray, weather: Weather, seed: int):
    """What Sentinel-2 sees of ``surface`` (reflectance, (bands, rows, cols), bands as in the landscape) under
    ``weather``, and the CLM of it: the shadows darken the ground, the haze and cirrus veil it, the clouds hide
    it (their tops a little uneven). Returns (reflectance float32, CLM uint8)."""
    shade = shadow_depth(rows, cols, weather, seed)
    cirrus = cirrus_opacity(rows, cols, weather, seed)
    clouds = cloud_opacity(rows, cols, weather, seed)
    lit = surface * (1.0 - SHADOW_LOSS[:, None, None] * shade)
    hazy = veiled(lit, np.clip(weather.haze + cirrus, 0.0, 1.0))
    tops = CLOUD_TOP[:, None, None] * (0.85 + 0.3 * value_noise(rows, cols, 6.0, seed, _TOPS))
    seen = hazy * (1.0 - clouds) + clouds * tops
    clm = np.zeros(clouds.shape, dtype=np.uint8)
    clm[shade >= SHADOW_MASK] |= CLM_SHADOW
    clm[cirrus >= CIRRUS_MASK] |= CLM_CIRRUS
    clm[clouds >= MASK_OPACITY] |= CLM_CLOUD
    return seen.astype(np.float32), clm
