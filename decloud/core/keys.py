"""The names, types and shapes of the tensors that flow from sampling to training and inference: the
single definition of the ``<source>_<acquisition>`` key contract (``s1_t``, ``s2_tm1``, ``s2_20m_tp1``,
``dem``, ``s2_timestamp_t``...). TFRecords, models and processors all build and parse keys here.

Acquisition names are letters and digits only (no underscore), so a key splits unambiguously at its
last underscore.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from decloud.core.constants import S1_BANDS, S2_BANDS_10M, S2_BANDS_20M
from decloud.core.errors import InvalidArgumentError

# --- Image sources (one tensor per acquisition) ------------------------------------------------
S1 = "s1"
S2 = "s2"
S2_20M = "s2_20m"
#: Holes of an acquisition made from a clear image and another product's cloud mask (1 = hole, its pixels
#: set to no-data in the image): the pixels a model had to produce, the only ones scores count.
S2_HOLES = "s2_holes"
#: Days from the target date to the acquisition's Sentinel-2 image, per pixel (negative before it): the
#: processors choose the image per pixel; records derive it from the timestamps (:mod:`decloud.core.days`).
S2_DAYS = "s2_days"
# --- Per-acquisition scalars -------------------------------------------------------------------
S1_TIMESTAMP = "s1_timestamp"
S2_TIMESTAMP = "s2_timestamp"
# --- Per-sample keys without acquisition -------------------------------------------------------
DEM = "dem"
TILE = "tile"
PATCH_ROW = "patch_row"
PATCH_COL = "patch_col"

ACQUISITION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")


@dataclass(frozen=True)
class SourceSpec:
    """Type and layout of the tensor of one source, for a patch of ``patchsize`` 10 m pixels."""

    dtype: str
    channels: int | None  #: None for scalars
    scale: int = 1  #: pixel size in units of 10 m (2 for 20 m sources)

    def shape(self, patchsize: int) -> tuple[int, ...]:
        """Shape (rows, cols, channels) of a patch, () for a scalar."""
        if self.channels is None:
            return ()
        return (patchsize // self.scale, patchsize // self.scale, self.channels)


SOURCES: dict[str, SourceSpec] = {
    S1: SourceSpec("uint16", len(S1_BANDS)),
    S2: SourceSpec("int16", len(S2_BANDS_10M)),
    S2_20M: SourceSpec("int16", len(S2_BANDS_20M), scale=2),
    S2_HOLES: SourceSpec("uint8", 1),
    S2_DAYS: SourceSpec("float32", 1),
    DEM: SourceSpec("int16", 1, scale=2),
    S1_TIMESTAMP: SourceSpec("float64", None),
    S2_TIMESTAMP: SourceSpec("float64", None),
    TILE: SourceSpec("string", None),
    PATCH_ROW: SourceSpec("int32", None),
    PATCH_COL: SourceSpec("int32", None),
}
#: Sources that exist once per acquisition; the others exist once per sample.
PER_ACQUISITION = (S1, S2, S2_20M, S2_HOLES, S2_DAYS, S1_TIMESTAMP, S2_TIMESTAMP)
#: The date of each image source.
TIMESTAMP_OF = {S1: S1_TIMESTAMP, S2: S2_TIMESTAMP}
#: Keys every sample carries so that it can be traced back to its source pixels.
TRACE_KEYS = (TILE, PATCH_ROW, PATCH_COL)


def check_acquisition_name(name: str) -> str:
    if not ACQUISITION_NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"acquisition name {name!r} must start with a letter and hold only letters and digits (e.g. tm1, t, tp1)"
        )
    return name


def key(source: str, acquisition: str | None = None) -> str:
    """The key of ``source`` for ``acquisition`` (``key("s2_20m", "tp1") == "s2_20m_tp1"``)."""
    if source not in SOURCES:
        raise InvalidArgumentError(f"unknown source {source!r} (known: {', '.join(SOURCES)})")
    if (acquisition is None) == (source in PER_ACQUISITION):
        needs = "needs" if source in PER_ACQUISITION else "takes no"
        raise InvalidArgumentError(f"source {source!r} {needs} an acquisition name")
    return source if acquisition is None else f"{source}_{check_acquisition_name(acquisition)}"


def sample_keys(
    acquisitions: Mapping[str, Iterable[str]], *, with_20m_bands: bool = False, with_dem: bool = False
) -> list[str]:
    """Every key of a sample made of ``acquisitions`` ({acquisition: its sources}), acquisition by acquisition,
    then the DEM if asked and the trace keys. An image source (``s1``, ``s2``) comes with its timestamp, and
    an S2 image with its 20 m bands if asked; any other per-acquisition source (``s2_holes``, a timestamp
    alone) is its own key."""
    names: list[str] = []
    for acquisition, sources in acquisitions.items():
        for source in sources:
            names.append(key(source, acquisition))
            if source in TIMESTAMP_OF:
                names.append(key(TIMESTAMP_OF[source], acquisition))
            if source == S2 and with_20m_bands:
                names.append(key(S2_20M, acquisition))
    return [*names, DEM, *TRACE_KEYS] if with_dem else [*names, *TRACE_KEYS]


def split_key(name: str) -> tuple[str, str | None]:
    """(source, acquisition) of a key; the acquisition is None for per-sample keys."""
    if name in SOURCES and name not in PER_ACQUISITION:
        return name, None
    source, _, acquisition = name.rpartition("_")
    if source not in PER_ACQUISITION or not ACQUISITION_NAME.fullmatch(acquisition):
        raise InvalidArgumentError(f"{name!r} is not a decloud key (<source>_<acquisition> or {DEM!r}, {TILE!r}...)")
    return source, acquisition


def spec_of(name: str) -> SourceSpec:
    """Type and layout of the tensor under key ``name``."""
    return SOURCES[split_key(name)[0]]


def keys_of_source(names: Iterable[str], source: str) -> list[str]:
    """The keys among ``names`` that hold ``source`` (any acquisition); names outside the contract are skipped."""
    found = []
    for name in names:
        try:
            if split_key(name)[0] == source:
                found.append(name)
        except InvalidArgumentError:
            continue
    return found
