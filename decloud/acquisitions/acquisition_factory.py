"""Acquisition layouts from their JSON form, as written in the Decloud user guide::

    {
      "tm1": {"acquisition": {"S2": {"type": "S2", "min_cloud_percent": 0, "max_cloud_percent": 0}},
              "timeframe_start_hours": -120, "timeframe_end_hours": -360},
      "t": {"acquisition": {"S2": {"type": "S2", "min_cloud_percent": 50, "max_cloud_percent": 100},
                            "S1": {"type": "S1"}},
            "max_s1s2_gap_hours": 24, "timeframe_origin": "True"},
      "siblings": [["t", "target"]]
    }

Same-date truth: ``"clouds_from": "<acquisition>"`` on an acquisition transplants the real cloud mask of
that (S2-only) acquisition's product onto its clear image (see :mod:`decloud.acquisitions.transplant`).

A cloud bound is a number or ``{"random": [low, high]}``, or, as the original Decloud's layouts write it,
the string ``"random.randint(low, high)"`` (read as ``{"random": [low, high]}``, never evaluated); any
other string is refused. Any unknown key or value of the wrong type is a :class:`LayoutError` naming the
file, the acquisition and the key, so that a typo never silently changes the samples.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from decloud.acquisitions.sensing_layout import (
    CLOUDS_FROM_KEY,
    END_HOURS_KEY,
    GAP_HOURS_KEY,
    MAX_CLOUD_KEY,
    MIN_CLOUD_KEY,
    NEAREST_KEY,
    ORIGIN_KEY,
    RANDOM_KEY,
    S1_TYPE,
    S2_TYPE,
    SENSORS_KEY,
    SIBLINGS_KEY,
    START_HOURS_KEY,
    TYPE_KEY,
    AcquisitionsLayout,
    CloudBound,
    LayoutError,
    RandomBound,
    S1Acquisition,
    S2Acquisition,
    short_repr,
)
from decloud.core.paths import require_input_file

ACQUISITION_FIELDS = (
    SENSORS_KEY,
    START_HOURS_KEY,
    END_HOURS_KEY,
    GAP_HOURS_KEY,
    ORIGIN_KEY,
    CLOUDS_FROM_KEY,
    NEAREST_KEY,
)
SENSOR_FIELDS = {S1_TYPE: (TYPE_KEY,), S2_TYPE: (TYPE_KEY, MIN_CLOUD_KEY, MAX_CLOUD_KEY)}
#: The random cloud bound as the original Decloud's layouts write it, "random.randint(0, 20)": two integers.
DECLOUD_RANDINT = re.compile(r"random\.randint\( *(?P<low>-?\d{1,15}) *, *(?P<high>-?\d{1,15}) *\)")


class _DuplicateKeyError(ValueError):
    """A JSON object repeats a key (json.load would silently keep the last one)."""


@contextmanager
def _context(prefix: str) -> Iterator[None]:
    """Prefix the message of a LayoutError raised inside the block (file name, acquisition...)."""
    try:
        yield
    except LayoutError as error:
        raise LayoutError(f"{prefix}: {error}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _require_object(value: Any, where: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise LayoutError(f"{where} must be a JSON object, not {short_repr(value)}")
    return value


def _reject_unknown(content: Mapping[Any, Any], known: tuple[str, ...], where: str) -> None:
    for key in content:
        if key not in known:
            raise LayoutError(f"{where}: unknown key {short_repr(key)} (known: {', '.join(known)})")


def _cloud_bound(value: Any, field: str) -> CloudBound:
    """A number (checked by S2Acquisition) or the random form, ``{"random": [low, high]}`` or the original
    Decloud's string ``"random.randint(low, high)"`` (read by a regular expression, never evaluated); any
    other string is refused."""
    if isinstance(value, str):
        match = DECLOUD_RANDINT.fullmatch(value)
        if match is None:
            raise LayoutError(
                f'{field} must be a number, {{{RANDOM_KEY!r}: [low, high]}} or "random.randint(low, high)", '
                f"not the string {short_repr(value)} (strings are not evaluated)"
            )
        value = {RANDOM_KEY: [int(match["low"]), int(match["high"])]}
    if not isinstance(value, Mapping):
        return value
    _reject_unknown(value, (RANDOM_KEY,), field)
    bounds = value.get(RANDOM_KEY)
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise LayoutError(f"{field}: {RANDOM_KEY!r} must be a list [low, high], not {short_repr(bounds)}")
    with _context(field):
        return RandomBound(*bounds)


def _sensor(sensor: str, content: Any, acquisition: str) -> S1Acquisition | S2Acquisition:
    where = f"{acquisition}: {sensor}"
    _require_object(content, where)
    _reject_unknown(content, SENSOR_FIELDS[sensor], where)
    if content.get(TYPE_KEY) != sensor:
        raise LayoutError(
            f"{where}: {TYPE_KEY!r} must be {sensor!r} like its key, not {short_repr(content.get(TYPE_KEY))}"
        )
    if sensor == S1_TYPE:
        return S1Acquisition()
    with _context(acquisition):
        return S2Acquisition(
            _cloud_bound(content.get(MIN_CLOUD_KEY, 0), f"{S2_TYPE} {MIN_CLOUD_KEY}"),
            _cloud_bound(content.get(MAX_CLOUD_KEY, 100), f"{S2_TYPE} {MAX_CLOUD_KEY}"),
        )


def _flag(value: Any, key: str, where: str) -> bool:
    """``true``/``false`` or, as the user guide writes ``timeframe_origin``, the strings "True"/"False" (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise LayoutError(f'{where}: {key} must be true, false, "True" or "False", not {short_repr(value)}')


def _add_acquisition(layout: AcquisitionsLayout, name: Any, content: Any) -> None:
    where = f"acquisition {short_repr(name)}"
    _require_object(content, where)
    _reject_unknown(content, ACQUISITION_FIELDS, where)
    sensors = _require_object(content.get(SENSORS_KEY, {}), f"{where}: {SENSORS_KEY!r}")
    _reject_unknown(sensors, tuple(SENSOR_FIELDS), f"{where}: {SENSORS_KEY!r} (sensor)")
    parsed = {sensor: _sensor(sensor, value, where) for sensor, value in sensors.items()}
    layout.new_acquisition(
        name,
        s1_acquisition=parsed.get(S1_TYPE),
        s2_acquisition=parsed.get(S2_TYPE),
        timeframe_start_hours=content.get(START_HOURS_KEY, 0),
        timeframe_end_hours=content.get(END_HOURS_KEY, 0),
        max_s1s2_gap_hours=content.get(GAP_HOURS_KEY),
        timeframe_origin=_flag(content.get(ORIGIN_KEY, False), ORIGIN_KEY, where),
        clouds_from=content.get(CLOUDS_FROM_KEY),
        nearest=_flag(content.get(NEAREST_KEY, False), NEAREST_KEY, where),
    )


def _siblings(content: Any) -> list[list[Any]]:
    """JSON siblings are a list of lists (the Python form takes any iterables)."""
    if not isinstance(content, list) or not all(isinstance(group, list) for group in content):
        raise LayoutError(f"{SIBLINGS_KEY!r} must be a list of lists of acquisition names, not {short_repr(content)}")
    return content


def _layout(content: Any) -> AcquisitionsLayout:
    _require_object(content, "a layout")
    layout = AcquisitionsLayout()
    for name, value in content.items():
        if name == SIBLINGS_KEY:
            layout.set_siblings(_siblings(value))
        else:
            _add_acquisition(layout, name, value)
    return layout.validate()


class AcquisitionFactory:
    """Build an :class:`AcquisitionsLayout` from its JSON form (a file or the decoded dict)."""

    @staticmethod
    def get_acquisition(path: str | os.PathLike[str]) -> AcquisitionsLayout:
        """The validated layout of the JSON file at ``path``."""
        path = require_input_file(path, "acquisition layout (JSON)")
        try:
            with path.open(encoding="utf-8") as stream:
                content = json.load(stream, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
        except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError, _DuplicateKeyError
            raise LayoutError(f"{path}: not a valid JSON layout: {error}") from None
        except RecursionError:
            raise LayoutError(f"{path}: not a layout: its JSON is nested too deep to be read") from None
        return AcquisitionFactory.from_dict(content, source=str(path))

    @staticmethod
    def from_dict(content: Any, source: str = "<dict>") -> AcquisitionsLayout:
        """The validated layout of decoded JSON ``content``; errors name ``source`` (the file)."""
        with _context(source):
            return _layout(content)
