"""The YAML model card of the ``sentinel2_superresolution`` tool, read and written here so that models
move both ways between the tools::

    model: model.onnx        # ONNX file, relative to the card
    bands: [B2, B3, B4, B8, B5, B6, B7, B8A, B11, B12]
    margin: 32               # output pixels to discard on each side of a chunk
    factor: 2.0              # 2.0 or 4.0

The ONNX model's input is named ``input``: float32 ``[1, C, H, W]``, the bands of ``bands`` in that order on
the 10 m grid (20 m bands resampled to 10 m), reflectance as read (x1e4), NaN for no-data; its output is
``[1, C, H * factor, W * factor]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from decloud.core.atomic import atomic_file
from decloud.core.errors import DecloudError, InputNotFoundError, InvalidFileError
from decloud.superres.bands import check_bands, check_factor

CARD_KEYS = ("model", "bands", "margin", "factor")
#: Name of the ONNX model's input.
ONNX_INPUT = "input"


@dataclass(frozen=True)
class ModelCard:
    onnx: Path  #: absolute path of the ONNX file
    bands: list[str]
    margin: int  #: output pixels
    factor: int


def is_model_card(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in (".yaml", ".yml")


def read_model_card(path: str | os.PathLike[str]) -> ModelCard:
    """The card at ``path``, checked: every key present, known bands, factor 2 or 4, an existing ONNX file."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(path, "model card (YAML)")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InvalidFileError(path, f"not valid YAML ({error})") from error
    if not isinstance(content, dict):
        raise InvalidFileError(path, f"a model card is a mapping with the keys {', '.join(CARD_KEYS)}")
    missing = [key for key in CARD_KEYS if key not in content]
    if missing:
        raise InvalidFileError(path, f"missing key(s) {', '.join(missing)} (a model card has {', '.join(CARD_KEYS)})")
    try:
        bands = check_bands([str(band) for band in content["bands"]], f"{path} key bands")
        factor = check_factor(float(content["factor"]))
        margin = int(content["margin"])
    except (TypeError, ValueError) as error:
        raise InvalidFileError(path, f"bad value ({error})") from error
    except DecloudError as error:
        raise InvalidFileError(path, str(error)) from error
    if margin < 0:
        raise InvalidFileError(path, f"margin {margin} is negative")
    onnx = (path.parent / str(content["model"])).resolve()
    if not onnx.is_file():
        raise InputNotFoundError(onnx, f"ONNX model named by {path}")
    return ModelCard(onnx, bands, margin, factor)


def write_model_card(path: str | os.PathLike[str], onnx_name: str, bands: list[str], margin: int, factor: int) -> Path:
    """Write a card naming ``onnx_name`` (a file beside the card), atomically."""
    text = yaml.safe_dump(
        {"model": onnx_name, "bands": list(bands), "margin": int(margin), "factor": float(factor)}, sort_keys=False
    )
    with atomic_file(path) as temporary:
        temporary.write_text(text)
    return Path(path)
