"""Reconstruct every Sentinel-2 product of a period, each with the inputs found among the tile's other
prepared products: the time-series mode of the CRGA and Meraner processors.

For a target date, the CRGA inputs are the ``candidates`` closest products before it (and after it for
OS2 models, which the model's inputs tell), paired per pixel with the S1 images within ``--maxgap`` hours,
and the S1 images within ``--maxgap`` hours of the target. A date lacking any of them (the first and last
dates of a series, typically) is written as itself when it is clear and ``--keep_clear`` is given; otherwise
it is named in one warning with what it lacks. Outputs already written are kept unless ``overwrite``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from decloud.core import keys
from decloud.core.atomic import outputs_to_write
from decloud.core.cli import run_command
from decloud.core.errors import DecloudError, InvalidArgumentError
from decloud.core.grid_20m import SCALE_20M, grid_offset
from decloud.core.paths import require_output_folder
from decloud.core.products import S1Image, S2Product, prepared_s1_series, prepared_s2_series
from decloud.core.progress import progress
from decloud.core.raster import Grid, block_windows, open_raster, read_window
from decloud.production.backends import InputCopyBackend
from decloud.production.processors import (
    InferenceOptions,
    LoadedModel,
    add_inference_flags,
    crga_sources,
    inference_options,
    meraner_sources,
    reconstruct,
    reference_grid,
    s1_near,
    target_sources,
)
from decloud.production.streaming import EmptyResultError

log = logging.getLogger(__name__)

#: Processor kinds and their model families' names.
KINDS = {"crga": "CRGA", "meraner": "Meraner"}
OUTPUT_SUFFIX_10M = "_reconstructed_FRE_10m.tif"
OUTPUT_SUFFIX_20M = "_reconstructed_FRE_20m.tif"


@dataclass(frozen=True)
class Period:
    """Dates [start, end] (both included; None: unbounded), and an optional area (ulx, uly, lrx, lry)."""

    start: date | None = None
    end: date | None = None
    area: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise InvalidArgumentError(f"--start {self.start} is after --end {self.end}: the period is empty")

    def contains(self, moment: datetime) -> bool:
        day = moment.date()
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class _DateInputs:
    """The inputs found for one target date; S1 lists are None for S2-only models."""

    before: tuple[list[S2Product], list[S1Image] | None]
    at_target: list[S1Image] | None
    after: tuple[list[S2Product], list[S1Image] | None] | None


def _find_inputs(
    target: S2Product,
    products: list[S2Product],
    s1_images: list[S1Image] | None,
    *,
    with_tp1: bool,
    candidates: int,
    max_gap_hours: float,
) -> _DateInputs | list[str]:
    """The inputs of ``target`` among the series, or what is lacking."""
    gap = timedelta(hours=max_gap_hours)

    def s1_around(group: list[S2Product]) -> list[S1Image] | None:
        if s1_images is None:
            return None
        return [i for i in s1_images if group[0].acquired - gap <= i.acquired <= group[-1].acquired + gap]

    before = [p for p in products if p.acquired < target.acquired][-candidates:]
    after = [p for p in products if p.acquired > target.acquired][:candidates]
    at_target = None if s1_images is None else s1_near(s1_images, target.acquired, max_gap_hours)
    lacking = [what for what, missing in (
        ("S1 image within the gap of the date", at_target == []),
        ("earlier S2 product", not before),
        ("later S2 product", with_tp1 and not after),
    ) if missing]  # fmt: skip
    if lacking:
        return lacking
    return _DateInputs((before, s1_around(before)), at_target, (after, s1_around(after)) if with_tp1 else None)


def reconstruct_series(
    kind: str,
    s2_dir: Path,
    s1_dir: Path | None,
    dem: Path | None,
    model_path: Path,
    out_dir: Path,
    options: InferenceOptions,
    period: Period = Period(),
    *,
    overwrite: bool = False,
    candidates: int = 3,
) -> list[Path]:
    """Reconstruct every product of ``s2_dir`` in ``period``; return the 10 m outputs written. The model's
    inputs tell whether it reads S1 (then ``s1_dir`` is needed) and a later date (OS2)."""
    if kind not in KINDS:
        raise InvalidArgumentError(f"unknown processor kind {kind!r} (known: {', '.join(KINDS)})")
    if candidates < 1:
        raise InvalidArgumentError(f"--candidates {candidates}: at least 1 Sentinel-2 date before/after is needed")
    require_output_folder(out_dir, "--out_dir folder")
    products = prepared_s2_series(s2_dir)
    targets = [product for product in products if period.contains(product.acquired)]
    if not targets:
        raise InvalidArgumentError(
            f"no prepared Sentinel-2 product in {s2_dir} between {period.start or 'the start'} and "
            f"{period.end or 'the end'} ({len(products)} products in the folder)"
        )
    model = LoadedModel.load(model_path)
    options = model.options_for(options)
    with_s1, with_tp1 = model.uses("s1_t"), kind == "crga" and model.uses("s2_tp1")
    if with_s1 and s1_dir is None:
        raise InvalidArgumentError(f"{model_path} reads Sentinel-1 images: give --s1_dir")
    s1_images = prepared_s1_series(s1_dir) if with_s1 else None
    paths = {
        target.name: (
            out_dir / f"{target.name}{OUTPUT_SUFFIX_10M}",
            out_dir / f"{target.name}{OUTPUT_SUFFIX_20M}" if options.with_20m_bands else None,
        )
        for target in targets
    }
    # Every output is checked before anything is written: one that decloud did not write stops the run.
    todo = {name: outputs_to_write([p for p in pair if p], overwrite) for name, pair in paths.items()}
    options = replace(options, overwrite=True)  # what remains to write has been checked
    written, kept, skipped = [], [], []
    for target in progress(targets, desc="time series", unit="date"):
        output, output_20m = paths[target.name]
        if not todo[target.name]:
            log.info("%s exists, kept (--overwrite to redo it)", output)
            kept.append(output)
            continue
        if kind == "crga":
            found = _find_inputs(
                target,
                products,
                s1_images,
                with_tp1=with_tp1,
                candidates=candidates,
                max_gap_hours=options.max_gap_hours,
            )
            lacking = found if isinstance(found, list) else []
        else:  # Meraner reads the S1 and S2 images of the date only
            at_target = s1_near(s1_images or [], target.acquired, options.max_gap_hours)
            lacking = [] if at_target else ["S1 image within the gap of the date"]
        reference = reference_grid(target, period.area)
        if lacking:
            reason = f"no {' and no '.join(lacking)}"
            cloudy = cloudy_pixels(target, reference) if options.keep_clear else None
            if cloudy == 0:
                write_as_itself(target, reference, output, output_20m, options)
                log.info("%s has %s; clear, written as itself (--keep_clear)", target.name, reason)
                written.append(output)
                continue
            if cloudy is not None:
                reason += f", and {cloudy} cloudy pixels keep it from being written as itself"
            log.warning("%s not reconstructed: %s", target.name, reason)
            skipped.append(target.name)
            continue
        with ExitStack() as stack:
            if kind == "crga":
                sources = crga_sources(
                    stack, target, found.before, found.at_target, found.after, dem, reference, options
                )
            else:
                sources = meraner_sources(stack, target, at_target, dem, reference, options)
            try:
                reconstruct(model, sources, reference, output, output_20m, options)
            except EmptyResultError as error:
                log.warning("%s skipped: %s", target.name, error)
                skipped.append(target.name)
                continue
        written.append(output)
    log.info("%d reconstructed, %d kept, %d skipped (%s)", len(written), len(kept), len(skipped), ", ".join(skipped))
    if not written and not kept:
        raise DecloudError(f"no date of the period could be reconstructed: {len(skipped)} skipped for lack of inputs")
    return written


def cloudy_pixels(product: S2Product, reference: Grid) -> int:
    """Pixels of ``product``'s cloud mask flagged cloudy over ``reference`` (a part of its 10 m grid)."""
    with open_raster(product.cloud_mask) as dataset:
        row, col = grid_offset(Grid.of(dataset), reference, 1, str(product.cloud_mask))
        return sum(
            int(np.count_nonzero(read_window(dataset, Window(col + w.col_off, row + w.row_off, w.width, w.height), 1)))
            for w in block_windows(reference.height, reference.width)
        )


