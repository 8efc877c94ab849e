"""Label efficiency of the pretrained time-series encoder on a generated labelled landscape: macro F1 on held-out
parcels of the linear probe on pretrained embeddings, the same network fine-tuned, the same network trained
from scratch, and a random forest / logistic regression on the raw series, with 1 %, 10 % and 100 % of the
training parcels labelled (at least one parcel per class); and the Barlow Twins loss and effective rank of the
representations before and after pretraining. Each seed draws its own landscape, pretraining and split; the
pretraining recipe is sits-pretrain's default unless flags say otherwise.

    nice python benchmarks/sits_label_efficiency.py [--size 192] [--dates 24] [--parcels 200] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass
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
from decloud.testing.series import LANDSCAPE_CLASSES, write_labelled_landscape

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


@dataclass
class SeedRun:
    seed: int
    loss: tuple[float, float]
    rank: tuple[float, float]
    seconds: float
    scores: dict  #: labelled share -> method -> Scores


def landscape_store(args: argparse.Namespace, seed: int, root: Path) -> tuple[Path, Path]:
    """The series store and class raster of one seed's landscape."""
    grid = Grid(CRS.from_epsg(32631), Affine(10, 0, 600000, 0, -10, 4900000), args.size, args.size)
    if args.landscape:
        source = LandscapeSeries(grid, args.dates, args.cloudy, seed)
        store = extract_series([source], root / "series.zarr")
        classes = landscape.class_map(Window(0, 0, args.size, args.size), seed)
        write_array(root / "classes.tif", classes, crs=grid.crs, transform=grid.transform, nodata=0)
        names = [c.name for c in landscape.CLASSES if (classes == c.code).any()]
        print(
            f"seed {seed}: farmland landscape, {args.size}x{args.size} px, {args.dates} dates, {len(names)} classes "
            f"({', '.join(names)}), {source.clouds.mean():.1%} of observation blobs cloudy; files in {root}"
        )
        return store, root / "classes.tif"
    processed, classes = write_labelled_landscape(
        root, grid, dates=args.dates, parcels=args.parcels, cloudy_share=args.cloudy, seed=seed
    )
    cloudy = 1 - np.load(processed / "masks.npy").mean()
    print(
        f"seed {seed}: landscape, {args.size}x{args.size} px, {args.dates} dates, {len(LANDSCAPE_CLASSES)} classes, "
        f"{args.parcels} parcels, {cloudy:.1%} of observations cloudy; files in {root}"
    )
    return import_npy(processed, root / "series.zarr", tile="T31TEJ", bands=BANDS, nodata=-10000, grid=grid), classes


def run_seed(args: argparse.Namespace, seed: int, root: Path) -> SeedRun:
    store, classes = landscape_store(args, seed, root)
    overrides = {name: getattr(args, name) for name in ("backbone", "dim", "epochs") if getattr(args, name) is not None}
    if args.steps is not None:
        overrides["steps_per_epoch"] = args.steps
    config = PretrainConfig(store=store, out_dir=root / "encoder", seed=seed, **overrides)
    start = time.perf_counter()
    result = pretrain(config)
    seconds = time.perf_counter() - start
    print(
        f"  pretraining ({config.backbone}, dim {config.dim}, projector {config.projector}, lambda "
        f"{config.redundancy_weight:g}, views of {config.view_length}, {config.epochs}x{config.steps_per_epoch} "
        f"steps of {config.batch}): {seconds:.0f} s; loss {result.loss[0]:.2f} -> {result.loss[-1]:.2f}; "
        f"effective rank {result.effective_rank[0]:.2f} -> {result.effective_rank[-1]:.2f}"
    )
    scores = {}
    for share in args.shares:
        scores[share] = evaluate(
            FinetuneConfig(
                store=store,
                labels=classes,
                out_dir=root / f"eval_{share:g}",
                encoder=root / "encoder",
                methods=METHODS,
                labelled_share=share,
                epochs=args.finetune_epochs,
                seed=seed,
            )
        )
    return SeedRun(
        seed, (result.loss[0], result.loss[-1]), (result.effective_rank[0], result.effective_rank[-1]), seconds, scores
    )


def print_table(title: str, shares: list[float], cell) -> None:
    print(f"\n{title}")
    print("| labelled parcels | " + " | ".join(METHODS) + " |")
    print("|---" * (len(METHODS) + 1) + "|")
    for share in shares:
        print(f"| {share:.0%} | " + " | ".join(cell(share, method) for method in METHODS) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--dates", type=int, default=24)
    parser.add_argument("--parcels", type=int, default=200)
    parser.add_argument("--cloudy", type=float, default=0.3)
    parser.add_argument("--backbone", help="default: sits-pretrain's")
    parser.add_argument("--dim", type=int, help="default: sits-pretrain's")
    parser.add_argument("--epochs", type=int, help="pretraining epochs (default: sits-pretrain's)")
    parser.add_argument("--steps", type=int, help="pretraining steps per epoch (default: sits-pretrain's)")
    parser.add_argument("--finetune_epochs", type=int, default=30)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--landscape",
        action="store_true",
        help="the farmland landscape of decloud.testing.landscape instead of the series generator",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="sits-labels-"))
    runs = [run_seed(args, seed, root / f"seed{seed}") for seed in args.seeds]
    for run in runs:
        print_table(
            f"seed {run.seed}: macro F1 on held-out parcels (overall accuracy in brackets)",
            args.shares,
            lambda share, method, run=run: (
                f"{run.scores[share][method].macro_f1:.3f} ({run.scores[share][method].overall_accuracy:.3f})"
            ),
        )
    if len(runs) > 1:
        print_table(
            f"mean macro F1 over seeds {', '.join(str(run.seed) for run in runs)} (lowest in brackets)",
            args.shares,
            lambda share, method: (
                f"{np.mean([run.scores[share][method].macro_f1 for run in runs]):.3f} "
                f"({min(run.scores[share][method].macro_f1 for run in runs):.3f})"
            ),
        )
    for run in runs:
        print(
            f"seed {run.seed}: loss {run.loss[0]:.2f} -> {run.loss[1]:.2f}, effective rank {run.rank[0]:.2f} -> "
            f"{run.rank[1]:.2f}, pretraining {run.seconds:.0f} s"
        )


if __name__ == "__main__":
    main()
