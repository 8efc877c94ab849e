"""``decloud demo-superres``: x2 super-resolution of the ten Sentinel-2 bands, trained and measured under the Wald
protocol on a generated tile, with no data of the user's.

The chain is the one a user runs on real products: clear THEIA products of the farmland of
:mod:`decloud.testing.landscape` (a few dates of one season), prepared; the tile split into a northern training
band and a southern test band of patches (ROIs); TFRecords of the clear acquisitions (the shipped layout
``superres_clear``); a small ``superres_carn`` trained on them (its input pipeline degrades the 10 m bands to
20 m, the 20 m bands to 40 m, and learns them back); then the test band, never trained on, scored beside the
bicubic upsampling of the same degraded input:

- ``metrics.json``: PSNR (from the pooled MSE over the ten bands), FRR, FRO and FRU of the model and of bicubic
  over the test band of the last date, the radial FFT profiles, and ``decloud evaluate``'s report on the test
  records;
- ``held_out/``: the test band as GeoTIFFs (``reference.tif``, the real 10 m bands; ``bicubic.tif`` and
  ``model.tif``, both from the degraded input), int16 prepared values;
- ``quicklook.png``: bicubic | ours | reference, one above the other (RGB = B4 B3 B2, one stretch for the three:
  the reference's);
- ``profiles.png``: the radial FFT amplitude profiles (log scale, frequency 0 to Nyquist) of the input (bicubic,
  grey), the prediction (blue) and the target (orange).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from PIL import Image, ImageDraw, ImageFont
from rasterio.windows import Window

from decloud.acquisitions.shipped import layout_path
from decloud.core.atomic import atomic_file
from decloud.core.constants import (
    S2_BANDS_10M,
    S2_BANDS_20M,
    S2_NODATA,
    S2_REFLECTANCE_SCALE,
    S2_SUFFIX_FRE_10M,
    S2_SUFFIX_FRE_20M,
)
from decloud.core.raster import Grid, open_raster, read_window, write_array, write_png
from decloud.demo.pipeline import ChainPaths, DemoResult, published_demo, stage, write_band_polygon
from decloud.demo.quicklook import FONT_SIZE, HEADER, PANEL_GAP, stretch_limits, to_bytes
from decloud.models.export import ServingModel
from decloud.models.registry import create_model
from decloud.models.scores import HoleScores
from decloud.models.training_loop import TrainingConfig, train
from decloud.preprocessing.generate_roi_rasters import generate_roi_rasters
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.sampling.dataset_writer import DatasetRequest, SamplingOptions, create_tfrecords
from decloud.superres.bands import SUPERRES_BANDS
from decloud.superres.evaluation import bicubic_twin, evaluate_superres, format_superres_table
from decloud.superres.frequency import frequency_scores, radial_profile, write_profiles_png
from decloud.superres.models import S2_20M_KEY, S2_KEY
from decloud.testing.landscape import BANDS, Conditions, block_mean, reflectance
from decloud.testing.theia import make_theia_product

log = logging.getLogger(__name__)

TILE = "T31TEJ"
MODEL = "superres_carn"
LAYOUT = "superres_clear"
DATASETS = ("train", "test")
#: Share of the tile's rows of patches in the southern test band (at least one row).
TEST_ROW_SHARE = 0.25
#: Regional soil moisture of every date (m3/m3): fair weather.
MOISTURE = 0.15
LEARNING_RATE = 1e-3
QUICKLOOK_TITLES = ("bicubic", "ours (superres_carn)", "reference (real 10 m)")
STAGES = 6


@dataclass(frozen=True)
class SuperresDemoSizes:
    """The sizes of a run: the demo, or the reduced one of ``--quick`` (for tests)."""

    tile: int  #: tile side, 10 m pixels (a multiple of the patch size)
    days: tuple[int, ...]  #: days of the year of the clear dates (2021)
    patchsize: int
    filters: int
    blocks: int
    units: int
    epochs: int
    steps_per_epoch: int
    batch: int


FULL = SuperresDemoSizes(
    tile=512, days=(120, 160, 200), patchsize=64, filters=16, blocks=1, units=2, epochs=10, steps_per_epoch=40, batch=8
)
QUICK = SuperresDemoSizes(
    tile=192, days=(160,), patchsize=64, filters=8, blocks=1, units=1, epochs=1, steps_per_epoch=2, batch=2
)


@dataclass(frozen=True)
class SuperresDemoPaths(ChainPaths):
    """Where the super-resolution demo's own outputs go, under the output folder."""

    def held_out(self, name: str) -> Path:
        return self.out / "held_out" / f"{name}.tif"

    @property
    def profiles(self) -> Path:
        return self.out / "profiles.png"


