"""The stages of ``decloud demo``, each a call of the project's own functions on the synthetic scene, in the
folder layout a user would have (``prepared/S2/<TILE>``, ``rois/``, ``records/train``...).

The demo is not incremental (a rerun would mix two trainings): the whole run is written in a temporary
folder, published when complete; an earlier demo there is kept (reported again) unless ``overwrite``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely

from decloud.acquisitions.shipped import layout_path
from decloud.core.atomic import atomic_directory, atomic_file, outputs_to_write, skip_message
from decloud.core.constants import S2_SUFFIX_FRE_10M, S2_SUFFIX_FRE_20M
from decloud.core.errors import InvalidArgumentError
from decloud.core.products import prepared_s2_series, s2_product
from decloud.core.raster import Grid
from decloud.demo.assessment import Reconstruction, assess, format_table, records_scope
from decloud.demo.quicklook import showcase_date, write_quicklook
from decloud.demo.scene import TILE, Scene, plan_scene, write_scene
from decloud.models.record_scoring import UNITS, evaluate
from decloud.models.training_loop import TrainingConfig, train
from decloud.preprocessing.dem_prepare import prepare_dem
from decloud.preprocessing.generate_roi_rasters import generate_roi_rasters
from decloud.preprocessing.rois import ROIS_ROOT_KEY, SUMMARY_NAME, roi_raster_path
from decloud.preprocessing.sentinel1_prepare import prepare_s1_image
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.preprocessing.tiles import tile_reference_grid
from decloud.production.blending import FADE_WIDTH, MASK_DILATION
from decloud.production.processors import InferenceOptions
from decloud.production.timeseries import OUTPUT_SUFFIX_10M, reconstruct_series
from decloud.sampling.dataset_writer import DatasetRequest, SamplingOptions, create_tfrecords

log = logging.getLogger(__name__)

#: The layout of the samples (the shipped layout crga_os2_same_date_clear.json: same-date truth, real cloud masks
#: of the tile transplanted onto clear images, cloud-free tm1 and tp1 as the time-series processor feeds them),
#: and the model it feeds: the residual CRGA, which corrects the linear interpolation in time between the clear
#: dates before and after (the whole-series gap-filling a user would otherwise run).
LAYOUT_FILE = layout_path("crga_os2_same_date_clear")
MODEL = "crga_os2_unet"
DATASETS = ("train", "valid", "test")
#: Shares of the tile's rows of patches given to the valid and test datasets (at least one row each), from
#: north to south after the train rows: contiguous bands, so the test area is a part of the tile the model
#: never trained on.
VALID_TEST_ROW_SHARES = (0.1, 0.3)
LEARNING_RATE = 1e-3
#: The model compares the clear pixels of the date within this radius (10 m pixels) with its interpolation in time:
#: the date's own haze and light, seen from the middle of the demo's largest clouds (about 100 pixels across).
OFFSET_RADIUS = 64
#: The loss counts the holes and the pixels the processors blend the estimate into around them (--keep_clear):
#: the model is used nowhere else.
HOLE_MARGIN = MASK_DILATION + FADE_WIDTH
#: Dates the processor tries on each side of a date: 6 (30 days), as the training layout's tm1/tp1 windows reach
#: 30 days, so that a place hidden by a cloud system over several dates still finds a clear date.
CANDIDATES = 6
STAGES = 7


@dataclass(frozen=True)
class DemoSizes:
    """The sizes of a demo run: the full demo, or the reduced one of ``--quick`` (for tests)."""

    tile: int  #: tile side, 10 m pixels (a multiple of the patch size)
    s2_dates: int  #: Sentinel-2 dates, every 5 days
    patchsize: int  #: training patch side, 10 m pixels
    samples: tuple[int, int, int]  #: maximum number of train, valid and test samples
    filters: int
    depth: int
    epochs: int
    steps_per_epoch: int
    batch: int


FULL = DemoSizes(
    tile=512, s2_dates=19, patchsize=64, samples=(2000, 64, 256), filters=8, depth=3, epochs=30, steps_per_epoch=100,
    batch=8,
)  # fmt: skip
QUICK = DemoSizes(
    tile=256, s2_dates=12, patchsize=64, samples=(64, 16, 32), filters=8, depth=3, epochs=1, steps_per_epoch=8,
    batch=4,
)  # fmt: skip


@dataclass(frozen=True)
class ChainPaths:
    """Where the stages both demos share write, under the output folder."""

    out: Path

    @property
    def generated(self) -> Path:
        return self.out / "generated"

    @property
    def s2_root(self) -> Path:
        return self.out / "prepared" / "S2"

    @property
    def tiles_json(self) -> Path:
        return self.out / "tiles.json"

    @property
    def rois(self) -> Path:
        return self.out / "rois"

    def records(self, dataset: str) -> Path:
        return self.out / "records" / dataset

    @property
    def savedmodel(self) -> Path:
        return self.out / "model" / "savedmodel"

    @property
    def quicklook(self) -> Path:
        return self.out / "quicklook.png"

    @property
    def metrics(self) -> Path:
        return self.out / "metrics.json"


@dataclass(frozen=True)
class DemoPaths(ChainPaths):
    """Where the cloud-removal demo's own stages write, under the output folder."""

    @property
    def s1_root(self) -> Path:
        return self.out / "prepared" / "S1"

    @property
    def dem(self) -> Path:
        return self.out / "prepared" / "DEM" / f"{TILE}.tif"

    @property
    def layout(self) -> Path:
        return self.out / "layouts" / LAYOUT_FILE.name

    @property
    def reconstructed(self) -> Path:
        return self.out / "reconstructed"


