"""Reconstruction quality where users look: scores on the hole pixels only, against same-date truth, of the model
beside linear gap-filling over the whole series, linear gap-filling over the model's own input dates, and the
copy of the nearest clear observation (MAE, RMSE, PSNR from the pooled MSE, SSIM, SAM).

- Real series (default): the eo-learn crop of ../shared/data (T33TVL, 5 dates) is prepared with decloud; the
  real cloud masks of its cloudy dates (2015-07-31, 2015-08-20) are transplanted onto its clear dates (07-11,
  08-30, 09-09); the small S2-only CRGA U-Net (16 filters) is trained on the upper rows and scored on held-out
  patches of the lower rows.
- Demo tile (``--demo_out``): the model of a finished ``decloud demo`` run scored on its test records, with the
  series baselines read from its prepared products.

    python benchmarks/bench_quality.py [--data ../shared/data] [--epochs 25] [--demo_out DEMO_FOLDER] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from decloud.models.record_scoring import evaluate, format_table
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.testing.series_records import same_date_experiment

REPO_ROOT = Path(__file__).resolve().parents[1]


def real_series(data: Path, work: Path, epochs: int, seed: int) -> str:
    series = data / "eolearn-timeseries" / "S2" / "T33TVL"
    if not series.is_dir():
        raise SystemExit(f"real series not found at {series}")
    for product in sorted(series.iterdir()):
        prepare_s2_product(product, work / "S2")
    start = time.perf_counter()
    experiment = same_date_experiment(work / "S2" / "T33TVL", work / "experiment", epochs=epochs, seed=seed)
    seconds = time.perf_counter() - start
    report = evaluate(experiment.savedmodel, experiment.test, s2_root=experiment.s2_root)
    return (
        f"Real series T33TVL (eo-learn): {experiment.train_samples} training samples (upper rows), "
        f"{experiment.test_samples} held-out samples (lower rows), {epochs} epochs in {seconds:.0f} s\n"
        + format_table(report)
    )


def demo_tile(demo_out: Path) -> str:
    """Scores of a finished demo run (its SavedModel, test records and prepared series)."""
    savedmodel, records = demo_out / "model" / "savedmodel", demo_out / "records" / "test"
    for path in (savedmodel, records):
        if not path.is_dir():
            raise SystemExit(f"{path} not found: give the folder of a finished `decloud demo` run")
    report = evaluate(savedmodel, records, s2_root=demo_out / "prepared" / "S2")
    return f"Demo tile ({demo_out})\n" + format_table(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demo_out", type=Path, help="folder of a finished `decloud demo` run")
    parser.add_argument("--skip_real", action="store_true", help="score the demo run only")
    parser.add_argument("--workdir", type=Path, help="keep the prepared data, records and model here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        work = args.workdir or Path(temporary)
        if not args.skip_real:
            print(real_series(args.data, work, args.epochs, args.seed))
        if args.demo_out is not None:
            print(demo_tile(args.demo_out))


if __name__ == "__main__":
    main()
