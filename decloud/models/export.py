"""SavedModel export, and what a SavedModel of the contract tells about itself.

``export_savedmodel`` writes the Keras model's ``serving_default`` signature (inputs named by key, free
spatial size; outputs ``s2_estim``, ``s2_estim_pad32``...) plus ``decloud_model.json`` describing inputs,
outputs, band orders and scaling. :class:`ServingModel` loads any such SavedModel and measures what tiled
inference needs: the input size multiple and the receptive field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import decloud
from decloud.core import keys
from decloud.core.atomic import atomic_directory
from decloud.core.errors import DecloudError, InputNotFoundError, InvalidArgumentError, InvalidFileError
from decloud.models.model import INPUT_SCALES, PADS, SOURCE_BANDS, Model, output_source, padded_name
from decloud.preprocessing.constants import DEM_NODATA, S1_NODATA, S2_MODEL_SCALE, S2_NODATA

SIGNATURE = "serving_default"
DESCRIPTION_FILE = "decloud_model.json"
NODATA = {keys.S1: S1_NODATA, keys.S2: S2_NODATA, keys.S2_20M: S2_NODATA, keys.DEM: DEM_NODATA}
#: Largest power of two tried as input size multiple.
MAX_SIZE_MULTIPLE = 256
#: Input size (10 m pixels) on which the receptive field is measured: it sees radii up to half of it.
RECEPTIVE_FIELD_PROBE = 640


def describe_key(name: str) -> dict[str, Any]:
    """What a user feeding input ``name`` must know: units, bands, pixel size, scaling applied in the graph."""
    try:
        source, acquisition = keys.split_key(name)
    except DecloudError:
        return {"name": name}
    spec = keys.SOURCES[source]
    if spec.channels is None:
        return {
            "name": name,
            "source": source,
            "acquisition": acquisition,
            "dtype": "float64",
            "units": "seconds since 1970-01-01 UTC",
        }
    return {
        "name": name,
        "source": source,
        "acquisition": acquisition,
        "dtype": "float32",
        "layout": "NHWC",
        "bands": list(SOURCE_BANDS[source]),
        "pixel_size_m": 10 * spec.scale,
        "values": "prepared values (as in the prepared GeoTIFFs)",
        "scale_in_graph": INPUT_SCALES[source],
        "nodata": NODATA[source],
    }


def describe_output(name: str) -> dict[str, Any]:
    base, _, pad = name.partition("_pad")
    source = output_source(base)
    scale = keys.SOURCES[source].scale
    return {
        "name": name,
        "source": source,
        "bands": list(SOURCE_BANDS[source]),
        "pixel_size_m": 10 * scale,
        "values": f"prepared units (reflectance / {S2_MODEL_SCALE:g})",
        "cropped_pixels_per_side": int(pad) // scale if pad else 0,
    }


def model_description(model: Model) -> dict[str, Any]:
    names = model.output_names()
    return {
        "decloud_version": decloud.__version__,
        "model": model.name,
        "params": model.get_config(),
        "inputs": [describe_key(name) for name in model.input_keys()],
        "outputs": [describe_output(name) for name in names + [padded_name(n, pad) for n in names for pad in PADS]],
        "targets": model.target_keys(),
        "size_multiple": model.size_multiple,
    }


def export_savedmodel(keras_model: keras.Model, model: Model, path: str | os.PathLike[str]) -> Path:
    """Write ``keras_model`` (built from ``model``) as a SavedModel folder, atomically."""
    with atomic_directory(path) as temporary:
        keras_model.export(str(temporary), format="tf_saved_model", verbose=False)
        (temporary / DESCRIPTION_FILE).write_text(json.dumps(model_description(model), indent=2) + "\n")
    return Path(path)


def read_description(path: Path) -> dict[str, Any]:
    """The model description JSON at ``path`` (``decloud_model.json`` in a SavedModel, ``<name>.json`` beside
    an ONNX model), empty when there is none; a damaged one is an error naming it."""
    if not path.is_file():
        return {}
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidFileError(path, f"not a valid model description (JSON): {error}") from None
    if not isinstance(description, dict):
        raise InvalidFileError(path, "not a model description: expected a JSON object")
    return description


class ServingModel:
    """The ``serving_default`` signature of a SavedModel, called with numpy dicts."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_file():
            onnx = self.path.suffix.lower() == ".onnx"
            hint = " (this one is an ONNX model: give the SavedModel it was exported from)" if onnx else ""
            raise InvalidArgumentError(f"{self.path} is a file; a SavedModel is a folder holding saved_model.pb{hint}")
        if not (self.path / "saved_model.pb").is_file():
            raise InputNotFoundError(self.path / "saved_model.pb", "SavedModel")
        try:
            self._loaded = tf.saved_model.load(str(self.path))  # keeps the signature's variables alive
        except (tf.errors.OpError, OSError, ValueError, IndexError, KeyError) as error:  # truncated, foreign files
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise InvalidFileError(self.path, f"cannot load the SavedModel (damaged or incomplete): {reason}") from None
        if SIGNATURE not in self._loaded.signatures:
            raise InvalidFileError(self.path, f"no {SIGNATURE!r} signature (has {list(self._loaded.signatures)})")
        self.signature = self._loaded.signatures[SIGNATURE]
        self.inputs: dict[str, tf.TensorSpec] = dict(self.signature.structured_input_signature[1])
        self.outputs: list[str] = sorted(self.signature.structured_outputs)
        self.description = read_description(self.path / DESCRIPTION_FILE)

    def main_outputs(self) -> list[str]:
        return [name for name in self.outputs if "_pad" not in name]

    def __call__(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        tensors = {name: tf.convert_to_tensor(feed[name], spec.dtype) for name, spec in self.inputs.items()}
        return {name: value.numpy() for name, value in self.signature(**tensors).items()}

    def probe_inputs(self, size: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """Plausible prepared values for every input, ``size`` 10 m pixels wide."""
        rng = np.random.default_rng(seed)
        feed = {}
        for name, spec in self.inputs.items():
            source = keys.split_key(name)[0]
            if spec.shape.rank == 1:
                feed[name] = 1.6e9 + 86400.0 * rng.uniform(-20, 20, batch)
                continue
            side = size // keys.SOURCES[source].scale
            low, high = (1, 65535) if source == keys.S1 else (0, 4000)
            feed[name] = rng.uniform(low, high, (batch, side, side, spec.shape[-1]))
        return {name: value.astype(self.inputs[name].dtype.as_numpy_dtype) for name, value in feed.items()}

    def _runs_at(self, size: int) -> bool:
        """Whether inputs ``size`` pixels wide give main outputs of the same extent."""
        try:
            outputs = self(self.probe_inputs(size))
        except tf.errors.InvalidArgumentError:
            return False
        return all(
            outputs[name].shape[1:3] == (size // keys.SOURCES[output_source(name)].scale,) * 2
            for name in self.main_outputs()
        )

    def size_multiple(self) -> int:
        """Smallest power of two m such that inputs 3m pixels wide (an odd multiple of m) give outputs of
        that size."""
        half_resolution = any(
            keys.SOURCES[keys.split_key(name)[0]].scale > 1 for name in self.inputs if self.inputs[name].shape.rank == 4
        )
        multiple = 2 if half_resolution else 1
        while multiple <= MAX_SIZE_MULTIPLE:
            if self._runs_at(3 * multiple):
                return multiple
            multiple *= 2
        raise InvalidFileError(
            self.path, f"the model runs on no input size of the form 3 x 2^k up to {3 * MAX_SIZE_MULTIPLE}"
        )

    def receptive_field_radius(self, multiple: int) -> tuple[int, bool]:
        """(radius in 10 m pixels of the input area that influences one output pixel, whether it reached the
        edge of the probe), from the gradient of a central output pixel of the first main output."""
        size = -(-RECEPTIVE_FIELD_PROBE // multiple) * multiple
        feed = {name: tf.convert_to_tensor(value) for name, value in self.probe_inputs(size).items()}
        images = [name for name, spec in self.inputs.items() if spec.shape.rank == 4]
        output = self.main_outputs()[0]
        scale_out = keys.SOURCES[output_source(output)].scale
        with tf.GradientTape() as tape:
            for name in images:
                tape.watch(feed[name])
            centre = size // (2 * scale_out)
            value = tf.reduce_sum(self.signature(**feed)[output][0, centre, centre, :])
        gradients = tape.gradient(value, [feed[name] for name in images])
        radius, reached = 0, False
        for name, gradient in zip(images, gradients, strict=True):
            if gradient is None:
                continue
            scale = keys.SOURCES[keys.split_key(name)[0]].scale
            rows, cols = np.nonzero(np.abs(gradient.numpy()[0]).sum(axis=-1))
            if rows.size:
                centre_in = (centre * scale_out) // scale
                extent = max(np.abs(rows - centre_in).max(), np.abs(cols - centre_in).max())
                radius = max(radius, int(extent) * scale)
                last = size // scale - 1
                reached |= bool(min(rows.min(), cols.min()) == 0 or max(rows.max(), cols.max()) == last)
        return radius, reached
