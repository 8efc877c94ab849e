"""CRGA architectures: reconstruct the image at ``t`` from S1 and S2 at ``t`` and at neighbouring dates
(``tm1`` before; ``tp1`` after for the OS2 variants). Each date is a branch of a shared-weight encoder.
``with_s1=False`` gives the S2-only variant, for tiles without Sentinel-1 (layout crga_os2_s2only.json)."""

from __future__ import annotations

from typing import Any, ClassVar

from keras import ops

from decloud.core import keys
from decloud.core.errors import InvalidArgumentError
from decloud.models.gapfilling import keep_or_interpolate, time_weight
from decloud.models.registry import register
from decloud.models.unet import MultiBranchUNet


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
    pixel), and starts from the baseline itself.
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
