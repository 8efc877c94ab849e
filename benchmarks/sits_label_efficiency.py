"""Label efficiency of the pretrained time-series encoder on a generated labelled landscape: macro F1 on held-out
parcels of the linear probe on pretrained embeddings, the same network fine-tuned, the same network trained
from scratch, and a random forest / logistic regression on the raw series, with 1 %, 10 % and 100 % of the
training parcels labelled (at least one parcel per class).

    nice python benchmarks/sits_label_efficiency.py [--size 256] [--dates 24] [--parcels 300] [--epochs 10]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from decloud.core.raster import Grid, write_array
from decloud.sits.finetune import FinetuneConfig, evaluate
from decloud.sits.observations import ObservationSource
from decloud.sits.pretrain import PretrainConfig, pretrain
from decloud.sits.store import extract_series, import_npy
from decloud.testing import landscape
from decloud.testing.series import LANDSCAPE_CLASSES, labelled_landscape

BANDS = ("B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12")
METHODS = ("linear_probe", "finetuned", "scratch", "random_forest", "logistic_raw")


class LandscapeSeries(ObservationSource):
    """The farmland landscape of decloud.testing.landscape seen on ``dates`` dates of a year (no files): clear
    reflectance x 10000, and clouds in blobs of 16x16 pixels covering ``cloudy`` of the observations (bright
    values, invalid)."""

    name, bands, nodata, tile = "s2", BANDS, -10000, "T31TEJ"

    def __init__(self, grid: Grid, dates: int, cloudy: float, seed: int) -> None:
        from datetime import datetime, timedelta

        self.grid, self.seed = grid, seed
        self.days = np.linspace(20, 340, dates)
        self.dates = [datetime(2022, 1, 1) + timedelta(days=float(day) - 1) for day in self.days]
        rng = np.random.default_rng(seed)
        self.clouds = rng.random((dates, grid.height // 16 + 1, grid.width // 16 + 1)) < cloudy

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = window.toslices()
        values, valid = [], []
        for index, day in enumerate(self.days):
            ground = landscape.reflectance(window, self.seed, landscape.Conditions(float(day), 0.2))
            cloud = self.clouds[index].repeat(16, 0).repeat(16, 1)[rows, cols]
            reflectance = np.where(cloud, 0.7 + ground / 4, ground)
            values.append(np.moveaxis(np.rint(reflectance * 10000).astype(np.int16), 0, -1))
            valid.append(~cloud)
        return np.stack(values), np.stack(valid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--dates", type=int, default=24)
    parser.add_argument("--parcels", type=int, default=300)
    parser.add_argument("--cloudy", type=float, default=0.3)
    parser.add_argument("--backbone", default="transformer")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--finetune_epochs", type=int, default=30)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--landscape",
        action="store_true",
        help="the farmland landscape of decloud.testing.landscape instead of the series generator",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="sits-labels-"))
    grid = Grid(CRS.from_epsg(32631), Affine(10, 0, 600000, 0, -10, 4900000), args.size, args.size)
    if args.landscape:
        source = LandscapeSeries(grid, args.dates, args.cloudy, args.seed)
        store = extract_series([source], root / "series.zarr")
        classes = landscape.class_map(Window(0, 0, args.size, args.size), args.seed)
        names = [c.name for c in landscape.CLASSES if (classes == c.code).any()]
        print(
            f"farmland landscape: {args.size}x{args.size} px, {args.dates} dates, {len(names)} classes "
            f"({', '.join(names)}), {source.clouds.mean():.1%} of observation blobs cloudy; files in {root}"
        )
    else:
        bands, masks, doys, classes, _ = labelled_landscape(
            shape=(args.size, args.size),
            dates=args.dates,
            parcels=args.parcels,
            cloudy_share=args.cloudy,
            seed=args.seed,
        )
        print(
            f"landscape: {args.size}x{args.size} px, {args.dates} dates, {len(LANDSCAPE_CLASSES)} classes, "
            f"{args.parcels} parcels, {1 - masks.mean():.1%} of observations cloudy; files in {root}"
        )
        folder = root / "processed"
        folder.mkdir()
        valid = bands[masks == 1].astype(np.float64)
        for name, array in (
            ("bands", bands),
            ("masks", masks),
            ("doys", doys),
            ("band_mean", valid.mean(0).astype(np.float32)),
            ("band_std", valid.std(0).astype(np.float32)),
        ):
            np.save(folder / f"{name}.npy", array)
        store = import_npy(folder, root / "series.zarr", tile="T31TEJ", bands=BANDS, nodata=-10000, grid=grid)
    write_array(root / "classes.tif", classes, crs=grid.crs, transform=grid.transform, nodata=0)
    start = time.perf_counter()
    result = pretrain(
        PretrainConfig(
            store=store,
            out_dir=root / "encoder",
            backbone=args.backbone,
            dim=args.dim,
            depth=2,
            heads=4,
            projector=4 * args.dim,
            view_length=min(16, args.dates // 2),
            batch=256,
            epochs=args.epochs,
            steps_per_epoch=args.steps,
            seed=args.seed,
        )
    )
    print(
        f"pretraining ({args.backbone}, dim {args.dim}, {args.epochs}x{args.steps} steps of 256): "
        f"{time.perf_counter() - start:.0f} s; loss {result.loss[0]:.2f} -> {result.loss[-1]:.2f}; "
        f"effective rank {result.effective_rank[0]:.2f} -> {result.effective_rank[-1]:.2f}"
    )
    rows = []
    for share in args.shares:
        scores = evaluate(
            FinetuneConfig(
                store=store,
                labels=root / "classes.tif",
                out_dir=root / f"eval_{share:g}",
                encoder=root / "encoder",
                methods=METHODS,
                labelled_share=share,
                epochs=args.finetune_epochs,
                seed=args.seed,
            )
        )
        rows.append((share, scores))
    print("\nmacro F1 on held-out parcels (overall accuracy in brackets)")
    print("| labelled parcels | " + " | ".join(METHODS) + " |")
    print("|---" * (len(METHODS) + 1) + "|")
    for share, scores in rows:
        cells = [f"{scores[m].macro_f1:.3f} ({scores[m].overall_accuracy:.3f})" for m in METHODS]
        print(f"| {share:.0%} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
