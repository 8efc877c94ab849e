"""Sample prepared tiles into sharded TFRecords, one records folder per acquisitions layout and dataset.

    python -m decloud.models.create_tfrecords --acquisition_train AL.json --output_train TRAIN \\
        --acquisitions_valid AL.json --outputs_valid VALID --tiles tiles.json --rois rois.json \\
        --patchsize 256 --n_samples_per_shard 100 [--maxntrain N] [--maxnvalid N] [--with_20m_bands] [--seed S]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from decloud.core.cli import run_command
from decloud.core.errors import InvalidArgumentError
from decloud.sampling.dataset_writer import DatasetRequest, SamplingOptions, create_tfrecords
from decloud.sampling.iterators import SAMPLING_STRATEGIES


def _requests(args: argparse.Namespace) -> list[DatasetRequest]:
    """The records folders asked for: train, then each valid and test layout with its output folder."""
    requests = []
    if bool(args.acquisition_train) != bool(args.output_train):
        raise InvalidArgumentError("--acquisition_train and --output_train go together")
    if args.acquisition_train:
        requests.append(DatasetRequest("train", Path(args.acquisition_train), Path(args.output_train), args.maxntrain))
    for dataset, layouts, outputs, maximum in (
        ("valid", args.acquisitions_valid, args.outputs_valid, args.maxnvalid),
        ("test", args.acquisitions_test, args.outputs_test, args.maxntest),
    ):
        layouts, outputs = layouts or [], outputs or []
        if len(layouts) != len(outputs):
            raise InvalidArgumentError(
                f"{len(layouts)} {dataset} layouts for {len(outputs)} {dataset} output folders: "
                "give one folder per layout"
            )
        requests += [DatasetRequest(dataset, Path(a), Path(o), maximum) for a, o in zip(layouts, outputs, strict=True)]
    if not requests:
        raise InvalidArgumentError("nothing to write: give --acquisition_train/--output_train or valid/test layouts")
    return requests


def run(args: argparse.Namespace) -> None:
    options = SamplingOptions(
        patchsize=args.patchsize,
        n_samples_per_shard=args.n_samples_per_shard,
        with_20m_bands=args.with_20m_bands,
        with_dem=args.with_dem,
        seed=args.seed,
        strategy=args.strategy,
        samples_per_patch=args.samples_per_patch,
        workers=args.workers,
    )
    create_tfrecords(
        args.tiles, args.rois, _requests(args), options, catalog_dir=args.catalog_dir, overwrite=args.overwrite
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud create-tfrecords",
        description="Sample prepared Sentinel tiles into sharded TFRecords (0.records, 1.records...) with "
        "output_types.json, output_shapes.json and summary.json, one folder per layout.",
    )
    parser.add_argument("--acquisition_train", help="acquisitions layout (JSON) of the training samples")
    parser.add_argument("--output_train", help="records folder of the training samples")
    parser.add_argument("--acquisitions_valid", nargs="+", help="layout(s) of the validation samples")
    parser.add_argument("--outputs_valid", nargs="+", help="records folder(s), one per validation layout")
    parser.add_argument("--acquisitions_test", nargs="+", help="layout(s) of the test samples")
    parser.add_argument("--outputs_test", nargs="+", help="records folder(s), one per test layout")
    parser.add_argument("--tiles", required=True, help="tiles JSON (S1_ROOT_DIR, S2_ROOT_DIR, DEM_ROOT_DIR, TILES)")
    parser.add_argument("--rois", required=True, help="ROI summary JSON written by generate-roi-rasters")
    parser.add_argument("--patchsize", type=int, default=256, help="patch size in 10 m pixels, multiple of 64 (256)")
    parser.add_argument("--n_samples_per_shard", type=int, default=100, help="samples per .records shard (100)")
    parser.add_argument("--maxntrain", type=int, help="maximum number of training samples")
    parser.add_argument("--maxnvalid", type=int, help="maximum number of samples of each validation folder")
    parser.add_argument("--maxntest", type=int, help="maximum number of samples of each test folder")
    parser.add_argument("--with_20m_bands", action="store_true", help="also sample the 20 m bands (s2_20m_* keys)")
    parser.add_argument("--with_dem", action="store_true", help="also sample the DEM of the tile (dem key)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (0)")
    parser.add_argument(
        "--strategy",
        choices=SAMPLING_STRATEGIES,
        default="random",
        help="random: every tuple in random order; constant: at most --samples_per_patch per patch; "
        "monthly: balanced over months, oversampling the scarce ones (random)",
    )
    parser.add_argument("--samples_per_patch", type=int, default=1, help="with --strategy constant (1)")
    parser.add_argument("--workers", type=int, default=4, help="patch reading threads (4)")
    parser.add_argument(
        "--catalog_dir", help="where the tiles' catalog index is kept (default: .decloud_catalog beside --tiles)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace records folders already written by decloud")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
