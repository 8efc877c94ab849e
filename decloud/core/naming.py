"""Product names: parsing THEIA and ESA SAFE Sentinel-2 product names and S1Tiling Sentinel-1 file
names, and building the names of prepared Sentinel-1 images.

All dates are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath

from decloud.core.constants import S1_SUFFIX_VVVH
from decloud.core.errors import ProductFormatError

_THEIA_NAME = re.compile(
    r"^(?P<satellite>SENTINEL2[ABCD])_(?P<datetime>\d{8}-\d{6}-\d{3})_L2A_(?P<tile>T\d{2}[A-Z]{3})"
    r"_(?P<kind>[A-Z])_V(?P<version>\d+-\d+)$"
)
_SAFE_NAME = re.compile(
    r"^(?P<satellite>S2[ABCD])_MSIL2A_(?P<datetime>\d{8}T\d{6})_N(?P<baseline>\d{4})_R(?P<orbit>\d{3})"
    r"_(?P<tile>T\d{2}[A-Z]{3})_(?P<discriminator>\d{8}T\d{6})$"
)
_S1TILING_NAME = re.compile(
    r"^(?P<satellite>s1[abcd])_(?P<tile>\d{2}[a-z]{3})_(?P<polarisation>vv|vh|vvvh)"
    r"_(?P<direction>asc|des)_(?P<orbit>\d{3})_(?P<datetime>\d{8}t(?:\d{6}|x{6}))(?P<suffix>_[\w-]+)?$",
    re.IGNORECASE,
)


def name_datetime(text: str, pattern: str, name: str) -> datetime:
    """The UTC date-time written ``text`` (``pattern`` as in :meth:`datetime.strptime`) in the product or
    image name ``name``; an impossible date (month 13, 31 February...) is a ProductFormatError naming it."""
    try:
        return datetime.strptime(text, pattern).replace(tzinfo=UTC)
    except ValueError:
        raise ProductFormatError(f"{name}: {text} is not a real date and time") from None


@dataclass(frozen=True)
class S2ProductName:
    """What a Sentinel-2 L2A product name says."""

    name: str  #: the product name, without .SAFE / .zip
    satellite: str  #: SENTINEL2A... (THEIA) or S2A... (SAFE)
    acquired: datetime
    tile: str  #: with its leading T, e.g. T31TEJ
    kind: str  #: "THEIA" or "SAFE"
    processing_baseline: tuple[int, int] | None = None  #: SAFE only, e.g. (5, 9) for N0509


def parse_s2_product_name(name: str) -> S2ProductName:
    """Parse a THEIA (``SENTINEL2B_20181023-105107-455_L2A_T30TYP_D_V1-9``) or ESA SAFE
    (``S2B_MSIL2A_20230615T103629_N0509_R008_T31TEJ_20230615T140010.SAFE``) product name."""
    stem = PurePath(name).name
    for extension in (".zip", ".SAFE"):
        stem = stem.removesuffix(extension)
    if match := _THEIA_NAME.match(stem):
        acquired = name_datetime(match["datetime"], "%Y%m%d-%H%M%S-%f", name)
        return S2ProductName(stem, match["satellite"], acquired, match["tile"], "THEIA")
    if match := _SAFE_NAME.match(stem):
        acquired = name_datetime(match["datetime"], "%Y%m%dT%H%M%S", name)
        baseline = (int(match["baseline"][:2]), int(match["baseline"][2:]))
        return S2ProductName(stem, match["satellite"], acquired, match["tile"], "SAFE", baseline)
    raise ProductFormatError(
        f"{name} is not a Sentinel-2 L2A product name (expected THEIA "
        f"SENTINEL2X_YYYYMMDD-HHMMSS-mmm_L2A_Txxxxx_C_Vx-y or ESA S2X_MSIL2A_YYYYMMDDTHHMMSS_Nxxxx_Rxxx_Txxxxx_...)"
    )


@dataclass(frozen=True)
class S1ProductName:
    """What an S1Tiling (or prepared) Sentinel-1 file name says."""

    satellite: str  #: s1a, s1b...
    tile: str  #: with its leading T, e.g. T31TEJ
    polarisation: str  #: vv, vh or vvvh (prepared)
    orbit_direction: str  #: ASC or DES
    relative_orbit: int
    datetime_text: str  #: as in the name, e.g. 20200101t060000 or 20201012txxxxxx
    suffix: str  #: what follows the date-time, e.g. "" or "_NormLim" or "_from-10to3dB"

    @property
    def acquired(self) -> datetime:
        """Acquisition date-time; S1Tiling writes ``txxxxxx`` when the time is unknown: midnight is used."""
        return _s1_datetime(self.datetime_text, self.prepared_name())

    @property
    def time_known(self) -> bool:
        return "x" not in self.datetime_text.lower()

    def with_polarisation(self, polarisation: str) -> S1ProductName:
        return S1ProductName(
            self.satellite,
            self.tile,
            polarisation,
            self.orbit_direction,
            self.relative_orbit,
            self.datetime_text,
            self.suffix,
        )

    def prepared_name(self) -> str:
        """File name of the prepared [VV, VH] image made from this acquisition."""
        return (
            f"{self.satellite}_{self.tile[1:]}_vvvh_{self.orbit_direction}_{self.relative_orbit:03d}"
            f"_{self.datetime_text}{S1_SUFFIX_VVVH}"
        )


def parse_s1_name(filename: str) -> S1ProductName:
    """Parse ``s1a_31TEJ_vh_DES_139_20201013txxxxxx.tif`` (S1Tiling) or a prepared
    ``s1a_31TEJ_vvvh_DES_139_20201013txxxxxx_from-10to3dB.tif``."""
    stem = PurePath(filename).name
    stem = stem[: -len(".tif")] if stem.lower().endswith(".tif") else stem
    match = _S1TILING_NAME.match(stem)
    if not match:
        raise ProductFormatError(
            f"{filename} is not an S1Tiling file name (expected s1X_TTTTT_<vv|vh>_<ASC|DES>_OOO_YYYYMMDDtHHMMSS.tif)"
        )
    name = S1ProductName(
        satellite=match["satellite"].lower(),
        tile="T" + match["tile"].upper(),
        polarisation=match["polarisation"].lower(),
        orbit_direction=match["direction"].upper(),
        relative_orbit=int(match["orbit"]),
        datetime_text=match["datetime"],
        suffix=match["suffix"] or "",
    )
    _s1_datetime(name.datetime_text, filename)  # an impossible date fails here, naming the file
    return name


def _s1_datetime(text: str, name: str) -> datetime:
    """The date-time of an S1Tiling name; ``txxxxxx`` (time unknown) is midnight."""
    return name_datetime(text.lower().replace("xxxxxx", "000000"), "%Y%m%dt%H%M%S", name)


def superres_output_name(product: S2ProductName, pixel_size_m: float, kind: str = "sisr") -> str:
    """``<SATELLITE>_<YYYYMMDD>_L2A_<TILE>_<size>m_<kind>.tif``, the names of the ``sentinel2_superresolution``
    tool (``SENTINEL2B_20181023_L2A_T30TYP_5m_sisr.tif``; ``kind`` "bicubic" for its bicubic twin)."""
    return f"{product.satellite}_{product.acquired:%Y%m%d}_L2A_{product.tile}_{pixel_size_m:g}m_{kind}.tif"
