"""Acquisition layouts: which images a training sample is made of, relative to one reference acquisition.

A layout names acquisitions (``tm1``, ``t``, ``target``...); each is an S1 image, an S2 image, or an S1/S2
pair at most ``max_s1s2_gap_hours`` apart, dated within a time window (hours, bounds included) relative
to the one *origin* acquisition, with cloud-cover bounds on its S2 image. Two acquisitions never share an
image unless a sibling group allows it. This module holds the data model and all its rules, so that the
Python form and the JSON form (:mod:`decloud.acquisitions.acquisition_factory`) are checked alike.

An acquisition may declare ``clouds_from``: the name of another, S2-only acquisition (the *mask donor*) whose
product's real cloud mask is transplanted onto this acquisition's clear image (same-date truth, see
:mod:`decloud.acquisitions.transplant`); a ``target`` sibling with the window (0, 0) is then that same clear
image. The donor contributes its mask and date, never its pixels.

An acquisition may declare ``nearest``: of the images that qualify for it in its window, a patch then takes only
the one closest in time to the origin (:mod:`decloud.core.closeness`), as the time-series processors choose each
pixel's dates, instead of every one of them. Training then sees the time spans inference meets.

Cloud bounds may be drawn at random (:class:`RandomBound`): randomness is data, resolved once per layout
with a seed (:meth:`AcquisitionsLayout.resolved`), never code to evaluate.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from decloud.core import keys
from decloud.core.atomic import atomic_file
from decloud.core.errors import DecloudError, InvalidArgumentError

#: The JSON key of a drawn cloud bound: ``{"random": [low, high]}``.
RANDOM_KEY = "random"
#: The reserved top-level JSON key of the sibling groups (so no acquisition may bear this name).
SIBLINGS_KEY = "siblings"
S1_TYPE = "S1"
S2_TYPE = "S2"
#: The JSON keys of an acquisition (the Decloud user guide's names), written by :meth:`AcquisitionsLayout.to_dict`
#: and read by :mod:`decloud.acquisitions.acquisition_factory`.
SENSORS_KEY = "acquisition"
START_HOURS_KEY = "timeframe_start_hours"
END_HOURS_KEY = "timeframe_end_hours"
GAP_HOURS_KEY = "max_s1s2_gap_hours"
ORIGIN_KEY = "timeframe_origin"
CLOUDS_FROM_KEY = "clouds_from"
NEAREST_KEY = "nearest"
#: The JSON keys of a sensor: its type (``S1`` or ``S2``, as its key) and, for S2, the cloud bounds.
TYPE_KEY = "type"
MIN_CLOUD_KEY = "min_cloud_percent"
MAX_CLOUD_KEY = "max_cloud_percent"


class LayoutError(DecloudError):
    """An acquisition layout (Python or JSON) breaks a rule; the message names the acquisition and field."""


def short_repr(value: Any, limit: int = 60) -> str:
    """A repr cut to ``limit`` characters for messages (a bad value can be a whole nested document)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    """A real, finite number (bool is an int in Python but never a meaningful number of hours or percent)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _require_number(value: Any, what: str) -> None:
    if not _is_number(value):
        raise LayoutError(f"{what} must be a finite number, not {short_repr(value)}")


def _require_percent(value: Any, what: str) -> None:
    if not _is_number(value) or not 0 <= value <= 100:
        raise LayoutError(f"{what} must be a number in 0-100, not {short_repr(value)}")


@dataclass(frozen=True)
class RandomBound:
    """A cloud bound drawn uniformly in [low, high] (percent) when the layout is resolved."""

    low: float
    high: float

    def __post_init__(self) -> None:
        _require_percent(self.low, "random bound low")
        _require_percent(self.high, "random bound high")
        if self.low > self.high:
            raise LayoutError(f"random bound [{self.low}, {self.high}] has low > high")

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


CloudBound = float | RandomBound


def _bound_range(bound: CloudBound) -> tuple[float, float]:
    """The values a bound can take."""
    return (bound.low, bound.high) if isinstance(bound, RandomBound) else (bound, bound)


def _resolve_bound(bound: CloudBound, rng: random.Random) -> float:
    return bound.draw(rng) if isinstance(bound, RandomBound) else bound


@dataclass(frozen=True)
class S1Acquisition:
    """One Sentinel-1 image (no selection criterion of its own: its date follows the S2 or the window)."""


@dataclass(frozen=True)
class S2Acquisition:
    """One Sentinel-2 image whose cloud percentage over the patch lies in [min, max] (bounds included).

    The bounds must be ordered for every possible draw (the highest minimum <= the lowest maximum), so
    that every resolution of a valid layout is valid too.
    """

    min_cloud_percent: CloudBound = 0
    max_cloud_percent: CloudBound = 100

    def __post_init__(self) -> None:
        for name in ("min_cloud_percent", "max_cloud_percent"):
            bound = getattr(self, name)
            if not isinstance(bound, RandomBound):
                _require_percent(bound, f"S2 {name}")
        if _bound_range(self.min_cloud_percent)[1] > _bound_range(self.max_cloud_percent)[0]:
            raise LayoutError(
                f"S2 min_cloud_percent ({self.min_cloud_percent}) can exceed max_cloud_percent "
                f"({self.max_cloud_percent})"
            )

    @property
    def is_random(self) -> bool:
        return isinstance(self.min_cloud_percent, RandomBound) or isinstance(self.max_cloud_percent, RandomBound)

    def resolved(self, rng: random.Random) -> S2Acquisition:
        """A copy with drawn bounds (min first, then max)."""
        return S2Acquisition(_resolve_bound(self.min_cloud_percent, rng), _resolve_bound(self.max_cloud_percent, rng))


@dataclass(frozen=True)
class Acquisition:
    """One named acquisition of a layout, checked on construction.

    ``window_hours`` is (low, high) relative to the origin, bounds included, whatever order it was given
    in; the origin's window is (0, 0).
    """

    name: str
    s1: S1Acquisition | None = None
    s2: S2Acquisition | None = None
    window_hours: tuple[float, float] = (0, 0)
    max_s1s2_gap_hours: float | None = None
    is_origin: bool = False
    clouds_from: str | None = None  #: the mask donor acquisition, for same-date truth
    nearest: bool = False  #: only the qualifying image closest in time to the origin, per patch

    def __post_init__(self) -> None:
        _check_name(self.name)
        prefix = f"acquisition {self.name!r}"
        try:
            self._check_sensors()
            self._check_window()
            self._check_gap()
            self._check_clouds_from()
            self._check_nearest()
        except LayoutError as error:
            raise LayoutError(f"{prefix}: {error}") from None

    def _check_sensors(self) -> None:
        if self.s1 is not None and not isinstance(self.s1, S1Acquisition):
            raise LayoutError(f"s1_acquisition must be an S1Acquisition, not {short_repr(self.s1)}")
        if self.s2 is not None and not isinstance(self.s2, S2Acquisition):
            raise LayoutError(f"s2_acquisition must be an S2Acquisition, not {short_repr(self.s2)}")
        if self.s1 is None and self.s2 is None:
            raise LayoutError("acquisition has neither S1 nor S2")

    def _check_window(self) -> None:
        if not isinstance(self.is_origin, bool):
            raise LayoutError(f"timeframe_origin must be True or False, not {short_repr(self.is_origin)}")
        if not isinstance(self.window_hours, tuple) or len(self.window_hours) != 2:
            raise LayoutError(f"window_hours must be a (low, high) tuple, not {short_repr(self.window_hours)}")
        for label, bound in zip(("timeframe_start_hours", "timeframe_end_hours"), self.window_hours, strict=True):
            _require_number(bound, label)
        object.__setattr__(self, "window_hours", tuple(sorted(self.window_hours)))
        if self.is_origin and self.window_hours != (0, 0):
            raise LayoutError(
                f"timeframe_origin: the origin's time window must be [0, 0] hours, not {list(self.window_hours)}"
            )

    def _check_gap(self) -> None:
        both = self.s1 is not None and self.s2 is not None
        if self.max_s1s2_gap_hours is None:
            if both:
                raise LayoutError("max_s1s2_gap_hours is required when an acquisition has both S1 and S2")
            return
        if not both:
            raise LayoutError("max_s1s2_gap_hours is given but the acquisition does not have both S1 and S2")
        _require_number(self.max_s1s2_gap_hours, "max_s1s2_gap_hours")
        if self.max_s1s2_gap_hours <= 0:
            raise LayoutError(f"max_s1s2_gap_hours must be > 0, not {short_repr(self.max_s1s2_gap_hours)}")

    def _check_nearest(self) -> None:
        if not isinstance(self.nearest, bool):
            raise LayoutError(f"{NEAREST_KEY} must be true or false, not {short_repr(self.nearest)}")
        if self.nearest and self.is_origin:
            raise LayoutError(f"{NEAREST_KEY}: the origin is the reference date itself, nearest to nothing")

    def _check_clouds_from(self) -> None:
        if self.clouds_from is None:
            return
        if not isinstance(self.clouds_from, str):
            raise LayoutError(f"clouds_from must be an acquisition name, not {short_repr(self.clouds_from)}")
        if self.clouds_from == self.name:
            raise LayoutError("clouds_from names the acquisition itself: the mask must come from another product")
        if self.s2 is None:
            raise LayoutError("clouds_from needs an S2 image to transplant the mask onto")


def _check_name(name: Any) -> None:
    if not isinstance(name, str):
        raise LayoutError(f"acquisition name {short_repr(name)} must be a string")
    if name == SIBLINGS_KEY:
        raise LayoutError(f"acquisition name {name!r} is reserved for the sibling groups")
    try:
        keys.check_acquisition_name(name)
    except InvalidArgumentError as error:
        raise LayoutError(str(error)) from None


def _sibling_groups(groups: Any) -> tuple[frozenset[str], ...]:
    """Sibling groups as frozensets, checked for shape (names are checked against the layout in validate)."""
    if isinstance(groups, str | bytes) or not isinstance(groups, Iterable):
        raise LayoutError(f"siblings must be a list of lists of acquisition names, not {short_repr(groups)}")
    result: list[frozenset[str]] = []
    for group in groups:
        if isinstance(group, str | bytes) or not isinstance(group, Iterable):
            raise LayoutError(f"siblings: each group must be a list of acquisition names, not {short_repr(group)}")
        members = list(group)
        if not all(isinstance(name, str) for name in members):
            raise LayoutError(f"siblings: group {short_repr(members)} must hold acquisition names (strings)")
        if len(set(members)) < 2:
            raise LayoutError(f"siblings: group {short_repr(members)} must name at least two different acquisitions")
        for name in members:
            if any(name in previous for previous in result):
                raise LayoutError(f"siblings: acquisition {name!r} is in two sibling groups")
        result.append(frozenset(members))
    return tuple(result)


class AcquisitionsLayout:
    """Named acquisitions, one of them the time origin, and the sibling groups that may share an image."""

    def __init__(self, siblings: Iterable[Sequence[str]] | None = None) -> None:
        self._acquisitions: dict[str, Acquisition] = {}
        self._siblings: tuple[frozenset[str], ...] = ()
        if siblings is not None:
            self.set_siblings(siblings)

    # --- building -----------------------------------------------------------------------------------
    def new_acquisition(
        self,
        name: str,
        s1_acquisition: S1Acquisition | None = None,
        s2_acquisition: S2Acquisition | None = None,
        timeframe_start_hours: float = 0,
        timeframe_end_hours: float = 0,
        max_s1s2_gap_hours: float | None = None,
        timeframe_origin: bool = False,
        clouds_from: str | None = None,
        nearest: bool = False,
    ) -> None:
        """Add an acquisition (checked now; the rules between acquisitions are checked by :meth:`validate`).

        ``clouds_from`` names the S2-only acquisition whose product's cloud mask is transplanted onto this
        acquisition's clear image (same-date truth); ``nearest`` keeps, per patch, only its qualifying image
        closest in time to the origin."""
        acquisition = Acquisition(
            name,
            s1=s1_acquisition,
            s2=s2_acquisition,
            window_hours=(timeframe_start_hours, timeframe_end_hours),
            max_s1s2_gap_hours=max_s1s2_gap_hours,
            is_origin=timeframe_origin,
            clouds_from=clouds_from,
            nearest=nearest,
        )
        if name in self._acquisitions:
            raise LayoutError(f"acquisition {name!r} is defined twice")
        self._acquisitions[name] = acquisition

    def set_siblings(self, siblings: Iterable[Sequence[str]]) -> None:
        """Set the groups of acquisitions that may use the same image (e.g. ``[["t", "target"]]``)."""
        self._siblings = _sibling_groups(siblings)

    def validate(self) -> AcquisitionsLayout:
        """Check the rules between acquisitions (one origin, siblings naming known acquisitions); return self."""
        if not self._acquisitions:
            raise LayoutError("the layout has no acquisition")
        _ = self.origin  # raises unless exactly one acquisition is the origin
        for group in self._siblings:
            unknown = sorted(group - self._acquisitions.keys())
            if unknown:
                raise LayoutError(f"siblings: unknown acquisition(s) {', '.join(map(repr, unknown))} in a group")
        for name, donor in self.transplants.items():
            where = f"acquisition {name!r}: clouds_from {donor!r}"
            if donor not in self._acquisitions:
                raise LayoutError(f"{where} is not an acquisition of the layout")
            acquisition = self._acquisitions[donor]
            if acquisition.s2 is None or acquisition.s1 is not None:
                raise LayoutError(f"{where} must be an S2-only acquisition (it gives its cloud mask)")
            if acquisition.clouds_from is not None:
                raise LayoutError(f"{where} itself takes clouds from another acquisition")
        return self

    def resolved(self, seed: int) -> AcquisitionsLayout:
        """A copy with every random cloud bound drawn (same seed, same values), in acquisition order."""
        rng = random.Random(seed)
        layout = AcquisitionsLayout()
        layout._siblings = self._siblings
        for name, acquisition in self._acquisitions.items():
            s2 = acquisition.s2.resolved(rng) if acquisition.s2 is not None else None
            layout._acquisitions[name] = replace(acquisition, s2=s2)
        return layout

    # --- read-only views ----------------------------------------------------------------------------
    @property
    def acquisitions(self) -> Mapping[str, Acquisition]:
        """Acquisitions by name, in the order they were defined."""
        return MappingProxyType(self._acquisitions)

    @property
    def origin(self) -> str:
        """The name of the origin acquisition (LayoutError unless there is exactly one)."""
        origins = [name for name, acquisition in self._acquisitions.items() if acquisition.is_origin]
        if not origins:
            raise LayoutError("no acquisition has timeframe_origin set: exactly one must be the time origin")
        if len(origins) > 1:
            raise LayoutError(f"acquisitions {', '.join(map(repr, origins))} all have timeframe_origin set: one only")
        return origins[0]

    @property
    def siblings(self) -> tuple[frozenset[str], ...]:
        return self._siblings

    @property
    def has_random_bounds(self) -> bool:
        """True until :meth:`resolved`: the search needs plain numbers."""
        return any(a.s2 is not None and a.s2.is_random for a in self._acquisitions.values())

    @property
    def transplants(self) -> dict[str, str]:
        """Acquisition -> its mask donor, for the acquisitions that declare ``clouds_from``."""
        return {name: a.clouds_from for name, a in self._acquisitions.items() if a.clouds_from is not None}

    def are_siblings(self, first: str, second: str) -> bool:
        """Whether acquisitions ``first`` and ``second`` may use the same image."""
        return any(first in group and second in group for group in self._siblings)

    def keys(self, with_20m_bands: bool, with_dem: bool) -> list[str]:
        """The TFRecord keys of a sample of this layout, acquisition by acquisition, then per-sample keys (a
        transplanted acquisition adds its holes; a mask donor only its date)."""
        donors = set(self.transplants.values())
        sources: dict[str, list[str]] = {}
        for name, acquisition in self._acquisitions.items():
            if name in donors:  # a mask donor gives its mask (under the holder's key) and its date only
                sources[name] = [keys.S2_TIMESTAMP]
                continue
            sources[name] = [keys.S2_HOLES] if acquisition.clouds_from is not None else []
            sources[name] += [
                source for source, image in ((keys.S1, acquisition.s1), (keys.S2, acquisition.s2)) if image is not None
            ]
        return keys.sample_keys(sources, with_20m_bands=with_20m_bands, with_dem=with_dem)

    # --- JSON form ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON form read by :class:`~decloud.acquisitions.acquisition_factory.AcquisitionFactory`."""
        result: dict[str, Any] = {name: _acquisition_dict(a) for name, a in self._acquisitions.items()}
        if self._siblings:
            result[SIBLINGS_KEY] = [sorted(group) for group in self._siblings]
        return result

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON form to ``path`` (atomically)."""
        with atomic_file(path) as temporary:
            temporary.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    # --- comparison ---------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AcquisitionsLayout):
            return NotImplemented
        return self._acquisitions == other._acquisitions and set(self._siblings) == set(other._siblings)

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        siblings = [sorted(group) for group in self._siblings]
        return f"AcquisitionsLayout({list(self._acquisitions.values())!r}, siblings={siblings!r})"


def _bound_json(bound: CloudBound) -> Any:
    return {RANDOM_KEY: [bound.low, bound.high]} if isinstance(bound, RandomBound) else bound


def _acquisition_dict(acquisition: Acquisition) -> dict[str, Any]:
    sensors: dict[str, Any] = {}
    if acquisition.s2 is not None:
        sensors[S2_TYPE] = {
            TYPE_KEY: S2_TYPE,
            MIN_CLOUD_KEY: _bound_json(acquisition.s2.min_cloud_percent),
            MAX_CLOUD_KEY: _bound_json(acquisition.s2.max_cloud_percent),
        }
    if acquisition.s1 is not None:
        sensors[S1_TYPE] = {TYPE_KEY: S1_TYPE}
    result: dict[str, Any] = {SENSORS_KEY: sensors}
    if acquisition.max_s1s2_gap_hours is not None:
        result[GAP_HOURS_KEY] = acquisition.max_s1s2_gap_hours
    if acquisition.clouds_from is not None:
        result[CLOUDS_FROM_KEY] = acquisition.clouds_from
    if acquisition.nearest:
        result[NEAREST_KEY] = True
    if acquisition.is_origin:
        result[ORIGIN_KEY] = True
    else:
        result[START_HOURS_KEY], result[END_HOURS_KEY] = acquisition.window_hours
    return result
