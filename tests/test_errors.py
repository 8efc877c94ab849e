"""Bad input through the installed ``decloud`` console script: exit status 1 and one line naming the culprit,
never a traceback (nor TensorFlow's start-up lines), and, where the cause is knowable up front, before any
expensive work. Generated products only; the one SavedModel is built once for the module."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from decloud.preprocessing import generate_roi_rasters
from decloud.preprocessing.sentinel1_prepare import prepare_s1_image
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.preprocessing.tiles import TilesConfig
from decloud.sampling.catalog import load_tile_catalog
from decloud.testing.s1tiling import make_s1tiling_pair
from decloud.testing.theia import make_theia_product

REPO_ROOT = Path(__file__).resolve().parents[1]
DECLOUD = shutil.which("decloud")
SHAPE = (64, 64)
START = datetime(2021, 6, 2, 10, 30, tzinfo=UTC)
S2_DATES = [START + timedelta(days=5 * i) for i in range(3)]  # 2, 7, 12 June
S1_DATES = [(START + timedelta(days=3 * i - 1)).replace(hour=6) for i in range(5)]  # 1, 4, 7, 10, 13 June
LAYOUT = REPO_ROOT / "decloud" / "acquisitions" / "layouts" / "crga_os1.json"
#: A line of the logging set up by the commands (progress and warnings, not errors).
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING) ")

pytestmark = pytest.mark.skipif(DECLOUD is None, reason="the decloud console script is not installed")


def decloud(*args: object, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run the installed console script on this tree, with TensorFlow's log level left to decloud."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    command = [*prefix, DECLOUD, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def error_line(result: subprocess.CompletedProcess, command: str) -> str:
    """The one line the failed command wrote besides its log lines, checked to be decloud's error line."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"decloud {command}: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tile(tmp_path_factory) -> Path:
    """Three prepared S2 products and five prepared S1 images of T31TEJ, with their raw sources."""
    root = tmp_path_factory.mktemp("tile")
    for index, date in enumerate(S2_DATES):
        raw = make_theia_product(root / "raw", acquired=date, shape=SHAPE, seed=index)
        prepare_s2_product(raw, root / "S2")
    for index, date in enumerate(S1_DATES):
        _, vh = make_s1tiling_pair(root / "raw_s1", acquired=date, shape=SHAPE, seed=index)
        prepare_s1_image(vh, root / "S1")
    (root / "tiles.json").write_text(json.dumps({"S2_ROOT_DIR": "S2", "S1_ROOT_DIR": "S1", "TILES": ["T31TEJ"]}))
    arguments = ["--tiles", root / "tiles.json", "--datasets", "train", "--props", "1"]
    assert (
        generate_roi_rasters.main([*map(str, arguments), "--output_dir", str(root / "rois"), "--patchsize", "64"]) == 0
    )
    return root


@pytest.fixture(scope="module")
def savedmodel(tmp_path_factory) -> Path:
    from decloud.models.export import export_savedmodel
    from decloud.models.registry import create_model

    model = create_model("crga_os2_unet", filters=2, depth=1)
    return export_savedmodel(model.model(), model, tmp_path_factory.mktemp("model") / "savedmodel")


def s2(tile: Path) -> list[Path]:
    return sorted((tile / "S2" / "T31TEJ").iterdir())


def s1(tile: Path) -> list[Path]:
    return sorted((tile / "S1" / "T31TEJ").glob("*_from-10to3dB.tif"))


def crga(tile: Path, model: Path | str, output: Path, *extra: object, in_s2: Path | None = None) -> list[object]:
    """Arguments of crga-processor reconstructing the middle date."""
    products, images = s2(tile), s1(tile)
    return [
        "crga-processor", "--il_s2before", products[0], "--il_s1before", images[0], images[1],
        "--in_s2", in_s2 or products[1], "--il_s1", images[1], images[2], "--il_s2after", products[2],
        "--il_s1after", images[3], images[4], "--savedmodel", model, "--output", output, *extra,
    ]  # fmt: skip


