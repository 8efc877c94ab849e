"""Model backends of the streaming engine: a TensorFlow SavedModel or an ONNX model (onnxruntime),
both called with float32 (1, rows, cols, channels) arrays named by key, returning the named outputs."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from decloud.core.errors import DecloudError, InputNotFoundError


class ModelError(DecloudError):
    """A model cannot serve a run: missing inputs or outputs, unreadable model."""


class ModelBackend(ABC):
    """A model with named inputs (key -> number of channels) and named outputs."""

    inputs: dict[str, int]
    outputs: list[str]

    @staticmethod
    def require_images(path: Path, ranks: dict[str, int | None]) -> None:
        """The engine feeds images (batch, rows, cols, channels) only: a model with other inputs, such as
        the per-acquisition timestamps of ``gapfilling``, is refused before any work."""
        others = sorted(name for name, rank in ranks.items() if rank != 4)
        if others:
            raise ModelError(
                f"model {path} takes inputs that are not images ({', '.join(others)}): the processors feed "
                "images only; score such a model with decloud evaluate"
            )

    def check(self, fed: Sequence[str], needed: Sequence[str], source: str) -> None:
        """Fail before any work when the model lacks an input the run feeds or an output it needs,
        or needs an input the run does not feed."""
        missing_inputs = sorted(set(fed) - set(self.inputs))
        unfed = sorted(set(self.inputs) - set(fed))
        missing_outputs = sorted(set(needed) - set(self.outputs))
        problems = []
        if missing_inputs:
            problems.append(f"has no input {missing_inputs} (its inputs: {sorted(self.inputs)})")
        if unfed:
            problems.append(f"needs inputs {unfed} that this run does not provide (it provides {sorted(fed)})")
        if missing_outputs:
            problems.append(f"has no output {missing_outputs} (its outputs: {sorted(self.outputs)})")
        if problems:
            raise ModelError(f"model {source} " + "; ".join(problems))

    @abstractmethod
    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Compute ``outputs`` (each (1, rows, cols, channels)) from ``inputs``."""


class SavedModelBackend(ModelBackend):
    """The ``serving_default`` signature of a TensorFlow SavedModel."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from decloud.models.export import ServingModel

        self.path = Path(path)
        try:
            self.serving = ServingModel(self.path)
        except (OSError, ValueError) as error:
            raise ModelError(f"cannot load the SavedModel {self.path}: {error}") from error
        self.require_images(self.path, {name: spec.shape.rank for name, spec in self.serving.inputs.items()})
        self.inputs = {name: int(spec.shape[-1]) for name, spec in self.serving.inputs.items()}
        self.outputs = self.serving.outputs

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        results = self.serving(inputs)
        return {name: results[name] for name in outputs}


class OnnxBackend(ModelBackend):
    """An ONNX model run by onnxruntime on the CPU; only the requested outputs are computed."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise InputNotFoundError(self.path, "ONNX model")
        try:
            self._session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types, not importable portably
            raise ModelError(f"cannot load ONNX model {self.path}: {error}") from error
        # tf2onnx may keep TensorFlow's ":0" suffixes: the engine speaks plain key names.
        self._input_names = {_plain(node.name): node.name for node in self._session.get_inputs()}
        self._output_names = {_plain(node.name): node.name for node in self._session.get_outputs()}
        self.require_images(self.path, {_plain(node.name): len(node.shape) for node in self._session.get_inputs()})
        self.inputs = {_plain(node.name): int(node.shape[-1]) for node in self._session.get_inputs()}
        self.outputs = sorted(self._output_names)

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        feeds = {self._input_names[name]: array for name, array in inputs.items()}
        results = self._session.run([self._output_names[name] for name in outputs], feeds)
        return dict(zip(outputs, results, strict=True))


class InputCopyBackend(ModelBackend):
    """Serves a date as itself: each output is the input of the same source at ``acquisition``
    (``s2_estim`` <- ``s2_t``), so that a clear date is written by the same engine as a reconstructed one."""

    def __init__(self, outputs: Mapping[str, str], channels: Mapping[str, int]) -> None:
        self.copied = dict(outputs)  # output name -> input key
        self.inputs = {key: channels[key] for key in self.copied.values()}
        self.outputs = sorted(self.copied)

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        return {name: inputs[self.copied[name]] for name in outputs}


def _plain(name: str) -> str:
    return name.split(":")[0]


def load_backend(path: str | os.PathLike[str]) -> ModelBackend:
    """A SavedModel folder or an ``.onnx`` file."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return OnnxBackend(path)
    if not path.exists():
        raise InputNotFoundError(path, "model (SavedModel folder or .onnx file)")
    return SavedModelBackend(path)
