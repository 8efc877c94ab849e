"""Super-resolution models as backends of the streaming engine, whatever their format.

The engine feeds ``s2_t`` (the 10 m bands, 10 m grid) and, when the model reads 20 m bands, ``s2_20m_t``
(20 m grid); every backend here returns ``sisr`` (the model's bands on the output grid, in its band order)
and, on demand, ``bicubic`` (the same bands upsampled by the bicubic layer, for comparison):

- :class:`SavedModelSuperres`: our SavedModels (``superres_carn``, ``sharpen_carn`` and the baselines), their
  outputs concatenated in band order;
- :class:`ModelCardSuperres`: an ONNX model described by a YAML card of the ``sentinel2_superresolution``
  tool (NCHW ``input`` of the card's bands on the 10 m grid, NaN for no-data).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from decloud.core.constants import S2_BANDS_10M, S2_BANDS_20M, S2_NODATA
from decloud.core.errors import InputNotFoundError, InvalidArgumentError
from decloud.models.export import tiling_margin
from decloud.models.model import SOURCE_BANDS
from decloud.models.registry import create_model
from decloud.production.backends import ModelBackend, ModelError, SavedModelBackend
from decloud.superres.bands import check_bands
from decloud.superres.model_card import ONNX_INPUT, ModelCard, is_model_card, read_model_card
from decloud.superres.models import S2_20M_KEY, S2_KEY, SuperresModel
from decloud.superres.upsampling import upsample

SISR = "sisr"
BICUBIC = "bicubic"
#: Side of the probe image fed to an ONNX model to check its channels and factor.
PROBE_SIDE = 8


def _fed_keys(bands: Sequence[str]) -> dict[str, int]:
    fed = {S2_KEY: len(S2_BANDS_10M)}
    if any(band in S2_BANDS_20M for band in bands):
        fed[S2_20M_KEY] = len(S2_BANDS_20M)
    return fed


def stack_bands(inputs: Mapping[str, np.ndarray], bands: Sequence[str]) -> np.ndarray:
    """(1, rows, cols, len(bands)) float32: ``bands`` on the 10 m grid, the 20 m ones bicubic-upsampled."""
    planes = {band: inputs[S2_KEY][..., index] for index, band in enumerate(S2_BANDS_10M)}
    if S2_20M_KEY in inputs:
        fine = upsample(inputs[S2_20M_KEY], 2)  # as our models do in their graph (no-data areas stay -10000)
        planes.update({band: fine[..., index] for index, band in enumerate(S2_BANDS_20M)})
    return np.stack([planes[band] for band in bands], axis=-1).astype(np.float32)


class SuperresBackend(ModelBackend):
    """A super-resolution model: ``factor`` (output pixels per 10 m pixel), ``bands`` it returns,
    ``margin`` (10 m pixels) tiled inference needs. ``run`` returns the ``output_bands`` (all of ``bands``
    unless :meth:`select_bands` chose some)."""

    factor: int  #: 1 for 20 m -> 10 m sharpening
    bands: list[str]
    margin: int
    with_bicubic: bool = False
    _selected: list[str] | None = None

    @property
    def output_bands(self) -> list[str]:
        return list(self.bands) if self._selected is None else list(self._selected)

    def select_bands(self, bands: Sequence[str], source: str | os.PathLike[str]) -> None:
        """Return only ``bands`` (in that order), which must be bands the model gives; a clear error otherwise."""
        check_bands(list(bands), "--bands")
        missing = [band for band in bands if band not in self.bands]
        if missing:
            raise InvalidArgumentError(
                f"--bands {' '.join(missing)}: not given by the model {source} (its bands: {' '.join(self.bands)})"
            )
        self._selected = list(bands)

    def bicubic(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.factor == 1:  # sharpening: the 20 m bands upsampled to 10 m
            return stack_bands(inputs, self.output_bands)
        return upsample(stack_bands(inputs, self.output_bands), self.factor)

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        results = {}
        if SISR in outputs:
            estimate = self.estimate(inputs)
            if self._selected is not None:
                estimate = estimate[..., [self.bands.index(band) for band in self._selected]]
            results[SISR] = estimate
        if BICUBIC in outputs:
            results[BICUBIC] = self.bicubic(inputs)
        return results

    def estimate(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class SavedModelSuperres(SuperresBackend):
    """One of our super-resolution SavedModels (its ``decloud_model.json`` names the architecture)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.saved = SavedModelBackend(path)
        description = self.saved.serving.description
        name = description.get("model")
        model = create_model(name, **description.get("params", {})) if name else None
        if not isinstance(model, SuperresModel):
            raise ModelError(f"{path} is not a super-resolution SavedModel (its model: {name or 'not described'})")
        self.architecture = model
        self.factor = round(1 / model.output_scale)
        self.sources = model.output_sources()
        self.bands = [band for source in self.sources for band in SOURCE_BANDS[source]]
        self.margin = tiling_margin(self.saved.serving)  # measured on the exported model
        self.inputs = dict(self.saved.inputs)
        self.outputs = [SISR, BICUBIC]

    def estimate(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        names = [f"{source}_estim" for source in self.sources]
        results = self.saved.run(inputs, names)
        return np.concatenate([results[name] for name in names], axis=-1)


class ModelCardSuperres(SuperresBackend):
    """An ONNX model described by a ``sentinel2_superresolution`` YAML card, run by onnxruntime."""

    def __init__(self, card: ModelCard, card_path: str | os.PathLike[str]) -> None:
        import onnxruntime

        self.card_path = Path(card_path)
        if not card.onnx.is_file():
            raise InputNotFoundError(card.onnx, "ONNX model")
        try:
            self._session = onnxruntime.InferenceSession(str(card.onnx), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's exception types are not importable portably
            raise ModelError(f"cannot load ONNX model {card.onnx}: {error}") from error
        names = [node.name for node in self._session.get_inputs()]
        if names != [ONNX_INPUT]:
            raise ModelError(f"{card.onnx} must have one input named {ONNX_INPUT!r}, not {names}")
        self.bands, self.factor = list(card.bands), card.factor
        self.margin = -(-card.margin // card.factor)
        self._output = self._session.get_outputs()[0].name
        self._check_shapes(card)
        self.inputs = _fed_keys(self.bands)
        self.outputs = [SISR, BICUBIC]

    def _check_shapes(self, card: ModelCard) -> None:
        """Fail before any work when the ONNX model's channels or factor differ from the card's."""
        channels = self._session.get_inputs()[0].shape[1]
        if isinstance(channels, int) and channels != len(self.bands):
            raise ModelError(
                f"{card.onnx} takes {channels} channels but {self.card_path} lists {len(self.bands)} bands"
            )
        probe = np.full((1, len(self.bands), PROBE_SIDE, PROBE_SIDE), 1000.0, np.float32)
        try:
            (result,) = self._session.run([self._output], {ONNX_INPUT: probe})
        except Exception as error:  # onnxruntime's exception types are not importable portably
            raise ModelError(
                f"{card.onnx} does not run on {len(self.bands)} bands as {self.card_path} lists them: {error}"
            ) from error
        expected = (1, len(self.bands), PROBE_SIDE * self.factor, PROBE_SIDE * self.factor)
        if tuple(result.shape) != expected:
            raise ModelError(
                f"{card.onnx} returns {list(result.shape)} for {list(probe.shape)}, not {list(expected)} "
                f"(factor {self.factor} of {self.card_path})"
            )

    def estimate(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        stack = stack_bands(inputs, self.bands)
        stack = np.where(stack == S2_NODATA, np.nan, stack)  # the tool's convention for no-data
        (result,) = self._session.run([self._output], {ONNX_INPUT: np.ascontiguousarray(stack.transpose(0, 3, 1, 2))})
        return np.nan_to_num(result.transpose(0, 2, 3, 1), nan=S2_NODATA)


def load_superres_backend(path: str | os.PathLike[str]) -> SuperresBackend:
    """A SavedModel folder, or a YAML model card (with its ONNX file)."""
    path = Path(path)
    if is_model_card(path):
        return ModelCardSuperres(read_model_card(path), path)
    if not path.exists():
        raise InputNotFoundError(path, "model (SavedModel folder or YAML model card)")
    return SavedModelSuperres(path)
