"""Fault injection: kill every writing command at several points and run it on a full disk, then check
that no final name holds an unreadable or partial output, that no file of the user's is gone, that
discovery (the time-series listing) still works, and that a rerun succeeds and leaves no temporary.

Kills are injected with :mod:`decloud.testing.faults` (SIGKILL or SIGTERM sent by the process itself in
the middle of writing, just before or just after an output is published, and during ``--overwrite``).
Full disks are tmpfs mounts (needs root; skipped otherwise) filled with ``fallocate`` to leave a few
sizes free. Prints one row per case and a summary; exits 1 when a case breaks a rule.

    python benchmarks/fault_injection.py [--workdir DIR] [--commands s2-prepare ...] [--free_kb 64 512 4096]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import rasterio
from affine import Affine

from decloud.acquisitions.sensing_layout import AcquisitionsLayout, S2Acquisition
from decloud.core.atomic import COMPLETION_MARKER, is_temporary
from decloud.core.constants import S1_SUFFIX_VVVH
from decloud.core.naming import parse_s2_product_name, superres_output_name
from decloud.core.products import prepared_s1_series, prepared_s2_series, s1_nodata_stats_path
from decloud.models.export import export_savedmodel
from decloud.models.registry import create_model
from decloud.preprocessing.generate_roi_rasters import generate_roi_rasters
from decloud.preprocessing.sentinel1_prepare import prepare_s1_image
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.production.timeseries import OUTPUT_SUFFIX_10M
from decloud.sits.encoder import build_encoder
from decloud.sits.observations import PreparedS2Series
from decloud.sits.pretrain import save_encoder
from decloud.sits.store import SeriesStore, extract_series
from decloud.superres.backends import SISR
from decloud.testing.dem import make_dem
from decloud.testing.s1tiling import make_s1tiling_pair
from decloud.testing.theia import DEFAULT_CRS, DEFAULT_ORIGIN, make_theia_product

START = datetime(2020, 6, 1, 10, 30, tzinfo=UTC)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
NOTE = "the user's own file"
TMPFS_SIZE_MB = 30
#: Exit status and last word of a run stopped by a signal it handles: Ctrl-C, SIGTERM.
HANDLED = {"INT": (130, "interrupted"), "TERM": (143, "terminated")}


@dataclass
class Command:
    """A writing command: its arguments for an output folder ``case``, and the final outputs it writes."""

    name: str
    argv: Callable[[Path], list[str]]
    outputs: Callable[[Path], list[Path]]
    publications: int  #: outputs published per run (the last one is killed "before" in one case)
    listing: Callable[[Path], object] | None = None  #: discovery to run on the case folder
    variant: str = ""  #: tells apart the rows of two cases of one command

    @property
    def label(self) -> str:
        return f"{self.name}{self.variant and f' ({self.variant})'}"

    def folder(self, work: Path, case: str) -> Path:
        return work / f"{self.name}{self.variant and f'-{self.variant}'}-{case}"


@dataclass
class Row:
    command: str
    fault: str
    status: int
    outputs: str
    user_files: str
    discovery: str
    rerun: int
    left: int
    notes: list[str] = field(default_factory=list)

    traceback: bool = False  #: the run ended with a traceback instead of one line
    stop: str = "-"  #: for Ctrl-C and SIGTERM, how the run stopped (see :func:`clean_stop`)

    @property
    def ok(self) -> bool:
        return (
            not self.traceback
            and not self.outputs.startswith("BAD")
            and self.user_files == "kept"
            and self.discovery in ("ok", "-")
            and self.rerun == 0
            and self.left == 0
            and not self.stop.startswith("BAD")
        )


# --- Inputs -------------------------------------------------------------------------------------------


def build_inputs(root: Path) -> dict[str, Path]:
    """Raw products, a prepared tile, ROIs, a SavedModel: everything the commands read."""
    raws = [
        make_theia_product(root / "raw", acquired=START + timedelta(days=5 * i), shape=(512, 512), seed=i)
        for i in range(3)
    ]
    vh = make_s1tiling_pair(root / "raw_s1", acquired=START, shape=(512, 512))[1]
    products = [prepare_s2_product(raw, root / "S2") for raw in raws]
    prepare_s1_image(vh, root / "S1")
    (root / "tiles.json").write_text(json.dumps({"S2_ROOT_DIR": "S2", "S1_ROOT_DIR": "S1", "TILES": ["T31TEJ"]}))
    rois = generate_roi_rasters(root / "tiles.json", ["train", "valid"], [1, 1], root / "rois", patchsize=64)
    x, y = DEFAULT_ORIGIN
    dem = make_dem(
        root / "dem.tif", crs=DEFAULT_CRS, transform=Affine(30, 0, x - 300, 0, -30, y + 300), shape=(200, 200)
    )
    layout = AcquisitionsLayout()  # one S2 image per sample
    layout.new_acquisition("t", s2_acquisition=S2Acquisition(0, 100), timeframe_origin=True)
    layout.validate().to_json(root / "layout.json")
    model = create_model("crga_os2_unet", with_s1=False, depth=2, filters=8)  # S2-only, small, untrained
    savedmodel = export_savedmodel(model.model(), model, root / "savedmodel")
    with PreparedS2Series(prepared_s2_series(products[0].parent)) as series:
        store = extract_series([series], root / "series.zarr")
    info = SeriesStore(store).sources["s2"]
    encoder = build_encoder("mlp", bands=10, band_mean=info.band_mean, band_std=info.band_std, dim=8, depth=1)
    save_encoder(encoder, {"source": "s2", "bands": list(info.bands), "max_length": 3}, root / "encoder")
    superres = create_model("superres_carn", filters=8, blocks=1, units=1, groups=2)  # x2, small, untrained
    superres_model = export_savedmodel(superres.model(), superres, root / "superres")
    return {
        "raw": raws[0], "vh": vh, "products": products[0].parent, "p0": products[0], "p1": products[1],
        "p2": products[2], "tiles": root / "tiles.json", "rois": rois, "dem": dem, "layout": root / "layout.json",
        "savedmodel": savedmodel, "store": store, "encoder": root / "encoder", "superres": superres_model,
    }  # fmt: skip


def commands(inputs: dict[str, Path]) -> list[Command]:
    i = inputs
    s1_name = next((i["vh"].parent.parent / "S1" / "T31TEJ").glob(f"*{S1_SUFFIX_VVVH}")).name
    middle = sorted(i["products"].iterdir())[1].name  # the one date with a date before and after it
    return [
        Command(
            "s2-prepare",
            lambda c: ["--in_image", str(i["raw"]), "--out_s2_dir", str(c / "S2")],
            lambda c: [c / "S2" / "T31TEJ" / i["raw"].name],
            1,
            lambda c: prepared_s2_series(c / "S2" / "T31TEJ") if (c / "S2" / "T31TEJ").is_dir() else None,
        ),
        Command(
            "s1-prepare",
            lambda c: ["--input_s1_vh", str(i["vh"]), "--out_s1_dir", str(c / "S1")],
            lambda c: [c / "S1" / "T31TEJ" / s1_name, s1_nodata_stats_path(c / "S1" / "T31TEJ" / s1_name)],
            2,
            lambda c: prepared_s1_series(c / "S1" / "T31TEJ") if (c / "S1" / "T31TEJ").is_dir() else None,
        ),
        Command(
            "dem-prepare",
            lambda c: [
                "--reference",
                str(i["p0"] / f"{i['p0'].name}_FRE_20m.tif"),
                "--input",
                str(i["dem"]),
                "--output",
                str(c / "DEM" / "T31TEJ.tif"),
            ],
            lambda c: [c / "DEM" / "T31TEJ.tif"],
            1,
        ),
        Command(
            "generate-roi-rasters",
            lambda c: [
                "--tiles",
                str(i["tiles"]),
                "--datasets",
                "train",
                "valid",
                "test",
                "--props",
                "1",
                "1",
                "1",
                "--output_dir",
                str(c / "rois"),
                "--patchsize",
                "64",
            ],
            lambda c: [c / "rois" / f"T31TEJ_{d}.tif" for d in ("train", "valid", "test")] + [c / "rois" / "rois.json"],
            4,
        ),
        Command(
            "create-tfrecords",
            lambda c: [
                "--tiles",
                str(i["tiles"]),
                "--rois",
                str(i["rois"]),
                "--patchsize",
                "64",
                "--acquisition_train",
                str(i["layout"]),
                "--output_train",
                str(c / "train"),
                "--acquisitions_valid",
                str(i["layout"]),
                "--outputs_valid",
                str(c / "valid"),
                "--n_samples_per_shard",
                "5",
                "--catalog_dir",
                str(c / "catalog"),
                "--workers",
                "1",
            ],
            lambda c: [c / "train", c / "valid"],
            2,
        ),
        Command(
            "export-onnx",
            lambda c: ["--savedmodel", str(i["savedmodel"]), "--output", str(c / "onnx" / "model.onnx")],
            lambda c: [c / "onnx" / "model.onnx", c / "onnx" / "model.json"],
            2,
        ),
        Command(
            "crga-processor",
            lambda c: [
                "--il_s2before",
                str(i["p0"]),
                "--in_s2",
                str(i["p1"]),
                "--il_s2after",
                str(i["p2"]),
                "--savedmodel",
                str(i["savedmodel"]),
                "--output",
                str(c / "out" / "estimate.tif"),
                "--ts",
                "256",
            ],
            lambda c: [c / "out" / "estimate.tif"],
            1,
        ),
        Command(
            "crga-timeseries-processor",
            lambda c: [
                "--s2_dir",
                str(i["products"]),
                "--model",
                str(i["savedmodel"]),
                "--out_dir",
                str(c / "ts"),
                "--ts",
                "256",
            ],
            lambda c: [c / "ts" / f"{middle}{OUTPUT_SUFFIX_10M}"],
            1,
        ),
        Command(
            "sits-extract",
            lambda c: ["--s2_dir", str(i["products"]), "--out", str(c / "series.zarr")],
            lambda c: [c / "series.zarr"],
            1,
            lambda c: SeriesStore(c / "series.zarr") if (c / "series.zarr").exists() else None,
        ),
        Command(
            "sits-embed",
            lambda c: ["--encoder", str(i["encoder"]), "--store", str(i["store"]), "--out", str(c / "map" / "e.tif")],
            lambda c: [c / "map" / "e.tif", c / "map" / "e_pca.tif", c / "map" / "e_pca.png"],
            3,
        ),
        Command(
            "superres",
            lambda c: [
                "--in_image",
                str(i["p0"]),
                "--out",
                str(c / "sr" / "x2.tif"),
                "--model",
                str(i["superres"]),
                "--ts",
                "128",
                "--bicubic",
            ],
            lambda c: [c / "sr" / "x2.tif", c / "sr" / "x2_bicubic.tif"],
            2,
        ),
        Command(  # from the raw product: prepared into a temporary folder beside the outputs first
            "superres",
            lambda c: [
                "--in_image",
                str(i["raw"]),
                "--out",
                str(c / "sr"),
                "--model",
                str(i["superres"]),
                "--ts",
                "128",
            ],
            lambda c: [c / "sr" / superres_output_name(parse_s2_product_name(i["raw"].name), 5.0, SISR)],
            1,
            variant="raw",
        ),
        Command(
            "demo-superres",
            lambda c: ["--out", str(c / "demo"), "--quick"],
            lambda c: [c / "demo"],
            1,
        ),
    ]


# --- Checks -------------------------------------------------------------------------------------------


def readable(path: Path, output: bool = True) -> str | None:
    """None when ``path`` is a complete, readable output (or, not ``output``, a folder or file inside one);
    else what is wrong."""
    try:
        if path.is_dir():
            if output and not (path / COMPLETION_MARKER).is_file():
                return "folder without completion marker"
            if (path / "zarr.json").is_file():  # a series store: its arrays' folders are Zarr's, read it all
                store = SeriesStore(path)
                for source in store.sources:
                    store.read(source)
                return None
            inside = sorted(path.iterdir())
            return next((f"{p.name}: {why}" for p in inside if (why := readable(p, output=False))), None)
        if path.suffix == ".tif":
            with rasterio.open(path) as dataset:
                dataset.read()
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".onnx":
            import onnx

            onnx.checker.check_model(onnx.load(str(path)))
        elif path.suffix == ".records":
            import tensorflow as tf

            sum(1 for _ in tf.data.TFRecordDataset(str(path)))  # raises on a damaged record
    except Exception as error:  # anything unreadable is what this script looks for
        return f"{type(error).__name__}: {str(error)[:80]}"
    if path.is_dir() and (path / "summary.json").is_file() and any(path.glob("*.records")):
        import tensorflow as tf

        count = sum(1 for p in path.glob("*.records") for _ in tf.data.TFRecordDataset(str(p)))
        expected = json.loads((path / "summary.json").read_text())["total_samples"]
        if count != expected:
            return f"{count} samples instead of {expected}"
    return None


def outputs_state(paths: list[Path]) -> str:
    """'none', 'all', 'k of n' (each present one complete), or 'BAD ...' naming a partial output."""
    present = [p for p in paths if p.exists()]
    for path in present:
        if (why := readable(path)) is not None:
            return f"BAD {path.name}: {why}"
    if not present:
        return "none"
    return "all" if len(present) == len(paths) else f"{len(present)} of {len(paths)}"


def plant_user_files(case: Path, outputs: list[Path]) -> list[Path]:
    """A file of the user's beside every output."""
    planted = []
    for folder in sorted({p.parent for p in outputs} | {case}):
        folder.mkdir(parents=True, exist_ok=True)
        planted.append(folder / "notes.txt")
        planted[-1].write_text(NOTE)
    return planted


