"""Small building blocks shared by the architectures: convolutions, residual blocks, and the multi-branch
U-Net of the CRGA, Meraner U-Net and monthly-synthesis families (one shared encoder applied to every
acquisition, features of all acquisitions concatenated at each level, a decoder with skip connections).

The 20 m bands and the DEM (both at half resolution) join the encoder at level 1 (H/2), and the 20 m
estimate leaves the decoder at that level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras

#: Filters double at each level up to this many doublings (64, 128, 256, 512, 512... for 64 filters).
MAX_DOUBLINGS = 3


def conv(filters: int, kernel: int = 3, strides: int = 1, name: str | None = None, activation: str | None = "relu"):
    return keras.layers.Conv2D(
        filters, kernel, strides, padding="same", activation=activation, kernel_initializer="he_normal", name=name
    )


def up(filters: int, name: str | None = None):
    """Transposed convolution that doubles the spatial size."""
    return keras.layers.Conv2DTranspose(
        filters, 3, 2, padding="same", activation="relu", kernel_initializer="he_normal", name=name
    )


def concat(tensors: Sequence[Any], name: str | None = None) -> Any:
    return tensors[0] if len(tensors) == 1 else keras.layers.Concatenate(axis=-1, name=name)(list(tensors))


def level_filters(filters: int, level: int) -> int:
    return filters * 2 ** min(level, MAX_DOUBLINGS)


def residual_block(tensor: Any, filters: int, name: str) -> Any:
    """Meraner et al.'s block: conv-relu-conv, scaled by 0.1 and added to the input, then relu."""
    residual = conv(filters, name=f"{name}_conv1")(tensor)
    residual = conv(filters, activation=None, name=f"{name}_conv2")(residual)
    residual = keras.layers.Rescaling(0.1, name=f"{name}_scale")(residual)
    return keras.layers.ReLU(name=f"{name}_relu")(keras.layers.Add(name=f"{name}_add")([tensor, residual]))


#: Initial weights of the estimate heads are tiny: the first estimates are near 0 instead of a random
#: offset of about one reflectance unit that the first steps would spend undoing.
HEAD_INITIALIZER_STDDEV = 1e-3


def estimate_head(tensor: Any, bands: int, name: str, kernel: int = 3) -> Any:
    """Linear convolution to the bands of an estimate (reflectance)."""
    initializer = keras.initializers.RandomNormal(stddev=HEAD_INITIALIZER_STDDEV)
    return keras.layers.Conv2D(bands, kernel, padding="same", kernel_initializer=initializer, name=name)(tensor)


@dataclass(frozen=True)
class Branch:
    """The inputs of one acquisition: its 10 m images concatenated, and its 20 m image if any."""

    name: str
    images_10m: Any
    images_20m: Any = None


def multi_branch_unet(
    branches: Sequence[Branch], dem: Any, *, filters: int, depth: int, skips: bool = True
) -> tuple[Any, Any]:
    """Decoder features at full and at half resolution (for the 10 m and 20 m heads).

    The encoder layers are shared by all branches (same weights for every date); a branch's level-1
    features are concatenated with its 20 m image's and with the DEM's. Without ``skips`` only the deepest
    features are decoded (the small "David" network).
    """
    if depth < 1:
        raise ValueError("a U-Net needs depth >= 1")
    encoder = [conv(filters, 5, name="enc0")] + [
        conv(level_filters(filters, level), strides=2, name=f"enc{level}") for level in range(1, depth + 1)
    ]
    conv_20m = conv(filters, name="enc1_20m")
    dem_features = None if dem is None else conv(filters, name="enc1_dem")(dem)
    levels: list[list[Any]] = [[] for _ in range(depth + 1)]
    for branch in branches:
        tensor = branch.images_10m
        for level, layer in enumerate(encoder):
            tensor = layer(tensor)
            if level == 1:
                extra = [conv_20m(branch.images_20m)] if branch.images_20m is not None else []
                extra += [dem_features] if dem_features is not None else []
                tensor = concat([tensor, *extra])
            levels[level].append(tensor)
    tensor = concat(levels[depth], name=f"dec{depth}_concat")
    half_resolution = tensor if depth == 1 else None
    for level in range(depth - 1, -1, -1):
        tensor = up(level_filters(filters, level), name=f"dec{level}")(tensor)
        if skips:
            tensor = concat([tensor, *levels[level]], name=f"dec{level}_concat")
        if level == 1:
            half_resolution = tensor
    return tensor, half_resolution
