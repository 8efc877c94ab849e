"""Super-resolution architectures on the ``Model`` contract, trained under the Wald protocol.

They read one clear acquisition ``t`` of the records (``s2_t``, and ``s2_20m_t``), as prepared values, and
return prepared values (x1e4):

- ``superres_carn`` (``factor`` 2 or 4): the ten bands (four with ``with_20m_bands`` false) at ``factor``
  times finer pixels: the 20 m bands are first brought to the 10 m grid by bicubic upsampling, as the
  ``sentinel2_superresolution`` tool feeds them, then the ten bands go through one CARN upsampler.
  Outputs ``s2_estim`` and ``s2_20m_estim``, both on the fine grid.
- ``sharpen_carn``: the six 20 m bands at 10 m, guided by the four 10 m bands. Output ``s2_20m_estim`` on
  the 10 m grid.
- ``superres_bicubic`` and ``sharpen_bicubic``: the same inputs and outputs by bicubic upsampling, no weight:
  the baselines a user would otherwise use.

Training pairs (:meth:`training_pair`) follow the Wald protocol: the records' real images are the targets;
the inputs are the same images degraded by the factor (:func:`decloud.superres.degradation.degrade`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import tensorflow as tf

from decloud.core import keys
from decloud.models.model import Model
from decloud.models.registry import register
from decloud.superres.bands import check_factor
from decloud.superres.degradation import degrade
from decloud.superres.networks import carn_sharpener, carn_upsampler
from decloud.superres.upsampling import CubicUpsampling

#: The acquisition the super-resolution records hold (a layout with one clear S2 image named ``t``).
ACQUISITION = "t"
S2_KEY = keys.key(keys.S2, ACQUISITION)
S2_20M_KEY = keys.key(keys.S2_20M, ACQUISITION)
#: Width and depth of the CARN networks by default: small enough to train on a CPU.
CARN_DEFAULTS = {"filters": 32, "blocks": 2, "units": 2, "groups": 2}


class SuperresModel(Model):
    """What the super-resolution architectures share: one clear acquisition as input, Wald training pairs,
    no cropped copies of the outputs (their scale differs from their source's), a known output scale."""

    S2_ACQUISITIONS = (ACQUISITION,)
    DEFAULTS: ClassVar[dict[str, Any]] = {"with_20m_bands": True}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if "factor" in self.params:
            check_factor(self.params["factor"])

    #: Output pixel size in 10 m pixels (0.5 for x2).
    @property
    def output_scale(self) -> float:
        raise NotImplementedError

    @property
    def wald_factor(self) -> int:
        """The factor by which training inputs are degraded."""
        raise NotImplementedError

    @classmethod
    def evaluator(cls) -> tuple[Any, Any]:
        from decloud.superres.evaluation import evaluate_superres, format_superres_table  # imports this module

        return evaluate_superres, format_superres_table

    def describe_outputs(self, contract: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The main outputs only (no cropped copies), at their pixel size. The margin tiled inference needs is
        the receptive field measured on the exported model (the description's ``tiling``)."""
        return [
            {**description, "pixel_size_m": 10 * self.output_scale}
            for description in contract
            if description["cropped_pixels_per_side"] == 0 and "_pad" not in description["name"]
        ]

    def get_extra_outputs(self, outputs: dict[str, Any]) -> dict[str, Any]:
        return {}

    def record_keys(self) -> list[str]:
        return self.input_keys()

    def degraded_inputs(self, sample: dict[str, Any]) -> dict[str, Any]:
        factor = self.wald_factor
        return {name: degrade(tf.cast(sample[name], tf.float32), factor) for name in self.input_keys()}


class _Upsampler(SuperresModel):
    DEFAULTS: ClassVar[dict[str, Any]] = {"factor": 2}

    @property
    def output_scale(self) -> float:
        return 1.0 / self.params["factor"]

    @property
    def wald_factor(self) -> int:
        return self.params["factor"]

    def output_sources(self) -> list[str]:
        return [keys.S2, keys.S2_20M] if self.with_20m_bands else [keys.S2]

    def stack(self, normalized_inputs: dict[str, Any]) -> Any:
        """The bands on the 10 m grid, in the order B2 B3 B4 B8 (B5 B6 B7 B8A B11 B12)."""
        if not self.with_20m_bands:
            return normalized_inputs[S2_KEY]
        upsampled = CubicUpsampling(2, name="bands_20m_to_10m")(normalized_inputs[S2_20M_KEY])
        return keras.layers.Concatenate(name="ten_bands")([normalized_inputs[S2_KEY], upsampled])

    def split(self, estimate: Any) -> dict[str, Any]:
        if not self.with_20m_bands:
            return {keys.S2: estimate}
        return {keys.S2: estimate[..., :4], keys.S2_20M: estimate[..., 4:]}

    def training_pair(self, sample: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        targets = {keys.S2: tf.cast(sample[S2_KEY], tf.float32)}
        if self.with_20m_bands:  # the 20 m bands as the model sees them: on the 10 m grid
            targets[keys.S2_20M] = CubicUpsampling(2)(tf.cast(sample[S2_20M_KEY], tf.float32))
        return self.degraded_inputs(sample), {f"{source}_estim": value for source, value in targets.items()}


class _Sharpener(SuperresModel):
    output_scale = 1.0
    wald_factor = 2

    def output_sources(self) -> list[str]:
        return [keys.S2_20M]

    def training_pair(self, sample: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.degraded_inputs(sample), {"s2_20m_estim": tf.cast(sample[S2_20M_KEY], tf.float32)}


@register("superres_carn")
class SuperresCarn(_Upsampler):
    DEFAULTS: ClassVar[dict[str, Any]] = dict(CARN_DEFAULTS)

    def network(self) -> keras.Model:
        """The upsampler of the stacked bands (reflectance in, reflectance out), shared with exports."""
        if not hasattr(self, "_network"):
            p = self.params
            bands = 10 if self.with_20m_bands else 4
            self._network = carn_upsampler(bands, p["factor"], p["filters"], p["blocks"], p["units"], p["groups"])
        return self._network

    def get_outputs(self, normalized_inputs: dict[str, Any]) -> dict[str, Any]:
        return self.split(self.network()(self.stack(normalized_inputs)))


@register("superres_bicubic")
class SuperresBicubic(_Upsampler):
    def get_outputs(self, normalized_inputs: dict[str, Any]) -> dict[str, Any]:
        return self.split(CubicUpsampling(self.params["factor"], name="bicubic")(self.stack(normalized_inputs)))


@register("sharpen_carn")
class SharpenCarn(_Sharpener):
    DEFAULTS: ClassVar[dict[str, Any]] = {**CARN_DEFAULTS, "modulated": True}

    def get_outputs(self, normalized_inputs: dict[str, Any]) -> dict[str, Any]:
        p = self.params
        network = carn_sharpener(4, 6, p["filters"], p["blocks"], p["units"], p["groups"], p["modulated"])
        upsampled = CubicUpsampling(2, name="bands_20m_to_10m")(normalized_inputs[S2_20M_KEY])
        return {keys.S2_20M: network([normalized_inputs[S2_KEY], upsampled])}


@register("sharpen_bicubic")
class SharpenBicubic(_Sharpener):
    def get_outputs(self, normalized_inputs: dict[str, Any]) -> dict[str, Any]:
        # The guide is an input of the contract, unused by the baseline.
        return {keys.S2_20M: CubicUpsampling(2, name="bicubic")(normalized_inputs[S2_20M_KEY])}