def temporaries(case: Path) -> int:
    return sum(1 for p in case.rglob("*") if is_temporary(p))


def decloud(args: list[str], fault: tuple[str, int, str] | None = None) -> subprocess.CompletedProcess:
    prefix = ["-m", "decloud.testing.faults", fault[0], str(fault[1]), fault[2]] if fault else ["-m", "decloud.cli"]
    return subprocess.run([sys.executable, *prefix, *args], capture_output=True, text=True, env=ENV, check=False)


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[-1][:140] if lines else ""


def fingerprint(path: Path) -> str | None:
    """A digest of a file's bytes, or of every file of a folder (names and bytes); None when absent."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return hashlib.sha256("".join(f"{p.relative_to(path)}:{fingerprint(p)};" for p in files).encode()).hexdigest()
    return None


def clean_stop(command: Command, case: Path, signal: str, result: subprocess.CompletedProcess,
               previous: dict[Path, str | None]) -> str:  # fmt: skip
    """For a signal the command handles (Ctrl-C, SIGTERM): its exit status and one line saying so, no temporary
    left even before a rerun cleans up, and the outputs there before the run (``previous``) unchanged. '-' for
    a SIGKILL, 'ok', or 'BAD ...'."""
    if signal not in HANDLED:
        return "-"
    status, word = HANDLED[signal]
    if result.returncode != status:
        return f"BAD exit {result.returncode} instead of {status}"
    if last_line(result) != f"decloud {command.name}: {word}":
        return f"BAD last line {last_line(result)!r}"
    if left := temporaries(case):
        return f"BAD {left} temporaries left"
    changed = [path.name for path, digest in previous.items() if fingerprint(path) != digest]
    return f"BAD changed or deleted: {', '.join(changed)}" if changed else "ok"


def check_case(
    command: Command,
    case: Path,
    fault: tuple[str, int, str],
    result: subprocess.CompletedProcess,
    planted: list[Path],
    previous: dict[Path, str | None],
    label: str = "",
) -> Row:
    point, count, signal = fault
    stop = clean_stop(command, case, signal, result, previous)
    outputs = command.outputs(case)
    state = outputs_state(outputs)
    kept = "kept" if all(p.is_file() and p.read_text() == NOTE for p in planted) else "LOST"
    discovery = "-"
    if command.listing is not None:
        try:
            command.listing(case)
            discovery = "ok"
        except Exception as error:  # a reader that trips over what the run left
            discovery = f"FAILS: {str(error)[:60]}"
    rerun = decloud([command.name, *command.argv(case)])
    fault_text = f"{label}{signal} at {point} {count}"
    row = Row(command.label, fault_text, result.returncode, state, kept, discovery, rerun.returncode, temporaries(case))
    row.stop = stop
    if rerun.returncode == 0 and outputs_state(outputs) != "all":
        row.rerun, row.notes = -1, [f"rerun left outputs {outputs_state(outputs)}"]
    if rerun.returncode != 0:
        row.notes.append(f"rerun: {last_line(rerun)}")
    if result.returncode not in (0, -9, 130, 143):
        row.notes.append(last_line(result))
    if result.returncode == 0:
        row.notes.append("fault point not reached: the run completed")
    row.traceback = "Traceback" in result.stderr
    return row


# --- Cases --------------------------------------------------------------------------------------------


def kill_cases(command: Command, work: Path) -> list[Row]:
    faults = [
        ("progress", 1, "KILL"),
        ("progress", 2, "TERM"),
        ("progress", 2, "INT"),
        ("publish", 1, "KILL"),
        ("published", 1, "KILL"),
        ("publish", command.publications, "KILL"),
    ]
    rows = []
    for fault in dict.fromkeys(faults):
        point, count, signal = fault
        case = command.folder(work, f"{point}{count}-{signal}")
        planted = plant_user_files(case, command.outputs(case))
        result = decloud([command.name, *command.argv(case)], fault)
        rows.append(check_case(command, case, fault, result, planted, dict.fromkeys(command.outputs(case))))
    case = command.folder(work, "overwrite")
    planted = plant_user_files(case, command.outputs(case))
    first = decloud([command.name, *command.argv(case)])
    if first.returncode != 0:  # the command cannot run on these inputs: say so, do not stop the table
        return [*rows, Row(command.label, "first run FAILED", first.returncode, last_line(first), "-", "-", -1, 0)]
    # Interrupted while replacing its outputs, the run leaves them as they were; killed once it has published
    # the first new one, the run leaves complete outputs (new or old).
    for fault in [("progress", 1, "INT"), ("progress", 2, "TERM"), ("published", 1, "KILL")]:
        previous = {path: fingerprint(path) for path in command.outputs(case)}
        result = decloud([command.name, *command.argv(case), "--overwrite"], fault)
        rows.append(check_case(command, case, fault, result, planted, previous, "--overwrite, "))
    return rows


def mount_tmpfs(folder: Path) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE_MB}m", "tmpfs", str(folder)], capture_output=True, check=False
    )
    return mounted.returncode == 0


def full_disk_cases(command: Command, work: Path, free_kb: list[int]) -> list[Row]:
    rows = []
    for free in free_kb:
        disk = command.folder(work, f"disk-{free}")
        if not mount_tmpfs(disk):
            return [Row(command.label, "full disk", 0, "skipped: cannot mount tmpfs (not root?)", "kept", "-", 0, 0)]
        try:
            case = disk / "case"
            planted = plant_user_files(case, command.outputs(case))
            stat = os.statvfs(disk)
            filler = disk / "filler"
            subprocess.run(
                ["fallocate", "-l", str(stat.f_bavail * stat.f_frsize - free * 1024), str(filler)], check=True
            )
            result = decloud([command.name, *command.argv(case)])
            state = outputs_state(command.outputs(case))
            kept = "kept" if all(p.read_text() == NOTE for p in planted) else "LOST"
            left = temporaries(case)
            filler.unlink()
            rerun = decloud([command.name, *command.argv(case)])
            row = Row(command.label, f"{free} KB free", result.returncode, state, kept, "-", rerun.returncode, left)
            if result.returncode == 0 and state != "all":
                row.outputs = f"BAD exit 0 with outputs {state}"
            if rerun.returncode == 0 and outputs_state(command.outputs(case)) != "all":
                row.rerun = -1
                row.notes.append(f"rerun left {outputs_state(command.outputs(case))}")
            row.notes.append(last_line(result) if result.returncode else "")
            row.traceback = "Traceback" in result.stderr
            rows.append(row)
        finally:
            subprocess.run(["umount", str(disk)], check=False)
    return rows


HEADER = (
    "| command | fault | exit | clean stop | final outputs | user files | discovery | rerun exit | temporaries | note |"
)


def table_row(r: Row) -> str:
    note = "; ".join(n for n in r.notes if n).replace("|", "/")
    mark = ("" if r.ok else " **FAIL**") + (" (traceback)" if r.traceback else "")
    return (
        f"| {r.command} | {r.fault}{mark} | {r.status} | {r.stop} | {r.outputs} | {r.user_files} | {r.discovery} | "
        f"{r.rerun} | {r.left} | {note} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where to work (default: a temporary folder, removed)")
    parser.add_argument("--commands", nargs="+", help="only these commands")
    parser.add_argument("--free_kb", nargs="+", type=int, default=[64, 512, 4096], help="free space left, KB")
    parser.add_argument("--no_kills", action="store_true", help="only the full-disk cases")
    parser.add_argument("--no_disk", action="store_true", help="only the kills")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="decloud-faults-"))
    try:
        inputs = build_inputs(work / "inputs")
        rows = []
        print(HEADER + "\n" + "|---" * HEADER.count("|", 1) + "|", flush=True)
        for command in commands(inputs):
            if args.commands and command.name not in args.commands:
                continue
            cases = [] if args.no_kills else kill_cases(command, work / "kills")
            cases += [] if args.no_disk else full_disk_cases(command, work / "disks", args.free_kb)
            print("\n".join(table_row(row) for row in cases), flush=True)
            rows += cases
        failures = [r for r in rows if not r.ok]
        print(f"\n{len(rows) - len(failures)} of {len(rows)} cases hold every rule")
        return 1 if failures else 0
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
