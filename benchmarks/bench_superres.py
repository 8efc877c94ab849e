"""Benchmark of ``decloud superres`` (x2 on the ten bands, superres_carn with random weights).

For each size, generates and prepares a 10-band product of size x size pixels, then, in a fresh process
per size, with the model loaded and its graph traced once (one-off costs, kept out of both timings):
  - calls the model in memory on as many chunks of the same shape as the streamed run computes (chunk plus
    margins, 10 m and 20 m inputs; no I/O): the pure compute;
  - streams the model over the whole product (read with mirrored margins, compute, convert, write the 5 m
    GeoTIFF and verify it);
alternately, ``--repeat`` streamed runs each followed by a pure one, after a first pure one, so that a change of
the machine's load weighs on both sides alike. Prints input pixels/s of both (medians of the runs), their ratio
(streamed / pure, target >= 0.87), the same ratio in CPU time of this process (all its threads: what the
streamed run costs beyond the model, whatever else the machine runs), and the peak RSS of the first streamed
run (target: at the largest size <= 1.2 x at the smallest).

    python benchmarks/bench_superres.py --sizes 2048 4096 [--repeat 3] [--ts 512] [--filters 32 --blocks 2 --units 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from streaming_figures import FiguresTable, emit, peak_rss_mib, run_worker

from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.testing.theia import make_theia_product

DATE = datetime(2021, 6, 15, 10, 30, tzinfo=UTC)


def worker(model_path: Path, product: Path, output: Path, chunk_size: int, repeat: int) -> None:
    """Streamed runs alternating with in-memory runs of the same model calls, in this process."""
    from decloud.superres.backends import SISR, load_superres_backend
    from decloud.superres.inference import SuperresRequest, run_superres
    from decloud.superres.models import S2_20M_KEY, S2_KEY

    backend = load_superres_backend(model_path)
    pad = backend.margin  # the default margin of decloud superres (a multiple of 2: the 20 m grid)
    side = chunk_size + 2 * pad
    rng = np.random.default_rng(0)
    feed = {S2_KEY: rng.uniform(0, 4000, (1, side, side, 4)).astype(np.float32)}
    if S2_20M_KEY in backend.inputs:
        feed[S2_20M_KEY] = rng.uniform(0, 4000, (1, side // 2, side // 2, 6)).astype(np.float32)
    backend.run(feed, [SISR])  # the first call traces the graph
    size = int(product.parent.parent.parent.name)
    chunks = (-(-size // chunk_size)) ** 2

    def pure() -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(chunks):
            backend.run(feed, [SISR])
        return time.perf_counter() - start, time.process_time() - cpu

    def streamed() -> tuple[float, float]:
        shutil.rmtree(output, ignore_errors=True)  # a complete output would be skipped
        start, cpu = time.perf_counter(), time.process_time()
        run_superres(SuperresRequest(in_image=product, out=output, model=model_path, chunk_size=chunk_size), backend)
        return time.perf_counter() - start, time.process_time() - cpu

    pures, streams = [pure()], [streamed()]
    peak_mib = peak_rss_mib()  # of the first streamed run (the in-memory runs hold less)
    pures.append(pure())
    for _ in range(repeat - 1):
        streams.append(streamed())
        pures.append(pure())
    emit(
        {
            "pixels": size * size,
            "streamed_s": statistics.median(wall for wall, _ in streams),
            "pure_s": statistics.median(wall for wall, _ in pures),
            "streamed_cpu_s": statistics.median(cpu for _, cpu in streams),
            "pure_cpu_s": statistics.median(cpu for _, cpu in pures),
            "peak_rss_mib": peak_mib,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--ts", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="streamed runs per size (default 3)")
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--units", type=int, default=2)
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        model, product, output, chunk_size, repeat = args.worker
        worker(Path(model), Path(product), Path(output), int(chunk_size), int(repeat))
        return

    from decloud.models.export import DESCRIPTION_FILE, export_savedmodel
    from decloud.models.registry import create_model

    with tempfile.TemporaryDirectory() as workdir:
        root = Path(workdir)
        params = {"filters": args.filters, "blocks": args.blocks, "units": args.units, "groups": 2}
        network = create_model("superres_carn", **params)
        model_path = export_savedmodel(network.model(), network, root / "savedmodel")
        margin = json.loads((model_path / DESCRIPTION_FILE).read_text())["tiling"]["margin_10m_pixels"]
        print(f"superres_carn x2 {params}, margin {margin}, chunks of {args.ts} (10 m pixels)")
        table = FiguresTable()
        for size in args.sizes:
            raw = make_theia_product(root / str(size) / "raw", acquired=DATE, shape=(size, size))
            product = prepare_s2_product(raw, root / str(size) / "S2")
            command = [sys.executable, __file__, "--worker", str(model_path), str(product)]
            table.add(size, run_worker([*command, str(root / f"{size}_out"), str(args.ts), str(args.repeat)]))
        table.summary()


if __name__ == "__main__":
    main()