def timeseries(tile: Path, model: Path | str, out_dir: Path, *extra: object) -> list[object]:
    return [
        "crga-timeseries-processor", "--s2_dir", tile / "S2" / "T31TEJ", "--s1_dir", tile / "S1" / "T31TEJ",
        "--model", model, "--out_dir", out_dir, *extra,
    ]  # fmt: skip


def tfrecords(tile: Path, *extra: object) -> list[object]:
    return ["create-tfrecords", "--tiles", tile / "tiles.json", "--rois", tile / "rois" / "rois.json", *extra]


def renamed(source: Path, destination_dir: Path, old: str, new: str) -> Path:
    """A copy of the file or folder ``source`` (and of the files in it) with ``old`` replaced by ``new`` in
    every name."""
    destination = destination_dir / source.name.replace(old, new)
    if source.is_dir():
        shutil.copytree(source, destination)
        for path in sorted(destination.rglob(f"*{old}*"), reverse=True):
            path.rename(path.with_name(path.name.replace(old, new)))
    else:
        shutil.copy(source, destination)
    return destination


# --- output paths ---------------------------------------------------------------------------------


def test_an_output_folder_that_is_a_file(tile, tmp_path):
    (tmp_path / "afile").write_text("mine")
    raw = next((tile / "raw").iterdir())
    line = error_line(decloud("s2-prepare", "--in_image", raw, "--out_s2_dir", tmp_path / "afile"), "s2-prepare")
    assert f"{tmp_path / 'afile'} is a file" in line
    assert (tmp_path / "afile").read_text() == "mine"


def test_an_output_folder_in_a_symbolic_link_loop(tile, tmp_path):
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    raw = next((tile / "raw").iterdir())
    result = decloud("s2-prepare", "--in_image", raw, "--out_s2_dir", tmp_path / "loop_a" / "S2")
    line = error_line(result, "s2-prepare")
    assert str(tmp_path / "loop_a") in line and "Too many levels of symbolic links" in line


def test_an_output_file_that_is_a_folder_dem(tile, tmp_path):
    (tmp_path / "dem.tif").mkdir()
    reference = s2(tile)[0] / f"{s2(tile)[0].name}_FRE_20m.tif"
    result = decloud("dem-prepare", "--reference", reference, "--input", reference, "--output", tmp_path / "dem.tif")
    assert f"{tmp_path / 'dem.tif'} is a folder" in error_line(result, "dem-prepare")


def test_an_output_file_that_is_a_folder_is_refused_before_the_model_runs(tile, tmp_path):
    (tmp_path / "out.tif").mkdir()
    # The model does not even exist: the output is checked first.
    result = decloud(*crga(tile, tmp_path / "no_model", tmp_path / "out.tif"))
    assert f"{tmp_path / 'out.tif'} is a folder" in error_line(result, "crga-processor")


def read_only_prefix(folder: Path) -> tuple[str, ...]:
    """What makes ``folder`` (mode 555) read-only for a command: nothing for an ordinary user; for root, who
    ignores permissions, setpriv dropping the capability that overrides them."""
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a folder cannot be made read-only for the command")
    return ("setpriv", "--bounding-set=-dac_override")


def test_a_read_only_output_folder_is_named_not_hidden_by_the_clean_up(tile, tmp_path):
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    prefix = read_only_prefix(read_only)
    vh = next((tile / "raw_s1").glob("*_vh_*"))
    result = decloud("s1-prepare", "--input_s1_vh", vh, "--out_s1_dir", read_only / "S1", prefix=prefix)
    line = error_line(result, "s1-prepare")
    assert f"{read_only} cannot be written" in line and "Permission denied" in line
    assert list(read_only.iterdir()) == []


# --- impossible dates in names ----------------------------------------------------------------------


def test_an_impossible_date_in_a_product_name_s2_prepare(tile, tmp_path):
    raw = renamed(next((tile / "raw").glob("*_20210602-*")), tmp_path, "_20210602-", "_20211345-")
    line = error_line(decloud("s2-prepare", "--in_image", raw, "--out_s2_dir", tmp_path / "out"), "s2-prepare")
    assert raw.name in line and "20211345-103000-000 is not a real date" in line


