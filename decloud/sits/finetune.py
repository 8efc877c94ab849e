"""Supervised use of the time-series encoders, scored on held-out parcels, beside the baselines a user would
otherwise use. Methods (each trained on the same labelled parcels, tested on the same held-out parcels):

- ``linear_probe``: a logistic regression on the frozen pretrained embeddings;
- ``finetuned``: the pretrained encoder with a linear head, all trained together (cross-entropy or focal
  loss, learning rate warmed up then decayed along a cosine; with validation parcels, the weights of the epoch
  of lowest validation loss are kept);
- ``scratch``: the same network (same backbone and size) from random weights, trained the same way;
- ``random_forest`` and ``logistic_raw``: scikit-learn on the raw series (standardised values, 0 where
  invalid, and the validity flags).

Scores: overall accuracy, macro F1, F1 per class, confusion matrix (JSON and PNG).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from rasterio.windows import Window
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, f1_score
from sklearn.preprocessing import StandardScaler

from decloud.core.atomic import atomic_directory
from decloud.core.errors import InvalidArgumentError
from decloud.sits.encoder import build_encoder
from decloud.sits.encoding import encode_pixels
from decloud.sits.labels import Labels, hold_out_validation, read_labels, split_parcels
from decloud.sits.losses import DEFAULT_FOCAL_GAMMA, classification_loss
from decloud.sits.pretrain import PretrainConfig, load_encoder, load_network
from decloud.sits.schedule import DEFAULT_WARMUP_SHARE, warmup_cosine
from decloud.sits.store import CHUNK_SIDE, SeriesStore

log = logging.getLogger(__name__)

METHODS = ("linear_probe", "finetuned", "scratch", "random_forest", "logistic_raw")
#: Methods that need a pretrained encoder.
PRETRAINED_METHODS = ("linear_probe", "finetuned")
CLASSIFIER_FILE = "classifier.keras"
CLASSIFIER_METADATA = "sits_classifier.json"
#: Share of the training parcels of a class (with two or more) used for validation by default.
DEFAULT_VALIDATION_SHARE = 0.2
_ARCHITECTURE = PretrainConfig(store=Path(), out_dir=Path())


@dataclass
class FinetuneConfig:
    store: Path
    labels: Path
    out_dir: Path
    encoder: Path | None = None
    class_field: str | None = None
    methods: tuple[str, ...] = METHODS
    test_share: float = 0.5
    labelled_share: float = 1.0
    validation_share: float = DEFAULT_VALIDATION_SHARE
    #: architecture of the ``scratch`` network when there is no pretrained encoder (else the encoder's)
    backbone: str = _ARCHITECTURE.backbone
    dim: int = _ARCHITECTURE.dim
    depth: int = _ARCHITECTURE.depth
    heads: int = _ARCHITECTURE.heads
    loss: str = "cross_entropy"
    focal_gamma: float = DEFAULT_FOCAL_GAMMA
    epochs: int = 20
    batch: int = 256
    learning_rate: float = 1e-3
    warmup_share: float = DEFAULT_WARMUP_SHARE
    max_pixels_per_parcel: int = 200
    seed: int = 0


@dataclass
class Scores:
    overall_accuracy: float
    macro_f1: float
    f1: dict[str, float]
    confusion: list[list[int]]  #: rows: truth, columns: prediction, classes in order
    names: tuple[str, ...] = field(default=())


@dataclass
class PixelSet:
    values: np.ndarray  #: (N, T, C) int16
    valid: np.ndarray  #: (N, T) bool
    classes: np.ndarray  #: (N,) 0..K-1
    parcels: np.ndarray  #: (N,)


def labelled_pixels(
    store: SeriesStore,
    source: str,
    labels: Labels,
    parcel_ids: np.ndarray,
    max_per_parcel: int,
    rng: np.random.Generator,
) -> PixelSet:
    """Series of the pixels of ``parcel_ids`` that have a valid observation (at most ``max_per_parcel`` per
    parcel, drawn at random), read chunk by chunk."""
    parts = []
    for row in range(0, store.grid.height, CHUNK_SIDE):
        for col in range(0, store.grid.width, CHUNK_SIDE):
            window = Window(col, row, min(CHUNK_SIDE, store.grid.width - col), min(CHUNK_SIDE, store.grid.height - row))
            rows, cols = window.toslices()
            chosen = np.isin(labels.parcels[rows, cols], parcel_ids)
            if not chosen.any():
                continue
            values, valid = store.read(source, window)
            chosen &= valid.any(axis=0)
            r, c = np.nonzero(chosen)
            parts.append(
                (
                    values[:, r, c].swapaxes(0, 1),
                    valid[:, r, c].T,
                    labels.classes[rows, cols][r, c] - 1,
                    labels.parcels[rows, cols][r, c],
                )
            )
    if not parts:
        raise InvalidArgumentError(f"{store.path}: no labelled pixel with a valid observation")
    values, valid, classes, parcels = (np.concatenate(items) for items in zip(*parts, strict=True))
    keep = np.zeros(len(parcels), bool)
    for parcel in np.unique(parcels):
        members = np.flatnonzero(parcels == parcel)
        keep[rng.permutation(members)[:max_per_parcel]] = True
    return PixelSet(values[keep], valid[keep], classes[keep], parcels[keep])


def raw_features(pixels: PixelSet, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(N, T x C + T): standardised values, 0 where invalid, then the validity flags."""
    standardised = (pixels.values - mean) / np.where(std > 0, std, 1)
    standardised = np.where(pixels.valid[..., np.newaxis], standardised, 0)
    return np.concatenate([standardised.reshape(len(standardised), -1), pixels.valid], axis=1).astype(np.float32)


