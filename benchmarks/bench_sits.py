"""Benchmark of the time-series system, each figure as a ratio to a reference measured in the same run:

- extraction: MB/s of the store written by sits-extract from prepared products, vs a raw read of the same
  rasters by the same windows (prepared products generated and prepared first); also the CPU seconds of both
  (all threads), steadier than wall times on a shared machine;
- pretraining: samples/s of the input pipeline alone (store -> views -> batches), vs the model alone
  (training steps on one fixed batch);
- embedding: pixels/s of the streamed sits-embed (store -> encoder -> GeoTIFF), vs the encoder on the same
  pixels in memory; and its peak RSS at two sizes (a fresh process per size, given the store and encoder made
  beforehand; target: larger <= 1.2 x smaller).

    nice python benchmarks/bench_sits.py [--size 512] [--dates 10] [--map_sizes 1024 2048]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from decloud.core.products import prepared_s2_series
from decloud.core.raster import Grid, open_raster, read_window
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.sits.observations import ObservationSource, PreparedS2Series
from decloud.sits.store import EXTRACTION_WINDOW, SeriesStore, extract_series
from decloud.testing.regions import Rect
from decloud.testing.theia import make_theia_product

BANDS = ("B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12")


class SyntheticSeries(ObservationSource):
    """A series computed per window (no file): a large store without generating large rasters."""

    name, bands, nodata, tile = "s2", BANDS, -10000, "T31TEJ"

    def __init__(self, size: int, dates: int) -> None:
        self.grid = Grid(CRS.from_epsg(32631), Affine(10, 0, 600000, 0, -10, 4900000), size, size)
        self.dates = [datetime(2022, 1, 1) + timedelta(days=15 * t) for t in range(dates)]

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(int(window.row_off) * 100003 + int(window.col_off))
        shape = (len(self.dates), int(window.height), int(window.width))
        return rng.integers(100, 5000, (*shape, len(self.bands)), dtype=np.int16), rng.random(shape) > 0.3


def bench_extraction(root: Path, size: int, dates: int) -> None:
    for index in range(dates):
        raw = make_theia_product(
            root / "raw",
            acquired=datetime(2022, 3, 1) + timedelta(days=10 * index),
            shape=(size, size),
            seed=1,
            clouds=[Rect(0, 0, size // 3, size // 2)] if index % 3 == 0 else [],
        )
        prepare_s2_product(raw, root / "S2")
    products = prepared_s2_series(root / "S2" / "T31TEJ")
    start, cpu = time.perf_counter(), time.process_time()
    for row in range(0, size, EXTRACTION_WINDOW):
        for col in range(0, size, EXTRACTION_WINDOW):
            window = Window(col, row, min(EXTRACTION_WINDOW, size - col), min(EXTRACTION_WINDOW, size - row))
            half = Window(col // 2, row // 2, -(-window.width // 2), -(-window.height // 2))
            for product in products:
                for path, part in (
                    (product.bands_10m, window),
                    (product.bands_20m, half),
                    (product.cloud_mask, window),
                    (product.file("_EDG_R1.tif"), window),
                ):
                    with open_raster(path) as dataset:
                        read_window(dataset, part)
    raw_seconds, raw_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    with PreparedS2Series(products) as source:
        extract_series([source], root / "bench.zarr")
    seconds, extraction_cpu = time.perf_counter() - start, time.process_time() - cpu
    megabytes = dates * size * size * len(BANDS) * 2 / 1e6
    print(
        f"extraction {size}x{size} x {dates} dates ({megabytes:.0f} MB of series): {megabytes / seconds:.1f} MB/s; "
        f"raw read of the same rasters {megabytes / raw_seconds:.1f} MB/s; ratio {raw_seconds / seconds:.2f} "
        f"(CPU seconds, all threads: {extraction_cpu:.2f} vs {raw_cpu:.2f}, ratio {raw_cpu / extraction_cpu:.2f})"
    )


def bench_pretraining(store: Path) -> None:
    import keras

    from decloud.sits.encoder import build_encoder, build_projector
    from decloud.sits.pretrain import BarlowTwins, PretrainConfig, view_pairs

    config = PretrainConfig(
        store=store, out_dir=Path("unused"), backbone="transformer", dim=32, view_length=8, batch=256, projector=128
    )
    series = SeriesStore(store)
    dataset = view_pairs(series, config).map(lambda x, t: x).batch(config.batch).prefetch(2)
    batches = iter(dataset)
    first = next(batches)
    start, count = time.perf_counter(), 10
    for _ in range(count):
        next(batches)
    pipeline = count * config.batch / (time.perf_counter() - start)
    info = series.sources["s2"]
    encoder = build_encoder("transformer", bands=10, band_mean=info.band_mean, band_std=info.band_std, dim=32)
    model = BarlowTwins(encoder, build_projector(32, 128), 5e-3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.train_on_batch(first)
    start = time.perf_counter()
    for _ in range(count):
        model.train_on_batch(first)
    compute = count * config.batch / (time.perf_counter() - start)
    print(
        f"pretraining (transformer dim 32, views of 8): input pipeline {pipeline:.0f} samples/s, model "
        f"{compute:.0f} samples/s; pipeline / model {pipeline / compute:.2f} (>= 1: the model is the bottleneck)"
    )


def prepare_embedding(root: Path, size: int, dates: int) -> None:
    """The synthetic store and an (untrained) MLP encoder of an embedding run, made before the measured process."""
    from decloud.sits.encoder import build_encoder
    from decloud.sits.pretrain import save_encoder

    store = extract_series([SyntheticSeries(size, dates)], root / f"map{size}.zarr")
    info = SeriesStore(store).sources["s2"]
    encoder = build_encoder("mlp", bands=10, band_mean=info.band_mean, band_std=info.band_std, dim=16, depth=2)
    save_encoder(encoder, {"source": "s2", "bands": list(BANDS), "max_length": dates}, root / f"encoder{size}")


def _status_kb(field: str) -> int:
    """A memory figure (kB) of this process from /proc/self/status (Linux)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1])


