"""Reconstruct every Sentinel-2 product of a period with a CRGA model (see :mod:`decloud.production.timeseries`).

    python -m decloud.production.crga_timeseries_processor --s2_dir S2_PREPARE/T31TEJ --s1_dir S1_PREPARE/T31TEJ \\
        --model MODEL --out_dir OUT [--dem DEM] [--start 2020-01-01 --end 2020-12-31] [--overwrite]
"""

import sys

from decloud.production.timeseries import command

build_parser, main = command("crga")

if __name__ == "__main__":
    sys.exit(main())