def test_an_impossible_date_in_an_image_name_s1_prepare(tile, tmp_path):
    for polarisation in ("vv", "vh"):
        raw = next((tile / "raw_s1").glob(f"*_{polarisation}_*_20210604t*"))
        vh = renamed(raw, tmp_path, "_20210604t", "_20210231t")
    line = error_line(decloud("s1-prepare", "--input_s1_vh", vh, "--out_s1_dir", tmp_path / "out"), "s1-prepare")
    assert str(vh) in line and "20210231t063000 is not a real date" in line


def test_an_impossible_date_in_a_prepared_product_create_tfrecords(tile, tmp_path):
    shutil.copytree(tile / "S2", tmp_path / "S2")
    product = next((tmp_path / "S2" / "T31TEJ").glob("*_20210607-*"))
    bad = product.with_name(product.name.replace("_20210607-", "_20210231-"))
    product.rename(bad)
    (tmp_path / "tiles.json").write_text(json.dumps({"S2_ROOT_DIR": "S2", "TILES": ["T31TEJ"]}))
    result = decloud(
        "create-tfrecords", "--tiles", tmp_path / "tiles.json", "--rois", tile / "rois" / "rois.json",
        "--acquisition_train", LAYOUT, "--output_train", tmp_path / "records", "--patchsize", "64",
    )  # fmt: skip
    assert f"{bad}: 20210231-103000-000 is not a real date" in error_line(result, "create-tfrecords")


def test_an_impossible_date_in_a_processor_input(tile, tmp_path):
    bad = renamed(s2(tile)[1], tmp_path, "_20210607-", "_20211345-")
    result = decloud(*crga(tile, tmp_path / "no_model", tmp_path / "out.tif", in_s2=bad))
    assert f"{bad}: 20211345-103000-000 is not a real date" in error_line(result, "crga-processor")


# --- models -------------------------------------------------------------------------------------


