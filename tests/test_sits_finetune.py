"""Fine-tuning and class maps on a small generated labelled landscape: held-out parcels only, every method
scored, the class map equal to the saved classifier's decision on each pixel, with its colour table."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from decloud.cli import main as decloud_main
from decloud.core.raster import Grid, write_array
from decloud.sits.encoder import build_encoder
from decloud.sits.finetune import load_classifier
from decloud.sits.pretrain import save_encoder
from decloud.sits.store import SeriesStore, import_npy
from decloud.testing.series import labelled_landscape

BANDS = ("B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12")
GRID = Grid(CRS.from_epsg(32631), Affine(10, 0, 600000, 0, -10, 4900000), 64, 64)


@pytest.fixture(scope="module")
def landscape(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("landscape")
    bands, masks, doys, classes, _ = labelled_landscape(shape=(64, 64), dates=20, parcels=40, seed=2)
    masks[:, :2, :2] = 0  # never observed
    folder = root / "processed"
    folder.mkdir()
    valid = bands[masks == 1].astype(np.float64)
    for name, array in (
        ("bands", bands),
        ("masks", masks),
        ("doys", doys),
        ("band_mean", valid.mean(0)),
        ("band_std", valid.std(0)),
    ):
        np.save(folder / f"{name}.npy", np.asarray(array, np.float32 if name.startswith("band_") else array.dtype))
    import_npy(folder, root / "series.zarr", tile="T31TEJ", bands=BANDS, nodata=-10000, grid=GRID)
    write_array(root / "classes.tif", classes, crs=GRID.crs, transform=GRID.transform, nodata=0)
    info = SeriesStore(root / "series.zarr").sources["s2"]
    encoder = build_encoder("mlp", bands=10, band_mean=info.band_mean, band_std=info.band_std, dim=8, depth=1)
    save_encoder(
        encoder,
        {"source": "s2", "bands": list(BANDS), "dim": 8, "training": {"backbone": "mlp", "depth": 1, "heads": 2}},
        root / "encoder",
    )
    return root


@pytest.mark.slow
def test_finetune_scores_every_method_on_held_out_parcels_and_classify_maps_its_decision(landscape):
    root = landscape
    status = decloud_main(
        [
            "sits-finetune",
            "--store",
            str(root / "series.zarr"),
            "--labels",
            str(root / "classes.tif"),
            "--encoder",
            str(root / "encoder"),
            "--out",
            str(root / "eval"),
            "--epochs",
            "2",
            "--max_pixels_per_parcel",
            "30",
        ]
    )
    assert status == 0
    report = json.loads((root / "eval" / "metrics.json").read_text())
    assert set(report["methods"]) == {"linear_probe", "finetuned", "scratch", "random_forest", "logistic_raw"}
    for scores in report["methods"].values():
        matrix = np.array(scores["confusion"])
        assert matrix.shape == (len(report["classes"]),) * 2
        assert scores["overall_accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
        assert scores["macro_f1"] == pytest.approx(np.mean(list(scores["f1"].values())))
    # the random forest on the raw series separates these phenologies far better than chance (1/9)
    assert report["methods"]["random_forest"]["macro_f1"] > 0.3
    for method in report["methods"]:
        assert (root / "eval" / f"confusion_{method}.png").stat().st_size > 1000

    assert (
        decloud_main(
            [
                "sits-classify",
                "--classifier",
                str(root / "eval"),
                "--store",
                str(root / "series.zarr"),
                "--out",
                str(root / "classes_map.tif"),
            ]
        )
        == 0
    )
    network, metadata = load_classifier(root / "eval")
    values, valid = SeriesStore(root / "series.zarr").read("s2")
    doys = SeriesStore(root / "series.zarr").sources["s2"].doys
    with rasterio.open(root / "classes_map.tif") as dataset:
        classes = dataset.read(1)
        assert dataset.nodata == 0 and dataset.crs == GRID.crs and dataset.transform == GRID.transform
        assert dataset.colormap(1)[1][:3] == (230, 25, 75)
    assert (classes[:2, :2] == 0).all() and (classes[2:] > 0).all()
    for row, col in ((5, 5), (30, 40), (63, 63)):
        inputs = {
            "values": values[:, row, col][None].astype(np.float32),
            "doys": doys[None].astype(np.float32),
            "mask": valid[:, row, col][None].astype(np.float32),
        }
        assert classes[row, col] == np.asarray(network.predict(inputs, verbose=0))[0].argmax() + 1
    assert metadata["classes"] == [str(k) for k in range(1, 10)]


def test_a_vector_label_file_without_its_class_field_is_one_error_line(landscape, tmp_path, capsys):
    import pyogrio.raw
    import shapely

    path = tmp_path / "parcels.gpkg"
    pyogrio.raw.write(
        path,
        shapely.to_wkb(np.array([shapely.box(600000, 4899500, 600300, 4900000)])),
        [np.array(["maize"], object)],
        ["culture"],
        geometry_type="Polygon",
        crs="EPSG:32631",
        driver="GPKG",
    )
    status = decloud_main(
        [
            "sits-finetune",
            "--store",
            str(landscape / "series.zarr"),
            "--labels",
            str(path),
            "--class_field",
            "crop",
            "--methods",
            "random_forest",
            "--out",
            str(tmp_path / "e"),
        ]
    )
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(error) == 1 and "'crop'" in error[0] and "culture" in error[0]
    assert not (tmp_path / "e").exists()


def test_pretrain_and_finetune_share_their_encoder_and_training_flags():
    from decloud.sits import finetune_command, pretrain_command
    from decloud.sits.flags import encoder_training_values

    shared = ["--backbone", "cnn", "--dim", "16", "--depth", "3", "--heads", "2", "--epochs", "7", "--batch", "32"]
    shared += ["--learning_rate", "0.01", "--warmup_share", "0.25", "--seed", "5"]
    pretrain_args = pretrain_command.build_parser().parse_args(["--store", "s", "--out", "o", *shared])
    finetune_args = finetune_command.build_parser().parse_args(["--store", "s", "--labels", "l", "--out", "o", *shared])
    expected = {
        "backbone": "cnn",
        "dim": 16,
        "depth": 3,
        "heads": 2,
        "epochs": 7,
        "batch": 32,
        "learning_rate": 0.01,
        "warmup_share": 0.25,
        "seed": 5,
    }
    assert encoder_training_values(pretrain_args) == expected == encoder_training_values(finetune_args)

    def described(parser):
        return {(a.option_strings[0], a.help, tuple(a.choices or ())) for a in parser._actions if a.dest in expected}

    assert described(pretrain_command.build_parser()) == described(finetune_command.build_parser())


@pytest.mark.parametrize("loss", ["cross_entropy", "focal"])
def test_training_with_validation_keeps_the_epoch_of_lowest_validation_loss(loss):
    from decloud.sits.finetune import FinetuneConfig, PixelSet, _network_inputs, classifier_network, train_network

    rng = np.random.default_rng(0)

    def pixels(count):  # labels unrelated to the values: the network can only overfit
        values = rng.uniform(0, 5000, (count, 6, 10)).astype(np.int16)
        return PixelSet(values, np.ones((count, 6), bool), rng.integers(0, 3, count), np.arange(count))

    train, validation = pixels(64), pixels(64)
    doys = np.array([10, 50, 90, 130, 170, 210])
    keras.utils.set_random_seed(0)
    encoder = build_encoder("mlp", bands=10, band_mean=[2500.0] * 10, band_std=[1400.0] * 10, dim=32, depth=2)
    network = classifier_network(encoder, 3)
    config = FinetuneConfig(Path(), Path(), Path(), epochs=12, batch=16, learning_rate=0.02, loss=loss)
    losses = train_network(network, train, validation, doys, config)
    assert len(losses) == 12 and int(np.argmin(losses)) < 11  # the last epoch is not the best one
    kept = network.evaluate(_network_inputs(validation, doys), validation.classes, verbose=0)
    assert kept == pytest.approx(min(losses), rel=1e-4)
