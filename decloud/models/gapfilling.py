"""Gap-filling baseline: the image at ``t`` as the linear interpolation in time between ``tm1`` and ``tp1``.

No weights: it is the reference any learned CRGA model must beat, packaged as a model so that it trains
(nothing), exports and serves like the others. Where only one of the two dates is valid the valid one is
copied; where neither is, the output is no-data.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from decloud.core import keys
from decloud.core.constants import S2_MODEL_SCALE, S2_NODATA
from decloud.core.errors import InvalidArgumentError
from decloud.models.model import Model, is_valid_s2
from decloud.models.registry import register

BEFORE, AT, AFTER = "tm1", "t", "tp1"


def time_weight(before: Any, after: Any, at: Any = 0.0) -> Any:
    """Weight of the ``after`` image at time ``at``, (at - before) / (after - before) clipped to [0, 1]; 0.5
    when both dates are equal. Any time unit, any shape (per-sample dates or per-pixel day maps)."""
    span = ops.subtract(after, before)
    positive = ops.greater(span, 0.0)
    weight = ops.where(positive, ops.divide(ops.subtract(at, before), ops.where(positive, span, 1.0)), 0.5)
    return ops.clip(weight, 0.0, 1.0)


def interpolation_weight(before: Any, at: Any, after: Any) -> Any:
    """:func:`time_weight` of per-sample timestamps, shaped (batch, 1, 1, 1). Computed in float64 (seconds
    since 1970 do not fit float32's 24-bit mantissa)."""
    return ops.reshape(ops.cast(time_weight(before, after, at), "float32"), (-1, 1, 1, 1))


def interpolate(before: Any, after: Any, weight: Any) -> Any:
    """Scaled Sentinel-2 images ``before`` and ``after`` blended with ``weight``, pixel by pixel, falling
    back on the valid one, or no-data."""
    valid_before, valid_after = is_valid_s2(before), is_valid_s2(after)
    blended = ops.add(before, ops.multiply(weight, ops.subtract(after, before)))
    nodata = ops.full_like(before, S2_NODATA * S2_MODEL_SCALE)
    one_valid = ops.where(valid_before, before, ops.where(valid_after, after, nodata))
    return ops.where(ops.logical_and(valid_before, valid_after), blended, one_valid)


def keep_or_interpolate(at: Any, before: Any, after: Any, weight: Any = 0.5) -> Any:
    """The baseline a residual network corrects: ``at`` where it is valid (a clear pixel of the date), else
    :func:`interpolate` of ``before`` and ``after``, else 0 (nothing to start from: the network estimates
    the whole value)."""
    filled = interpolate(before, after, weight)
    filled = ops.where(is_valid_s2(filled), filled, ops.zeros_like(filled))
    return ops.where(is_valid_s2(at), at, filled)


@register("gapfilling")
class GapFilling(Model):
    S2_ACQUISITIONS = (BEFORE, AFTER)
    TIMESTAMP_ACQUISITIONS = (BEFORE, AT, AFTER)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.has_dem():
            raise InvalidArgumentError("model 'gapfilling' does not use the DEM: remove with_dem")

    def get_outputs(self, normalized_inputs: dict[str, Any]) -> dict[str, Any]:
        timestamps = [normalized_inputs[keys.key(keys.S2_TIMESTAMP, name)] for name in (BEFORE, AT, AFTER)]
        weight = interpolation_weight(*timestamps)
        return {
            source: interpolate(
                normalized_inputs[keys.key(source, BEFORE)], normalized_inputs[keys.key(source, AFTER)], weight
            )
            for source in self.output_sources()
        }
