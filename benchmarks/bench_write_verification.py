"""Cost of reading back every GeoTIFF before it is published (``decloud.core.raster.verify_geotiff``),
as a ratio to the time of writing the file.

For each size and each of the two creation profiles decloud writes (prepared images: DEFLATE level 6;
engine outputs: level 1), writes a textured size x size image window by window (the pixel values are
computed beforehand, so the write time is creation + compression + I/O only), then times the
verification in two parts: the check that every block is recorded in the file (directory only) and the
full read-back (every block decoded). Prints the medians of ``--repeat`` runs and the ratios.

    python benchmarks/bench_write_verification.py --sizes 2000 4000 [--repeat 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from decloud.core.raster import (
    _check_blocks_recorded,
    block_windows,
    create_geotiff,
    gdal_environment,
    geotiff_profile,
    verify_geotiff,
)
from decloud.testing.texture import texture

#: (name, bands, dtype, DEFLATE level) of the files decloud writes.
PROFILES = [
    ("prepared S2 10 m (int16 x4, level 6)", 4, "int16", None),
    ("engine output (int16 x4, level 1)", 4, "int16", 1),
]


def image_windows(size: int, bands: int, dtype: str) -> list[tuple[object, np.ndarray]]:
    return [
        (window, np.stack([(texture(window, band, 0) * 5000).astype(dtype) for band in range(bands)]))
        for window in block_windows(size, size)
    ]


def timed_write(path: Path, size: int, bands: int, dtype: str, level: int | None, windows) -> float:
    profile = geotiff_profile(
        width=size, height=size, count=bands, dtype=dtype, crs="EPSG:32631",
        transform=Affine(10, 0, 600000, 0, -10, 4900020), nodata=-10000, deflate_level=level,
    )  # fmt: skip
    start = time.perf_counter()
    dataset = create_geotiff(path, profile)
    for window, values in windows:
        dataset.write(values, window=window)
    dataset.close()
    return time.perf_counter() - start


def timed_block_check(path: Path) -> float:
    start = time.perf_counter()
    with rasterio.open(path) as dataset:
        _check_blocks_recorded(dataset, path.stat().st_size)
    return time.perf_counter() - start


def timed_verification(path: Path) -> float:
    start = time.perf_counter()
    verify_geotiff(path)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder, gdal_environment():
        print(f"{'file':40} {'size':>6} {'write s':>8} {'blocks s':>9} {'verify s':>9} {'verify/write':>13}")
        for size in args.sizes:
            for name, bands, dtype, level in PROFILES:
                windows = image_windows(size, bands, dtype)
                writes, checks, verifications = [], [], []
                for run in range(args.repeat):
                    path = Path(folder) / f"{size}_{level}_{run}.tif"
                    writes.append(timed_write(path, size, bands, dtype, level, windows))
                    checks.append(timed_block_check(path))
                    verifications.append(timed_verification(path))
                    path.unlink()
                write, check, verification = map(statistics.median, (writes, checks, verifications))
                print(
                    f"{name:40} {size:>6} {write:>8.3f} {check:>9.4f} {verification:>9.3f} "
                    f"{verification / write:>13.2f}"
                )


if __name__ == "__main__":
    main()
