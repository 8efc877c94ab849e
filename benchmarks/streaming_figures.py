"""What the streaming benchmarks share: each size runs in a fresh worker process (so that its peak RSS is
its own), which prints its figures as one JSON line; the table compares streamed and in-memory pixels/s
and the peak RSS across sizes.

The targets are those of the issues: streamed / in-memory >= 0.87, and peak RSS at the largest size at most
1.2 x the smallest's (memory flat with the image size).
"""

from __future__ import annotations

import json
import resource
import subprocess
from collections.abc import Sequence
from typing import Any

RATIO_TARGET = 0.87
PEAK_GROWTH_TARGET = 1.2


def peak_rss_mib() -> float:
    """Peak resident memory of the calling process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(figures: dict[str, Any]) -> None:
    """Print a worker's figures for :func:`run_worker`: ``pixels``, ``streamed_s``, ``pure_s``, ``peak_rss_mib``
    (and optionally ``streamed_cpu_s``, ``pure_cpu_s``)."""
    print(json.dumps(figures))


def run_worker(command: Sequence[str]) -> dict[str, Any]:
    """Run a worker process; its figures (the last line it printed)."""
    result = subprocess.run(list(command), check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


class FiguresTable:
    """Prints one row per size as the workers return, then the two targets."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.peaks: list[float] = []
        print(f"{'size':>6} {'streamed px/s':>14} {'pure px/s':>10} {'ratio':>6} {'peak RSS MiB':>13}")

    def add(self, size: int, figures: dict[str, Any]) -> None:
        streamed = figures["pixels"] / figures["streamed_s"]
        pure = figures["pixels"] / figures["pure_s"]
        self.sizes.append(size)
        self.peaks.append(figures["peak_rss_mib"])
        row = f"{size:>6} {streamed:>14.0f} {pure:>10.0f} {streamed / pure:>6.2f} {figures['peak_rss_mib']:>13.0f}"
        if "streamed_cpu_s" in figures:  # pure CPU time / streamed CPU time: the streamed run's own overhead
            row += f"   CPU time ratio {figures['pure_cpu_s'] / figures['streamed_cpu_s']:.2f}"
        print(row)

    def summary(self) -> None:
        growth = self.peaks[-1] / self.peaks[0]
        print(
            f"streamed / pure: target >= {RATIO_TARGET}; peak RSS {self.sizes[-1]} / {self.sizes[0]}: {growth:.2f} "
            f"(<= {PEAK_GROWTH_TARGET})"
        )
