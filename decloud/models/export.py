"""SavedModel export, and what a SavedModel of the contract tells about itself.

``export_savedmodel`` writes the Keras model's ``serving_default`` signature (inputs named by key, free
spatial size; outputs ``s2_estim``, ``s2_estim_pad32``...) plus ``decloud_model.json`` describing inputs,
outputs, band orders and scaling. :class:`ServingModel` loads any such SavedModel and measures what tiled
inference needs: the input size multiple and the receptive field. Outputs are expected at the pixel size the
description gives them (finer than their source's for super-resolution), else at their source's.

The receptive field is measured when a SavedModel is exported and written in its description, from which
the ONNX metadata copies it: :func:`tiling_description` is the one rule that turns it into the margin the
streaming engine uses by default (``--pad``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import decloud
from decloud.acquisitions.transplant import CLOUDY_AS_ACQUIRED, DESCRIPTION_KEY
from decloud.core import keys
from decloud.core.atomic import atomic_directory
from decloud.core.constants import DAY, DEM_NODATA, S1_NODATA, S2_MODEL_SCALE, S2_NODATA
from decloud.core.errors import DecloudError, InputNotFoundError, InvalidArgumentError, InvalidFileError
from decloud.models.model import INPUT_SCALES, PADS, SOURCE_BANDS, Model, output_source, padded_name

SIGNATURE = "serving_default"
DESCRIPTION_FILE = "decloud_model.json"
#: No-data of each image input (days maps have none: where no image was chosen, the image is no-data).
NODATA = {keys.S1: S1_NODATA, keys.S2: S2_NODATA, keys.S2_20M: S2_NODATA, keys.DEM: DEM_NODATA, keys.S2_DAYS: None}
#: Largest power of two tried as input size multiple.
MAX_SIZE_MULTIPLE = 256
#: Smallest and largest input sizes (10 m pixels) on which the receptive field is measured: the probe
#: doubles until the influence of its centre stays inside it (the largest sees radii up to about half of it).
RECEPTIVE_FIELD_PROBES = (64, 1024)


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
        "values": "days from the target date to the image, per pixel (negative before)"
        if source == keys.S2_DAYS
        else "prepared values (as in the prepared GeoTIFFs)",
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


def model_description(model: Model, cloudy_pixels: str = CLOUDY_AS_ACQUIRED) -> dict[str, Any]:
    """What a user (and the processors) must know of an exported model; ``cloudy_pixels`` tells how the cloudy
    pixels of the image to reconstruct were shown to it in training (:mod:`decloud.acquisitions.transplant`)."""
    names = model.output_names()
    return {
        "decloud_version": decloud.__version__,
        "model": model.name,
        "params": model.get_config(),
        "inputs": [describe_key(name) for name in model.input_keys()],
        "outputs": model.describe_outputs(
            [describe_output(name) for name in names + [padded_name(n, pad) for n in names for pad in PADS]]
        ),
        "targets": model.target_keys(),
        DESCRIPTION_KEY: cloudy_pixels,
    }


def tiling_description(serving: ServingModel, multiple: int) -> dict[str, Any]:
    """The measured receptive field of ``serving`` and the margin to use when tiling: the radius rounded up
    to the size multiple (the default ``--pad``), and for OTBTF-style users the smallest cropped outputs
    (``s2_estim_padN``) whose pixels do not depend on the tile borders."""
    radius, beyond_probe = serving.receptive_field(multiple)
    pads = [pad for pad in PADS if pad >= radius]
    crop = pads[0] if pads else PADS[-1]
    cropped = [padded_name(name, crop) for name in serving.main_outputs() if padded_name(name, crop) in serving.outputs]
    note = (
        f"run on overlapping tiles (sizes and margins multiples of {multiple}) with margins of at least the "
        "receptive field radius"
    )
    if cropped:  # models without cropped copies (super-resolution) only get the margin
        note += f"; the {crop}-pixel cropped outputs do not depend on the tile borders" + (
            "" if radius <= crop else " (approximately: the receptive field is wider than the largest crop)"
        )
    return {
        "receptive_field": {"radius_10m_pixels": radius, "at_least": beyond_probe},
        "tiling": {"margin_10m_pixels": -(-radius // multiple) * multiple, "cropped_outputs": cropped, "note": note},
    }


def tiling_margin(serving: ServingModel) -> int:
    """The margin (10 m pixels) to tile ``serving`` with: the one its description gives (measured at export by
    :func:`tiling_description`), measured now for a SavedModel exported without it."""
    margin = serving.description.get("tiling", {}).get("margin_10m_pixels")
    if margin is None:
        return tiling_description(serving, serving.size_multiple())["tiling"]["margin_10m_pixels"]
    return int(margin)


def export_savedmodel(
    keras_model: keras.Model, model: Model, path: str | os.PathLike[str], cloudy_pixels: str = CLOUDY_AS_ACQUIRED
) -> Path:
    """Write ``keras_model`` (built from ``model``) as a SavedModel folder, atomically, with its description
    including the receptive field measured on the exported signature."""
    with atomic_directory(path) as temporary:
        keras_model.export(str(temporary), format="tf_saved_model", verbose=False)
        description = model_description(model, cloudy_pixels)
        serving = ServingModel(temporary, description)
        description["size_multiple"] = serving.size_multiple()
        description.update(tiling_description(serving, description["size_multiple"]))
        (temporary / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2) + "\n")
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

    def __init__(self, path: str | os.PathLike[str], description: dict[str, Any] | None = None) -> None:
        """``description``: the one the SavedModel will hold, when it is measured before it is written."""
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
        self.description = read_description(self.path / DESCRIPTION_FILE) if description is None else description

    def main_outputs(self) -> list[str]:
        return [name for name in self.outputs if "_pad" not in name]

    def output_pixel_size(self, name: str) -> float:
        """Pixel size of main output ``name``, in 10 m pixels: as the description gives it (0.5 for a x2
        super-resolution output), else its source's."""
        for output in self.description.get("outputs", []):
            if isinstance(output, dict) and output.get("name") == name and "pixel_size_m" in output:
                return float(output["pixel_size_m"]) / 10
        return float(keys.SOURCES[output_source(name)].scale)

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
                feed[name] = 1.6e9 + DAY * rng.uniform(-20, 20, batch)
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
        expected = {name: round(size / self.output_pixel_size(name)) for name in self.main_outputs()}
        return all(outputs[name].shape[1:3] == (side, side) for name, side in expected.items())

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

    def receptive_field(self, multiple: int) -> tuple[int, bool]:
        """(radius in 10 m pixels of the input area that influences an output pixel, whether it may be wider:
        it reached the edge of the largest probe).

        Measured by forward runs only (memory stays that of inference): a block of ``multiple`` x ``multiple``
        input pixels at the centre of a probe is changed in every image input, and the radius is how far
        beyond the block the main outputs change. A whole block covers every position modulo the size
        multiple, so the pooling levels of a U-Net cannot hide a wider field at another position.
        """
        smallest, largest = RECEPTIVE_FIELD_PROBES
        size = -(-max(smallest, 4 * multiple) // multiple) * multiple
        while True:
            radius, reached = self._influence(size, multiple)
            if not reached or size >= largest:
                return radius, reached
            size *= 2

    def _influence(self, size: int, multiple: int) -> tuple[int, bool]:
        """Radius (10 m pixels) beyond the central block over which the outputs of a ``size`` probe change
        when the block changes, and whether the change reached the probe's edge."""
        feed = self.probe_inputs(size, batch=2)
        start = size // 2 // multiple * multiple
        for name, spec in self.inputs.items():
            changed = feed[name][1].copy()
            feed[name][1] = feed[name][0]
            if spec.shape.rank == 4:
                scale = keys.SOURCES[keys.split_key(name)[0]].scale
                block = slice(start // scale, (start + multiple) // scale)
                feed[name][1, block, block] = changed[block, block]
        outputs = self(feed)
        radius, reached = 0, False
        for name in self.main_outputs():
            scale = self.output_pixel_size(name)
            rows, cols = np.nonzero(np.any(outputs[name][0] != outputs[name][1], axis=-1))
            for positions, extent in zip((rows, cols), outputs[name].shape[1:3], strict=True):
                if positions.size:
                    beyond = max(start - positions.min() * scale, (positions.max() + 1) * scale - start - multiple)
                    radius = max(radius, math.ceil(beyond))
                    reached |= bool(positions.min() == 0 or positions.max() == extent - 1)
        return radius, reached
