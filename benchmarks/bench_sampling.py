"""Benchmark of the sampling step on one full tile over one year.

1. Builds a synthetic catalog of a full 10980 x 10980 tile (172 x 172 elementary patches): 73 prepared S2
   products (every 5 days) and 120 S1 images (every 3 days) with their per-patch statistics rasters.
2. Times indexing it (first run: reads every statistics raster; second run: from the on-disk index), and
   finding all tuples of the CRGA OS2 layout (decloud/acquisitions/layouts/crga_os2.json) for 256 x 256 patches.
3. Times writing 256 x 256 CRGA samples into TFRecords, and reading + parsing them back with tf.data.
4. Times create-tfrecords end to end (patches read from prepared GeoTIFFs by worker threads while the
   main thread writes) on generated, prepared 2048 x 2048 products: 16 S2 dates and 27 S1 dates.

Prints seconds, samples/s and the process's peak RSS after each phase.

    python benchmarks/bench_sampling.py [--samples 300]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from affine import Affine

from decloud.acquisitions.acquisition_factory import AcquisitionFactory
from decloud.acquisitions.shipped import layout_path
from decloud.core import keys
from decloud.core.atomic import COMPLETION_MARKER
from decloud.core.constants import (
    S1_SUFFIX_NODATA_STATS,
    S2_SUFFIX_CLOUD_STATS,
    S2_SUFFIX_NODATA_STATS,
)
from decloud.core.naming import S1ProductName
from decloud.core.raster import write_array
from decloud.preprocessing.generate_roi_rasters import generate_roi_rasters
from decloud.preprocessing.sentinel1_prepare import prepare_s1_image
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.preprocessing.tiles import TilesConfig
from decloud.sampling.catalog import load_tile_catalog
from decloud.sampling.dataset_writer import DatasetRequest, SamplingOptions, create_tfrecords
from decloud.sampling.search import find_tuples
from decloud.sampling.tfrecords import RecordsWriter, make_dataset
from decloud.testing.regions import Rect
from decloud.testing.s1tiling import make_s1tiling_pair
from decloud.testing.theia import make_theia_product, theia_product_name

TILE = "T31TEJ"
GRID = 172  # elementary patches per side of a 10980 x 10980 tile
TRANSFORM = Affine(640.0, 0.0, 499980.0, 0.0, -640.0, 4900020.0)
CRS = "EPSG:32631"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cloud_field(rng: np.random.Generator) -> np.ndarray:
    """A cloud percentage map with cloud banks: smooth random field thresholded, 0-100."""
    coarse = rng.random((12, 12))
    field = np.kron(coarse, np.ones((15, 15)))[:GRID, :GRID]
    return np.clip((field - 0.5) * 400, 0, 100).astype(np.float32)


def build_catalog(root: Path) -> Path:
    rng = np.random.default_rng(0)
    start = datetime(2020, 1, 1, 10, 30, tzinfo=UTC)
    nodata = np.zeros((GRID, GRID), dtype=np.uint16)
    nodata[:, :20] = 4096  # a no-data strip, as at the edge of a swath
    nodata[:, -1] = 64 * 28  # the last column of patches is partial (10980 = 171 x 64 + 36)
    nodata[-1, :] = 64 * 28
    for day in range(73):
        name = theia_product_name(start + timedelta(days=5 * day), TILE)
        product = root / "S2" / TILE / name
        product.mkdir(parents=True)
        write_array(product / f"{name}{S2_SUFFIX_CLOUD_STATS}", cloud_field(rng), crs=CRS, transform=TRANSFORM)
        write_array(product / f"{name}{S2_SUFFIX_NODATA_STATS}", nodata, crs=CRS, transform=TRANSFORM)
        (product / COMPLETION_MARKER).write_text("{}")
    for index in range(120):
        date = (start + timedelta(days=3 * index)).replace(hour=6)
        name = S1ProductName("s1a", TILE, "vvvh", "DES", 8, date.strftime("%Y%m%dt%H%M%S"), "").prepared_name()
        folder = root / "S1" / TILE
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")  # the catalog reads only the statistics
        stats = folder / (name.removesuffix(".tif") + S1_SUFFIX_NODATA_STATS)
        write_array(stats, np.roll(nodata, index % 5, axis=1), crs=CRS, transform=TRANSFORM)
    tiles = root / "tiles.json"
    tiles.write_text(json.dumps({"S1_ROOT_DIR": "S1", "S2_ROOT_DIR": "S2", "TILES": [TILE]}))
    return tiles


def crga_sample(layout, rng: np.random.Generator) -> dict[str, np.ndarray]:
    sample = {}
    for name in layout.keys(with_20m_bands=False, with_dem=False):
        spec = keys.spec_of(name)
        if spec.dtype == "string":
            sample[name] = np.array(TILE.encode())
        elif spec.channels is None:
            sample[name] = np.array(rng.integers(0, 1e9), dtype=spec.dtype)
        else:
            info = np.iinfo(spec.dtype)
            sample[name] = rng.integers(max(info.min, -10000), min(info.max, 10000), spec.shape(256), dtype=spec.dtype)
    return sample


def end_to_end(root: Path, samples: int) -> None:
    """create-tfrecords on prepared generated products, timed from the catalog to the last shard."""
    start_date = datetime(2020, 5, 1, 10, 30, tzinfo=UTC)
    for day in range(16):
        clouds = [Rect(0, 256 * (day % 8), 2048, 256)]
        raw = make_theia_product(
            root / "raw", acquired=start_date + timedelta(days=5 * day), shape=(2048, 2048), clouds=clouds
        )
        prepare_s2_product(raw, root / "S2")
    for index in range(27):
        date = (start_date + timedelta(days=3 * index)).replace(hour=6)
        _, vh = make_s1tiling_pair(root / "raw_s1", acquired=date, shape=(2048, 2048), seed=index)
        prepare_s1_image(vh, root / "S1")
    tiles = root / "tiles.json"
    tiles.write_text(json.dumps({"S1_ROOT_DIR": "S1", "S2_ROOT_DIR": "S2", "TILES": [TILE]}))
    rois = generate_roi_rasters(tiles, ["train"], [1], root / "roi", patchsize=256)
    request = DatasetRequest("train", layout_path("crga_os2"), root / "e2e", samples)
    start = time.perf_counter()
    (summary,) = create_tfrecords(tiles, rois, [request], SamplingOptions(patchsize=256))
    seconds = time.perf_counter() - start
    print(
        f"create-tfrecords e2e    {summary['total_samples'] / seconds:7.1f} samples/s "
        f"({summary['total_samples']} samples of {sum(summary['tuples_found'].values())} tuples, {seconds:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=300, help="samples written and read back (300)")
    args = parser.parse_args()
    layout = AcquisitionFactory.get_acquisition(layout_path("crga_os2")).resolved(0)

    with tempfile.TemporaryDirectory() as workdir:
        root = Path(workdir)
        tiles = TilesConfig.load(build_catalog(root))
        print(f"catalog: 1 tile of {GRID}x{GRID} elementary patches, 73 S2 products, 120 S1 images")

        start = time.perf_counter()
        catalog = load_tile_catalog(tiles, TILE, root / "index")
        print(f"index (first run)       {time.perf_counter() - start:7.2f} s   peak RSS {peak_rss_mib():6.0f} MiB")
        start = time.perf_counter()
        catalog = load_tile_catalog(tiles, TILE, root / "index")
        print(f"index (from disk)       {time.perf_counter() - start:7.2f} s   peak RSS {peak_rss_mib():6.0f} MiB")
        start = time.perf_counter()
        tuples = find_tuples(layout, catalog, None, 256)
        seconds = time.perf_counter() - start
        print(f"search CRGA OS2 tuples  {seconds:7.2f} s   peak RSS {peak_rss_mib():6.0f} MiB   {len(tuples)} tuples")

        rng = np.random.default_rng(0)
        samples = [crga_sample(layout, rng) for _ in range(min(args.samples, 50))]
        start = time.perf_counter()
        with RecordsWriter(root / "records", 100) as writer:
            for index in range(args.samples):
                writer.write(samples[index % len(samples)])
        seconds = time.perf_counter() - start
        megabytes = sum(p.stat().st_size for p in (root / "records").glob("*.records")) / 1e6
        print(f"TFRecord writing        {args.samples / seconds:7.1f} samples/s ({megabytes / seconds:.0f} MB/s)")
        dataset = make_dataset(root / "records", batch_size=4)
        start = time.perf_counter()
        count = sum(int(batch["s2_t"].shape[0]) for batch in dataset)
        seconds = time.perf_counter() - start
        print(f"TFRecord reading+parse  {count / seconds:7.1f} samples/s   peak RSS {peak_rss_mib():6.0f} MiB")
        end_to_end(root / "end_to_end", args.samples)


if __name__ == "__main__":
    main()
