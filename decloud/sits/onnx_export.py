"""``decloud sits-export-onnx``: a time-series encoder as ONNX, with a JSON metadata file beside it (inputs, bands,
normalisation, longest view length, day-number convention), checked against the Keras encoder with onnxruntime.

    decloud sits-export-onnx --encoder encoder/ --output encoder.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from decloud.core.atomic import atomic_file
from decloud.core.cli import run_command
from decloud.models.onnx_conversion import (
    DEFAULT_OPSET,
    RELATIVE_TOLERANCE,
    TOLERANCE,
    OnnxExportError,
    _convert,
    run_onnx,
)
from decloud.sits.pretrain import load_encoder

#: Pixels and observations of the agreement check (one pixel's last observations are padding).
CHECK_PIXELS, CHECK_LENGTH = 4, 9


def _check_inputs(bands: int, mean: Sequence[float], std: Sequence[float]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    values = (np.asarray(mean) + rng.normal(size=(CHECK_PIXELS, CHECK_LENGTH, bands)) * np.asarray(std)).astype(
        np.float32
    )
    doys = np.sort(rng.integers(1, 366, (CHECK_PIXELS, CHECK_LENGTH)), axis=1).astype(np.float32)
    mask = np.ones((CHECK_PIXELS, CHECK_LENGTH), np.float32)
    mask[0, -3:] = 0
    return {"values": values, "doys": doys, "mask": mask}


def export_encoder_onnx(
    encoder_dir: str | os.PathLike[str], output: str | os.PathLike[str], opset: int = DEFAULT_OPSET
) -> Path:
    """Write ``output`` (.onnx) and its ``.json`` metadata; an export that disagrees with Keras is an error."""
    encoder, metadata = load_encoder(encoder_dir)
    output = Path(output)
    feed = _check_inputs(len(metadata["bands"]), metadata["band_mean"], metadata["band_std"])
    expected = np.asarray(encoder.predict(feed, verbose=0))
    with tempfile.TemporaryDirectory() as work, atomic_file(output) as onnx_file:
        encoder.export(str(Path(work) / "savedmodel"), format="tf_saved_model", verbose=False)
        _convert(Path(work) / "savedmodel", onnx_file, opset)
        (actual,) = run_onnx(onnx_file, feed).values()
        difference = float(np.abs(actual - expected).max())
        tolerance = TOLERANCE * 1e-2 + RELATIVE_TOLERANCE * float(np.abs(expected).max())
        if not difference <= tolerance:
            raise OnnxExportError(f"ONNX and Keras encoders differ by up to {difference:g} (tolerance {tolerance:g})")
        description = {
            **{
                key: metadata.get(key)
                for key in (
                    "source",
                    "bands",
                    "band_mean",
                    "band_std",
                    "inputs",
                    "max_length",
                    "doy_convention",
                    "reference_year",
                    "dim",
                )
            },
            "onnx": output.name,
            "opset": opset,
            "output": f"(batch, {metadata.get('dim')}) float32 representation",
            "check": {"max_abs_difference": difference, "tolerance": tolerance},
        }
        with atomic_file(output.with_suffix(".json")) as temporary:
            temporary.write_text(json.dumps(description, indent=2) + "\n")
    return output


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud sits-export-onnx",
        description="Export a time-series encoder (decloud sits-pretrain) to ONNX, with <output>.json giving its "
        "inputs (values, doys, mask), bands, normalisation, longest view length and day-number convention.",
    )
    parser.add_argument("--encoder", required=True, help="encoder folder written by decloud sits-pretrain")
    parser.add_argument("--output", required=True, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), lambda args: export_encoder_onnx(args.encoder, args.output, args.opset), argv)


if __name__ == "__main__":
    sys.exit(main())
