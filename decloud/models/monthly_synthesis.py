"""Monthly synthesis: one cloud-free image from six dates of a month (``d0`` .. ``d5``), from S2 only or
from S2 and S1. Each date is a branch of a shared-weight U-Net encoder."""

from __future__ import annotations

from decloud.models.registry import register
from decloud.models.unet import MultiBranchUNet

DATES = tuple(f"d{index}" for index in range(6))


@register("monthly_synthesis_6_s2_images")
class MonthlySynthesis6S2(MultiBranchUNet):
    S2_ACQUISITIONS = DATES


@register("monthly_synthesis_6_s2s1_images")
class MonthlySynthesis6S2S1(MultiBranchUNet):
    S1_ACQUISITIONS = DATES
    S2_ACQUISITIONS = DATES
