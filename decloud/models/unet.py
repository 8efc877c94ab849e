"""The abstract multi-branch U-Net model that the CRGA, Meraner U-Net and monthly-synthesis architectures
declare themselves from: each acquisition is a branch (its S1 and S2 images concatenated), the DEM and the
20 m bands are optional parameters, and width and depth scale the network."""

from __future__ import annotations

from typing import Any, ClassVar

from decloud.core import keys
from decloud.models.layers import Branch, concat, estimate_head, multi_branch_unet
from decloud.models.model import OUTPUT_BANDS, Model


class MultiBranchUNet(Model):
    """``filters`` at full resolution, doubled at each level (up to x8); ``depth`` stride-2 levels, so
    input sizes must be multiples of ``2 ** depth``. Decloud's published networks use 64 filters."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"filters": 16, "depth": 5}
    #: Decoder with skip connections (False: only the deepest features are decoded).
    SKIPS: ClassVar[bool] = True

    @property
    def size_multiple(self) -> int:
        return 2 ** self.params["depth"]

    def branch_acquisitions(self) -> list[str]:
        """Acquisitions in the order of their branches (S2 order, then any S1-only acquisition)."""
        ordered = list(self.S2_ACQUISITIONS)
        return ordered + [name for name in self.s1_acquisitions() if name not in ordered]

    def branch(self, acquisition: str, inputs: dict[str, Any]) -> Branch:
        sources = [source for source in (keys.S1, keys.S2) if keys.key(source, acquisition) in inputs]
        images = [inputs[keys.key(source, acquisition)] for source in sources]
        images_20m = inputs.get(keys.key(keys.S2_20M, acquisition))
        return Branch(acquisition, concat(images, name=f"{acquisition}_inputs"), images_20m)

    def context(self, normalized_inputs: dict[str, Any]) -> Any:
        """Features of the whole sample at half resolution, joined to every branch at level 1: the DEM (None
        without it)."""
        return normalized_inputs.get(keys.DEM)

    def get_outputs(self, normalized_inputs: dict[str, Any]) -> dict[str, Any]:
        branches = [self.branch(acquisition, normalized_inputs) for acquisition in self.branch_acquisitions()]
        full, half = multi_branch_unet(
            branches,
            self.context(normalized_inputs),
            filters=self.params["filters"],
            depth=self.params["depth"],
            skips=self.SKIPS,
        )
        outputs = {keys.S2: estimate_head(full, len(OUTPUT_BANDS[keys.S2]), "s2_head", kernel=5)}
        if self.with_20m_bands:
            outputs[keys.S2_20M] = estimate_head(half, len(OUTPUT_BANDS[keys.S2_20M]), "s2_20m_head")
        return outputs
