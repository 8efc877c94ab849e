"""Reconstruct every Sentinel-2 product of a period with a Meraner model (see :mod:`decloud.production.timeseries`).

    python -m decloud.production.meraner_timeseries_processor --s2_dir S2_PREPARE/T31TEJ --s1_dir S1_PREPARE/T31TEJ \\
        --model MODEL --out_dir OUT [--dem DEM] [--start 2020-01-01 --end 2020-12-31] [--overwrite]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from decloud.core.cli import run_command
from decloud.production import timeseries

KIND = "meraner"


def build_parser() -> argparse.ArgumentParser:
    return timeseries.build_parser(KIND)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), lambda args: timeseries.run(KIND, args), argv)


if __name__ == "__main__":
    sys.exit(main())