def bench_embedding(root: Path, size: int, dates: int) -> tuple[float, float, int, int]:
    """Run in a fresh process: pixels/s streamed and in memory, peak RSS (kB) of the streamed run (the process's
    high-water mark, reset once TensorFlow is imported: the import's own peak is higher than the run's), and its
    growth above the RSS before the run."""
    from decloud.sits.encoding import encode_pixels
    from decloud.sits.maps import embed
    from decloud.sits.pretrain import load_encoder

    store = root / f"map{size}.zarr"
    Path("/proc/self/clear_refs").write_text("5")  # resets the high-water mark VmHWM to the current RSS
    baseline = _status_kb("VmRSS:")
    start = time.perf_counter()
    embed(root / f"encoder{size}", store, root / f"map{size}.tif", pca=True)
    streamed = size * size / (time.perf_counter() - start)
    peak = _status_kb("VmHWM:")
    encoder, _ = load_encoder(root / f"encoder{size}")
    info = SeriesStore(store).sources["s2"]
    side = min(size, 512)
    values, valid = SeriesStore(store).read("s2", Window(0, 0, side, side))
    pixels = np.moveaxis(values, 0, 2).reshape(side * side, dates, 10)
    masks = np.moveaxis(valid, 0, 2).reshape(side * side, dates)
    encode_pixels(encoder, pixels[:4096], masks[:4096], info.doys)  # traced once, as embed's encoder was
    start = time.perf_counter()
    encode_pixels(encoder, pixels, masks, info.doys)
    in_memory = side * side / (time.perf_counter() - start)
    return streamed, in_memory, peak, peak - baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="side of the generated products (extraction)")
    parser.add_argument("--dates", type=int, default=10)
    parser.add_argument("--map_sizes", type=int, nargs=2, default=[512, 1024], help="sides of the two embedding runs")
    parser.add_argument("--embedding_run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.embedding_run:
        print(json.dumps(bench_embedding(Path(args.root), args.embedding_run, args.dates)))
        return
    root = Path(tempfile.mkdtemp(prefix="bench-sits-"))
    bench_extraction(root, args.size, args.dates)
    bench_pretraining(root / "bench.zarr")
    runs = {}
    for size in args.map_sizes:
        prepare_embedding(root, size, args.dates)
        done = subprocess.run(
            [sys.executable, __file__, "--embedding_run", str(size), "--dates", str(args.dates), "--root", str(root)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs[size] = json.loads(done.stdout.strip().splitlines()[-1])
    for size, (streamed, in_memory, peak, growth) in runs.items():
        print(
            f"embedding {size}x{size} x {args.dates} dates (MLP dim 16, int8 + PCA): streamed {streamed:.0f} px/s, "
            f"in memory {in_memory:.0f} px/s, ratio {streamed / in_memory:.2f}; peak RSS {peak / 1024:.0f} MB "
            f"({growth / 1024:.0f} MB above the RSS before it)"
        )
    small, large = args.map_sizes
    print(
        f"peak RSS {large}x{large} / {small}x{small}: {runs[large][2] / runs[small][2]:.2f} (target <= 1.2); growth "
        f"during the run {runs[large][3] / 1024:.0f} MB vs {runs[small][3] / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
