"""Real co-located Sentinel-1 / Sentinel-2 patches of BigEarthNet turned into the inputs decloud's users
have: a THEIA-format L2A product folder and an S1Tiling vv/vh pair of linear sigma0 GeoTIFFs.

Only formats change: S2 reflectances keep their values (L2A x10000, stored int16) and the S1 dB values
become linear sigma0 (10^(dB/10)). BigEarthNet keeps only cloud-free patches and has no mask, so the
cloud and no-data masks are all 0. The S1 orbit direction is ascending for evening passes (after 12:00
UTC over Europe) and the relative orbit is derived from the absolute orbit of the scene's name.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio

from decloud.core.constants import S2_BANDS_10M, S2_BANDS_20M
from decloud.testing.s1tiling import s1tiling_name
from decloud.testing.theia import theia_product_name


def _metadata(patch: Path) -> dict:
    return json.loads(next(patch.glob("*_labels_metadata.json")).read_text())


def copy_band(source: Path, destination: Path, dtype: str, convert=None, nodata: float | None = None) -> None:
    with rasterio.open(source) as dataset:
        values = dataset.read(1)
        profile = {**dataset.profile, "dtype": dtype, "driver": "GTiff", "nodata": nodata}
    destination.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(destination, "w", **profile) as output:
        output.write((values if convert is None else convert(values)).astype(dtype), 1)


def theia_from_bigearthnet(s2_patch: Path, out_dir: Path) -> Path:
    """A THEIA product folder (10 m and 20 m FRE bands, zero CLM and EDG masks) from an S2 patch folder."""
    metadata = _metadata(s2_patch)
    acquired = datetime.strptime(metadata["acquisition_date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    tile = re.search(r"_(T\d{2}[A-Z]{3})_", metadata["tile_source"])[1]
    name = theia_product_name(acquired, tile, satellite=f"SENTINEL2{s2_patch.name[2]}")
    product = out_dir / name
    for band in S2_BANDS_10M + S2_BANDS_20M:
        code = f"B{band[1:]:0>2}"
        copy_band(s2_patch / f"{s2_patch.name}_{code}.tif", product / f"{name}_FRE_{band}.tif", "int16")
    for mask in ("CLM", "EDG"):
        copy_band(
            s2_patch / f"{s2_patch.name}_B02.tif", product / "MASKS" / f"{name}_{mask}_R1.tif", "uint8", np.zeros_like
        )
    return product


def s1tiling_from_bigearthnet(s1_patch: Path, tile: str, out_dir: Path) -> tuple[Path, Path]:
    """The S1Tiling vv and vh files (linear sigma0) of an S1 patch folder, for ``tile``."""
    metadata = _metadata(s1_patch)
    acquired = datetime.strptime(metadata["acquisition_time"], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    absolute_orbit = int(metadata["scene_source"].split("_")[6])
    satellite = metadata["scene_source"][:3].lower()
    relative_orbit = (absolute_orbit - 73) % 175 + 1 if satellite == "s1a" else (absolute_orbit - 27) % 175 + 1
    direction = "ASC" if acquired.hour >= 12 else "DES"
    paths = []
    for polarisation in ("vv", "vh"):
        name = s1tiling_name(
            acquired=acquired,
            tile=tile,
            polarisation=polarisation,
            satellite=satellite,
            orbit_direction=direction,
            relative_orbit=relative_orbit,
        )
        source = s1_patch / f"{s1_patch.name}_{polarisation.upper()}.tif"
        copy_band(source, out_dir / name, "float32", lambda decibels: 10 ** (decibels / 10), nodata=0)
        paths.append(out_dir / name)
    return paths[0], paths[1]
