"""Generated ESA Sentinel-2 L2A ``.SAFE`` products: JPEG2000 (lossless) bands under
``GRANULE/<granule>/IMG_DATA/R10m`` and ``R20m``, the SCL classification at 20 m and the product
metadata ``MTD_MSIL2A.xml`` with its BOA offsets, as a folder or a .zip holding that folder.

Digital numbers are the reflectances of the THEIA generator (same seed, same texture) minus the BOA
offset, so a prepared SAFE product holds exactly :func:`decloud.testing.theia.reflectance` values."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.windows import Window

from decloud.core.constants import S2_BANDS_10M, S2_BANDS_20M
from decloud.testing.rasters import write_generated_band
from decloud.testing.regions import Rect, union_mask
from decloud.testing.theia import DEFAULT_CRS, DEFAULT_ORIGIN, cloudy_reflectance, reflectance

#: SCL classes written by the generator: vegetation where clear, cloud high probability under clouds.
SCL_CLEAR = 4
SCL_CLOUD = 9
SCL_NODATA = 0
#: BOA offset of processing baselines 04.00 and later.
BOA_OFFSET = -1000

_METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info>
    <Product_Image_Characteristics>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
{offsets}
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-2A_User_Product>
"""


def safe_product_name(acquired: datetime, tile: str, baseline: tuple[int, int] = (5, 9)) -> str:
    stamp = acquired.strftime("%Y%m%dT%H%M%S")
    return f"S2B_MSIL2A_{stamp}_N{baseline[0]:02d}{baseline[1]:02d}_R008_{tile}_{stamp}.SAFE"


def _band_code(band: str) -> str:
    """THEIA band name -> SAFE file band code (B2 -> B02, B8A -> B8A)."""
    return f"B{band[1:]:0>2}"


def make_safe_product(
    out_dir: str | Path,
    *,
    acquired: datetime,
    tile: str = "T31TEJ",
    shape: tuple[int, int] = (256, 256),
    origin: tuple[float, float] = DEFAULT_ORIGIN,
    crs: str = DEFAULT_CRS,
    clouds: Sequence[Rect] = (),
    nodata: Sequence[Rect] = (),
    seed: int = 0,
    baseline: tuple[int, int] = (5, 9),
    with_metadata: bool = True,
    as_zip: bool = False,
) -> Path:
    """Write a SAFE product of ``shape`` (rows, cols at 10 m, even) under ``out_dir``; return its folder
    (or its .zip). Without ``with_metadata`` the BOA offset must be inferred from the baseline."""
    name = safe_product_name(acquired, tile, baseline)
    product = Path(out_dir) / name
    stamp = acquired.strftime("%Y%m%dT%H%M%S")
    image_data = product / "GRANULE" / f"L2A_{tile}_A000001_{stamp}" / "IMG_DATA"
    offset = BOA_OFFSET if baseline >= (4, 0) else 0
    height, width = shape
    transform_10m = Affine(10.0, 0.0, origin[0], 0.0, -10.0, origin[1])

    def digital_numbers(band: str, scale: int):
        def values(window: Window) -> np.ndarray:
            clear = reflectance(window, band, seed, scale).astype(np.int32)
            cloudy = cloudy_reflectance(window, band, seed, scale).astype(np.int32)
            dn = np.where(union_mask(clouds, window, scale), cloudy, clear) - offset
            return np.where(union_mask(nodata, window, scale), 0, dn)

        return values

    def scene_classification(window: Window) -> np.ndarray:
        scl = np.where(union_mask(clouds, window, 2), SCL_CLOUD, SCL_CLEAR)
        return np.where(union_mask(nodata, window, 2), SCL_NODATA, scl)

    bands = [(band, 1) for band in S2_BANDS_10M] + [(band, 2) for band in S2_BANDS_20M]
    for band, scale in bands:
        write_generated_band(
            image_data / f"R{10 * scale}m" / f"{tile}_{stamp}_{_band_code(band)}_{10 * scale}m.jp2",
            height=height // scale,
            width=width // scale,
            transform=transform_10m @ Affine.scale(scale),
            crs=crs,
            dtype="uint16",
            values=digital_numbers(band, scale),
            driver="JP2OpenJPEG",
            QUALITY=100,
            REVERSIBLE="YES",
        )
    write_generated_band(
        image_data / "R20m" / f"{tile}_{stamp}_SCL_20m.jp2",
        height=height // 2,
        width=width // 2,
        transform=transform_10m @ Affine.scale(2),
        crs=crs,
        dtype="uint8",
        values=scene_classification,
        driver="JP2OpenJPEG",
        QUALITY=100,
        REVERSIBLE="YES",
    )
    if with_metadata:
        offsets = "\n".join(f'      <BOA_ADD_OFFSET band_id="{index}">{offset}</BOA_ADD_OFFSET>' for index in range(13))
        block = f"      <BOA_ADD_OFFSET_VALUES_LIST>\n{offsets}\n      </BOA_ADD_OFFSET_VALUES_LIST>"
        (product / "MTD_MSIL2A.xml").write_text(_METADATA.format(offsets=block))

    if not as_zip:
        return product
    archive = shutil.make_archive(str(product.with_suffix("")), "zip", root_dir=product.parent, base_dir=name)
    shutil.rmtree(product)
    return Path(archive)
