"""CRGA architectures: reconstruct the image at ``t`` from S1 and S2 at ``t`` and at neighbouring dates
(``tm1`` before; ``tp1`` after for the OS2 variants). Each date is a branch of a shared-weight encoder.
``with_s1=False`` gives the S2-only variant, for tiles without Sentinel-1 (layout crga_os2_s2only.json)."""

from __future__ import annotations

from typing import Any, ClassVar

import keras
from keras import ops

from decloud.core import keys
from decloud.core.errors import InvalidArgumentError
from decloud.models.gapfilling import interpolate, keep_or_interpolate, time_weight
from decloud.models.model import is_valid_s2
from decloud.models.registry import register
from decloud.models.unet import MultiBranchUNet

#: Scaled input -> change feature, per source: about 1 for a change of 3 dB of S1 backscatter (scaled S1 is
#: (ln + 10) / 13, so 3 dB is 0.053), and for a change of 0.1 of S2 reflectance.
CHANGE_SCALES = {keys.S1: 20.0, keys.S2: 10.0}
#: Side (10 m pixels) of the cells the clear-pixel offset is averaged on (:meth:`CrgaOs2Unet.clear_offset`): the
#: network's size multiple at depth 3, so that the cells of every chunk fall on the same grid (tile invariance).
OFFSET_CELL = 8
#: Cells of clearance between a hole and a cell whose offset counts (:meth:`CrgaOs2Unet.clear_offset`).
OFFSET_CLEARANCE = 1


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

    With ``offset_radius`` (time-weighted only; 10 m pixels, 0: none), the network also sees how the clear pixels
    of ``t`` within about that radius differ from the interpolation (:meth:`clear_offset`): the date's own haze and
    light, which the two other dates do not share and which a small network cannot gather from deep inside a
    large cloud.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "with_s1": True, "residual": False, "time_weighted": False, "offset_radius": 0,
    }  # fmt: skip
    S1_ACQUISITIONS = ("tm1", "t", "tp1")
    S2_ACQUISITIONS = ("tm1", "t", "tp1")
    DAYS_ACQUISITIONS = ("tm1", "tp1")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["time_weighted"] and not self.params["residual"]:
            raise InvalidArgumentError(f"model {self.name!r}: time_weighted weighs the residual's base: set residual")
        radius = self.params["offset_radius"]
        if radius < 0:  # its type is checked with every parameter's, against DEFAULTS
            raise InvalidArgumentError(f"model {self.name!r}: offset_radius must be an integer >= 0, not {radius!r}")
        if radius and not self.params["time_weighted"]:
            raise InvalidArgumentError(f"model {self.name!r}: offset_radius compares t with the base: time_weighted")
        if radius and self.size_multiple % OFFSET_CELL:
            raise InvalidArgumentError(
                f"model {self.name!r}: offset_radius averages over cells of {OFFSET_CELL} pixels: depth must be >= 3"
            )

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

    def clear_offset(self, normalized_inputs: dict[str, Any]) -> Any:
        """At half resolution: the mean of ``t`` minus the interpolation in time over the OFFSET_CELL cells away from
        any hole (the cells within OFFSET_CLEARANCE valid in both), within a square of about ``offset_radius`` pixels
        around each cell (scaled as the S2 change), and the share of such cells there (an offset from few cells says
        less). Cloud masks miss the thin edges of clouds, which brighten the clear pixels next to them: a real
        cloudy image shows them, the clear images that training punches holes in do not, so they are left out."""
        weight = self.interpolation_weights(normalized_inputs)[keys.S2]
        at, before, after = (normalized_inputs[keys.key(keys.S2, a)] for a in ("t", "tm1", "tp1"))
        interpolated = interpolate(before, after, weight)
        both = ops.cast(ops.all(ops.logical_and(is_valid_s2(at), is_valid_s2(interpolated)), axis=-1, keepdims=True),
                        "float32")  # fmt: skip
        difference = ops.where(ops.greater(both, 0.0), ops.subtract(at, interpolated), ops.zeros_like(at))
        cells = keras.layers.AveragePooling2D(OFFSET_CELL, name="offset_cells")
        whole = ops.cast(ops.greater(cells(both), 0.999), "float32")  # cells with no hole pixel
        clearance = keras.layers.MaxPooling2D(2 * OFFSET_CLEARANCE + 1, strides=1, padding="same")
        away = ops.negative(clearance(ops.negative(whole)))
        window = 2 * -(-self.params["offset_radius"] // OFFSET_CELL) + 1
        neighbourhood = keras.layers.AveragePooling2D(window, strides=1, padding="same", name="offset_window")
        pooled = neighbourhood(ops.concatenate([ops.multiply(cells(difference), away), away], axis=-1))
        summed, share = pooled[..., :-1], pooled[..., -1:]
        offset = ops.divide(summed, ops.maximum(share, 1e-3))
        features = ops.concatenate([ops.multiply(offset, CHANGE_SCALES[keys.S2]), share], axis=-1)
        # cells -> half resolution: each repeated, then averaged over a box as wide, a linear ramp from one cell's
        # value to the next (what bilinear resizing gives, written with operations that take any input size)
        factor = OFFSET_CELL // 2
        repeated = ops.repeat(ops.repeat(features, factor, axis=1), factor, axis=2)
        return keras.layers.AveragePooling2D(factor, strides=1, padding="same", name="clear_offset")(repeated)

    def context(self, normalized_inputs: dict[str, Any]) -> Any:
        dem = super().context(normalized_inputs)
        if not self.params["time_weighted"]:
            return dem
        features = [dem] if dem is not None else []
        features.append(self.change_features(normalized_inputs))
        if self.params["offset_radius"]:
            features.append(self.clear_offset(normalized_inputs))
        return ops.concatenate(features, axis=-1)

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