def date_reflectance(size: int, day: int, seed: int) -> np.ndarray:
    """Cloud-free reflectance (0-1) of the landscape on ``day``, (10 bands, size, size) in prepared band order."""
    values = reflectance(Window(0, 0, size, size), seed, Conditions(day=day + 0.45, moisture=MOISTURE))
    return values[[BANDS.index(band) for band in SUPERRES_BANDS]]


def generate(paths: SuperresDemoPaths, sizes: SuperresDemoSizes, seed: int) -> list[Path]:
    """One clear THEIA product per date: 10 m bands at 10 m, 20 m bands the mean of the 10 m pixels they cover."""
    products = []
    for day in sizes.days:
        values = date_reflectance(sizes.tile, day, seed)
        stored = {1: values[: len(S2_BANDS_10M)], 2: block_mean(values[len(S2_BANDS_10M) :], 2)}

        def band_values(window: Window, band: str, scale: int, stored: dict = stored) -> np.ndarray:
            bands = S2_BANDS_10M if scale == 1 else S2_BANDS_20M
            image = stored[scale][bands.index(band), window.toslices()[0], window.toslices()[1]]
            return np.clip(np.rint(image * S2_REFLECTANCE_SCALE), 1, np.iinfo(np.int16).max).astype(np.int16)

        def clear(window: Window, mask: str) -> np.ndarray:
            return np.zeros((window.height, window.width), np.uint8)

        acquired = datetime(2021, 1, 1, 10, 40, tzinfo=UTC) + timedelta(days=day - 1)
        products.append(
            make_theia_product(
                paths.generated / "S2",
                acquired=acquired,
                tile=TILE,
                shape=(sizes.tile, sizes.tile),
                band_values=band_values,
                mask_values=clear,
            )
        )
    return products


def test_rows(sizes: SuperresDemoSizes) -> tuple[int, int]:
    """[first, last) 10 m rows of the southern test band (whole rows of patches)."""
    rows = sizes.tile // sizes.patchsize
    test = max(1, round(TEST_ROW_SHARE * rows))
    return (rows - test) * sizes.patchsize, sizes.tile


def split_rois(paths: SuperresDemoPaths, sizes: SuperresDemoSizes, grid: Grid, seed: int) -> Path:
    """The tiles JSON, one polygon per dataset (train north, test south), the ROI rasters; return the summary."""
    with atomic_file(paths.tiles_json) as temporary:
        temporary.write_text(json.dumps({"S2_ROOT_DIR": "prepared/S2", "TILES": [TILE]}, indent=2) + "\n")
    first, last = test_rows(sizes)
    vectors = [paths.rois / "polygons" / f"{dataset}.gpkg" for dataset in DATASETS]
    write_band_polygon(vectors[0], grid, 0, first)
    write_band_polygon(vectors[1], grid, first, last)
    return generate_roi_rasters(
        paths.tiles_json, DATASETS, [1.0, 1.0], paths.rois, rois=vectors, patchsize=sizes.patchsize, seed=seed
    )


def train_model(paths: SuperresDemoPaths, sizes: SuperresDemoSizes, seed: int) -> None:
    config = TrainingConfig(
        model=MODEL,
        training_record=paths.records("train"),
        model_params={"filters": sizes.filters, "blocks": sizes.blocks, "units": sizes.units, "groups": 2},
        learning_rate=LEARNING_RATE,
        batch_train=sizes.batch,
        epochs=sizes.epochs,
        steps_per_epoch=sizes.steps_per_epoch,
        out_savedmodel=paths.savedmodel,
        seed=seed,
    )
    train(config)


