"""The abstract ``Model``: what every decloud architecture shares, so that an architecture only writes
its network (``get_outputs``) and gets, for free, inputs named by TFRecord key with any spatial size,
the scaling of prepared values inside the graph, outputs in prepared units and their cropped copies.

Contract of the networks built here (the one OTBTF users of Decloud's SavedModels rely on):

- inputs are named by key (``s1_t``, ``s2_tm1``, ``s2_20m_tp1``, ``dem``, ``s2_timestamp_t``...): images are
  float32 ``(batch, rows, cols, channels)`` holding *prepared* values (S2 reflectance x1e4, encoded S1,
  DEM metres); timestamps are float64 seconds ``(batch,)``;
- the graph scales each image by its source's factor (:data:`INPUT_SCALES`, defined once);
- outputs are ``s2_estim`` (and ``s2_20m_estim`` with the 20 m bands) in prepared units (x1e4), plus
  ``<output>_pad{32,64,128,256}``: the same image with that many 10 m pixels removed on each side
  (half as many 20 m pixels), which tiled inference keeps to avoid border effects.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import keras
import tensorflow as tf
from keras import ops

from decloud.core import keys
from decloud.core.constants import (
    DEM_MODEL_SCALE,
    S1_BANDS,
    S1_MODEL_SCALE,
    S2_BANDS_10M,
    S2_BANDS_20M,
    S2_MODEL_SCALE,
    S2_NODATA,
)
from decloud.core.days import DAYS_MODEL_SCALE, days_keys, days_map_from_timestamps, timestamp_keys_of
from decloud.core.errors import InvalidArgumentError

#: Acquisition name of the image a model reconstructs (its key is ``s2_target``).
TARGET = "target"
#: Margins, in 10 m pixels, of the cropped copies of every output.
PADS = (32, 64, 128, 256)
#: Prepared value -> network input, per source: the only place where inputs are scaled.
INPUT_SCALES = {
    keys.S1: S1_MODEL_SCALE,
    keys.S2: S2_MODEL_SCALE,
    keys.S2_20M: S2_MODEL_SCALE,
    keys.DEM: DEM_MODEL_SCALE,
    keys.S2_DAYS: DAYS_MODEL_SCALE,
}
#: Band names of each image source.
SOURCE_BANDS = {
    keys.S1: S1_BANDS,
    keys.S2: S2_BANDS_10M,
    keys.S2_20M: S2_BANDS_20M,
    keys.DEM: ("elevation",),
    keys.S2_DAYS: ("days",),
}
#: Sources a model can estimate, with their band names.
OUTPUT_BANDS = {source: SOURCE_BANDS[source] for source in (keys.S2, keys.S2_20M)}
#: Scaled Sentinel-2 values below this are no-data (-10000 x 1e-4 = -1); reflectances never go below -0.5.
S2_VALID_THRESHOLD = S2_NODATA * S2_MODEL_SCALE / 2
_ESTIM = "_estim"


def output_name(source: str) -> str:
    """Name of the output estimating ``source`` (``s2`` -> ``s2_estim``)."""
    return f"{source}{_ESTIM}"


def padded_name(name: str, pad: int) -> str:
    """Name of the cropped copy of output ``name`` (``s2_estim_pad64``)."""
    return f"{name}_pad{pad}"


def output_source(name: str) -> str:
    """Source estimated by output ``name`` (``s2_20m_estim`` -> ``s2_20m``)."""
    source = name.removesuffix(_ESTIM)
    if source == name or source not in OUTPUT_BANDS:
        raise InvalidArgumentError(
            f"{name!r} is not a decloud model output (known: {[*map(output_name, OUTPUT_BANDS)]})"
        )
    return source


def target_key(output: str) -> str:
    """Key of the records holding the reference image of ``output`` (``s2_estim`` -> ``s2_target``)."""
    return keys.key(output_source(output), TARGET)


def is_image_key(name: str) -> bool:
    return keys.spec_of(name).channels is not None


def is_valid_s2(scaled: Any) -> Any:
    """Boolean mask of the valid values of a scaled Sentinel-2 tensor."""
    return ops.greater(scaled, S2_VALID_THRESHOLD)


@keras.saving.register_keras_serializable(package="decloud")
class Crop(keras.layers.Layer):
    """Remove ``margin`` pixels on each side of an image batch.

    Unlike ``keras.layers.Cropping2D``, an image smaller than twice the margin gives an empty image instead
    of an error, so the cropped outputs never stop a model from running on a small patch.
    """

    def __init__(self, margin: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.margin = int(margin)

    def call(self, images: Any) -> Any:
        rows, cols = ops.shape(images)[1], ops.shape(images)[2]
        margin = self.margin
        return images[:, margin : ops.maximum(rows - margin, margin), margin : ops.maximum(cols - margin, margin), :]

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        def cropped(size):
            return None if size is None else max(size - 2 * self.margin, 0)

        return (input_shape[0], cropped(input_shape[1]), cropped(input_shape[2]), input_shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "margin": self.margin}


class TrainingNetwork(keras.Model):
    """The functional model that trains: the serving model's layers and weights, main outputs only.

    It carries two work-arounds for Keras 3 under MultiWorkerMirroredStrategy, which Keras does not test:
    before the first step Keras all-reduces a whole input batch only to learn its shapes, and collective
    ops cannot reduce a dict (keras-team/keras#20329, #20585); and it averages each step's logs across
    workers along an axis 0 that scalars lack (tensorflow/tensorflow#72388). Epoch results, read from the
    synchronised metric variables, are unaffected.
    """

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        strategy = self._distribute_strategy
        if iterator is not None and _is_multiworker(strategy):
            for _, _, distributed in iterator:
                batch = next(distributed)
                data_batch = keras.tree.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0], batch
                )
                break
            iterator = None
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data: Any) -> dict[str, Any]:
        return _multiworker_step_logs(super().train_step(data))

    def test_step(self, data: Any) -> dict[str, Any]:
        return _multiworker_step_logs(super().test_step(data))


def _is_multiworker(strategy: Any) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def _multiworker_step_logs(logs: dict[str, Any]) -> dict[str, Any]:
    if _is_multiworker(tf.distribute.get_strategy()):
        return {name: ops.reshape(value, (1,)) for name, value in logs.items()}
    return logs


class Model(abc.ABC):
    """Base class of decloud architectures.

    A subclass declares the acquisitions it reads (``S1_ACQUISITIONS``, ``S2_ACQUISITIONS``,
    ``TIMESTAMP_ACQUISITIONS``), its parameters and their defaults (``DEFAULTS``, merged with the parents'),
    and implements :meth:`get_outputs`. Everything else (input keys, scaling, output names and crops, the
    Keras models) comes from here. ``with_20m_bands`` and ``with_dem`` are parameters of every architecture:
    the 20 m variant of a network is the same class with another parameter.

    Build the Keras models (:meth:`model`, :meth:`training_model`) inside ``strategy.scope()`` when
    training with ``tf.distribute``.
    """

    #: Registry name, set by :func:`decloud.models.registry.register`.
    name: ClassVar[str] = ""
    S1_ACQUISITIONS: ClassVar[tuple[str, ...]] = ()
    S2_ACQUISITIONS: ClassVar[tuple[str, ...]] = ()
    #: Acquisitions whose Sentinel-2 date (``s2_timestamp_<a>``) the network reads.
    TIMESTAMP_ACQUISITIONS: ClassVar[tuple[str, ...]] = ()
    DEFAULTS: ClassVar[dict[str, Any]] = {"with_20m_bands": False, "with_dem": False}

    def __init__(self, **params: Any) -> None:
        defaults = self.default_params()
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise InvalidArgumentError(
                f"model {self.name!r} has no parameter {unknown}; its parameters (with defaults) are {defaults}"
            )
        for param, value in params.items():
            _check_param_type(self.name, param, value, defaults[param])
        self.params: dict[str, Any] = {**defaults, **params}
        self._models: tuple[keras.Model, keras.Model] | None = None

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            merged.update(klass.__dict__.get("DEFAULTS", {}))
        return merged

    def get_config(self) -> dict[str, Any]:
        """The parameters that rebuild this model with ``create_model(name, **config)``."""
        return dict(self.params)

    def has_dem(self) -> bool:
        return bool(self.params["with_dem"])

    @property
    def with_20m_bands(self) -> bool:
        return bool(self.params["with_20m_bands"])

    @property
    def size_multiple(self) -> int:
        """Input sizes (10 m pixels) must be multiples of this (20 m inputs have half the size)."""
        return 2 if self.with_20m_bands or self.has_dem() else 1

    # --- Keys -----------------------------------------------------------------------------------

    def s1_acquisitions(self) -> tuple[str, ...]:
        """Acquisitions whose S1 image the network reads: none when the architecture has a ``with_s1``
        parameter set to False (an S2-only variant, for data without Sentinel-1)."""
        return self.S1_ACQUISITIONS if self.params.get("with_s1", True) else ()

    def input_keys(self) -> list[str]:
        names = [keys.key(keys.S1, acquisition) for acquisition in self.s1_acquisitions()]
        names += [keys.key(keys.S2, acquisition) for acquisition in self.S2_ACQUISITIONS]
        if self.with_20m_bands:
            names += [keys.key(keys.S2_20M, acquisition) for acquisition in self.S2_ACQUISITIONS]
        names += [keys.key(keys.S2_TIMESTAMP, acquisition) for acquisition in self.TIMESTAMP_ACQUISITIONS]
        if self.has_dem():
            names.append(keys.DEM)
        return names

    def output_sources(self) -> list[str]:
        return [keys.S2, keys.S2_20M] if self.with_20m_bands else [keys.S2]

    def output_names(self) -> list[str]:
        return [output_name(source) for source in self.output_sources()]

    def target_keys(self) -> dict[str, str]:
        """Output name -> key of its reference image in the records."""
        return {name: target_key(name) for name in self.output_names()}

    def record_keys(self) -> list[str]:
        """Keys a records folder must hold to train or evaluate this model: its inputs (the timestamps of its
        ``s2_days_<a>`` maps in their place) and its targets."""
        derived = days_keys(self.input_keys())
        inputs = [name for name in self.input_keys() if name not in derived]
        inputs += [name for days in derived for name in timestamp_keys_of(days) if name not in inputs]
        return [*dict.fromkeys(inputs), *self.target_keys().values()]

    def describe_outputs(self, contract: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What the SavedModel's description says of the outputs: ``contract`` (the outputs of the contract,
        main and cropped), unless a system's outputs differ from it."""
        return contract

    @classmethod
    def evaluator(cls) -> tuple[Any, Any] | None:
        """``(evaluate(savedmodel, test_records, batch_size) -> report, format_table(report) -> str)`` of a
        system whose models are scored otherwise than cloud removal's (``decloud evaluate`` calls them);
        None: :mod:`decloud.models.record_scoring`."""
        return None

    def training_pair(self, sample: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(inputs, targets) of a (batched) sample of :meth:`record_keys`: images as float32 prepared values
        (the model scales them), timestamps as float64; targets keyed by the output they supervise. A system
        that derives its inputs from the records (e.g. by degrading them) overrides this."""
        derived = days_keys(self.input_keys())
        inputs = {
            name: tf.cast(sample[name], tf.float32 if is_image_key(name) else tf.float64)
            for name in self.input_keys()
            if name not in derived
        }
        like = inputs[keys.key(keys.S2, self.S2_ACQUISITIONS[0])] if derived else None
        for name in derived:
            inputs[name] = tf.cast(days_map_from_timestamps(sample, name, tf.cast(like, tf.float64)), tf.float32)
        targets = {output: tf.cast(sample[key], tf.float32) for output, key in self.target_keys().items()}
        return inputs, targets

    # --- Graph ----------------------------------------------------------------------------------

    def get_model_inputs(self) -> dict[str, Any]:
        """One ``keras.Input`` per input key, with free spatial size."""
        inputs = {}
        for name in self.input_keys():
            spec = keys.spec_of(name)
            if spec.channels is None:
                inputs[name] = keras.Input(shape=(), dtype="float64", name=name)
            else:
                inputs[name] = keras.Input(shape=(None, None, spec.channels), dtype="float32", name=name)
        return inputs

    def normalize_model_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Scale each image by its source's factor; other inputs (timestamps) pass unchanged."""
        return {
            name: ops.multiply(tensor, INPUT_SCALES[keys.split_key(name)[0]]) if is_image_key(name) else tensor
            for name, tensor in inputs.items()
        }

    @abc.abstractmethod
    def get_outputs(self, normalized_inputs: dict[str, Any]) -> dict[str, Any]:
        """The network: scaled inputs -> {source: estimate in reflectance} for each of :meth:`output_sources`."""

    def get_extra_outputs(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """Cropped copies of ``outputs`` (name -> tensor): ``pad`` 10 m pixels, ``pad / scale`` native pixels."""
        extra = {}
        for name, tensor in outputs.items():
            scale = keys.SOURCES[output_source(name)].scale
            for pad in PADS:
                extra[padded_name(name, pad)] = Crop(pad // scale, name=padded_name(name, pad))(tensor)
        return extra

    def _build(self) -> tuple[keras.Model, keras.Model]:
        if self._models is None:
            inputs = self.get_model_inputs()
            estimates = self.get_outputs(self.normalize_model_inputs(inputs))
            if sorted(estimates) != sorted(self.output_sources()):
                raise TypeError(
                    f"{type(self).__name__}.get_outputs returned {sorted(estimates)}, not {self.output_sources()}"
                )
            outputs = {
                output_name(source): keras.layers.Rescaling(1.0 / S2_MODEL_SCALE, name=output_name(source))(
                    estimates[source]
                )
                for source in self.output_sources()
            }
            serving = keras.Model(inputs, {**outputs, **self.get_extra_outputs(outputs)}, name=self.name)
            training = TrainingNetwork(inputs, outputs, name=f"{self.name}_training")
            self._models = (serving, training)
        return self._models

    def model(self) -> keras.Model:
        """The Keras model with every output of the contract (main outputs and their crops)."""
        return self._build()[0]

    def training_model(self) -> keras.Model:
        """The same network (shared layers and weights) with the main outputs only, for training."""
        return self._build()[1]


def _check_param_type(model: str, param: str, value: Any, default: Any) -> None:
    """Parameters come from JSON on the command line: catch a string or a float where an int is needed."""
    expected = type(default)
    valid = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
    if expected is float:
        valid = isinstance(value, int | float) and not isinstance(value, bool)
    if not valid:
        raise InvalidArgumentError(f"model {model!r} parameter {param!r} must be a {expected.__name__}, not {value!r}")
