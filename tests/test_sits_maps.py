"""Embedding maps: values are the encoder's on each pixel's series, on the store's grid, int8 within half a
quantisation step of float32, independent of the window size, no-data where a pixel has no valid date."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from decloud.cli import main as decloud_main
from decloud.sits import maps
from decloud.sits.encoder import build_encoder
from decloud.sits.finetune import CLASSIFIER_FILE, CLASSIFIER_METADATA
from decloud.sits.pretrain import load_encoder, save_encoder
from decloud.sits.store import SeriesStore, import_npy
from decloud.testing.series import write_series_npy

BANDS = ("B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("maps")
    folder = write_series_npy(root / "processed", shape=(150, 140))
    store = import_npy(folder, root / "s.zarr", tile="T31TEJ", bands=BANDS, nodata=-10000)
    info = SeriesStore(store).sources["s2"]
    encoder = build_encoder(
        "transformer", bands=10, band_mean=info.band_mean, band_std=info.band_std, dim=6, depth=1, heads=2
    )
    metadata = {
        "source": "s2",
        "bands": list(BANDS),
        "max_length": 12,
        "dim": 6,
        "band_mean": info.band_mean.tolist(),
        "band_std": info.band_std.tolist(),
    }
    save_encoder(encoder, metadata, root / "encoder")
    return root, store, root / "encoder"


def test_float32_map_holds_the_encoder_output_of_each_pixel_series(setup):
    root, store, encoder_dir = setup
    assert (
        decloud_main(
            [
                "sits-embed",
                "--encoder",
                str(encoder_dir),
                "--store",
                str(store),
                "--out",
                str(root / "f.tif"),
                "--dtype",
                "float32",
            ]
        )
        == 0
    )
    encoder, _ = load_encoder(encoder_dir)
    values, valid = SeriesStore(store).read("s2")
    doys = SeriesStore(store).sources["s2"].doys
    with rasterio.open(root / "f.tif") as dataset:
        assert dataset.count == 6 and (dataset.height, dataset.width) == (150, 140)
        embedding = dataset.read()
    for row, col in ((0, 0), (20, 7), (149, 100), (130, 139), (64, 64)):
        inputs = {
            "values": values[:, row, col][np.newaxis].astype(np.float32),
            "doys": doys[np.newaxis].astype(np.float32),
            "mask": valid[:, row, col][np.newaxis].astype(np.float32),
        }
        np.testing.assert_allclose(embedding[:, row, col], encoder.predict(inputs, verbose=0)[0], atol=1e-4)
    assert np.isnan(embedding[:, -3:, -3:]).all()  # no valid observation
    assert not np.isnan(embedding[:, :-3]).any()
    with rasterio.open(root / "f_pca.tif") as dataset:
        colour = dataset.read()
        assert dataset.dtypes[0] == "uint8" and dataset.nodata == 0
    assert (colour[:, -3:, -3:] == 0).all() and (colour[:, :-3] > 0).all()
    with rasterio.open(root / "f_pca.png") as png:
        assert (png.count, png.height, png.width) == (3, 150, 140)


def test_int8_map_is_within_half_a_step_and_independent_of_the_window_size(setup):
    root, store, encoder_dir = setup
    maps.embed(encoder_dir, store, root / "q.tif", dtype="int8", pca=False)
    if not (root / "f.tif").exists():
        maps.embed(encoder_dir, store, root / "f.tif", dtype="float32", pca=False)
    with rasterio.open(root / "q.tif") as dataset, rasterio.open(root / "f.tif") as exact:
        stored = dataset.read()
        scales, offsets = np.array(dataset.scales)[:, None, None], np.array(dataset.offsets)[:, None, None]
        truth = exact.read()
        assert dataset.nodata == -128 and dataset.dtypes[0] == "int8"
    assert (stored[:, -3:, -3:] == -128).all()
    inside = (np.abs(stored) < 127) & ~np.isnan(truth)
    assert inside.mean() > 0.99
    error = np.abs(stored * scales + offsets - truth)
    assert (error[inside] <= (np.broadcast_to(scales, error.shape)[inside] / 2) * 1.001).all()
    maps.embed(encoder_dir, store, root / "q64.tif", dtype="int8", pca=False, chunk_size=64)
    maps.embed(encoder_dir, store, root / "q96.tif", dtype="int8", pca=False, chunk_size=96)
    for other in ("q64.tif", "q96.tif"):
        with rasterio.open(root / other) as dataset:
            assert dataset.scales == tuple(scales.ravel()) and dataset.offsets == tuple(offsets.ravel())
            np.testing.assert_array_equal(dataset.read(), stored)


def test_a_window_map_lies_on_the_store_grid(setup):
    root, store, encoder_dir = setup
    maps.embed(encoder_dir, store, root / "w.tif", dtype="float32", window=maps.Window(10, 20, 30, 40), pca=False)
    if not (root / "f.tif").exists():
        maps.embed(encoder_dir, store, root / "f.tif", dtype="float32", pca=False)
    with rasterio.open(root / "w.tif") as part, rasterio.open(root / "f.tif") as whole:
        assert (part.height, part.width) == (40, 30)
        assert part.transform == whole.transform * rasterio.Affine.translation(10, 20)
        np.testing.assert_allclose(part.read(), whole.read()[:, 20:60, 10:40], atol=1e-5)


def test_an_existing_output_is_kept_without_overwrite(setup, capsys):
    root, store, encoder_dir = setup
    (root / "kept.tif").write_text("not ours")
    status = decloud_main(
        ["sits-embed", "--encoder", str(encoder_dir), "--store", str(store), "--out", str(root / "kept.tif")]
    )
    assert status == 1 and (root / "kept.tif").read_text() == "not ours"
    assert "kept.tif" in capsys.readouterr().err


@pytest.mark.slow
def test_onnx_export_of_the_encoder_agrees_with_keras_and_says_how_to_feed_it(setup):
    import json

    from decloud.models.onnx_conversion import run_onnx

    root, _, encoder_dir = setup
    assert decloud_main(["sits-export-onnx", "--encoder", str(encoder_dir), "--output", str(root / "e.onnx")]) == 0
    metadata = json.loads((root / "e.json").read_text())
    assert metadata["bands"] == list(BANDS) and metadata["max_length"] == 12
    encoder, _ = load_encoder(encoder_dir)
    feed = {
        "values": np.full((2, 5, 10), 1200, np.float32),
        "doys": np.tile(np.float32([10, 40, 70, 400, 700]), (2, 1)),
        "mask": np.float32([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]),
    }
    (onnx_output,) = run_onnx(root / "e.onnx", feed).values()
    np.testing.assert_allclose(onnx_output, encoder.predict(feed, verbose=0), atol=1e-4)


def test_a_rerun_skips_our_outputs_and_overwrite_replaces_them(setup):
    root, store, encoder_dir = setup
    args = ["sits-embed", "--encoder", str(encoder_dir), "--store", str(store), "--out", str(root / "r.tif")]
    assert decloud_main([*args, "--ts", "64"]) == 0
    outputs = [root / "r.tif", root / "r_pca.tif", root / "r_pca.png"]
    first = [path.stat().st_mtime_ns for path in outputs]
    assert decloud_main(args) == 0  # all three are ours (the PNG is signed too): skipped
    assert [path.stat().st_mtime_ns for path in outputs] == first
    assert decloud_main([*args, "--overwrite"]) == 0
    assert all(path.stat().st_mtime_ns > before for path, before in zip(outputs, first, strict=True))
    with rasterio.open(root / "r.tif") as dataset:
        assert dataset.dtypes[0] == "int8" and (dataset.read()[:, :-3] != -128).all()
    assert not [path.name for path in root.iterdir() if path.name.startswith(".decloud-tmp")]


def test_a_foreign_quicklook_is_never_replaced(setup, capsys):
    root, store, encoder_dir = setup
    (root / "u_pca.png").write_bytes(b"a user's picture")
    args = ["sits-embed", "--encoder", str(encoder_dir), "--store", str(store), "--out", str(root / "u.tif")]
    assert decloud_main([*args, "--overwrite"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "u_pca.png" in error[0]
    assert (root / "u_pca.png").read_bytes() == b"a user's picture"
    assert not (root / "u.tif").exists() and not (root / "u_pca.tif").exists()


def test_ctrl_c_while_streaming_exits_130_and_leaves_nothing(setup, tmp_path):
    _, store, encoder_dir = setup
    out = tmp_path / "out"
    out.mkdir()
    command = ["sits-embed", "--encoder", str(encoder_dir), "--store", str(store), "--out", str(out / "e.tif")]
    done = subprocess.run(
        [sys.executable, "-m", "decloud.testing.faults", "progress", "3", "INT", *command, "--ts", "32"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert list(out.iterdir()) == []


def test_the_class_map_is_the_argmax_of_the_classifier_with_its_colour_table(setup, tmp_path):
    """A "classifier" whose logits are the encoder's embedding: classes are 1 + the largest dimension."""
    _, store, encoder_dir = setup
    encoder, _ = load_encoder(encoder_dir)
    classifier = tmp_path / "classifier"
    classifier.mkdir()
    encoder.save(classifier / CLASSIFIER_FILE)
    names = [f"class {k}" for k in range(1, 7)]
    (classifier / CLASSIFIER_METADATA).write_text(json.dumps({"source": "s2", "classes": names}))
    for size in ("64", "128"):
        command = ["sits-classify", "--classifier", str(classifier), "--store", str(store), "--ts", size]
        assert decloud_main([*command, "--out", str(tmp_path / f"c{size}.tif")]) == 0
    maps.embed(encoder_dir, store, tmp_path / "e.tif", dtype="float32", pca=False)
    with rasterio.open(tmp_path / "c64.tif") as dataset, rasterio.open(tmp_path / "c128.tif") as other:
        classes = dataset.read(1)
        assert dataset.dtypes[0] == "uint8" and dataset.nodata == 0
        assert dataset.colormap(1)[1] == (230, 25, 75, 255) and dataset.colormap(1)[0] == (0, 0, 0, 0)
        assert dataset.tags()["CLASSES"].startswith("1=class 1, 2=class 2")
        np.testing.assert_array_equal(other.read(1), classes)
    with rasterio.open(tmp_path / "e.tif") as dataset:
        embedding = dataset.read()
    has_data = ~np.isnan(embedding).all(axis=0)
    np.testing.assert_array_equal(classes[~has_data], 0)
    np.testing.assert_array_equal(classes[has_data], embedding.argmax(axis=0)[has_data] + 1)
