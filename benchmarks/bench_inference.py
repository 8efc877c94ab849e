"""Benchmark of the streaming inference engine with crga_os2_unet (random weights).

For each size, generates and prepares the inputs of a CRGA OS2 reconstruction (3 S2 products and 6 S1
images of size x size pixels), then, in a fresh process per size:
  - runs the CRGA processor's engine over the whole image (read, compute, write, with margins);
  - calls the model in memory on as many chunks of the same shape (no I/O): the pure compute;
and prints pixels/s of both, their ratio (streamed / pure, target >= 0.87), and the peak RSS of the
streamed run (target: at the largest size <= 1.2 x at the smallest).

    python benchmarks/bench_inference.py --sizes 2048 4096 [--ts 512] [--pad 64] [--filters 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from streaming_figures import FiguresTable, emit, peak_rss_mib, run_worker

from decloud.preprocessing.sentinel1_prepare import prepare_s1_image
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.testing.regions import Rect
from decloud.testing.s1tiling import make_s1tiling_pair
from decloud.testing.theia import make_theia_product

DATE = datetime(2021, 6, 15, 10, 30, tzinfo=UTC)


def prepare_inputs(root: Path, size: int) -> dict[str, list[Path]]:
    s2 = {}
    for name, days in (("before", -10), ("target", 0), ("after", 10)):
        clouds = [Rect(size // 4, size // 4, size // 2, size // 3)] if name == "target" else []
        raw = make_theia_product(root / "raw", acquired=DATE + timedelta(days=days), shape=(size, size), clouds=clouds)
        s2[name] = [prepare_s2_product(raw, root / "S2")]
    s1 = {}
    for name, days in (("before", (-11, -9)), ("target", (-1, 1)), ("after", (9, 11))):
        s1[name] = []
        for day in days:
            date = (DATE + timedelta(days=day)).replace(hour=6)
            _, vh = make_s1tiling_pair(root / "raw_s1", acquired=date, shape=(size, size), seed=day + 20)
            s1[name].append(prepare_s1_image(vh, root / "S1"))
    return {f"s2_{k}": v for k, v in s2.items()} | {f"s1_{k}": v for k, v in s1.items()}


def worker(model_path: Path, inputs_json: Path, output: Path, chunk_size: int, pad: int) -> None:
    """One streamed run and the matching pure compute, in this process; prints JSON figures."""
    from decloud.core.products import s1_image, s2_product
    from decloud.production.processors import InferenceOptions, LoadedModel, crga_sources, reconstruct, reference_grid

    inputs = {k: [Path(p) for p in v] for k, v in json.loads(inputs_json.read_text()).items()}
    model = LoadedModel.load(model_path)
    options = InferenceOptions(chunk_size=chunk_size, pad=pad)
    target = s2_product(inputs["s2_target"][0])
    reference = reference_grid(target)

    def images(key):
        return [s1_image(p) for p in inputs[key]]

    side = chunk_size + 2 * pad
    rng = np.random.default_rng(0)
    feed = {key: rng.uniform(0, 4000, (1, side, side, c)).astype(np.float32) for key, c in model.backend.inputs.items()}
    model.backend.run(feed, ["s2_estim"])  # the first call traces the graph: a one-off cost, kept out of both runs
    with ExitStack() as stack:
        before = ([s2_product(p) for p in inputs["s2_before"]], images("s1_before"))
        after = ([s2_product(p) for p in inputs["s2_after"]], images("s1_after"))
        sources = crga_sources(stack, target, before, images("s1_target"), after, None, reference, options)
        start = time.perf_counter()
        reconstruct(model, sources, reference, output, None, options)
        streamed = time.perf_counter() - start
    peak_mib = peak_rss_mib()

    chunks = -(-reference.height // chunk_size) * -(-reference.width // chunk_size)
    start = time.perf_counter()
    for _ in range(chunks):
        model.backend.run(feed, ["s2_estim"])
    pure = time.perf_counter() - start
    pixels = reference.height * reference.width
    emit({"pixels": pixels, "streamed_s": streamed, "pure_s": pure, "chunks": chunks, "peak_rss_mib": peak_mib})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--ts", type=int, default=512)
    parser.add_argument("--pad", type=int, default=64)
    parser.add_argument(
        "--filters", type=int, default=64, help="crga_os2_unet width (64, Decloud's published networks; 16 is ours)"
    )
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        model, inputs, output, chunk_size, pad = args.worker
        worker(Path(model), Path(inputs), Path(output), int(chunk_size), int(pad))
        return

    from decloud.models.export import export_savedmodel
    from decloud.models.registry import create_model

    with tempfile.TemporaryDirectory() as workdir:
        root = Path(workdir)
        network = create_model("crga_os2_unet", filters=args.filters)
        model_path = export_savedmodel(network.model(), network, root / "savedmodel")
        print(
            f"crga_os2_unet filters={args.filters} depth={network.params['depth']}, chunks {args.ts} + 2 x {args.pad}"
        )
        table = FiguresTable()
        for size in args.sizes:
            inputs = prepare_inputs(root / str(size), size)
            inputs_json = root / f"{size}.json"
            inputs_json.write_text(json.dumps({k: [str(p) for p in v] for k, v in inputs.items()}))
            command = [sys.executable, __file__, "--worker", str(model_path), str(inputs_json)]
            table.add(size, run_worker([*command, str(root / f"{size}.tif"), str(args.ts), str(args.pad)]))
        table.summary()


if __name__ == "__main__":
    main()
