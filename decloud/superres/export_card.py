"""Export one of our x2 / x4 super-resolution SavedModels in the format of the ``sentinel2_superresolution``
tool: ``python -m decloud.superres.export_card`` (or ``decloud superres-export-onnx``).

    decloud superres-export-onnx --savedmodel superres_x2/ --output carn_x2.yaml   # writes carn_x2.onnx too

The ONNX graph takes ``input``, float32 ``[1, C, H, W]``: the model's bands in its order (B2 B3 B4 B8, then
B5 B6 B7 B8A B11 B12) on the 10 m grid, reflectance x1e4, and returns ``[1, C, H * factor, W * factor]``.
No-data (NaN, as the tool feeds it) becomes the prepared no-data value (-10000), as our SavedModels
receive it. The card's ``margin`` is the model's margin in output pixels. The network is rebuilt from the SavedModel's
description and given its weights (matched by name); the export is checked against the SavedModel's own
outputs with onnxruntime.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from decloud.core.atomic import atomic_file
from decloud.core.cli import run_command
from decloud.core.constants import S2_MODEL_SCALE, S2_NODATA
from decloud.core.errors import InvalidArgumentError
from decloud.models.onnx_conversion import DEFAULT_OPSET, OnnxExportError
from decloud.superres.backends import SavedModelSuperres, stack_bands
from decloud.superres.model_card import ONNX_INPUT, write_model_card
from decloud.superres.models import S2_20M_KEY, S2_KEY, SuperresCarn

#: Largest difference, in prepared units (x1e4), tolerated between the ONNX export and the SavedModel.
TOLERANCE = 0.05
CHECK_SIZE = 48


def restore_network(backend: SavedModelSuperres) -> keras.Model:
    """The architecture's upsampler network with the SavedModel's weights."""
    model = backend.architecture
    if not isinstance(model, SuperresCarn):
        raise InvalidArgumentError(
            f"{backend.saved.path} is a {model.name} model: only superres_carn upsamplers have the tool's format "
            "(same bands in and out)"
        )
    model.model()  # builds the network inside the model, as it was trained
    network = model.network()
    saved = {variable.name.split(":")[0]: variable for variable in backend.saved.serving._loaded.variables}
    for weight in network.weights:
        if weight.path not in saved:
            raise OnnxExportError(f"{backend.saved.path} has no weight {weight.path} of {model.name}")
        weight.assign(saved[weight.path].numpy())
    return network


def export_card(savedmodel: str | os.PathLike[str], output: str | os.PathLike[str], opset: int = DEFAULT_OPSET) -> Path:
    """Write ``output`` (the YAML card) and the ONNX model beside it (same stem); return the card's path."""
    import tf2onnx

    output = Path(output)
    if output.suffix.lower() not in (".yaml", ".yml"):
        raise InvalidArgumentError(f"--output {output} must be a .yaml model card (the .onnx goes beside it)")
    backend = SavedModelSuperres(savedmodel)
    network = restore_network(backend)
    bands = len(backend.bands)

    @tf.function(input_signature=[tf.TensorSpec([1, bands, None, None], tf.float32, name=ONNX_INPUT)])
    def anchor_graph(images):
        images = tf.where(tf.math.is_nan(images), tf.constant(S2_NODATA, tf.float32), images)
        reflectance = tf.transpose(images, [0, 2, 3, 1]) * S2_MODEL_SCALE
        return tf.transpose(network(reflectance) / S2_MODEL_SCALE, [0, 3, 1, 2])

    onnx_path = output.with_suffix(".onnx")
    with atomic_file(onnx_path) as temporary:
        try:
            tf2onnx.convert.from_function(anchor_graph, input_signature=anchor_graph.input_signature, opset=opset,
                                          output_path=str(temporary))  # fmt: skip
        except Exception as error:  # tf2onnx raises anything
            raise OnnxExportError(f"tf2onnx could not convert {savedmodel}: {type(error).__name__}: {error}") from error
        _check(temporary, backend)
        margin = backend.margin * backend.factor
        card = write_model_card(output, onnx_path.name, backend.bands, margin, backend.factor)
    return card


def _check(onnx_path: Path, backend: SavedModelSuperres) -> None:
    """The ONNX model, fed as the tool feeds it, gives the SavedModel's output (away from the borders)."""
    import onnxruntime

    rng = np.random.default_rng(0)
    inputs = {S2_KEY: rng.uniform(0, 4000, (1, CHECK_SIZE, CHECK_SIZE, 4)).astype(np.float32)}
    if S2_20M_KEY in backend.inputs:
        inputs[S2_20M_KEY] = rng.uniform(0, 4000, (1, CHECK_SIZE // 2, CHECK_SIZE // 2, 6)).astype(np.float32)
    expected = backend.estimate(inputs)
    stack = stack_bands(inputs, backend.bands).transpose(0, 3, 1, 2)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {ONNX_INPUT: np.ascontiguousarray(stack)})
    difference = float(np.abs(actual.transpose(0, 2, 3, 1) - expected).max())
    if difference > TOLERANCE:
        raise OnnxExportError(f"the ONNX export differs from {backend.saved.path} by up to {difference:g}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud superres-export-onnx",
        description="Write a superres_carn SavedModel as a sentinel2_superresolution model: a YAML model card "
        "and its ONNX model (input 'input', NCHW, the model's bands on the 10 m grid, margin in output pixels).",
    )
    parser.add_argument("--savedmodel", type=Path, required=True, help="superres_carn SavedModel folder")
    parser.add_argument("--output", type=Path, required=True, help="model card to write (.yaml; the .onnx beside)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), lambda args: export_card(args.savedmodel, args.output, args.opset), argv)


if __name__ == "__main__":
    sys.exit(main())
