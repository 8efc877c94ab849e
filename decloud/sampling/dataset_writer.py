"""From prepared tiles, ROIs and an acquisitions layout to a folder of sharded TFRecords: catalog the
tiles, find the tuples satisfying the layout inside the dataset's ROIs, select the samples, and read
their patches (in worker threads) while the main thread writes them."""

from __future__ import annotations

import itertools
import logging
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decloud.acquisitions.acquisition_factory import AcquisitionFactory
from decloud.acquisitions.sensing_layout import AcquisitionsLayout
from decloud.core.atomic import Outputs, atomic_outputs, outputs_to_write, skip_message
from decloud.core.errors import DecloudError, InvalidArgumentError
from decloud.core.io_threads import IOThreads
from decloud.core.paths import require_output_folder
from decloud.core.progress import progress
from decloud.core.raster import gdal_environment, open_raster, read_window
from decloud.preprocessing.rois import RoisSummary, roi_raster_path
from decloud.preprocessing.tiles import TilesConfig
from decloud.sampling.catalog import TileCatalog, load_tile_catalog
from decloud.sampling.iterators import select_samples
from decloud.sampling.sample_reader import SampleReader
from decloud.sampling.search import SampleTuples, find_tuples
from decloud.sampling.tfrecords import SHARD_SAMPLES_KEY, SUMMARY_FILE, TOTAL_SAMPLES_KEY, RecordsWriter

log = logging.getLogger(__name__)

#: Samples read ahead of the writer.
READ_AHEAD = 32


@dataclass(frozen=True)
class DatasetRequest:
    """One records folder to write: the ROI dataset it samples (train, valid, test...), its layout."""

    dataset: str
    layout: Path
    output_dir: Path
    max_samples: int | None = None


@dataclass(frozen=True)
class SamplingOptions:
    patchsize: int = 256
    n_samples_per_shard: int = 100
    with_20m_bands: bool = False
    with_dem: bool = False
    seed: int = 0
    strategy: str = "random"
    samples_per_patch: int = 1
    workers: int = 4


class Catalogs:
    """The tiles' catalogs, loaded once and shared by every dataset written in a run."""

    def __init__(self, tiles: TilesConfig, catalog_dir: Path) -> None:
        self.tiles = tiles
        self.catalog_dir = catalog_dir
        self._loaded: dict[str, TileCatalog] = {}

    def __getitem__(self, tile: str) -> TileCatalog:
        if tile not in self.tiles.tiles:
            raise InvalidArgumentError(f"tile {tile} of the ROI summary is not in the tiles JSON's TILES")
        if tile not in self._loaded:
            self._loaded[tile] = load_tile_catalog(self.tiles, tile, self.catalog_dir)
        return self._loaded[tile]


def _read_roi(path: Path) -> np.ndarray:
    with open_raster(path) as dataset:
        return read_window(dataset, None, 1) != 0


@dataclass(frozen=True)
class DatasetPlan:
    """What a records folder will hold, decided before anything is written."""

    request: DatasetRequest
    tile_catalogs: list[TileCatalog]
    tuples: SampleTuples
    chosen: np.ndarray
    summary: dict
    #: the layout's same-date transplants (acquisition -> donor of its cloud mask)
    transplants: dict[str, str]


def plan_dataset(
    request: DatasetRequest,
    layout: AcquisitionsLayout,
    catalogs: Catalogs,
    rois: RoisSummary,
    options: SamplingOptions,
) -> DatasetPlan:
    """Find the samples of ``request`` with ``layout`` (resolved); an empty result is an error."""
    tiles = rois.tiles_of(request.dataset)
    tile_catalogs = [catalogs[tile] for tile in tiles]
    found = [
        find_tuples(layout, catalog, _read_roi(roi_raster_path(rois.root, tile, request.dataset)), options.patchsize, i)
        for i, (tile, catalog) in enumerate(zip(tiles, tile_catalogs, strict=True))
    ]
    s2_names = [a.name for a in layout.acquisitions.values() if a.s2 is not None]
    s1_names = [a.name for a in layout.acquisitions.values() if a.s1 is not None]
    tuples = SampleTuples.concatenate(found, s2_names, s1_names)
    rng = np.random.default_rng([options.seed, *request.dataset.encode()])
    chosen = select_samples(
        tuples, options.strategy, rng, max_samples=request.max_samples, samples_per_patch=options.samples_per_patch
    )
    if not len(chosen):
        raise DecloudError(
            f"no sample for {request.output_dir}: no tuple of {request.layout} lies in the {request.dataset} ROIs "
            f"of tiles {list(tiles)} (tuples found per tile: {[len(part) for part in found]})"
        )
    summary = {
        "dataset": request.dataset,
        "layout": layout.to_dict(),
        "patchsize": options.patchsize,
        "seed": options.seed,
        "strategy": options.strategy,
        "tuples_found": {tile: len(part) for tile, part in zip(tiles, found, strict=True)},
        "samples": {tile: int(np.sum(tuples.tile_index[chosen] == i)) for i, tile in enumerate(tiles)},
        TOTAL_SAMPLES_KEY: len(chosen),
    }
    return DatasetPlan(request, tile_catalogs, tuples, chosen, summary, layout.transplants)


