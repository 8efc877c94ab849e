"""Keras callbacks of the trainer: validation on several records folders, and TensorBoard summaries
(losses and metrics per output and per validation set; preview images with ``--previews``)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from decloud.core import keys
from decloud.core.constants import S1_MODEL_SCALE, S2_MODEL_SCALE, S2_NODATA
from decloud.models.model import SOURCE_BANDS, is_image_key, output_source

#: Bands shown as red, green, blue in previews.
PREVIEW_BANDS = {
    keys.S2: ("B4", "B3", "B2"),
    keys.S2_20M: ("B12", "B8A", "B5"),
    keys.S1: ("VV", "VH", "VV"),
}
#: Reflectance shown as full brightness in previews.
PREVIEW_REFLECTANCE_MAX = 0.3
#: Samples shown per preview.
PREVIEW_SAMPLES = 4


def validation_names(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Short, unique names of validation folders for log keys and TensorBoard runs (folder name, made safe)."""
    names: list[str] = []
    for path in paths:
        base = re.sub(r"[^A-Za-z0-9]+", "_", Path(path).resolve().name).strip("_") or "valid"
        name, index = base, 2
        while name in names:
            name, index = f"{base}_{index}", index + 1
        names.append(name)
    return names


class MultiValidation(keras.callbacks.Callback):
    """Evaluate the model on each validation set after each epoch.

    Adds ``val_<set>_<metric>`` to the epoch logs for every set, and ``val_<metric>`` for the first set
    (so ``EarlyStopping(monitor="val_loss")`` and the best checkpoint follow it).
    """

    def __init__(self, datasets: dict[str, Any]) -> None:
        super().__init__()
        self.datasets = datasets
        self.latest: dict[str, dict[str, float]] = {}

    def evaluate(self) -> dict[str, dict[str, float]]:
        self.latest = {
            name: {key: float(value) for key, value in self.model.evaluate(data, verbose=0, return_dict=True).items()}
            for name, data in self.datasets.items()
        }
        return self.latest

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        for index, (name, results) in enumerate(self.evaluate().items()):
            for metric, value in results.items():
                logs[f"val_{name}_{metric}"] = value
                if index == 0:
                    logs[f"val_{metric}"] = value


def summary_tag(log_key: str, outputs: Sequence[str]) -> str:
    """TensorBoard tag of a Keras log key: ``s2_estim_psnr`` -> ``s2_estim/psnr``, ``loss`` -> ``loss``.
    Keras does not prefix the metrics of a single-output model: they belong to that output."""
    for output in outputs:
        if log_key.startswith(f"{output}_"):
            return f"{output}/{log_key[len(output) + 1 :]}"
    return f"{outputs[0]}/{log_key}" if len(outputs) == 1 and log_key != "loss" else log_key


def preview(images: Any, source: str) -> np.ndarray:
    """RGB uint8 previews (samples, rows, cols, 3) of a batch of prepared images of ``source``."""
    values = np.asarray(images, dtype=np.float32)
    bands = SOURCE_BANDS[source]
    rgb = values[..., [bands.index(band) for band in PREVIEW_BANDS[source]]]
    if source == keys.S1:
        scaled = rgb * S1_MODEL_SCALE
    else:
        scaled = np.where(rgb == S2_NODATA, 0.0, rgb * S2_MODEL_SCALE / PREVIEW_REFLECTANCE_MAX)
    return (np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


class Summaries(keras.callbacks.Callback):
    """Per-epoch TensorBoard summaries: ``<logdir>/train`` (training logs), ``<logdir>/valid_<set>`` (the
    same tags for each validation set), ``<logdir>/previews`` (inputs, outputs and targets of a fixed batch)."""

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        outputs: Sequence[str],
        validation: MultiValidation | None,
        preview_batch: tuple[dict[str, Any], dict[str, Any]] | None,
    ) -> None:
        super().__init__()
        self.logdir = Path(logdir)
        self.outputs = list(outputs)
        self.validation = validation
        self.preview_batch = preview_batch
        self._writers: dict[str, Any] = {}

    def _writer(self, run: str):
        if run not in self._writers:
            self._writers[run] = tf.summary.create_file_writer(str(self.logdir / run))
        return self._writers[run]

    def _scalars(self, run: str, values: dict[str, float], step: int) -> None:
        with self._writer(run).as_default(step=step):
            for key, value in values.items():
                tf.summary.scalar(summary_tag(key, self.outputs), value)

    def write(self, step: int, train_logs: dict[str, Any] | None) -> None:
        if train_logs:
            self._scalars(
                "train", {key: value for key, value in train_logs.items() if not key.startswith("val_")}, step
            )
        for name, results in (self.validation.latest if self.validation else {}).items():
            self._scalars(f"valid_{name}", results, step)
        if self.preview_batch is not None:
            self._previews(step)
        for writer in self._writers.values():
            writer.flush()

    def _previews(self, step: int) -> None:
        inputs, targets = self.preview_batch
        estimates = self.model(inputs, training=False)
        with self._writer("previews").as_default(step=step):
            for name, tensor in inputs.items():
                source = keys.split_key(name)[0]
                if is_image_key(name) and source in PREVIEW_BANDS:
                    tf.summary.image(f"inputs/{name}", preview(tensor, source), max_outputs=PREVIEW_SAMPLES)
            for output, tensor in targets.items():
                source = output_source(output)
                tf.summary.image(f"outputs/{output}", preview(estimates[output], source), max_outputs=PREVIEW_SAMPLES)
                tf.summary.image(f"targets/{output}", preview(tensor, source), max_outputs=PREVIEW_SAMPLES)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.write(epoch + 1, logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for writer in self._writers.values():
            writer.close()
