"""A small CRGA model learns on real pixels: the eo-learn 5-date Sentinel-2 series (Slovenia, 2015).

Target: the clear 2015-08-30 image; ``t``: the same image with cloud-shaped holes cut out (no-data);
``tm1`` / ``tp1``: the clear 2015-07-11 and 2015-09-09 images. Training patches come from the upper rows
of the scene, test patches from the lower rows it never saw.

Outside the holes ``t`` is the target itself, so the model is scored on the hole pixels only (the pixels it
had to produce), beside what a user would do without it: keep ``t`` where it is valid and fill the holes by
copying the nearest other date (2015-09-09, ten days later) or by interpolating linearly in time between
``tm1`` and ``tp1``. Both baselines are computed here with numpy.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from decloud.core import keys
from decloud.models.export import ServingModel
from decloud.models.training_loop import TrainingConfig, train
from decloud.sampling.tfrecords import RecordsWriter

PATCH = 32
TRAIN_ROWS = 64  #: rows 0..63 train, rows 64.. test
DATES = {"tm1": 0, "t": 3, "tp1": 4, "target": 3}  #: acquisition -> index in the series
BANDS_10M = ["B02", "B03", "B04", "B08"]  #: the eo-learn names of B2, B3, B4, B8
NODATA = -10000  #: prepared Sentinel-2 no-data


def load_series(shared_data):
    archive = np.load(shared_data / "eolearn-timeseries" / "s2_l1c_5dates_with_masks.npz")
    names = list(archive["band_names"])
    bands = [names.index(band) for band in BANDS_10M]
    images = np.rint(archive["bands"][..., bands] * 10000).astype(np.int16)  # prepared values: reflectance x 1e4
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
            image[cloud_holes(rng, PATCH)] = NODATA
        result[keys.key(keys.S2, acquisition)] = image
        result[keys.key(keys.S2_TIMESTAMP, acquisition)] = np.float64(seconds[index])
        if acquisition != "target":  # no Sentinel-1 over this scene: encoded no-data
            result[keys.key(keys.S1, acquisition)] = np.zeros((PATCH, PATCH, 2), np.uint16)
    return result


def write(folder, samples) -> None:
    with RecordsWriter(folder, 64) as writer:
        for item in samples:
            writer.write(item)


def hole_scores(samples, estimates) -> dict[str, float]:
    """MAE, RMSE and PSNR (from the pooled MSE, data range 1) in reflectance over the hole pixels of t."""
    errors = []
    for sample, estimate in zip(samples, estimates, strict=True):
        holes = (sample["s2_t"] == NODATA).all(axis=-1)
        errors.append((estimate[holes].astype(np.float64) - sample["s2_target"][holes]) / 10000)
    errors = np.concatenate(errors)
    mse = np.square(errors).mean()
    return {"mae": np.abs(errors).mean(), "rmse": np.sqrt(mse), "psnr": -10 * np.log10(mse), "values": errors.size}


def keep_valid_t(sample, filled: np.ndarray) -> np.ndarray:
    """The baseline a user would build: t where it is valid, ``filled`` in its holes."""
    return np.where(sample["s2_t"] == NODATA, filled, sample["s2_t"])


def linear_in_time(sample) -> np.ndarray:
    stamps = [float(sample[f"s2_timestamp_{name}"]) for name in ("tm1", "t", "tp1")]
    weight = (stamps[1] - stamps[0]) / (stamps[2] - stamps[0])
    return sample["s2_tm1"] + weight * (sample["s2_tp1"].astype(np.float64) - sample["s2_tm1"])


def test_a_small_crga_model_beats_the_baselines_on_the_hole_pixels_of_held_out_patches(shared_data, tmp_path):
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
    serving = ServingModel(tmp_path / "savedmodel")
    batch = {name: np.stack([s[name] for s in test_samples]) for name in serving.inputs}
    estimates = serving(batch)["s2_estim"]
    scores = {
        "model": hole_scores(test_samples, estimates),
        "t + copy of 2015-09-09": hole_scores(test_samples, [keep_valid_t(s, s["s2_tp1"]) for s in test_samples]),
        "t + linear in time": hole_scores(test_samples, [keep_valid_t(s, linear_in_time(s)) for s in test_samples]),
    }
    print("\n".join(f"{name:<24} " + " ".join(f"{k} {v:.5g}" for k, v in row.items()) for name, row in scores.items()))
    model, copy, linear = scores.values()
    assert model["values"] / len(BANDS_10M) > 0.15 * len(test_samples) * PATCH * PATCH  # holes: about a quarter
    assert model["mae"] < 0.9 * min(copy["mae"], linear["mae"]), scores
    assert model["psnr"] > max(copy["psnr"], linear["psnr"]) + 1.0, scores
