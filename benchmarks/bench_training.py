"""Benchmark of training speed per architecture against the speed of the input pipeline feeding it.

For each registered architecture (default widths), writes generated records of its layout (256x256
patches), then measures on this machine:
  - the model: training steps per second at batch 4 on a batch held in memory (compute only);
  - the input pipeline: samples per second that ``model_dataset`` (read, parse, shuffle, cast, batch)
    delivers from the same records.
Prints both and their ratio; the pipeline must outpace the model at least 3x or the model waits for data.

    python benchmarks/bench_training.py [--steps 10] [--samples 32] [--models crga_os2_unet ...] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from decloud.core.keys import sample_keys
from decloud.models.data import model_dataset
from decloud.models.registry import available_models, create_model
from decloud.models.training_loop import TrainingConfig, compile_model
from decloud.testing.records import LAYOUT_OF, LAYOUTS, write_records

PATCH = 256
BATCH = 4
REQUIRED_RATIO = 3.0


def model_steps_per_second(name: str, records: Path, steps: int) -> tuple[float, int]:
    """Training steps per second on one batch repeated from memory (no input cost), and parameter count."""
    model = create_model(name)
    network = model.training_model()
    compile_model(network, model, TrainingConfig(model=name))
    batch = next(iter(model_dataset(records, model, BATCH)))
    data = tf.data.Dataset.from_tensors(batch).repeat()
    network.fit(data, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)  # trace and warm up
    start = time.perf_counter()
    network.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return steps / (time.perf_counter() - start), network.count_params()


def pipeline_samples_per_second(name: str, records: Path, batches: int) -> float:
    model = create_model(name)
    dataset = model_dataset(records, model, BATCH, shuffle_buffer=64, repeat=True, drop_remainder=True)
    iterator = iter(dataset)
    next(iterator)  # start the pipeline's threads
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per model")
    parser.add_argument("--samples", type=int, default=32, help="samples per generated records folder")
    parser.add_argument("--models", nargs="+", default=None, help="architectures (default: all registered)")
    parser.add_argument("--workdir", type=Path, help="where to write the records (default: a temporary folder)")
    args = parser.parse_args()
    names = args.models or available_models()
    with tempfile.TemporaryDirectory() as temporary:
        workdir = args.workdir or Path(temporary)
        records = {}
        for layout in sorted({LAYOUT_OF[name] for name in names}):
            records[layout] = workdir / layout
            if not records[layout].exists():
                write_records(records[layout], sample_keys(LAYOUTS[layout]), n_samples=args.samples, patchsize=PATCH)
        print(f"training at {PATCH}x{PATCH}, batch {BATCH}, {os.cpu_count()} CPU cores, TensorFlow {tf.__version__}")
        header = f"{'architecture':<34}{'params':>10}{'steps/s':>9}{'model smp/s':>13}{'input smp/s':>13}{'ratio':>8}"
        print(header)
        worst = float("inf")
        for name in names:
            steps, params = model_steps_per_second(name, records[LAYOUT_OF[name]], args.steps)
            pipeline = pipeline_samples_per_second(name, records[LAYOUT_OF[name]], 4 * args.steps)
            ratio = pipeline / (steps * BATCH)
            note = "" if params else "  (no weights: nothing to train, not counted)"
            worst = min(worst, ratio) if params else worst
            row = f"{name:<34}{params:>10}{steps:>9.2f}{steps * BATCH:>13.1f}{pipeline:>13.1f}{ratio:>7.1f}x{note}"
            print(row, flush=True)
        verdict = "OK" if worst >= REQUIRED_RATIO else "TOO SLOW"
        print(f"input pipeline / model, worst trainable case: {worst:.1f}x (needs >= {REQUIRED_RATIO:g}x): {verdict}")


if __name__ == "__main__":
    main()