def test_a_savedmodel_with_truncated_variables(tile, savedmodel, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(savedmodel, damaged)
    index = damaged / "variables" / "variables.index"
    index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    result = decloud(*crga(tile, damaged, tmp_path / "out.tif"))
    line = error_line(result, "crga-processor")
    assert f"{damaged}: cannot load the SavedModel" in line
    assert not (tmp_path / "out.tif").exists()


def tiny_onnx(path: Path) -> Path:
    """An ONNX model (identity of s2_t) small enough to write in a test."""
    import onnx
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Identity", ["s2_t"], ["s2_estim"])],
        "identity",
        [value("s2_t", TensorProto.FLOAT, [1, None, None, 4])],
        [value("s2_estim", TensorProto.FLOAT, [1, None, None, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_corrupt_onnx_side_car_json(tile, tmp_path):
    pytest.importorskip("onnxruntime")
    model = tiny_onnx(tmp_path / "model.onnx")
    (tmp_path / "model.json").write_text('{"tiling": ')
    result = decloud(*crga(tile, model, tmp_path / "out.tif"))
    assert f"{tmp_path / 'model.json'}: not a valid model description" in error_line(result, "crga-processor")


def test_evaluate_given_an_onnx_file(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read")
    result = decloud("evaluate", "--savedmodel", model, "--test_records", tmp_path)
    line = error_line(result, "evaluate")
    assert f"{model} is a file; a SavedModel is a folder" in line and "ONNX" in line
    assert "saved_model.pb" not in line.split("folder holding")[0]


def test_train_on_records_without_s1_suggests_the_s2_only_variant(tmp_path):
    from decloud.core.keys import sample_keys
    from decloud.testing.records import write_records

    names = sample_keys({"tm1": ["s2"], "t": ["s2"], "tp1": ["s2"], "target": ["s2"]})
    records = write_records(tmp_path / "records", names, n_samples=2)
    line = error_line(decloud("train", "--training_record", records, "-m", "crga_os2_unet"), "train")
    assert "missing keys ['s1_tm1', 's1_t', 's1_tp1']" in line
    assert """--model_params '{"with_s1": false}'""" in line


# --- the catalog index ------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_catalog_index_is_rebuilt(tile, tmp_path, damage, caplog):
    config = TilesConfig.load(tile / "tiles.json")
    fresh = load_tile_catalog(config, "T31TEJ", tmp_path / "fresh")
    index = tmp_path / "damaged" / "T31TEJ.npz"
    index.parent.mkdir()
    whole = (tmp_path / "fresh" / "T31TEJ.npz").read_bytes()
    index.write_bytes(bytes(range(256)) * 4 if damage == "garbage" else whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING, logger="decloud.sampling.catalog"):
        rebuilt = load_tile_catalog(config, "T31TEJ", index.parent)
    assert f"{index} is not a readable catalog index" in caplog.text and "rebuilt" in caplog.text
    np.testing.assert_array_equal(rebuilt.s2_cloud_percent, fresh.s2_cloud_percent)
    np.testing.assert_array_equal(rebuilt.s1_nodata_count, fresh.s1_nodata_count)
    assert index.read_bytes() == whole  # rewritten, readable again
    caplog.clear()
    load_tile_catalog(config, "T31TEJ", index.parent)
    assert "not a readable catalog index" not in caplog.text


# --- processor flags --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--maxgap", "1e308"], "--maxgap 1e+308: the maximum S1/S2 gap must be a number of hours between 0 and 8784"),
        (["--maxgap", "nan"], "--maxgap nan: the maximum S1/S2 gap must be a number of hours between 0 and 8784"),
        (["--maxgap", "-5"], "--maxgap -5: the maximum S1/S2 gap must be a number of hours between 0 and 8784"),
        (
            ["--pad", "100000"],
            "--ts 512 with --pad 100000: a chunk and its margins (ts + 2 x pad) must be at most 8192",
        ),
        (["--pad", "-1"], "--pad -1: the margin cannot be negative"),
        (["--ts", "0"], "--ts 0: the chunk size must be at least 1 pixel"),
    ],
)
def test_impossible_processor_flags_are_refused_before_the_model_loads(tile, tmp_path, flags, message):
    result = decloud(*crga(tile, tmp_path / "no_model", tmp_path / "out.tif", *flags))
    assert message in error_line(result, "crga-processor")


@pytest.mark.parametrize("candidates", ["0", "-1"])
def test_candidates_must_be_at_least_one(tile, tmp_path, candidates):
    result = decloud(*timeseries(tile, tmp_path / "no_model", tmp_path / "out", "--candidates", candidates))
    line = error_line(result, "crga-timeseries-processor")
    assert f"--candidates {candidates}: at least 1 Sentinel-2 date" in line


def test_a_maxgap_beyond_any_date_in_the_time_series(tile, tmp_path):
    result = decloud(*timeseries(tile, tmp_path / "no_model", tmp_path / "out", "--maxgap", "1e308"))
    assert "--maxgap 1e+308: the maximum S1/S2 gap" in error_line(result, "crga-timeseries-processor")


def test_a_margin_larger_than_the_image(tile, savedmodel, tmp_path):
    result = decloud(*crga(tile, savedmodel, tmp_path / "out.tif", "--ts", "64", "--pad", "100"))
    line = error_line(result, "crga-processor")
    assert "--pad 100: the margin is larger than the image (64 x 64 pixels)" in line
    assert not (tmp_path / "out.tif").exists()


def test_start_after_end(tile, tmp_path):
    result = decloud(
        *timeseries(tile, tmp_path / "no_model", tmp_path / "out", "--start", "2021-06-10", "--end", "2021-06-01")
    )
    assert "--start 2021-06-10 is after --end 2021-06-01" in error_line(result, "crga-timeseries-processor")


def test_a_bad_date_names_the_flag_and_exits_1(tile, tmp_path):
    result = decloud(*timeseries(tile, tmp_path / "no_model", tmp_path / "out", "--start", "2021-02-31"))
    assert "--start '2021-02-31' is not a date YYYY-MM-DD" in error_line(result, "crga-timeseries-processor")
    assert "usage:" not in result.stderr


# --- input files ------------------------------------------------------------------------------------


def test_a_folder_given_as_the_tiles_json(tile, tmp_path):
    result = decloud("create-tfrecords", "--tiles", tile, "--rois", tile / "rois" / "rois.json",
                     "--acquisition_train", LAYOUT, "--output_train", tmp_path / "r")  # fmt: skip
    line = error_line(result, "create-tfrecords")
    assert f"{tile} is a folder, not a file: expected the tiles JSON file" in line and "not found" not in line


def test_a_folder_given_as_the_layout(tile, tmp_path):
    result = decloud(*tfrecords(tile, "--acquisition_train", tile, "--output_train", tmp_path / "r"))
    line = error_line(result, "create-tfrecords")
    assert f"{tile} is a folder, not a file: expected the acquisition layout" in line and "not found" not in line


def test_a_layout_nested_too_deep(tile, tmp_path):
    layout = tmp_path / "deep.json"
    layout.write_text('{"t": ' + "[" * 100_000 + "]" * 100_000 + "}")
    result = decloud(*tfrecords(tile, "--acquisition_train", layout, "--output_train", tmp_path / "r"))
    assert f"{layout}: not a layout: its JSON is nested too deep" in error_line(result, "create-tfrecords")


def test_a_tif_given_as_a_product(tile, tmp_path):
    image = s2(tile)[0] / f"{s2(tile)[0].name}_FRE_10m.tif"
    line = error_line(decloud("s2-prepare", "--in_image", image, "--out_s2_dir", tmp_path), "s2-prepare")
    assert f"{image} is not a Sentinel-2 product: expected a THEIA or SAFE product folder or its .zip" in line


def test_the_20m_grid_error_names_the_band_at_fault(tile, tmp_path):
    source = next((tile / "raw").glob("*_20210602-*"))
    raw = shutil.copytree(source, tmp_path / source.name)
    b5 = next(raw.glob("*_FRE_B5.tif"))
    with rasterio.open(b5, "r+") as dataset:
        dataset.transform = dataset.transform @ Affine.translation(0.5, 0)
    line = error_line(decloud("s2-prepare", "--in_image", raw, "--out_s2_dir", tmp_path / "out"), "s2-prepare")
    assert line.split(": error: ")[1].startswith(f"{b5} is not on the grid of ")


# --- TensorFlow's start-up lines --------------------------------------------------------------------


def fake_tensorflow(folder: Path) -> Path:
    """A package named tensorflow that writes to the process's standard error while it is imported, as
    TensorFlow's native libraries do."""
    (folder / "tensorflow").mkdir(parents=True)
    (folder / "tensorflow" / "__init__.py").write_text("import os\nos.write(2, b'native start-up line\\n')\n")
    return folder


@pytest.mark.parametrize("verbose", [False, True])
def test_tensorflow_start_up_lines_show_only_with_verbose(tmp_path, verbose):
    script = (
        "import sys\nfrom decloud.core.native_logs import quiet_tensorflow\n"
        f"quiet_tensorflow({verbose})\nimport tensorflow\nimport os\n"
        "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))\nsys.stderr.write('after the import\\n')\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{fake_tensorflow(tmp_path)}{os.pathsep}{REPO_ROOT}"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    expected = "native start-up line\nafter the import\n" if verbose else "after the import\n"
    assert result.stderr == expected
    assert result.stdout == ("None\n" if verbose else "3\n")


# --- what no check foresaw --------------------------------------------------------------------------


def test_an_unforeseen_os_error_is_one_line_naming_the_path(tmp_path, capsys):
    """A disk that fills up during a run: the command's OSError fallback names the file and the reason."""
    import argparse
    import errno

    from decloud.core.cli import run_command

    def fill_the_disk(args: argparse.Namespace) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.tif"))

    assert run_command(argparse.ArgumentParser(prog="decloud x"), fill_the_disk, []) == 1
    assert capsys.readouterr().err == f"decloud x: error: {tmp_path / 'out.tif'}: No space left on device\n"