def read_rows(path: Path, first: int, last: int, scale: int) -> np.ndarray:
    """Rows [first, last) of the 10 m grid of a prepared stack at ``scale``, as (1, rows, cols, bands)."""
    with open_raster(path) as dataset:
        window = Window(0, first // scale, dataset.width, (last - first) // scale)
        return np.moveaxis(read_window(dataset, window), 0, -1)[np.newaxis]


def held_out_images(savedmodel: Path, product: Path, first: int, last: int) -> dict[str, np.ndarray]:
    """The test band under the Wald protocol, as the model was trained: the reference (the real ten bands, the
    20 m ones on the 10 m grid as the model sees them), and bicubic's and the model's x2 of its degraded
    version; each (rows, cols, 10) float prepared values."""
    serving = ServingModel(savedmodel)
    model = create_model(serving.description["model"], **serving.description.get("params", {}))
    sample = {
        S2_KEY: read_rows(product / f"{product.name}{S2_SUFFIX_FRE_10M}", first, last, 1),
        S2_20M_KEY: read_rows(product / f"{product.name}{S2_SUFFIX_FRE_20M}", first, last, 2),
    }
    inputs, targets = model.training_pair(sample)
    feed = {name: np.asarray(value) for name, value in inputs.items()}
    names = ["s2_estim", "s2_20m_estim"]
    baseline = bicubic_twin(model).model()(feed)
    estimates = {"model": serving(feed), "bicubic": {name: np.asarray(baseline[name]) for name in names}}
    images = {"reference": np.concatenate([np.asarray(targets[name]) for name in names], axis=-1)[0]}
    for method, outputs in estimates.items():
        images[method] = np.concatenate([outputs[name] for name in names], axis=-1)[0]
    return images


def area_scores(images: dict[str, np.ndarray]) -> dict[str, Any]:
    """PSNR (pooled MSE over the ten bands) of bicubic and the model, FRR / FRO / FRU (%) of the model with
    bicubic as the input's profile, and the three profiles."""
    reference = images["reference"]
    scored = np.ones(reference.shape[:2], dtype=bool)
    scores = {}
    for method in ("bicubic", "model"):
        accumulator = HoleScores(SUPERRES_BANDS)
        accumulator.update(reference, images[method], scored)
        scores[method] = accumulator.results()["overall"]
    profiles = {
        "input": radial_profile(images["bicubic"][np.newaxis]),
        "prediction": radial_profile(images["model"][np.newaxis]),
        "target": radial_profile(reference[np.newaxis]),
    }
    frequency = frequency_scores(profiles["input"], profiles["prediction"], profiles["target"])
    return {
        "psnr": {method: scores[method]["psnr"] for method in scores},
        "frequency": vars(frequency),
        "profiles": {name: profile.tolist() for name, profile in profiles.items()},
    }


def quicklook_origin(index: int, rows: int) -> int:
    """Row of the upper-left pixel of panel ``index`` (panels one above the other, each under its title)."""
    return HEADER + index * (rows + PANEL_GAP + HEADER)


def write_superres_quicklook(panels: list[np.ndarray], png: Path) -> Path:
    """Panels (rows, cols, 3 bands B4 B3 B2, prepared values), one above the other, titled QUICKLOOK_TITLES, in
    natural colours stretched by the last one's (the reference's) percentiles."""
    low, high = stretch_limits(panels[-1])
    rows, cols = panels[0].shape[:2]
    canvas = np.full((quicklook_origin(len(panels), rows) - HEADER - PANEL_GAP, cols, 3), 255, dtype=np.uint8)
    for index, panel in enumerate(panels):
        top = quicklook_origin(index, rows)
        canvas[top : top + rows] = to_bytes(panel, low, high)
    picture = Image.fromarray(canvas)
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default(size=FONT_SIZE)
    for index, title in enumerate(QUICKLOOK_TITLES):
        draw.text((2, quicklook_origin(index, rows) - HEADER + 3), title, fill=(0, 0, 0), font=font)
    return write_png(np.asarray(picture), png)


def assess(paths: SuperresDemoPaths, sizes: SuperresDemoSizes, product: Path, grid: Grid, seed: int) -> dict:
    """Score the test band and the test records, write the held-out GeoTIFFs, both PNGs and metrics.json."""
    first, last = test_rows(sizes)
    images = held_out_images(paths.savedmodel, product, first, last)
    transform = grid.transform @ Affine.translation(0, first)
    stored = {}
    for name in ("reference", "bicubic", "model"):
        stored[name] = np.clip(np.rint(images[name]), S2_NODATA + 1, np.iinfo(np.int16).max).astype(np.int16)
        paths.held_out(name).parent.mkdir(parents=True, exist_ok=True)
        write_array(paths.held_out(name), np.moveaxis(stored[name], -1, 0), crs=grid.crs, transform=transform,
                    nodata=S2_NODATA, descriptions=SUPERRES_BANDS)  # fmt: skip
    area = area_scores({name: value.astype(np.float64) for name, value in stored.items()})
    rgb = [SUPERRES_BANDS.index(band) for band in ("B4", "B3", "B2")]
    write_superres_quicklook([stored[name][..., rgb] for name in ("bicubic", "model", "reference")], paths.quicklook)
    write_profiles_png({name: np.asarray(profile) for name, profile in area["profiles"].items()}, paths.profiles)
    report = evaluate_superres(paths.savedmodel, paths.records("test"))
    # Paths in the demo folder (the run writes a temporary folder, published under its final name).
    report |= {"savedmodel": "model/savedmodel", "test_records": "records/test"}
    metrics = {
        "seed": seed,
        "model": MODEL,
        "held_out_area": {"product": product.name, "rows": [first, last], **area},
        "test_records_report": report,
    }
    with atomic_file(paths.metrics) as temporary:
        temporary.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def format_summary(metrics: dict) -> str:
    """The held-out area's PSNR / FRR / FRO / FRU of the model beside bicubic, then the test records' table."""
    area = metrics["held_out_area"]
    frequency = area["frequency"]
    lines = [
        f"x2 on the held-out test band (rows {area['rows'][0]}-{area['rows'][1]} of {area['product']}; Wald: the "
        "10 m bands degraded to 20 m, the 20 m bands to 40 m), ten bands, PSNR from the pooled MSE:",
        "| method | PSNR dB | FRR % | FRO % | FRU % |",
        "|---|---|---|---|---|",
        f"| {metrics['model']} | {area['psnr']['model']:.2f} | {frequency['frr']:.1f} | {frequency['fro']:.1f} | "
        f"{frequency['fru']:.1f} |",
        f"| bicubic | {area['psnr']['bicubic']:.2f} | 0.0 | 0.0 | 0.0 |",
        "",
        format_superres_table(metrics["test_records_report"]),
    ]
    return "\n".join(lines)


def run_superres_demo(out: Path, *, seed: int = 0, quick: bool = False, overwrite: bool = False) -> DemoResult:
    """Run the chain into a temporary folder published as ``out`` when complete; a demo already there is
    reported again, not rerun, unless ``overwrite``."""
    return published_demo(
        out,
        overwrite,
        SuperresDemoPaths,
        lambda paths: _run_chain(paths, QUICK if quick else FULL, seed),
        format_summary,
    )


def _run_chain(paths: SuperresDemoPaths, sizes: SuperresDemoSizes, seed: int) -> dict:
    with stage(1, STAGES, "generating clear products of the synthetic tile"):
        raw = generate(paths, sizes, seed)
    with stage(2, STAGES, "preparing them"):
        products = [prepare_s2_product(product, paths.s2_root) for product in raw]
        with open_raster(products[0] / f"{products[0].name}{S2_SUFFIX_FRE_10M}") as dataset:
            grid = Grid.of(dataset)
    with stage(3, STAGES, "splitting the tile into a training and a test band"):
        rois_json = split_rois(paths, sizes, grid, seed)
    with stage(4, STAGES, "writing the TFRecords of the clear acquisitions"):
        requests = [DatasetRequest(name, layout_path(LAYOUT), paths.records(name)) for name in DATASETS]
        options = SamplingOptions(patchsize=sizes.patchsize, n_samples_per_shard=200, with_20m_bands=True, seed=seed,
                                  workers=1)  # fmt: skip
        create_tfrecords(paths.tiles_json, rois_json, requests, options, catalog_dir=paths.out / "records" / "catalog")
    with stage(5, STAGES, f"training {MODEL} (Wald protocol)"):
        train_model(paths, sizes, seed)
    with stage(6, STAGES, "scoring the held-out test band beside bicubic"):
        return assess(paths, sizes, products[-1], grid, seed)