def write_dataset(plan: DatasetPlan, options: SamplingOptions, outputs: Outputs) -> dict:
    """Write the records folder of ``plan`` into the group ``outputs``; return its summary (also written
    as summary.json)."""
    request, tuples, chosen = plan.request, plan.tuples, plan.chosen
    reader = SampleReader(
        plan.tile_catalogs,
        options.patchsize,
        with_20m_bands=options.with_20m_bands,
        with_dem=options.with_dem,
        transplants=plan.transplants,
    )
    with RecordsWriter(request.output_dir, options.n_samples_per_shard, outputs) as writer:
        samples = _read_in_order(reader, tuples, chosen, options.workers)
        for sample in progress(samples, desc=f"{request.output_dir.name} samples", total=len(chosen), unit="sample"):
            writer.write(sample)
        plan.summary[SHARD_SAMPLES_KEY] = dict(writer.shard_samples)
        writer.attach_json(SUMMARY_FILE, plan.summary)
    log.info("%s: %d samples from %d tuples found", request.output_dir, len(chosen), len(tuples))
    return plan.summary


def _read_in_order(reader: SampleReader, tuples: SampleTuples, indices: np.ndarray, workers: int) -> Iterator[dict]:
    """Samples of ``indices`` in order, read by ``workers`` threads up to READ_AHEAD samples ahead."""
    with gdal_environment(), IOThreads("decloud-sample-reader", max_workers=workers) as pool:
        try:
            remaining = iter(indices)
            pending = deque(pool.submit(reader.read, tuples, i) for i in itertools.islice(remaining, READ_AHEAD))
            while pending:
                sample = pending.popleft().result()
                for index in itertools.islice(remaining, 1):
                    pending.append(pool.submit(reader.read, tuples, index))
                yield sample
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # before the readers' datasets are closed
            reader.close()


def create_tfrecords(
    tiles_json: str | os.PathLike[str],
    rois_json: str | os.PathLike[str],
    requests: list[DatasetRequest],
    options: SamplingOptions,
    catalog_dir: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
) -> list[dict]:
    """Write every requested records folder, all or none: every folder's samples are found (and an empty
    one is an error) before anything is written, and the folders are published together at the end.
    Folders already written by decloud are kept unless ``overwrite``. The tiles are catalogued once
    (index in ``catalog_dir``, by default ``.decloud_catalog`` beside the tiles JSON); return the summaries
    of the folders written."""
    folders = [request.output_dir.absolute() for request in requests]
    if len(set(folders)) < len(folders):
        raise InvalidArgumentError(f"the same output folder is given twice: {[str(f) for f in folders]}")
    todo = [request for request in requests if outputs_to_write([request.output_dir], overwrite)]
    if not todo:
        log.info(skip_message([request.output_dir for request in requests]))
        return []
    tiles = TilesConfig.load(tiles_json)
    rois = RoisSummary.load(rois_json)
    layouts = [AcquisitionFactory.get_acquisition(request.layout).resolved(options.seed) for request in todo]
    folder = Path(catalog_dir) if catalog_dir else Path(tiles_json).absolute().parent / ".decloud_catalog"
    for request in requests:
        require_output_folder(request.output_dir, f"{request.dataset} records folder")
    require_output_folder(folder, "catalog folder")
    catalogs = Catalogs(tiles, folder)
    plans = [
        plan_dataset(request, layout, catalogs, rois, options) for request, layout in zip(todo, layouts, strict=True)
    ]
    with atomic_outputs() as outputs:
        return [write_dataset(plan, options, outputs) for plan in plans]
