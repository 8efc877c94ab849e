"""Days between an acquisition's Sentinel-2 image and the target date, per pixel: the one definition of the
``s2_days_<acquisition>`` inputs (:data:`decloud.core.keys.S2_DAYS`).

A time-series processor chooses the image of ``tm1`` and ``tp1`` per pixel (the nearest clear date), so their
dates vary from pixel to pixel and reach a model as maps; a training sample's images are whole products, so
its maps are constant, derived from the records' timestamps (``s2_timestamp_<a>`` and the target's). Both go
through :func:`days_between`; a model that interpolates in time between ``tm1`` and ``tp1`` reads its weights
from these maps, so training and inference agree. The arithmetic works on numpy arrays and TensorFlow
tensors alike.
"""

from __future__ import annotations

from typing import Any

from decloud.core import keys
from decloud.core.constants import DAY

#: Days -> network input (in the graph, as every input's scale): a month is about 1.
DAYS_MODEL_SCALE = 1.0 / 30.0
#: The acquisition whose date the days are counted from (the image to reconstruct).
TARGET_ACQUISITION = "t"


def days_between(acquired: Any, target: Any) -> Any:
    """Days from ``target`` to ``acquired`` (seconds since 1970; negative when acquired before the target)."""
    return (acquired - target) / DAY


def days_keys(names: list[str]) -> list[str]:
    """The keys among ``names`` that are ``s2_days_<acquisition>`` maps."""
    return keys.keys_of_source(names, keys.S2_DAYS)


def timestamp_keys_of(days_key: str) -> list[str]:
    """The record keys a days map is derived from: the acquisition's S2 timestamp and the target's."""
    acquisition = keys.split_key(days_key)[1]
    return [keys.key(keys.S2_TIMESTAMP, acquisition), keys.key(keys.S2_TIMESTAMP, TARGET_ACQUISITION)]


def days_map_from_timestamps(sample: dict[str, Any], days_key: str, like: Any) -> Any:
    """The map of ``days_key`` for a batch of samples (timestamps (batch,)), shaped as the float image ``like``
    (batch, rows, cols, channels) with one channel: the same value over each sample's patch."""
    acquired, target = (sample[name] for name in timestamp_keys_of(days_key))
    days = days_between(acquired, target)[:, None, None, None]
    return days + 0.0 * like[..., :1]
