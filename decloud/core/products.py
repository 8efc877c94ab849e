"""Prepared products as the later steps find them: a Sentinel-2 product folder, a Sentinel-1 image file, the
rule that tells a complete product from one being written, and the series of a tile folder in time order.

Sampling (the catalog), production (the processors) and the systems built on them all list and open prepared
products through this module, so they agree on which products exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from decloud.core.atomic import COMPLETION_MARKER, is_temporary
from decloud.core.constants import (
    S1_SUFFIX_NODATA_STATS,
    S1_SUFFIX_VVVH,
    S2_SUFFIX_CLM,
    S2_SUFFIX_FRE_10M,
    S2_SUFFIX_FRE_20M,
)
from decloud.core.errors import InputNotFoundError
from decloud.core.naming import parse_s1_name, parse_s2_product_name


def is_complete(product_dir: Path) -> bool:
    """A published, complete product: its marker is there and it is not a temporary about to be published."""
    return (product_dir / COMPLETION_MARKER).is_file() and not is_temporary(product_dir)


def s1_nodata_stats_path(prepared_image: str | os.PathLike[str]) -> Path:
    """The per-patch no-data count raster that goes with a prepared Sentinel-1 image."""
    image = Path(prepared_image)
    return image.with_name(image.name.removesuffix(".tif") + S1_SUFFIX_NODATA_STATS)


@dataclass(frozen=True)
class S2Product:
    """A prepared Sentinel-2 product folder."""

    directory: Path
    acquired: datetime

    @property
    def name(self) -> str:
        return self.directory.name

    def file(self, suffix: str) -> Path:
        return self.directory / f"{self.name}{suffix}"

    @property
    def bands_10m(self) -> Path:
        return self.file(S2_SUFFIX_FRE_10M)

    @property
    def bands_20m(self) -> Path:
        return self.file(S2_SUFFIX_FRE_20M)

    @property
    def cloud_mask(self) -> Path:
        return self.file(S2_SUFFIX_CLM)


@dataclass(frozen=True)
class S1Image:
    """A prepared Sentinel-1 [VV, VH] image."""

    path: Path
    acquired: datetime
    orbit_direction: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def nodata_stats(self) -> Path:
        return s1_nodata_stats_path(self.path)


def s2_product(path: str | os.PathLike[str]) -> S2Product:
    """A prepared Sentinel-2 product from its folder (which must be complete)."""
    folder = Path(path)
    if not is_complete(folder):
        raise InputNotFoundError(folder, "prepared Sentinel-2 product (folder with its completion marker)")
    return S2Product(folder, parse_s2_product_name(str(folder)).acquired)


def s1_image(path: str | os.PathLike[str]) -> S1Image:
    """A prepared Sentinel-1 image from its file."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(path, "prepared Sentinel-1 image")
    name = parse_s1_name(str(path))
    return S1Image(path, name.acquired, name.orbit_direction)


def prepared_s2_series(tile_dir: str | os.PathLike[str]) -> list[S2Product]:
    """The complete prepared Sentinel-2 products of a tile folder, in time order (by name on a tie);
    temporaries, even complete ones about to be published, are not products."""
    tile_dir = Path(tile_dir)
    if not tile_dir.is_dir():
        raise InputNotFoundError(tile_dir, "folder of prepared Sentinel-2 products")
    products = (s2_product(folder) for folder in sorted(tile_dir.iterdir()) if is_complete(folder))
    return sorted(products, key=lambda product: product.acquired)


def prepared_s1_series(tile_dir: str | os.PathLike[str]) -> list[S1Image]:
    """The prepared Sentinel-1 images of a tile folder, in time order (by name on a tie), temporaries left out."""
    tile_dir = Path(tile_dir)
    if not tile_dir.is_dir():
        raise InputNotFoundError(tile_dir, "folder of prepared Sentinel-1 images")
    images = (s1_image(path) for path in sorted(tile_dir.glob(f"*{S1_SUFFIX_VVVH}")) if not is_temporary(path))
    return sorted(images, key=lambda image: image.acquired)
