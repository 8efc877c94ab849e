"""CRGA architectures: reconstruct the image at ``t`` from S1 and S2 at ``t`` and at neighbouring dates
(``tm1`` before; ``tp1`` after for the OS2 variants). Each date is a branch of a shared-weight encoder.
``with_s1=False`` gives the S2-only variant, for tiles without Sentinel-1 (layout crga_os2_s2only.json)."""

from __future__ import annotations

from typing import Any, ClassVar

import keras
from keras import ops

from decloud.core import keys
from decloud.core.errors import InvalidArgumentError
from decloud.models.gapfilling import keep_or_interpolate, time_weight
from decloud.models.model import is_valid_s2
from decloud.models.registry import register
from decloud.models.unet import MultiBranchUNet

#: Scaled input -> change feature, per source: about 1 for a change of 3 dB of S1 backscatter (scaled S1 is
#: (ln + 10) / 13, so 3 dB is 0.053), and for a change of 0.1 of S2 reflectance.
CHANGE_SCALES = {keys.S1: 20.0, keys.S2: 10.0}


@register("crga_os1_unet")
class CrgaOs1Unet(MultiBranchUNet):
    """U-Net over the dates ``tm1`` and ``t`` (S1 + S2 each)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"with_s1": True}
    S1_ACQUISITIONS = ("tm1", "t")
    S2_ACQUISITIONS = ("tm1", "t")


@register("crga_os2_unet")
class CrgaOs2Unet(MultiBranchUNet):
    """U-Net over the dates ``tm1``, ``t`` and ``tp1`` (S1 + S2 each).

    With ``residual``, the network learns only a correction of the estimate a user would otherwise make: the
    clear pixels of ``t`` as they are, elsewhere the mean of ``tm1`` and ``tp1`` (the valid one where only one
    is), and the U-Net's output is added to it. The network then spends its capacity on what the neighbouring
    dates get wrong (the change S1 sees between them, the texture of the clear neighbourhood) instead of
    relearning to copy reflectances.

    With ``time_weighted`` (residual only), ``tm1`` and ``tp1`` are interpolated linearly in time, as whole-series
    gap-filling does, instead of averaged: the model also reads ``s2_days_tm1`` and ``s2_days_tp1``, the days from
    the target date to each image per pixel (:mod:`decloud.core.days`; the processors choose the images per
    pixel), and starts from the baseline itself. The network is then also given the evidence of what the
    interpolation misses (:meth:`change_features`), beside the DEM: without it, the small network did not find
    the change in the Sentinel-1 speckle within the demo's training budget (its correction stayed near 0).
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {"with_s1": True, "residual": False, "time_weighted": False}
    S1_ACQUISITIONS = ("tm1", "t", "tp1")
    S2_ACQUISITIONS = ("tm1", "t", "tp1")
    DAYS_ACQUISITIONS = ("tm1", "tp1")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["time_weighted"] and not self.params["residual"]:
            raise InvalidArgumentError(f"model {self.name!r}: time_weighted weighs the residual's base: set residual")

    def input_keys(self) -> list[str]:
        days = [keys.key(keys.S2_DAYS, a) for a in self.DAYS_ACQUISITIONS] if self.params["time_weighted"] else []
        return [*super().input_keys(), *days]

    def interpolation_weights(self, normalized_inputs: dict[str, Any]) -> dict[str, Any]:
        """Weight of ``tp1`` per source: its share of the time from ``tm1`` to ``tp1`` at each pixel (the 20 m
        pixels take their upper-left 10 m pixel's, whose date the processors chose), 0.5 without days."""
        if not self.params["time_weighted"]:
            return {source: 0.5 for source in self.output_sources()}
        before, after = (normalized_inputs[keys.key(keys.S2_DAYS, a)] for a in self.DAYS_ACQUISITIONS)
        weight = time_weight(before, after)
        return {source: weight[:, :: keys.SOURCES[source].scale, :: keys.SOURCES[source].scale, :]
                for source in self.output_sources()}  # fmt: skip

    def change_features(self, normalized_inputs: dict[str, Any]) -> Any:
        """At half resolution (2 x 2 means, which also calm the speckle): the S1 image of ``t`` minus its
        interpolation in time between ``tm1`` and ``tp1`` (what changed since the clear dates, as the radar saw
        it), the S2 change from ``tm1`` to ``tp1`` (0 where either is no-data), the weight of ``tp1`` and the time
        between the two dates (the longer, the more the interpolation misses); scaled to about unit range
        (CHANGE_SCALES, DAYS_MODEL_SCALE)."""
        weight = self.interpolation_weights(normalized_inputs)[keys.S2]
        features = []
        if keys.key(keys.S1, "t") in normalized_inputs:
            at, before, after = (normalized_inputs[keys.key(keys.S1, a)] for a in ("t", "tm1", "tp1"))
            interpolated = ops.add(before, ops.multiply(weight, ops.subtract(after, before)))
            features.append(ops.multiply(ops.subtract(at, interpolated), CHANGE_SCALES[keys.S1]))
        before, after = (normalized_inputs[keys.key(keys.S2, a)] for a in ("tm1", "tp1"))
        both = ops.logical_and(is_valid_s2(before), is_valid_s2(after))
        change = ops.where(both, ops.subtract(after, before), ops.zeros_like(before))
        before_days, after_days = (normalized_inputs[keys.key(keys.S2_DAYS, a)] for a in self.DAYS_ACQUISITIONS)
        span = ops.subtract(after_days, before_days)  # scaled days: 1 for a month between the two clear dates
        features += [ops.multiply(change, CHANGE_SCALES[keys.S2]), weight, span]
        return keras.layers.AveragePooling2D(2, name="change_features")(ops.concatenate(features, axis=-1))

    def context(self, normalized_inputs: dict[str, Any]) -> Any:
        dem = super().context(normalized_inputs)
        if not self.params["time_weighted"]:
            return dem
        change = self.change_features(normalized_inputs)
        return change if dem is None else ops.concatenate([dem, change], axis=-1)

    def get_outputs(self, normalized_inputs: dict[str, Any]) -> dict[str, Any]:
        corrections = super().get_outputs(normalized_inputs)
        if not self.params["residual"]:
            return corrections
        weights = self.interpolation_weights(normalized_inputs)

        def baseline(source: str) -> Any:
            at, before, after = (normalized_inputs[keys.key(source, a)] for a in ("t", "tm1", "tp1"))
            return keep_or_interpolate(at, before, after, weights[source])

        return {source: ops.add(baseline(source), correction) for source, correction in corrections.items()}


@register("crga_os2_david")
class CrgaOs2David(CrgaOs2Unet):
    """The small "David" network (vs. the U-Net "Goliath"): two stride-2 levels, no skip connections."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"depth": 2}
    SKIPS = False
