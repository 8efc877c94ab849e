"""Super-resolve a Sentinel-2 product: ``python -m decloud.superres.superres_command`` (or ``decloud superres``).

decloud superres --in_image S2_PREPARE/T31TEJ/<PRODUCT> --out OUT/ --model superres_x2/
decloud superres --in_image SENTINEL2B_..._L2A_T31TEJ_C_V2-2.zip --out OUT/ --model carn.yaml --bicubic
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from decloud.core.cli import run_command
from decloud.production.streaming import COG_HELP
from decloud.superres.inference import DEFAULT_CHUNK_SIZE, SuperresRequest, run_superres


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud superres",
        description="Super-resolve a Sentinel-2 product (x2: the ten bands at 5 m; x4: at 2.5 m; or the six 20 m "
        "bands at 10 m) with a decloud SavedModel or a sentinel2_superresolution YAML+ONNX model, streamed over "
        "the whole product with mirrored borders; int16 reflectance x10000, no-data -10000.",
    )
    parser.add_argument(
        "--in_image",
        type=Path,
        required=True,
        help="prepared product folder, or THEIA / ESA SAFE L2A product (folder or .zip)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder (<SATELLITE>_<YYYYMMDD>_L2A_<TILE>_5m_sisr.tif...) or .tif file",
    )
    parser.add_argument("--model", type=Path, required=True, help="SavedModel folder or model card (.yaml)")
    parser.add_argument("--factor", type=float, help="expected factor (2 or 4); an error if the model's differs")
    parser.add_argument(
        "--bands", nargs="+", help="bands to write, in this order, among the model's (default: all the model's bands)"
    )
    parser.add_argument(
        "--ts", type=int, default=DEFAULT_CHUNK_SIZE, help="side of the chunks the model runs on at once, 10 m pixels"
    )
    parser.add_argument("--pad", type=int, help="margin in 10 m pixels (default: the model's)")
    parser.add_argument(
        "--roi",
        type=float,
        nargs=4,
        metavar="COORD",
        help="area to process: left bottom right top, in the product's map coordinates",
    )
    parser.add_argument(
        "--roip", type=int, nargs=4, metavar="PIXEL", help="area to process: col0 row0 col1 row1, in 10 m pixels"
    )
    parser.add_argument("--bicubic", action="store_true", help="also write the bicubic upsampling (_bicubic.tif)")
    parser.add_argument("--cog", action="store_true", help=COG_HELP)
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def request_from_args(args: argparse.Namespace) -> SuperresRequest:
    return SuperresRequest(
        in_image=args.in_image,
        out=args.out,
        model=args.model,
        factor=args.factor,
        bands=args.bands,
        chunk_size=args.ts,
        pad=args.pad,
        roi=tuple(args.roi) if args.roi else None,
        roip=tuple(args.roip) if args.roip else None,
        bicubic=args.bicubic,
        cog=args.cog,
        overwrite=args.overwrite,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), lambda args: run_superres(request_from_args(args)), argv)


if __name__ == "__main__":
    sys.exit(main())