@contextmanager
def stage(number: int, total: int, title: str) -> Iterator[None]:
    """Log a stage's start and its duration: one clear line per stage, whatever the progress bars do."""
    log.info("[%d/%d] %s...", number, total, title)
    start = time.perf_counter()
    yield
    log.info("[%d/%d] %s: done in %.1f s", number, total, title, time.perf_counter() - start)


def generate(paths: DemoPaths, sizes: DemoSizes, seed: int) -> Scene:
    return write_scene(plan_scene(sizes.tile, sizes.s2_dates, seed), paths.generated)


def prepare(paths: DemoPaths, scene: Scene) -> None:
    """Prepare every Sentinel-2 product and Sentinel-1 pair, then the DEM on the 20 m grid of the tile."""
    s2_dirs = [prepare_s2_product(product, paths.s2_root) for product in scene.s2_products]
    for vh in scene.s1_vh:
        prepare_s1_image(vh, paths.s1_root)
    prepare_dem(s2_dirs[0] / f"{s2_dirs[0].name}{S2_SUFFIX_FRE_20M}", [scene.dem_source], paths.dem)


def split_rois(paths: DemoPaths, sizes: DemoSizes, seed: int) -> Path:
    """Write the tiles JSON, one polygon per dataset (bands of rows of patches), and the ROI rasters; return
    the ROI summary."""
    roots = {"S1_ROOT_DIR": "prepared/S1", "S2_ROOT_DIR": "prepared/S2", "DEM_ROOT_DIR": "prepared/DEM"}
    with atomic_file(paths.tiles_json) as temporary:
        temporary.write_text(json.dumps({**roots, "TILES": [TILE]}, indent=2) + "\n")
    grid = tile_reference_grid(paths.s2_root, TILE)
    vectors = []
    for dataset, (first, last) in zip(DATASETS, dataset_rows(grid.height // sizes.patchsize), strict=True):
        vectors.append(paths.rois / "polygons" / f"{dataset}.gpkg")
        write_band_polygon(vectors[-1], grid, first * sizes.patchsize, last * sizes.patchsize)
    return generate_roi_rasters(
        paths.tiles_json,
        DATASETS,
        [1.0] * len(DATASETS),
        paths.rois,
        rois=vectors,
        patchsize=sizes.patchsize,
        seed=seed,
    )


def dataset_rows(rows: int) -> list[tuple[int, int]]:
    """The [first, last) rows of training patches of the train, valid and test datasets, north to south."""
    if rows < len(DATASETS):
        raise InvalidArgumentError(f"{rows} rows of patches cannot be split into {len(DATASETS)} datasets")
    valid, test = (max(1, round(share * rows)) for share in VALID_TEST_ROW_SHARES)
    train = rows - valid - test
    return [(0, train), (train, train + valid), (train + valid, rows)]


def write_band_polygon(path: Path, grid: Grid, first_row: int, last_row: int) -> None:
    """A GeoPackage with the rectangle of pixel rows [first_row, last_row) across the whole tile."""
    left, top = grid.transform @ (0, first_row)
    right, bottom = grid.transform @ (grid.width, last_row)
    polygon = shapely.box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    with atomic_file(path) as temporary:
        geometry = shapely.to_wkb(np.array([polygon]))
        crs = grid.crs.to_wkt()
        pyogrio.raw.write(temporary, geometry, [], [], layer=path.stem, geometry_type="Polygon", crs=crs, driver="GPKG")


def write_records(paths: DemoPaths, sizes: DemoSizes, seed: int, rois_json: Path) -> None:
    paths.layout.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LAYOUT_FILE, paths.layout)  # beside the results: the layout the records were made with
    requests = [
        DatasetRequest(dataset, paths.layout, paths.records(dataset), maximum)
        for dataset, maximum in zip(DATASETS, sizes.samples, strict=True)
    ]
    options = SamplingOptions(patchsize=sizes.patchsize, n_samples_per_shard=200, with_dem=True, seed=seed, workers=2)
    create_tfrecords(paths.tiles_json, rois_json, requests, options, catalog_dir=paths.out / "records" / "catalog")


def train_model(paths: DemoPaths, sizes: DemoSizes, seed: int) -> dict[str, list[float]]:
    """Train the small CRGA model on the training records, validate it each epoch, export the SavedModel;
    return the training history."""
    config = TrainingConfig(
        model=MODEL,
        training_record=paths.records("train"),
        valid_records=[paths.records("valid")],
        model_params={
            "filters": sizes.filters,
            "depth": sizes.depth,
            "with_dem": True,
            "residual": True,
            "time_weighted": True,
            "offset_radius": OFFSET_RADIUS,
        },
        learning_rate=LEARNING_RATE,
        hole_margin=HOLE_MARGIN,
        batch_train=sizes.batch,
        batch_valid=sizes.batch,
        epochs=sizes.epochs,
        steps_per_epoch=sizes.steps_per_epoch,
        out_savedmodel=paths.savedmodel,
        seed=seed,
    )
    return train(config).history


def reconstruct(paths: DemoPaths) -> list[Path]:
    """Run the CRGA time-series processor over every date, keeping the clear pixels of each (--keep_clear):
    only the cloudy and no-data pixels are estimated. The first and last dates lack a date before or after
    them: the processor writes them as themselves when they are clear, and skips them otherwise."""
    return reconstruct_series(
        "crga",
        paths.s2_root / TILE,
        paths.s1_root / TILE,
        paths.dem,
        paths.savedmodel,
        paths.reconstructed,
        InferenceOptions(keep_clear=True),
        candidates=CANDIDATES,
    )


def assess_and_report(paths: DemoPaths, scene: Scene, outputs: list[Path], seed: int, quick: bool) -> dict:
    """Evaluate the model on the test records and on the tile, draw the quicklook of the date about half cloudy
    (:func:`decloud.demo.quicklook.showcase_date`), and write metrics.json; return its content."""
    report = evaluate(paths.savedmodel, paths.records("test"), s2_root=paths.s2_root)
    reconstructions = []
    for output in outputs:
        product = s2_product(paths.s2_root / TILE / output.name.removesuffix(OUTPUT_SUFFIX_10M))
        reconstructions.append(Reconstruction(product, output, scene.truth[product.name]))
    tile = assess(prepared_s2_series(paths.s2_root / TILE), reconstructions, roi_raster_path(paths.rois, TILE, "test"))
    counts = tile["cloudy_pixels_per_date"]
    date = showcase_date(counts, (QUICK if quick else FULL).tile ** 2)
    showcase = next(r for r in reconstructions if r.product.name == date)
    write_quicklook(showcase.product.file(S2_SUFFIX_FRE_10M), showcase.estimate, showcase.truth, paths.quicklook)
    metrics = {
        "seed": seed,
        "quick": quick,
        "units": UNITS,
        "quicklook_date": showcase.product.name,
        "scopes": {"test_records": records_scope(report), **tile["scopes"]},
        "cloudy_pixels_per_date": counts,
        "seam_gradient": tile["seam_gradient"],
        "test_records_report": report,
    }
    with atomic_file(paths.metrics) as temporary:
        temporary.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


@dataclass(frozen=True)
class DemoResult:
    metrics: dict
    table: str
    files: list[Path]  #: every file written, sorted


def published_demo(
    out: Path,
    overwrite: bool,
    paths_of: Callable[[Path], ChainPaths],
    run_chain: Callable[[ChainPaths], dict],
    summarise: Callable[[dict], str],
) -> DemoResult:
    """Run a demo's ``run_chain`` (given the paths of its working folder, it returns the metrics) into a temporary
    folder published as ``out`` when complete; a demo already there is reported again from its metrics, not rerun,
    unless ``overwrite``. Both demos run this way (a rerun would mix two trainings)."""
    out = Path(out).absolute()
    if not outputs_to_write([out], overwrite):
        log.info(skip_message([out]))
        metrics = json.loads(paths_of(out).metrics.read_text())
    else:
        with atomic_directory(out) as work:
            metrics = run_chain(paths_of(work))
            relocate_rois_summary(paths_of(work).rois, paths_of(out).rois)
    return DemoResult(metrics, summarise(metrics), sorted(path for path in out.rglob("*") if path.is_file()))


def format_result(result: DemoResult, note_of: Callable[[Path], str]) -> str:
    """What a demo command prints: its table, then every file written, with ``note_of(path)`` beside it when any."""
    lines = [f"\n{result.table}\n\n{len(result.files)} files written:"]
    for path in result.files:
        note = note_of(path)
        lines.append(f"  {path}" + (f"   <- {note}" if note else ""))
    return "\n".join(lines)


def run_demo(out: Path, *, seed: int = 0, quick: bool = False, overwrite: bool = False) -> DemoResult:
    """Run the whole chain into a temporary folder published as ``out`` when complete; a demo already
    there is reported again, not rerun, unless ``overwrite``."""
    return published_demo(
        out,
        overwrite,
        DemoPaths,
        lambda paths: _run_chain(paths, QUICK if quick else FULL, seed, quick),
        lambda metrics: format_table(metrics["scopes"], metrics["seam_gradient"]),
    )


def relocate_rois_summary(work_rois: Path, final_rois: Path) -> None:
    """The ROI summary names its folder by an absolute path: make it the one the folder is published at."""
    summary = work_rois / SUMMARY_NAME
    content = json.loads(summary.read_text())
    content[ROIS_ROOT_KEY] = str(final_rois)
    with atomic_file(summary) as temporary:
        temporary.write_text(json.dumps(content, indent=2) + "\n")


def _run_chain(paths: DemoPaths, sizes: DemoSizes, seed: int, quick: bool) -> dict:
    with stage(1, STAGES, "generating the synthetic tile"):
        scene = generate(paths, sizes, seed)
    with stage(2, STAGES, "preparing Sentinel-2, Sentinel-1 and the DEM"):
        prepare(paths, scene)
    with stage(3, STAGES, "splitting the tile into train, valid and test ROIs"):
        rois_json = split_rois(paths, sizes, seed)
    with stage(4, STAGES, "writing the TFRecords"):
        write_records(paths, sizes, seed, rois_json)
    with stage(5, STAGES, f"training {MODEL}"):
        train_model(paths, sizes, seed)
    with stage(6, STAGES, "reconstructing the time series"):
        outputs = reconstruct(paths)
    with stage(7, STAGES, "assessing the reconstruction"):
        return assess_and_report(paths, scene, outputs, seed, quick)
