"""SavedModel -> ONNX, with a JSON metadata file beside the ONNX model.

The conversion (tf2onnx) is checked against the SavedModel on plausible inputs with onnxruntime: an export
that lacks an output or disagrees is an error, not a file.

The metadata (``model.json`` beside ``model.onnx``) says what a user of the ONNX model must know: inputs
(keys, bands, pixel size, prepared units and the scaling done inside the graph), outputs, the input size
multiple, and the receptive field with the cropped output (margin) to use when tiling.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

import decloud
from decloud.acquisitions.transplant import CLOUDY_AS_ACQUIRED, DESCRIPTION_KEY
from decloud.core.atomic import SIGNATURE_KEY, atomic_outputs, outputs_to_write, skip_message
from decloud.core.errors import DecloudError
from decloud.core.paths import require_output_file
from decloud.models.export import SIGNATURE, ServingModel, describe_key, describe_output, tiling_description

DEFAULT_OPSET = 17
#: Largest difference tolerated between ONNX and SavedModel outputs: prepared units, plus float32 rounding
#: relative to the largest output value (untrained networks can output 1e5 and more).
TOLERANCE = 1e-2
RELATIVE_TOLERANCE = 2e-6
#: Size (10 m pixels, rounded up to the size multiple) of the agreement check.
CHECK_SIZE = 96

log = logging.getLogger(__name__)


class OnnxExportError(DecloudError):
    """The SavedModel cannot be converted, or its ONNX version does not compute the same thing."""


def metadata_path(onnx_path: str | os.PathLike[str]) -> Path:
    return Path(onnx_path).with_suffix(".json")


def _collecting(factories: dict[str, Any]) -> dict[str, Any]:
    """tf2onnx's ONNX optimizers, each preceded by a garbage collection. tf2onnx deep-copies the whole graph
    (weights included) before each optimizer so as to restore it if the optimizer fails; the discarded
    copies hold reference cycles that Python's collector reaches only rarely once TensorFlow is loaded, so
    they piled up to half a gigabyte for the default crga model (7 MB of weights)."""

    def collected(factory: Any) -> Any:
        def make() -> Any:
            gc.collect()
            return factory()

        return make

    return {name: collected(factory) for name, factory in factories.items()}


def _convert(savedmodel: Path, output: Path, opset: int) -> None:
    """tf2onnx's saved-model path (as ``python -m tf2onnx.convert --saved-model``: the graph is loaded,
    frozen and optimised once, then converted). tf2onnx keeps going past an operation it cannot convert:
    :func:`compare` then catches the difference."""
    import onnx
    import tensorflow as tf
    from tf2onnx import optimizer, tf_loader
    from tf2onnx.tfonnx import process_tf_graph

    try:
        graph_def, inputs, outputs, renames = tf_loader.from_saved_model(
            str(savedmodel), None, None, signatures=[SIGNATURE], return_tensors_to_rename=True
        )
        with tf.Graph().as_default() as tf_graph:
            tf.import_graph_def(graph_def, name="")
            del graph_def
            graph = process_tf_graph(
                tf_graph, continue_on_error=True, opset=opset, input_names=inputs, output_names=outputs,
                tensors_to_rename=renames,
            )  # fmt: skip
        del tf_graph
        optimizers = _collecting(optimizer._get_optimizers())  # tf2onnx's list, in its order
        model_proto = optimizer.optimize_graph(graph, catch_errors=True, optimizers=optimizers).make_model(
            f"converted from {savedmodel.name}"
        )
    except Exception as error:  # tf2onnx raises anything; the message names the SavedModel at fault
        raise OnnxExportError(f"tf2onnx could not convert {savedmodel}: {type(error).__name__}: {error}") from error
    finally:
        gc.collect()  # the TensorFlow graph and tf2onnx's copies, before the agreement check runs both models
    signature = model_proto.metadata_props.add()  # tells a later run that decloud wrote this file
    signature.key, signature.value = SIGNATURE_KEY, decloud.__version__
    onnx.save(model_proto, str(output))


def run_onnx(onnx_path: str | os.PathLike[str], feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs (name -> array) of an ONNX model run with onnxruntime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {i.name: feed[i.name] for i in session.get_inputs()}), strict=True))


def compare(onnx_path: Path, serving: ServingModel, size: int) -> dict[str, Any]:
    """Agreement of ONNX and SavedModel outputs on two plausible samples; an error beyond tolerance."""
    feed = serving.probe_inputs(size, batch=2, seed=1)
    expected, actual = serving(feed), run_onnx(onnx_path, feed)
    missing = sorted(set(expected) - set(actual))
    if missing:
        raise OnnxExportError(f"the ONNX model lacks outputs {missing}")
    difference = max(float(np.max(np.abs(expected[name] - actual[name]), initial=0.0)) for name in expected)
    largest = max(float(np.max(np.abs(value), initial=0.0)) for value in expected.values())
    tolerance = TOLERANCE + RELATIVE_TOLERANCE * largest
    if not difference <= tolerance:
        raise OnnxExportError(f"ONNX and SavedModel outputs differ by up to {difference:g} (tolerance {tolerance:g})")
    return {"max_abs_difference": difference, "max_abs_output": largest, "tolerance": tolerance, "size": size}


def onnx_metadata(serving: ServingModel, onnx_name: str, opset: int, check: dict[str, Any]) -> dict[str, Any]:
    """What a user of the ONNX model must know; the receptive field and margin come from the SavedModel's
    description when it has them (measured at export), else they are measured here."""
    multiple = serving.size_multiple()
    tiling = {name: serving.description[name] for name in ("receptive_field", "tiling") if name in serving.description}
    if len(tiling) < 2:
        tiling = tiling_description(serving, multiple)
    return {
        "onnx": onnx_name,
        "source_savedmodel": str(serving.path.resolve()),
        SIGNATURE_KEY: decloud.__version__,
        "opset": opset,
        "model": serving.description.get("model"),
        "params": serving.description.get("params"),
        "inputs": [describe_key(name) for name in serving.inputs],
        "outputs": [describe_output(name) for name in serving.outputs],
        "size_multiple": multiple,
        DESCRIPTION_KEY: serving.description.get(DESCRIPTION_KEY, CLOUDY_AS_ACQUIRED),
        **tiling,
        "check": check,
    }


def export_onnx(
    savedmodel: str | os.PathLike[str],
    output: str | os.PathLike[str],
    opset: int = DEFAULT_OPSET,
    *,
    overwrite: bool = False,
) -> Path:
    """Convert ``savedmodel`` to ONNX at ``output`` and write its metadata beside it; returns the metadata path.
    Both are published together, the metadata last; an export already written is kept unless ``overwrite``."""
    savedmodel, output = Path(savedmodel), require_output_file(output, "ONNX model")
    require_output_file(metadata_path(output), "ONNX model's metadata")
    if not outputs_to_write([output, metadata_path(output)], overwrite):
        log.info(skip_message([output, metadata_path(output)]))
        return metadata_path(output)
    serving = ServingModel(savedmodel)
    with atomic_outputs() as outputs:
        temporary_onnx, temporary_json = outputs.file(output), outputs.file(metadata_path(output))
        _convert(savedmodel, temporary_onnx, opset)
        size = -(-CHECK_SIZE // serving.size_multiple()) * serving.size_multiple()
        metadata = onnx_metadata(serving, output.name, opset, compare(temporary_onnx, serving, size))
        temporary_json.write_text(json.dumps(metadata, indent=2) + "\n")
    log.info("wrote %s and %s", output, metadata_path(output))
    return metadata_path(output)