def score(truth: np.ndarray, predicted: np.ndarray, names: tuple[str, ...]) -> Scores:
    labels = np.arange(len(names))
    per_class = f1_score(truth, predicted, labels=labels, average=None, zero_division=0)
    return Scores(
        overall_accuracy=float((truth == predicted).mean()),
        macro_f1=float(per_class.mean()),
        f1={name: float(value) for name, value in zip(names, per_class, strict=True)},
        confusion=confusion_matrix(truth, predicted, labels=labels).tolist(),
        names=names,
    )


def write_confusion_png(scores: Scores, path: Path, title: str) -> None:
    """The confusion matrix (rows normalised) with the counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    matrix = np.asarray(scores.confusion, float)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 1.5 + 0.6 * len(scores.names)
    figure, axes = pyplot.subplots(figsize=(size + 1, size))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, col), count in np.ndenumerate(matrix):
        axes.text(
            col,
            row,
            f"{int(count)}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if shares[row, col] > 0.5 else "black",
        )
    ticks = np.arange(len(scores.names))
    axes.set_xticks(ticks, scores.names, rotation=45, ha="right")
    axes.set_yticks(ticks, scores.names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("truth")
    axes.set_title(f"{title}: OA {scores.overall_accuracy:.3f}, macro F1 {scores.macro_f1:.3f}")
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def _network_inputs(pixels: PixelSet, doys: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "values": pixels.values.astype(np.float32),
        "doys": np.broadcast_to(doys.astype(np.float32), pixels.valid.shape).copy(),
        "mask": pixels.valid.astype(np.float32),
    }


def classifier_network(encoder: keras.Model, classes: int, *, trainable: bool = True) -> keras.Model:
    """The encoder followed by a linear layer giving the class logits."""
    encoder.trainable = trainable
    logits = keras.layers.Dense(classes, name="classes")(encoder.output)
    return keras.Model(encoder.inputs, logits, name="sits_classifier")


def train_network(
    network: keras.Model, train: PixelSet, validation: PixelSet | None, doys: np.ndarray, config: FinetuneConfig
) -> list[float]:
    """Fit ``network`` on ``train``; with ``validation``, keep the weights of the epoch of lowest validation loss.
    Returns the validation loss of each epoch (none without validation)."""
    batch = min(config.batch, len(train.classes))
    steps = config.epochs * -(-len(train.classes) // batch)
    network.compile(
        optimizer=keras.optimizers.Adam(warmup_cosine(config.learning_rate, steps, config.warmup_share)),
        loss=classification_loss(config.loss, config.focal_gamma),
    )
    callbacks = []
    if validation is not None:
        callbacks.append(keras.callbacks.EarlyStopping(patience=config.epochs, restore_best_weights=True))
    history = network.fit(
        _network_inputs(train, doys),
        train.classes,
        validation_data=None if validation is None else (_network_inputs(validation, doys), validation.classes),
        epochs=config.epochs,
        batch_size=batch,
        callbacks=callbacks,
        verbose=0,
        shuffle=True,
    )
    losses = [float(loss) for loss in history.history.get("val_loss", [])]
    if losses:
        log.info(
            "validation loss %.3f (epoch 1) -> best %.3f (epoch %d)", losses[0], min(losses), int(np.argmin(losses)) + 1
        )
    return losses


def probe_network(encoder: keras.Model, probe: LogisticRegression, scaler: StandardScaler, classes: int) -> keras.Model:
    """The encoder and the fitted logistic regression (its standardisation folded in) as one network."""
    network = classifier_network(encoder, classes, trainable=False)
    weights = probe.coef_.T / scaler.scale_[:, np.newaxis]
    bias = probe.intercept_ - scaler.mean_ @ weights
    if probe.coef_.shape[0] == 1:  # two classes: scikit-learn keeps one row
        weights, bias = np.concatenate([-weights, weights], axis=1) / 2, np.array([-bias[0], bias[0]]) / 2
    network.get_layer("classes").set_weights([weights.astype(np.float32), bias.astype(np.float32)])
    return network


def evaluate(config: FinetuneConfig) -> dict[str, Scores]:
    """Train every method of ``config`` on the labelled parcels, score it on the held-out ones; write
    ``metrics.json``, ``confusion_<method>.png`` and the best encoder-based classifier into ``out_dir``."""
    unknown = set(config.methods) - set(METHODS)
    if unknown:
        raise InvalidArgumentError(f"unknown methods {sorted(unknown)} (known: {', '.join(METHODS)})")
    if config.encoder is None and set(config.methods) & set(PRETRAINED_METHODS):
        raise InvalidArgumentError(f"{', '.join(PRETRAINED_METHODS)} need a pretrained encoder (--encoder)")
    if Path(config.out_dir).exists():
        raise InvalidArgumentError(f"{config.out_dir} exists: the results are written into a new folder")
    store = SeriesStore(config.store)
    metadata = None
    if config.encoder is not None:
        _, metadata = load_encoder(config.encoder)
    source = metadata["source"] if metadata else "s2"
    info = store.sources[source]
    labels = read_labels(config.labels, store.grid, config.class_field)
    train_ids, test_ids = split_parcels(
        labels, test_share=config.test_share, labelled_share=config.labelled_share, seed=config.seed
    )
    train_ids, validation_ids = hold_out_validation(labels, train_ids, config.validation_share, config.seed)
    rng = np.random.default_rng(config.seed)
    train = labelled_pixels(store, source, labels, train_ids, config.max_pixels_per_parcel, rng)
    test = labelled_pixels(store, source, labels, test_ids, config.max_pixels_per_parcel, rng)
    validation = (
        labelled_pixels(store, source, labels, validation_ids, config.max_pixels_per_parcel, rng)
        if len(validation_ids)
        else None
    )
    count = len(labels.names)
    log.info(
        "%d training pixels (%d parcels), %d validation parcels, %d test pixels (%d parcels), %d classes",
        len(train.classes),
        len(train_ids),
        len(validation_ids),
        len(test.classes),
        len(test_ids),
        count,
    )
    results, networks = {}, {}
    for method in config.methods:
        keras.utils.set_random_seed(config.seed)
        if method in ("random_forest", "logistic_raw"):
            features = raw_features(train, info.band_mean, info.band_std)
            model = (
                RandomForestClassifier(200, random_state=config.seed, n_jobs=1)
                if method == "random_forest"
                else LogisticRegression(max_iter=2000)
            )
            model.fit(features, train.classes)
            predicted = model.predict(raw_features(test, info.band_mean, info.band_std))
        elif method == "linear_probe":
            encoder, _ = load_encoder(config.encoder)
            train_embedding = encode_pixels(encoder, train.values, train.valid, info.doys)
            scaler = StandardScaler().fit(train_embedding)
            probe = LogisticRegression(max_iter=2000).fit(scaler.transform(train_embedding), train.classes)
            test_embedding = encode_pixels(encoder, test.values, test.valid, info.doys)
            predicted = probe.predict(scaler.transform(test_embedding))
            if len(np.unique(train.classes)) == count:
                networks[method] = probe_network(encoder, probe, scaler, count)
        else:
            if method == "finetuned":
                encoder, _ = load_encoder(config.encoder)
            else:
                encoder = build_encoder(
                    metadata["training"]["backbone"] if metadata else config.backbone,
                    bands=len(info.bands),
                    band_mean=info.band_mean,
                    band_std=info.band_std,
                    dim=metadata["dim"] if metadata else config.dim,
                    depth=int(metadata["training"]["depth"]) if metadata else config.depth,
                    heads=int(metadata["training"]["heads"]) if metadata else config.heads,
                )
            network = classifier_network(encoder, count)
            train_network(network, train, validation, info.doys, config)
            predicted = np.asarray(network.predict(_network_inputs(test, info.doys), verbose=0)).argmax(axis=1)
            networks[method] = network
        results[method] = score(test.classes, predicted, labels.names)
        log.info("%s: OA %.3f, macro F1 %.3f", method, results[method].overall_accuracy, results[method].macro_f1)
    _write_results(config, results, networks, labels, (len(train_ids), len(validation_ids), len(test_ids)), metadata)
    return results


def _write_results(config, results, networks, labels, parcel_counts, metadata) -> None:
    with atomic_directory(config.out_dir) as work:
        report = {
            "classes": list(labels.names),
            "train_parcels": parcel_counts[0],
            "validation_parcels": parcel_counts[1],
            "test_parcels": parcel_counts[2],
            "labelled_share": config.labelled_share,
            "methods": {name: {k: v for k, v in vars(s).items() if k != "names"} for name, s in results.items()},
        }
        (work / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        for name, scores in results.items():
            write_confusion_png(scores, work / f"confusion_{name}.png", name)
        if networks:
            best = max(networks, key=lambda name: results[name].macro_f1)
            networks[best].save(work / CLASSIFIER_FILE)
            classifier = {
                "format": "decloud-sits-classifier",
                "version": 1,
                "method": best,
                "classes": list(labels.names),
                "source": metadata["source"] if metadata else "s2",
                "bands": metadata["bands"] if metadata else None,
            }
            (work / CLASSIFIER_METADATA).write_text(json.dumps(classifier, indent=2) + "\n")


def load_classifier(folder: str | os.PathLike[str]) -> tuple[keras.Model, dict]:
    """The classifier written by :func:`finetune` (the best encoder-based method) and its metadata."""
    return load_network(folder, CLASSIFIER_FILE, CLASSIFIER_METADATA, "time-series classifier")