def write_as_itself(
    target: S2Product, reference: Grid, output: Path, output_20m: Path | None, options: InferenceOptions
) -> None:
    """Write the target's own bands (10 m, and 20 m when asked) as its reconstruction."""
    copied = {"s2_estim": keys.key(keys.S2, "t")}
    if output_20m is not None:
        copied["s2_20m_estim"] = keys.key(keys.S2_20M, "t")
    channels = {key: keys.spec_of(key).channels or 1 for key in copied.values()}
    model = LoadedModel(InputCopyBackend(copied, channels), target.directory, SCALE_20M, 0)
    with ExitStack() as stack:
        reconstruct(model, target_sources(stack, target, reference, options), reference, output, output_20m, options)


def _day(text: str | None, flag: str) -> date | None:
    """The date of a --start/--end flag; checked here rather than by the parser so that a wrong date is one
    line and exit status 1, as every other wrong value."""
    if text is None:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).date()
    except ValueError:
        raise InvalidArgumentError(f"{flag} {text!r} is not a date YYYY-MM-DD") from None


def build_parser(kind: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"decloud {kind}-timeseries-processor",
        description=f"Reconstruct every Sentinel-2 product of a period with a {KINDS[kind]} model, "
        "finding each date's inputs among the tile's prepared products.",
    )
    parser.add_argument("--s2_dir", type=Path, required=True, help="tile folder of prepared S2 products")
    parser.add_argument("--s1_dir", type=Path, help="tile folder of prepared S1 images (models reading S1)")
    parser.add_argument("--dem", type=Path, help="prepared DEM of the tile (models trained with the DEM)")
    parser.add_argument("--model", type=Path, required=True, help="SavedModel folder or .onnx file")
    parser.add_argument("--out_dir", type=Path, required=True, help="folder of the reconstructed images")
    parser.add_argument("--start", help="first date, YYYY-MM-DD (included)")
    parser.add_argument("--end", help="last date, YYYY-MM-DD (included)")
    for name in ("ulx", "uly", "lrx", "lry"):
        parser.add_argument(f"--{name}", type=float, help="area to process, in the tile's CRS (all four, or none)")
    if kind == "crga":
        parser.add_argument("--candidates", type=int, default=3, help="S2 dates tried before/after each date (3)")
    add_inference_flags(parser)
    return parser


def run(kind: str, args: argparse.Namespace) -> None:
    corners = (args.ulx, args.uly, args.lrx, args.lry)
    if any(c is not None for c in corners) and not all(c is not None for c in corners):
        raise InvalidArgumentError("give all of --ulx --uly --lrx --lry, or none")
    area = corners if corners[0] is not None else None
    period = Period(_day(args.start, "--start"), _day(args.end, "--end"), area)
    reconstruct_series(
        kind, args.s2_dir, args.s1_dir, args.dem, args.model, args.out_dir, inference_options(args),
        period, overwrite=args.overwrite, candidates=getattr(args, "candidates", 3),
    )  # fmt: skip


def command(kind: str) -> tuple[Callable[[], argparse.ArgumentParser], Callable[[Sequence[str] | None], int]]:
    """``build_parser`` and ``main`` of the time-series processor of ``kind``, for its command module."""

    def build() -> argparse.ArgumentParser:
        return build_parser(kind)

    def main(argv: Sequence[str] | None = None) -> int:
        return run_command(build_parser(kind), lambda args: run(kind, args), argv)

    return build, main
