"""Cost of checking every GeoTIFF before it is published (``decloud.core.raster.verify_geotiff``), as a
ratio to the time of writing the file, beside the cost of decoding every block again (what the check did
before it read the directory only).

For each size and each of the creation profiles decloud writes (prepared images: DEFLATE level 6, pixel-
interleaved; engine outputs: ZSTD level 1, band-interleaved, 4 bands as the reconstructions, 10 as the 5 m
super-resolution; and, for comparison, the 5 m file as DEFLATE level 1), writes a textured size x size image
window by window (the pixel values are computed beforehand, so the write time is creation + compression + I/O
only), then times the verification and the full decoding. Prints the medians of ``--repeat`` runs (CPU time
of this process), the ratios and the file's size.

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
    block_windows,
    create_geotiff,
    gdal_environment,
    geotiff_profile,
    verify_geotiff,
)
from decloud.testing.texture import texture

#: (name, bands, dtype, fast compression, band-interleaved, creation options changed) of the files decloud writes,
#: and of the 5 m file as it was written before its ZSTD compression.
PROFILES = [
    ("prepared S2 10 m (int16 x4, DEFLATE 6)", 4, "int16", False, False, {}),
    ("engine output (int16 x4, ZSTD 1, band)", 4, "int16", True, True, {}),
    ("5 m super-resolution (int16 x10, ZSTD 1, band)", 10, "int16", True, True, {}),
    ("5 m, as DEFLATE 1 before (int16 x10, band)", 10, "int16", False, True, {"zlevel": 1}),
]


def image_windows(size: int, bands: int, dtype: str) -> list[tuple[object, np.ndarray]]:
    return [
        (window, np.stack([(texture(window, band, 0) * 5000).astype(dtype) for band in range(bands)]))
        for window in block_windows(size, size)
    ]


def timed_write(path: Path, size: int, bands: int, dtype: str, fast: bool, band: bool, changes: dict, windows) -> float:
    profile = geotiff_profile(
        width=size, height=size, count=bands, dtype=dtype, crs="EPSG:32631",
        transform=Affine(10, 0, 600000, 0, -10, 4900020), nodata=-10000, fast_compression=fast,
        band_interleaved=band,
    )  # fmt: skip
    profile.update(changes)
    start = time.process_time()
    dataset = create_geotiff(path, profile)
    for window, values in windows:
        dataset.write(values, window=window)
    dataset.close()
    return time.process_time() - start


def timed_verification(path: Path) -> float:
    start = time.process_time()
    verify_geotiff(path)
    return time.process_time() - start


def timed_decoding(path: Path) -> float:
    """Every block decoded, window by window."""
    start = time.process_time()
    with rasterio.open(path) as dataset:
        for window in block_windows(dataset.height, dataset.width):
            dataset.read(window=window)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder, gdal_environment():
        print(
            f"{'file':48} {'size':>6} {'write s':>8} {'verify s':>9} {'decode s':>9} {'verify/write':>13} "
            f"{'decode/write':>13} {'MiB':>7}"
        )
        for size in args.sizes:
            for name, bands, dtype, fast, band, changes in PROFILES:
                windows = image_windows(size, bands, dtype)
                writes, verifications, decodings = [], [], []
                for run in range(args.repeat):
                    path = Path(folder) / f"{size}_{run}.tif"
                    writes.append(timed_write(path, size, bands, dtype, fast, band, changes, windows))
                    verifications.append(timed_verification(path))
                    decodings.append(timed_decoding(path))
                    mebibytes = path.stat().st_size / 2**20
                    path.unlink()
                write, verification, decoding = map(statistics.median, (writes, verifications, decodings))
                print(
                    f"{name:48} {size:>6} {write:>8.3f} {verification:>9.4f} {decoding:>9.3f} "
                    f"{verification / write:>13.3f} {decoding / write:>13.2f} {mebibytes:>7.1f}"
                )


if __name__ == "__main__":
    main()
