"""A small CRGA model learns on real pixels: the eo-learn 5-date Sentinel-2 series (Slovenia, 2015).

Target: the clear 2015-08-30 image; ``t``: the same image with cloud-shaped holes cut out (no-data);
``tm1`` / ``tp1``: the clear 2015-07-11 and 2015-09-09 images. Training patches come from the upper rows
of the scene, test patches from the lower rows it never saw. After a few hundred steps the model must beat
copying the nearest other date (2015-09-09, ten days later) on the held-out patches.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from decloud.core import keys
from decloud.models.evaluation import evaluate
from decloud.models.training import TrainingConfig, train
from decloud.preprocessing.constants import S2_BANDS_10M, S2_NODATA, S2_REFLECTANCE_SCALE
from decloud.sampling.tfrecords import RecordsWriter

PATCH = 32
TRAIN_ROWS = 64  #: rows 0..63 train, rows 64.. test
DATES = {"tm1": 0, "t": 3, "tp1": 4, "target": 3}  #: acquisition -> index in the series


def load_series(shared_data):
    archive = np.load(shared_data / "eolearn-timeseries" / "s2_l1c_5dates_with_masks.npz")
    names = list(archive["band_names"])
    bands = [names.index(band.replace("B", "B0") if len(band) == 2 else band) for band in S2_BANDS_10M]
    images = np.rint(archive["bands"][..., bands] * S2_REFLECTANCE_SCALE).astype(np.int16)
    seconds = [datetime.fromisoformat(date + "+00:00").timestamp() for date in archive["dates"]]
    return images, seconds


def cloud_holes(rng, size: int) -> np.ndarray:
    """1 to 3 discs covering together about a quarter of the patch."""
    rows, cols = np.ogrid[:size, :size]
    holes = np.zeros((size, size), bool)
    for _ in range(rng.integers(1, 4)):
        centre, radius = rng.uniform(0, size, 2), rng.uniform(size / 8, size / 3.5)
        holes |= (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < radius**2
    return holes


def sample(images, seconds, row: int, col: int, rng, augment: bool) -> dict[str, np.ndarray]:
    window = images[:, row : row + PATCH, col : col + PATCH]
    if augment:
        window = np.rot90(window, rng.integers(4), axes=(1, 2))
        window = window[:, :, ::-1] if rng.integers(2) else window
    result = {}
    for acquisition, index in DATES.items():
        image = window[index].copy()
        if acquisition == "t":
            image[cloud_holes(rng, PATCH)] = S2_NODATA
        result[keys.key(keys.S2, acquisition)] = image
        result[keys.key(keys.S2_TIMESTAMP, acquisition)] = np.float64(seconds[index])
        if acquisition != "target":  # no Sentinel-1 over this scene: encoded no-data
            result[keys.key(keys.S1, acquisition)] = np.zeros((PATCH, PATCH, 2), np.uint16)
    return result


def write(folder, samples) -> None:
    with RecordsWriter(folder, 64) as writer:
        for item in samples:
            writer.write(item)


def test_a_small_crga_model_beats_copying_the_nearest_date_on_held_out_patches(shared_data, tmp_path):
    images, seconds = load_series(shared_data)
    rng = np.random.default_rng(0)
    height, width = images.shape[1:3]
    train_samples = [
        sample(images, seconds, rng.integers(0, TRAIN_ROWS - PATCH + 1), rng.integers(0, width - PATCH + 1), rng, True)
        for _ in range(256)
    ]
    test_samples = [
        sample(images, seconds, height - PATCH, col, rng, False)
        for col in (0, (width - PATCH) // 2, width - PATCH)
        for _ in range(4)
    ]
    write(tmp_path / "train", train_samples)
    write(tmp_path / "test", test_samples)

    result = train(
        TrainingConfig(
            model="crga_os2_unet",
            model_params={"filters": 16, "depth": 3},
            training_record=tmp_path / "train",
            learning_rate=1e-3,
            batch_train=8,
            steps_per_epoch=100,
            epochs=4,
            out_savedmodel=tmp_path / "savedmodel",
            seed=0,
        )
    )
    assert result.history["loss"][-1] < result.history["loss"][0]
    report = evaluate(tmp_path / "savedmodel", tmp_path / "test")
    methods = report["outputs"]["s2_estim"]["methods"]
    model, copy = methods["model"]["overall"], methods["copy_nearest_date"]["overall"]
    assert report["samples"] == len(test_samples)
    assert model["mae"] < 0.9 * copy["mae"], (model, copy, methods["gapfilling"]["overall"])
    assert model["psnr"] > copy["psnr"]
    # the baseline copies 2015-09-09, the nearest date other than the target's own (cloudy) day
    expected = np.mean([np.abs(s["s2_target"] - s["s2_tp1"]).mean() for s in test_samples]) / S2_REFLECTANCE_SCALE
    assert copy["mae"] == pytest.approx(expected, rel=1e-5)
