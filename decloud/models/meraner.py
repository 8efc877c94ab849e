"""Meraner et al. (2020, doi:10.1016/j.isprsjprs.2020.05.013): S1 and the cloudy S2 at ``t`` -> S2 at ``t``.

``meraner_original`` is the paper's full-resolution residual network (the estimate is the cloudy image plus
a learned correction); ``meraner_unet`` is the same inputs through the multi-branch U-Net.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras

from decloud.core import keys
from decloud.models.layers import concat, conv, estimate_head, residual_block
from decloud.models.model import OUTPUT_BANDS, Model
from decloud.models.registry import register
from decloud.models.unet import MultiBranchUNet

ACQUISITION = "t"


@register("meraner_original")
class MeranerOriginal(Model):
    """``blocks`` residual blocks of ``filters`` channels at full resolution (the paper: 16 of 256).

    The 20 m bands and the DEM are upsampled to 10 m and join the inputs; the 20 m estimate is the average
    of 2x2 full-resolution features through its own head, added to the 20 m cloudy image.
    """

    S1_ACQUISITIONS = (ACQUISITION,)
    S2_ACQUISITIONS = (ACQUISITION,)
    DEFAULTS: ClassVar[dict[str, Any]] = {"filters": 32, "blocks": 4}

    def get_outputs(self, normalized_inputs: dict[str, Any]) -> dict[str, Any]:
        s2 = normalized_inputs[keys.key(keys.S2, ACQUISITION)]
        s2_20m = normalized_inputs.get(keys.key(keys.S2_20M, ACQUISITION))
        half_resolution = [image for image in (s2_20m, normalized_inputs.get(keys.DEM)) if image is not None]
        upsampled = [keras.layers.UpSampling2D(2, interpolation="bilinear")(image) for image in half_resolution]
        tensor = concat([normalized_inputs[keys.key(keys.S1, ACQUISITION)], s2, *upsampled], name="inputs")
        filters = self.params["filters"]
        tensor = conv(filters, name="conv_in")(tensor)
        for index in range(self.params["blocks"]):
            tensor = residual_block(tensor, filters, name=f"block{index}")
        correction = estimate_head(tensor, len(OUTPUT_BANDS[keys.S2]), "s2_head")
        outputs = {keys.S2: keras.layers.Add(name="s2_residual")([s2, correction])}
        if s2_20m is not None:
            pooled = keras.layers.AveragePooling2D(2, name="pool_20m")(tensor)
            correction_20m = estimate_head(pooled, len(OUTPUT_BANDS[keys.S2_20M]), "s2_20m_head")
            outputs[keys.S2_20M] = keras.layers.Add(name="s2_20m_residual")([s2_20m, correction_20m])
        return outputs


@register("meraner_unet")
class MeranerUnet(MultiBranchUNet):
    """S1 and S2 at ``t`` through a single-branch U-Net."""

    S1_ACQUISITIONS = (ACQUISITION,)
    S2_ACQUISITIONS = (ACQUISITION,)
