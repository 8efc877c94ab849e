"""``decloud superres`` and ``decloud superres-export-onnx`` on generated products: tile invariance, grid,
no-data, naming, both model formats, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from decloud.cli import main as decloud_main
from decloud.models.export import export_savedmodel
from decloud.models.registry import create_model
from decloud.preprocessing import sentinel2_prepare
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.superres.export_card import export_card
from decloud.testing.regions import Rect
from decloud.testing.theia import make_theia_product

ACQUIRED = datetime(2020, 10, 12, 10, 58, 48, tzinfo=UTC)
SIDE = 300  # not a multiple of the tile sizes: partial tiles at the right and bottom


@pytest.fixture(scope="module")
def product(tmp_path_factory) -> Path:
    """A prepared product with a no-data rectangle."""
    root = tmp_path_factory.mktemp("superres_product")
    raw = make_theia_product(root / "raw", acquired=ACQUIRED, shape=(SIDE, SIDE), nodata=[Rect(40, 200, 30, 50)])
    return prepare_s2_product(raw, root / "prepared")


def _savedmodel(directory: Path, name: str, **params) -> Path:
    model = create_model(name, **params)
    network = model.model()
    rng = np.random.default_rng(3)  # weights far from the bicubic start, so the network's effect shows
    for weight in network.weights:
        if weight.path.endswith("residual/kernel"):
            weight.assign(rng.normal(0, 0.05, weight.shape))
    return export_savedmodel(network, model, directory / name)


@pytest.fixture(scope="module")
def x2_model(tmp_path_factory) -> Path:
    return _savedmodel(tmp_path_factory.mktemp("x2"), "superres_carn", filters=8, blocks=1, units=1, groups=2)


def _read(path: Path) -> tuple[np.ndarray, rasterio.Affine, list[str]]:
    with rasterio.open(path) as dataset:
        return dataset.read(), dataset.transform, list(dataset.descriptions)


def _run(*args: str) -> int:
    return decloud_main(["superres", *map(str, args)])


def test_x2_output_is_tile_invariant_covers_the_product_and_keeps_nodata(product, x2_model, tmp_path):
    assert _run("--in_image", product, "--out", tmp_path / "a", "--model", x2_model, "--ts", 256, "--bicubic") == 0
    assert _run("--in_image", product, "--out", tmp_path / "b", "--model", x2_model, "--ts", 1000) == 0
    name = "SENTINEL2B_20201012_L2A_T31TEJ_5m_sisr.tif"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [name.replace("sisr", "bicubic"), name]
    small, transform, bands = _read(tmp_path / "a" / name)
    large, _, _ = _read(tmp_path / "b" / name)
    assert small.shape == (10, 2 * SIDE, 2 * SIDE)
    assert np.abs(small.astype(int) - large.astype(int)).max() <= 1
    with rasterio.open(product / f"{product.name}_FRE_10m.tif") as source:
        assert transform == source.transform @ rasterio.Affine.scale(0.5)
        nodata = source.read(1) == -10000
    assert bands == ["B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12"]
    fine_nodata = nodata.repeat(2, 0).repeat(2, 1)
    assert (small[:, fine_nodata] == -10000).all()
    assert (small[:, ~fine_nodata] != -10000).all()  # the borders are computed too (mirrored margins)
    bicubic, _, _ = _read(tmp_path / "a" / name.replace("sisr", "bicubic"))
    valid = ~fine_nodata
    assert np.abs(small[:, valid].astype(int) - bicubic[:, valid]).mean() > 5  # the network is not the bicubic


def test_bicubic_margin_is_its_measured_receptive_field_and_its_tiles_agree(product, tmp_path):
    from decloud.superres.backends import SavedModelSuperres

    model = create_model("superres_bicubic")
    path = export_savedmodel(model.model(), model, tmp_path / "bicubic")
    # A 20 m pixel j reaches the 10 m pixels 2j-3 .. 2j+4 (4 cubic taps per phase), and a 10 m pixel i the 5 m
    # pixels 2i-3 .. 2i+4: the 20 m pixel reaches the 5 m pixels 4j-9 .. 4j+12, 4.5 10 m pixels beyond its
    # 2 x 2 block on each side. Radius 5; the margin is a multiple of 2 (whole 20 m pixels): 6.
    description = json.loads((path / "decloud_model.json").read_text())
    assert description["receptive_field"]["radius_10m_pixels"] == 5
    assert SavedModelSuperres(path).margin == 6
    name = "SENTINEL2B_20201012_L2A_T31TEJ_5m_sisr.tif"
    runs = {"256": ("--ts", 256, "--pad", 6), "1000": ("--ts", 1000, "--pad", 6), "default": ("--ts", 256)}
    for run, flags in runs.items():
        assert _run("--in_image", product, "--out", tmp_path / run, "--model", path, *flags) == 0
    small, large, default = (_read(tmp_path / run / name)[0].astype(int) for run in runs)
    assert np.abs(small - large).max() <= 1  # everywhere, borders included
    assert np.array_equal(small, default)  # the default margin is the measured one


def test_model_card_export_runs_in_our_engine_like_the_savedmodel(product, x2_model, tmp_path):
    card = export_card(x2_model, tmp_path / "card" / "carn.yaml")
    content = yaml.safe_load(card.read_text())
    assert content["model"] == "carn.onnx" and content["factor"] == 2.0
    assert content["bands"] == ["B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12"]
    assert _run("--in_image", product, "--out", tmp_path / "onnx.tif", "--model", card, "--ts", 256) == 0
    assert _run("--in_image", product, "--out", tmp_path / "saved.tif", "--model", x2_model, "--ts", 256) == 0
    onnx, _, _ = _read(tmp_path / "onnx.tif")
    saved, _, _ = _read(tmp_path / "saved.tif")
    assert np.abs(onnx.astype(int) - saved.astype(int)).max() <= 1


def _x4_bicubic_onnx(path: Path) -> Path:
    """A hand-made ONNX model: 4 bands, x4, bicubic (tf2onnx from a tf.function)."""
    import tensorflow as tf
    import tf2onnx

    from decloud.superres.upsampling import CubicUpsampling

    layer = CubicUpsampling(4)

    @tf.function(input_signature=[tf.TensorSpec([1, 4, None, None], tf.float32, name="input")])
    def graph(images):
        return tf.transpose(layer(tf.transpose(images, [0, 2, 3, 1])), [0, 3, 1, 2])

    tf2onnx.convert.from_function(graph, input_signature=graph.input_signature, output_path=str(path))
    return path


def test_hand_written_card_with_factor_4_and_four_bands_is_honoured(product, tmp_path):
    _x4_bicubic_onnx(tmp_path / "x4.onnx")
    (tmp_path / "x4.yaml").write_text("model: x4.onnx\nbands: [B4, B3, B2, B8]\nmargin: 8\nfactor: 4.0\n")
    out = tmp_path / "out"
    assert _run("--in_image", product, "--out", out, "--model", tmp_path / "x4.yaml", "--roip", 0, 0, 64, 48) == 0
    values, transform, bands = _read(out / "SENTINEL2B_20201012_L2A_T31TEJ_2.5m_sisr.tif")
    assert bands == ["B4", "B3", "B2", "B8"]
    assert values.shape == (4, 4 * 48, 4 * 64)
    with rasterio.open(product / f"{product.name}_FRE_10m.tif") as source:
        assert transform == source.transform @ rasterio.Affine.scale(0.25)
        red = source.read(3, window=((0, 48), (0, 64))).astype(np.float64)
    # Away from the ROI's edges, the mean of each 4x4 block is close to the 10 m pixel (bicubic is smooth).
    blocks = values[0].reshape(48, 4, 64, 4).mean(axis=(1, 3))
    assert np.abs(blocks[4:-4, 4:-4] - red[4:-4, 4:-4]).mean() < 0.05 * red.mean()


def test_bands_selects_the_bands_written_for_savedmodels_and_model_cards(product, x2_model, tmp_path, capsys):
    roip = ("--roip", 0, 0, 64, 48)
    assert _run("--in_image", product, "--out", tmp_path / "all.tif", "--model", x2_model, *roip) == 0
    flags = ("--bands", "B11", "B4", "B8")
    assert _run("--in_image", product, "--out", tmp_path / "three.tif", "--model", x2_model, *roip, *flags) == 0
    everything, _, _ = _read(tmp_path / "all.tif")
    three, _, bands = _read(tmp_path / "three.tif")
    assert bands == ["B11", "B4", "B8"]
    assert np.array_equal(three, everything[[8, 2, 3]])  # B2 B3 B4 B8 B5 B6 B7 B8A B11 B12
    _x4_bicubic_onnx(tmp_path / "x4.onnx")
    (tmp_path / "x4.yaml").write_text("model: x4.onnx\nbands: [B4, B3, B2, B8]\nmargin: 8\nfactor: 4.0\n")
    card = tmp_path / "x4.yaml"
    assert _run("--in_image", product, "--out", tmp_path / "card.tif", "--model", card, *roip) == 0
    flags = ("--bands", "B8", "B4", "--bicubic")
    assert _run("--in_image", product, "--out", tmp_path / "card2.tif", "--model", card, *roip, *flags) == 0
    four, _, _ = _read(tmp_path / "card.tif")
    two, _, bands = _read(tmp_path / "card2.tif")
    assert bands == ["B8", "B4"] and np.array_equal(two, four[[3, 0]])
    bicubic, _, bands = _read(tmp_path / "card2_bicubic.tif")
    assert bands == ["B8", "B4"] and np.abs(bicubic.astype(int) - two).max() <= 1  # this card is a bicubic
    capsys.readouterr()
    for bands, culprit in ((("B4", "B5"), "--bands B5: not given by the model"), (("B1",), "--bands: bands ['B1']")):
        out = tmp_path / f"bad_{bands[-1]}.tif"
        assert _run("--in_image", product, "--out", out, "--model", card, "--bands", *bands) == 1
        error = capsys.readouterr().err
        assert culprit in error and len(error.strip().splitlines()) == 1 and "Traceback" not in error
        assert not out.exists()


def test_bad_inputs_fail_with_one_line_and_write_nothing(product, x2_model, tmp_path, capsys):
    onnx = _x4_bicubic_onnx(tmp_path / "x4.onnx")
    cards = {
        "missing_key": "model: x4.onnx\nbands: [B2, B3, B4, B8]\nfactor: 4.0\n",
        "channels": "model: x4.onnx\nbands: [B2, B3, B4]\nmargin: 8\nfactor: 4.0\n",
        "factor": "model: x4.onnx\nbands: [B2, B3, B4, B8]\nmargin: 8\nfactor: 3.0\n",
    }
    expected = {"missing_key": "missing key(s) margin", "channels": "3 bands", "factor": "factor 3"}
    out = tmp_path / "out"
    for name, text in cards.items():
        (tmp_path / f"{name}.yaml").write_text(text)
        assert _run("--in_image", product, "--out", out, "--model", tmp_path / f"{name}.yaml") == 1
        error = capsys.readouterr().err
        assert expected[name] in error and "Traceback" not in error and len(error.strip().splitlines()) == 1
    assert onnx.is_file()
    # a product lacking a band: a 20 m stack with 5 bands
    broken = tmp_path / product.name
    broken.mkdir()
    (broken / f"{product.name}_FRE_10m.tif").symlink_to(product / f"{product.name}_FRE_10m.tif")
    with rasterio.open(product / f"{product.name}_FRE_20m.tif") as source:
        profile = source.profile | {"count": 5}
        with rasterio.open(broken / f"{product.name}_FRE_20m.tif", "w", **profile) as five:
            five.write(source.read([1, 2, 3, 4, 5]))
    assert _run("--in_image", broken, "--out", out, "--model", x2_model) == 1
    assert "has 5 bands, not the 6" in capsys.readouterr().err
    assert _run("--in_image", product, "--out", out, "--model", x2_model, "--factor", 4) == 1
    assert "is x2" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())


# --- Outputs already there, interruptions ------------------------------------------------------------


def test_a_complete_output_is_skipped_and_a_foreign_file_is_never_replaced(product, x2_model, tmp_path, capsys):
    out = tmp_path / "x2.tif"
    args = ("--in_image", product, "--out", out, "--model", x2_model, "--roip", 0, 0, 64, 48)
    assert _run(*args) == 0
    written = out.stat().st_mtime_ns
    assert _run(*args) == 0 and out.stat().st_mtime_ns == written  # ours, complete: skipped
    assert _run(*args, "--overwrite") == 0 and out.stat().st_mtime_ns != written  # replaced on demand
    foreign = tmp_path / "foreign.tif"
    foreign.write_bytes(b"a file of the user's")
    capsys.readouterr()
    assert _run(*args[:3], foreign, *args[4:], "--overwrite") == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "foreign.tif exists and was not written complete by decloud" in error[0]
    assert foreign.read_bytes() == b"a file of the user's"


def _signalled(signal: str, *args: object) -> subprocess.CompletedProcess:
    """``decloud superres`` in a subprocess that sends itself ``signal`` after its second chunk."""
    command = [sys.executable, "-m", "decloud.testing.faults", "progress", "2", signal, "superres", *map(str, args)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)


def test_sigterm_while_streaming_leaves_no_output_and_keeps_the_previous_one(product, x2_model, tmp_path):
    out = tmp_path / "out"
    args = ("--in_image", product, "--out", out, "--model", x2_model, "--ts", 64, "--bicubic")  # 25 chunks
    stopped = _signalled("TERM", *args)
    assert stopped.returncode == 143, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == "decloud superres: terminated"
    assert "Traceback" not in stopped.stderr
    assert list(out.iterdir()) == []  # neither output, nor a temporary
    assert _run(*args) == 0
    previous = {path.name: path.read_bytes() for path in out.iterdir()}
    assert sorted(previous) == [
        "SENTINEL2B_20201012_L2A_T31TEJ_5m_bicubic.tif",
        "SENTINEL2B_20201012_L2A_T31TEJ_5m_sisr.tif",
    ]
    stopped = _signalled("TERM", *args, "--overwrite")
    assert stopped.returncode == 143, stopped.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir()} == previous


def test_ctrl_c_on_a_raw_product_removes_its_preparation(x2_model, tmp_path):
    raw = make_theia_product(tmp_path / "raw", acquired=ACQUIRED, shape=(128, 128))
    out = tmp_path / "out"
    stopped = _signalled("INT", "--in_image", raw, "--out", out, "--model", x2_model, "--ts", 32)
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == "decloud superres: interrupted"
    assert "Traceback" not in stopped.stderr
    assert list(out.iterdir()) == []  # the product prepared for the run is gone with it


def test_a_complete_output_of_a_raw_product_is_skipped_without_preparing_it(x2_model, tmp_path, monkeypatch):
    raw = make_theia_product(tmp_path / "raw", acquired=ACQUIRED, shape=(64, 64))
    out = tmp_path / "out"
    args = ("--in_image", raw, "--out", out, "--model", x2_model)
    assert _run(*args) == 0
    written = out / "SENTINEL2B_20201012_L2A_T31TEJ_5m_sisr.tif"
    modified = written.stat().st_mtime_ns

    def no_preparation(*args, **kwargs):
        raise AssertionError("the product was prepared again")

    monkeypatch.setattr(sentinel2_prepare, "prepare_s2_product", no_preparation)
    assert _run(*args) == 0
    assert written.stat().st_mtime_ns == modified
    assert [path.name for path in out.iterdir()] == [written.name]
