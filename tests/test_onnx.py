"""ONNX export: the metadata file (inputs, scaling, bands, size multiple, receptive field and tiling margin)
against known answers, the ONNX graph's names, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

import decloud.core.atomic as atomic
from decloud.cli import main as decloud_main
from decloud.models.export import export_savedmodel
from decloud.models.export_onnx import main
from decloud.models.onnx_conversion import export_onnx, metadata_path, run_onnx
from decloud.models.registry import create_model


def savedmodel(tmp_path, name: str, **params):
    model = create_model(name, **params)
    return model, export_savedmodel(model.model(), model, tmp_path / f"{name}_savedmodel")


def test_metadata_of_a_network_with_20m_bands_and_dem(tmp_path):
    model, path = savedmodel(tmp_path, "crga_os2_david", filters=4, with_20m_bands=True, with_dem=True)
    metadata = json.loads(export_onnx(path, tmp_path / "david.onnx").read_text())
    assert metadata_path(tmp_path / "david.onnx") == tmp_path / "david.json"
    inputs = {item["name"]: item for item in metadata["inputs"]}
    assert set(inputs) == set(model.input_keys())
    # The data contract: S1 / 65535, S2 and DEM x 1e-4, 20 m bands B5, B6, B7, B8A, B11, B12.
    assert inputs["s1_t"]["scale_in_graph"] == pytest.approx(1 / 65535) and inputs["s1_t"]["bands"] == ["VV", "VH"]
    assert inputs["s2_20m_tp1"]["scale_in_graph"] == pytest.approx(1e-4) and inputs["s2_20m_tp1"]["pixel_size_m"] == 20
    assert inputs["s2_20m_tp1"]["bands"] == ["B5", "B6", "B7", "B8A", "B11", "B12"]
    assert inputs["dem"]["scale_in_graph"] == pytest.approx(1e-4)
    outputs = {item["name"]: item for item in metadata["outputs"]}
    assert outputs["s2_20m_estim_pad64"]["cropped_pixels_per_side"] == 32
    assert metadata["size_multiple"] == 4 and metadata["model"] == "crga_os2_david"
    assert 0 < metadata["receptive_field"]["radius_10m_pixels"] <= metadata["tiling"]["margin_10m_pixels"]
    assert metadata["check"]["max_abs_difference"] <= metadata["check"]["tolerance"]
    graph = onnx.load(tmp_path / "david.onnx").graph
    assert {item.name for item in graph.input} == set(model.input_keys())
    assert {item.name for item in graph.output} == set(outputs)


def test_receptive_field_and_size_multiple_have_the_known_values(tmp_path):
    # conv 3x3, one residual block (two 3x3), head 3x3: radius 1 + 2 + 1 = 4 pixels
    _, residual = savedmodel(tmp_path, "meraner_original", filters=4, blocks=1)
    metadata = json.loads(export_onnx(residual, tmp_path / "residual.onnx").read_text())
    assert metadata["receptive_field"] == {"radius_10m_pixels": 4, "at_least": False}
    assert metadata["size_multiple"] == 1
    assert metadata["tiling"]["margin_10m_pixels"] == 4 and metadata["tiling"]["cropped_outputs"] == ["s2_estim_pad32"]
    _, pointwise = savedmodel(tmp_path, "gapfilling")
    metadata = json.loads(export_onnx(pointwise, tmp_path / "gapfilling.onnx").read_text())
    assert metadata["receptive_field"]["radius_10m_pixels"] == 0 and metadata["size_multiple"] == 1
    feed = {
        "s2_tm1": np.full((1, 5, 7, 4), 1000, np.float32),
        "s2_tp1": np.full((1, 5, 7, 4), 2000, np.float32),
        "s2_timestamp_tm1": np.array([0.0]),
        "s2_timestamp_t": np.array([3.0]),
        "s2_timestamp_tp1": np.array([4.0]),
    }
    np.testing.assert_allclose(run_onnx(tmp_path / "gapfilling.onnx", feed)["s2_estim"], 1750, rtol=1e-6)


def test_command_line(tmp_path, capsys, monkeypatch):
    _, path = savedmodel(tmp_path, "meraner_original", filters=4, blocks=1)
    published = []
    original = atomic._publish
    monkeypatch.setattr(atomic, "_publish", lambda t, f: published.append(f.name) or original(t, f))
    assert main(["--savedmodel", str(path), "--output", str(tmp_path / "out" / "model.onnx")]) == 0
    assert published == ["model.onnx", "model.json"]  # the metadata last
    assert (tmp_path / "out" / "model.onnx").is_file() and (tmp_path / "out" / "model.json").is_file()
    assert {p.key: p.value for p in onnx.load(tmp_path / "out" / "model.onnx").metadata_props} == {
        "decloud_version": "0.1.0"
    }
    inode = (tmp_path / "out" / "model.onnx").stat().st_ino
    assert main(["--savedmodel", str(path), "--output", str(tmp_path / "out" / "model.onnx")]) == 0  # skipped
    assert (tmp_path / "out" / "model.onnx").stat().st_ino == inode and len(published) == 2
    (tmp_path / "mine.onnx").write_bytes(b"my own model")
    assert main(["--savedmodel", str(path), "--output", str(tmp_path / "mine.onnx"), "--overwrite"]) == 1
    assert "mine.onnx exists and was not written complete by decloud" in capsys.readouterr().err
    assert (tmp_path / "mine.onnx").read_bytes() == b"my own model" and not (tmp_path / "mine.json").exists()
    assert decloud_main(["export-onnx", "--savedmodel", str(path), "--output", str(tmp_path / "again.onnx")]) == 0
    assert main(["--savedmodel", str(tmp_path / "missing"), "--output", str(tmp_path / "x.onnx")]) == 1
    assert "SavedModel not found" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("opset", [13])
def test_an_older_opset(tmp_path, opset):
    _, path = savedmodel(tmp_path, "crga_os2_david", filters=4)
    metadata = json.loads(export_onnx(path, tmp_path / "old.onnx", opset=opset).read_text())
    assert metadata["opset"] == opset
    assert onnx.load(tmp_path / "old.onnx").opset_import[0].version == opset


def test_the_onnx_description_keeps_how_training_showed_cloudy_pixels(tmp_path):
    """A SavedModel trained on transplanted masks ("cloudy_pixels": "nodata") keeps that in its ONNX
    description, so the processors feed the ONNX model holes as they would the SavedModel."""
    _, path = savedmodel(tmp_path, "gapfilling")
    description = json.loads((path / "decloud_model.json").read_text())
    assert description["cloudy_pixels"] == "as_acquired"
    (path / "decloud_model.json").write_text(json.dumps({**description, "cloudy_pixels": "nodata"}))
    metadata = json.loads(export_onnx(path, tmp_path / "holes.onnx").read_text())
    assert metadata["cloudy_pixels"] == "nodata"


#: Runs the command in its argv in a child and prints that child's peak resident memory (kB): a process of
#: its own, so that the pytest process's other children do not count.
PEAK_OF_CHILD = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_megabytes(*command: str) -> float:
    done = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, *command], check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) / 1024


@pytest.mark.slow
def test_exporting_the_default_crga_model_peaks_under_1_5_gb(tmp_path):
    """The export of the default crga_os2_unet (7 MB of weights) stays under 1.5 GB, and costs little
    beyond loading the SavedModel and running it once (which TensorFlow alone makes about 0.7 GB)."""
    _, path = savedmodel(tmp_path, "crga_os2_unet")
    load_and_run = (
        "import sys; from decloud.models.export import ServingModel; serving = ServingModel(sys.argv[1]); "
        "serving(serving.probe_inputs(96, batch=2))"
    )
    reference = peak_megabytes(sys.executable, "-c", load_and_run, str(path))
    command = ["export-onnx", "--savedmodel", str(path), "--output", str(tmp_path / "m.onnx")]
    export = peak_megabytes(sys.executable, "-m", "decloud.cli", *command)
    assert (tmp_path / "m.onnx").is_file() and (tmp_path / "m.json").is_file()
    assert export < 1536, f"export-onnx peaked at {export:.0f} MB"
    assert export - reference < 400, f"export-onnx peaked at {export:.0f} MB, load and run at {reference:.0f} MB"
