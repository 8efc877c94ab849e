"""Same-date-truth records from a small prepared series, on a free grid of small patches: the real eo-learn crop
(101 x 100 pixels) is smaller than two of the sampling grid's 64-pixel patches, so it cannot be split into a
training and a held-out part by ``decloud create-tfrecords``. The samples follow the same recipe and the same
transplant rule (:mod:`decloud.acquisitions.transplant`): ``t`` is a clear date with the cloud mask of a cloudy
date of the series transplanted (holes at no-data, ``s2_holes_t``), ``target`` is the same clear image, ``tm1``
and ``tp1`` are the two other clear dates in either order (every clear date is a target, even the first and
the last of the series), and ``clouds`` gives the mask's date.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decloud.acquisitions.transplant import cloud_holes, punch_holes
from decloud.core import keys
from decloud.core.products import S2Product, prepared_s2_series
from decloud.core.raster import open_raster, read_window
from decloud.sampling.tfrecords import RecordsWriter

#: A date is clear (a target and an input) below this share of cloudy pixels, a mask donor above it.
CLEAR_MAX_CLOUD = 0.01


@dataclass(frozen=True)
class Scene:
    """The whole prepared series of a tile in memory (small scenes only)."""

    tile: str
    products: list[S2Product]
    images: np.ndarray  #: (n, rows, cols, 4) int16
    clouds: np.ndarray  #: (n, rows, cols) bool

    @classmethod
    def load(cls, tile_dir: Path) -> Scene:
        products = prepared_s2_series(tile_dir)
        images, clouds = [], []
        for product in products:
            with open_raster(product.bands_10m) as bands, open_raster(product.cloud_mask) as clm:
                images.append(np.moveaxis(read_window(bands, None), 0, -1))
                clouds.append(cloud_holes(read_window(clm, None, 1)))
        return cls(Path(tile_dir).name, products, np.stack(images), np.stack(clouds))

    @property
    def clear_dates(self) -> list[int]:
        return [i for i in range(len(self.products)) if self.clouds[i].mean() < CLEAR_MAX_CLOUD]

    @property
    def cloudy_dates(self) -> list[int]:
        return [i for i in range(len(self.products)) if self.clouds[i].mean() >= CLEAR_MAX_CLOUD]


def positions(first_row: int, last_row: int, width: int, size: int, step: int) -> list[tuple[int, int]]:
    """Upper-left corners of ``size`` patches every ``step`` pixels with rows in [first_row, last_row)."""
    rows = range(first_row, last_row - size + 1, step)
    return [(row, col) for row in rows for col in range(0, width - size + 1, step)]


def samples(scene: Scene, corners: Sequence[tuple[int, int]], size: int) -> Iterator[dict[str, np.ndarray]]:
    """Every (clear t, ordered pair of other clear dates, cloudy mask donor) at every corner."""
    times = [p.acquired.timestamp() for p in scene.products]
    for row, col in corners:
        window = (slice(row, row + size), slice(col, col + size))
        for t in scene.clear_dates:
            others = [i for i in scene.clear_dates if i != t]
            for (before, after), donor in itertools.product(itertools.permutations(others, 2), scene.cloudy_dates):
                holes = scene.clouds[donor][window]
                clear = scene.images[t][window]
                yield {
                    keys.key(keys.S2, "tm1"): scene.images[before][window],
                    keys.key(keys.S2, "tp1"): scene.images[after][window],
                    keys.key(keys.S2, "t"): punch_holes(clear, holes),
                    keys.key(keys.S2_HOLES, "t"): holes[..., np.newaxis].astype(np.uint8),
                    keys.key(keys.S2, "target"): clear,
                    **{
                        keys.key(keys.S2_TIMESTAMP, name): np.float64(times[index])
                        for name, index in (("tm1", before), ("tp1", after), ("t", t), ("target", t), ("clouds", donor))
                    },
                    keys.TILE: np.array(scene.tile.encode()),
                    keys.PATCH_ROW: np.int32(row),
                    keys.PATCH_COL: np.int32(col),
                }


def write_series_records(scene: Scene, output_dir: Path, corners: Sequence[tuple[int, int]], size: int) -> int:
    """Write the samples at ``corners`` to a records folder; return their number."""
    with RecordsWriter(output_dir, n_samples_per_shard=200) as writer:
        for sample in samples(scene, corners, size):
            writer.write(sample)
    return writer.count


#: The split of the eo-learn crop: training patches in its upper rows, held-out patches in its lower rows (4 rows
#: apart, so that no test pixel was ever a training pixel).
PATCH = 32
TRAIN_ROWS = (0, 64)
TEST_ROWS = (68, 101)
TRAIN_STEP = 8
MODEL = "crga_os2_unet"
MODEL_PARAMS = {"filters": 16, "depth": 2, "with_s1": False}


@dataclass(frozen=True)
class Experiment:
    """Where a same-date experiment on a prepared series wrote its records and model."""

    s2_root: Path
    train: Path
    test: Path
    savedmodel: Path
    train_samples: int
    test_samples: int


def same_date_experiment(prepared_tile: Path, work: Path, *, epochs: int, seed: int = 0) -> Experiment:
    """Write the training records (upper rows) and the held-out records (lower rows) of the prepared series in
    ``prepared_tile``, train the small S2-only CRGA U-Net on them and export it under ``work``."""
    from decloud.models.training_loop import TrainingConfig, train  # TensorFlow, imported on use

    scene = Scene.load(prepared_tile)
    width = scene.images.shape[2]
    train_count = write_series_records(scene, work / "train", positions(*TRAIN_ROWS, width, PATCH, TRAIN_STEP), PATCH)
    test_count = write_series_records(scene, work / "test", positions(*TEST_ROWS, width, PATCH, PATCH), PATCH)
    config = TrainingConfig(
        model=MODEL,
        training_record=work / "train",
        model_params=dict(MODEL_PARAMS),
        learning_rate=1e-3,
        batch_train=8,
        epochs=epochs,
        out_savedmodel=work / "savedmodel",
        seed=seed,
    )
    train(config)
    return Experiment(prepared_tile.parent, work / "train", work / "test", work / "savedmodel", train_count, test_count)
