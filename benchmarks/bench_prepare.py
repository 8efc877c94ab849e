"""Benchmark of Sentinel-2 preparation against a plain rasterio windowed copy of the same bands.

For each size, generates a THEIA product (10 band files, CLM and EDG masks) of size x size pixels at
10 m, then, each in a fresh process so that peak memory is its own:
  - prepares it with decloud (``prepare_s2_product``);
  - copies its 10 band files window by window into DEFLATE GeoTIFFs with the same creation profile
    (the reference: read + compress + write, nothing else).
Prints seconds, input MB/s (uncompressed input pixels read), peak RSS, and the time ratio.

    python benchmarks/bench_prepare.py --sizes 2745 5490 [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio

from decloud.core.raster import DEFAULT_WINDOW_SIZE, block_windows, create_geotiff, geotiff_profile
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.testing.regions import Rect
from decloud.testing.theia import make_theia_product


def input_megabytes(product: Path) -> float:
    """Uncompressed size of the pixels a preparation reads (bands and masks)."""
    total = 0
    for path in product.rglob("*.tif"):
        with rasterio.open(path) as dataset:
            total += dataset.width * dataset.height * dataset.count * np.dtype(dataset.dtypes[0]).itemsize
    return total / 1e6


def reference_copy(product: Path, out_dir: Path) -> None:
    """Windowed read + DEFLATE write of every band file, with the profile decloud uses."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for band in sorted(product.glob("*_FRE_*.tif")):
        with rasterio.open(band) as source:
            profile = geotiff_profile(
                width=source.width,
                height=source.height,
                count=1,
                dtype=source.dtypes[0],
                crs=source.crs,
                transform=source.transform,
                nodata=source.nodata,
            )
            with create_geotiff(out_dir / band.name, profile) as copy:
                for window in block_windows(source.height, source.width, DEFAULT_WINDOW_SIZE):
                    copy.write(source.read(1, window=window), 1, window=window)


def worker(task: str, product: Path, out_dir: Path) -> None:
    """Run one measured task in this process and print its figures as JSON."""
    start = time.perf_counter()
    if task == "prepare":
        prepare_s2_product(product, out_dir)
    else:
        reference_copy(product, out_dir)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_mib}))


def measure(task: str, product: Path, out_dir: Path) -> dict:
    command = [sys.executable, __file__, "--worker", task, str(product), str(out_dir)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2745, 5490], help="product sides in 10 m pixels")
    parser.add_argument("--workdir", type=Path, help="where to generate (default: a temporary folder)")
    parser.add_argument("--worker", nargs=3, metavar=("TASK", "PRODUCT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        task, product, out_dir = args.worker
        worker(task, Path(product), Path(out_dir))
        return

    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        print(f"{'size':>6} {'input MB':>9} {'task':>10} {'seconds':>8} {'MB/s':>7} {'peak RSS MiB':>13}")
        for size in args.sizes:
            root = Path(workdir) / str(size)
            product = make_theia_product(
                root / "raw",
                acquired=datetime(2020, 6, 1, 10, 30, tzinfo=UTC),
                shape=(size, size),
                clouds=[Rect(size // 4, size // 4, size // 3, size // 5)],
                nodata=[Rect(0, 0, size, size // 10)],
            )
            megabytes = input_megabytes(product)
            figures = {task: measure(task, product, root / task) for task in ("prepare", "reference")}
            for task, result in figures.items():
                print(
                    f"{size:>6} {megabytes:>9.0f} {task:>10} {result['seconds']:>8.2f} "
                    f"{megabytes / result['seconds']:>7.1f} {result['peak_rss_mib']:>13.0f}"
                )
            ratio = figures["prepare"]["seconds"] / figures["reference"]["seconds"]
            print(f"{size:>6} prepare / reference time ratio: {ratio:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
