"""Self-supervised pretraining of a time-series encoder with Barlow Twins, from a series store.

Samples are drawn chunk by chunk from the store (a chunk holds all dates of 128x128 pixels: one read feeds
thousands of samples), pixels shuffled within a chunk and chunks in random order, each pixel giving two
views (decloud.sits.views). Every sample carries its tile, row and column in the tile (:func:`view_pairs`).
Training runs under a ``tf.distribute`` strategy like the other trainings (``single``, ``mirrored``,
``multiworker``); ``batch`` is per replica. The effective rank of the representations of a fixed probe set
is logged every epoch (and to TensorBoard with ``logdir``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from rasterio.windows import Window

from decloud.core.atomic import atomic_directory
from decloud.core.errors import InputNotFoundError, InvalidArgumentError
from decloud.models.training_loop import is_chief, make_strategy
from decloud.sits.barlow import DEFAULT_REDUNDANCY_WEIGHT, barlow_twins_loss, effective_rank
from decloud.sits.dates import __doc__ as DOY_CONVENTION
from decloud.sits.encoder import build_encoder, build_projector
from decloud.sits.schedule import DEFAULT_WARMUP_SHARE, warmup_cosine
from decloud.sits.store import CHUNK_SIDE, SeriesStore
from decloud.sits.views import MIN_VALID_DATES, View, sample_views

log = logging.getLogger(__name__)

#: Files of a saved encoder folder.
ENCODER_FILE = "encoder.keras"
METADATA_FILE = "sits_encoder.json"
#: Pixels whose representations give the effective rank logged each epoch.
PROBE_SIZE = 512
#: Samples mixed before batching, so a batch draws from about two chunks rather than one (about 40 MB with
#: views of 16 observations of 10 bands).
SHUFFLE_BUFFER = 32768


@dataclass
class PretrainConfig:
    store: Path
    out_dir: Path
    source: str = "s2"
    backbone: str = "transformer"
    dim: int = 64
    depth: int = 2
    heads: int = 4
    projector: int = 0  #: width of the projector; 0: the loss applies to the representation itself
    view_length: int = 12
    noise: float = 0.0  #: jitter, in band standard deviations
    brightness: float = 0.1  #: relative standard deviation of a view's brightness factor
    redundancy_weight: float = DEFAULT_REDUNDANCY_WEIGHT
    batch: int = 256
    epochs: int = 10
    steps_per_epoch: int = 100
    learning_rate: float = 1e-3
    warmup_share: float = DEFAULT_WARMUP_SHARE
    seed: int = 0
    logdir: Path | None = None
    strategy: str = "single"


@dataclass
class PretrainResult:
    encoder: keras.Model
    loss: list[float] = field(default_factory=list)
    effective_rank: list[float] = field(default_factory=list)  #: before training, then after each epoch
    path: Path | None = None


def chunk_series(store: SeriesStore, source: str, rng: np.random.Generator) -> Iterator[tuple]:
    """(values (N, T, C), validity (N, T), rows (N,), cols (N,) in the tile) of the pixels of one chunk with at
    least MIN_VALID_DATES valid dates, shuffled, chunk after chunk in random order; endless."""
    height, width = store.grid.height, store.grid.width
    chunks = [(row, col) for row in range(0, height, CHUNK_SIDE) for col in range(0, width, CHUNK_SIDE)]
    while True:
        found = False
        for index in rng.permutation(len(chunks)):
            row, col = chunks[index]
            window = Window(col, row, min(CHUNK_SIDE, width - col), min(CHUNK_SIDE, height - row))
            values, valid = store.read(source, window)
            rows, cols = np.nonzero(valid.sum(axis=0) >= MIN_VALID_DATES)
            if not len(rows):
                continue
            found = True
            order = rng.permutation(len(rows))
            rows, cols = rows[order], cols[order]
            yield (
                np.moveaxis(values[:, rows, cols], 0, 1),
                valid[:, rows, cols].T,
                rows + row + store.origin[0],
                cols + col + store.origin[1],
            )
        if not found:
            raise InvalidArgumentError(f"{store.path}: no pixel has {MIN_VALID_DATES} valid dates or more")


def _view_features(view: View) -> dict[str, np.ndarray]:
    return {"values": view.values, "doys": view.doys, "mask": view.mask.astype(np.float32)}


def view_pairs(store: SeriesStore, config: PretrainConfig) -> tf.data.Dataset:
    """Unbatched samples ``({"first": view, "second": view}, {"tile", "row", "col"})``; the views of a chunk's
    pixels are drawn at once (vectorised), then the chunk is unbatched."""
    info = store.sources[config.source]
    doys = info.doys.astype(np.float32)
    noise = info.band_std * config.noise if config.noise > 0 else None
    length, bands = config.view_length, len(info.bands)

    def generate():
        rng = np.random.default_rng(config.seed)
        for values, valid, rows, cols in chunk_series(store, config.source, rng):
            first = sample_views(values, doys, valid, length, rng, noise, config.brightness)
            second = sample_views(values, doys, valid, length, rng, noise, config.brightness)
            trace = {"tile": np.full(len(rows), store.tile), "row": rows.astype(np.int32), "col": cols.astype(np.int32)}
            yield {"first": _view_features(first), "second": _view_features(second)}, trace

    view_spec = {
        "values": tf.TensorSpec((None, length, bands), tf.float32),
        "doys": tf.TensorSpec((None, length), tf.float32),
        "mask": tf.TensorSpec((None, length), tf.float32),
    }
    trace_spec = {
        "tile": tf.TensorSpec((None,), tf.string),
        "row": tf.TensorSpec((None,), tf.int32),
        "col": tf.TensorSpec((None,), tf.int32),
    }
    # An error raised inside the generator reaches the user as a TensorFlow traceback: a store with no
    # trainable pixel is refused here, by the same scan, before TensorFlow runs it.
    next(chunk_series(store, config.source, np.random.default_rng(config.seed)))
    chunks = tf.data.Dataset.from_generator(
        generate, output_signature=({"first": view_spec, "second": view_spec}, trace_spec)
    )
    return chunks.unbatch()


class BarlowTwins(keras.Model):
    """Encoder + projector applied to two views; the loss is Barlow Twins on the two projections."""

    def __init__(self, encoder: keras.Model, projector: keras.Model, redundancy_weight: float) -> None:
        super().__init__()
        self.encoder, self.projector, self.redundancy_weight = encoder, projector, redundancy_weight

    def call(self, inputs, training=False):
        first = self.projector(self.encoder(inputs["first"], training=training), training=training)
        second = self.projector(self.encoder(inputs["second"], training=training), training=training)
        return first, second

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return barlow_twins_loss(y_pred[0], y_pred[1], self.redundancy_weight)


class EffectiveRank(keras.callbacks.Callback):
    """Logs ``effective_rank`` of the encoder's representations of a fixed probe batch after every epoch."""

    def __init__(self, encoder: keras.Model, probe: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.encoder, self.probe, self.values = encoder, probe, [self.measure(encoder, probe)]

    @staticmethod
    def measure(encoder: keras.Model, probe: dict[str, np.ndarray]) -> float:
        return effective_rank(np.asarray(encoder.predict(probe, verbose=0, batch_size=len(probe["mask"]))))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.values.append(self.measure(self.encoder, self.probe))
        if logs is not None:
            logs["effective_rank"] = self.values[-1]


def encoder_metadata(store: SeriesStore, config: PretrainConfig) -> dict:
    """What a user of the encoder needs: its inputs, bands, normalisation, view length, day-number rule."""
    info = store.sources[config.source]
    return {
        "format": "decloud-sits-encoder",
        "version": 1,
        "source": config.source,
        "bands": list(info.bands),
        "band_mean": [float(v) for v in info.band_mean],
        "band_std": [float(v) for v in info.band_std],
        "inputs": {
            "values": "(batch, length, bands) float32 prepared values (reflectance x 10000)",
            "doys": "(batch, length) float32 day numbers",
            "mask": "(batch, length) float32, 1 on valid observations",
        },
        "max_length": config.view_length,
        "doy_convention": " ".join(DOY_CONVENTION.split()),
        "reference_year": info.reference_year,
        "dim": config.dim,
        "training": {key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()},
        "tile": store.tile,
    }


def _probe(store: SeriesStore, config: PretrainConfig) -> dict[str, np.ndarray]:
    clean = {"seed": config.seed + 1, "noise": 0.0, "brightness": 0.0}  # the pixels as they are
    samples = view_pairs(store, PretrainConfig(**{**asdict(config), **clean}))
    batch = next(iter(samples.batch(PROBE_SIZE).take(1)))[0]["first"]
    return {key: value.numpy() for key, value in batch.items()}


def pretrain(config: PretrainConfig) -> PretrainResult:
    """Train an encoder on ``config.store``; save it with its metadata into ``config.out_dir``."""
    for name in ("view_length", "batch", "epochs", "steps_per_epoch", "dim"):
        if getattr(config, name) <= 0:
            raise InvalidArgumentError(f"{name} must be positive, not {getattr(config, name)}")
    if Path(config.out_dir).exists():
        raise InvalidArgumentError(f"{config.out_dir} exists: the encoder is written into a new folder")
    strategy = make_strategy(config.strategy)
    store = SeriesStore(config.store)
    if config.source not in store.sources:
        raise InvalidArgumentError(f"{store.path} has no source {config.source!r} (it has {sorted(store.sources)})")
    info = store.sources[config.source]
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        encoder = build_encoder(
            config.backbone,
            bands=len(info.bands),
            band_mean=info.band_mean,
            band_std=info.band_std,
            dim=config.dim,
            depth=config.depth,
            heads=config.heads,
        )
        model = BarlowTwins(encoder, build_projector(config.dim, config.projector), config.redundancy_weight)
        schedule = warmup_cosine(config.learning_rate, config.epochs * config.steps_per_epoch, config.warmup_share)
        model.compile(optimizer=keras.optimizers.Adam(schedule))
    global_batch = config.batch * strategy.num_replicas_in_sync
    samples = view_pairs(store, config).map(lambda inputs, trace: inputs).shuffle(SHUFFLE_BUFFER, seed=config.seed)
    dataset = samples.batch(global_batch, drop_remainder=True)
    rank = EffectiveRank(encoder, _probe(store, config))
    callbacks: list[keras.callbacks.Callback] = [rank]
    if config.logdir is not None and is_chief(strategy):
        callbacks.append(keras.callbacks.TensorBoard(str(config.logdir), write_graph=False))
    history = model.fit(
        dataset.prefetch(2),
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        callbacks=callbacks,
        verbose=2 if is_chief(strategy) else 0,
    )
    result = PretrainResult(encoder, list(history.history["loss"]), rank.values)
    if is_chief(strategy):
        result.path = save_encoder(encoder, encoder_metadata(store, config), config.out_dir)
    log.info(
        "effective rank %.2f -> %.2f, loss %.2f -> %.2f",
        rank.values[0],
        rank.values[-1],
        result.loss[0],
        result.loss[-1],
    )
    return result


def save_encoder(encoder: keras.Model, metadata: dict, out_dir: str | os.PathLike[str]) -> Path:
    """``<out_dir>/encoder.keras`` and ``sits_encoder.json``, written together or not at all."""
    with atomic_directory(out_dir) as work:
        encoder.save(work / ENCODER_FILE)
        (work / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return Path(out_dir)


def load_network(
    folder: str | os.PathLike[str], network_file: str, metadata_file: str, what: str
) -> tuple[keras.Model, dict]:
    """A Keras network saved in ``folder`` beside its JSON metadata; a missing file is named as a file of
    ``what`` (a time-series encoder, a classifier)."""
    folder = Path(folder)
    for name in (network_file, metadata_file):
        if not (folder / name).is_file():
            raise InputNotFoundError(folder / name, f"file of a {what}")
    return keras.models.load_model(folder / network_file), json.loads((folder / metadata_file).read_text())


def load_encoder(folder: str | os.PathLike[str]) -> tuple[keras.Model, dict]:
    """An encoder saved by :func:`save_encoder` and its metadata."""
    return load_network(folder, ENCODER_FILE, METADATA_FILE, "time-series encoder")
