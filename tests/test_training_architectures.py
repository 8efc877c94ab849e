"""Acceptance for every registered architecture: it trains a few steps on generated records, exports a
SavedModel that reloads with ``tf.saved_model.load`` and serves the contract's outputs at two input sizes,
and its ONNX export computes the same thing (max difference < 1e-2 prepared units; slow)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from decloud.core.keys import sample_keys
from decloud.models.data import model_dataset
from decloud.models.model import PADS, Model
from decloud.models.onnx_conversion import export_onnx, run_onnx
from decloud.models.registry import BUILTIN_MODULES, available_models, create_model, model_class
from decloud.models.training_loop import TrainingConfig, TrainingResult, train
from decloud.testing.records import LAYOUT_OF, LAYOUTS, write_records

#: Tiny widths: the contract is under test here, not the capacity.
TINY = {"filters": 4, "depth": 2}
#: Super-resolution architectures have their own output contract (no cropped copies, finer outputs): they are
#: covered by tests/test_superres_models.py and tests/test_superres_command.py.
CASES = [(name, False) for name in sorted(LAYOUT_OF) if LAYOUT_OF[name] != "superres"] + [("crga_os2_unet", True)]
PATCH = 64


def test_every_registered_architecture_is_covered():
    builtin = {name for name in available_models() if model_class(name).__module__ in BUILTIN_MODULES}
    assert builtin == set(LAYOUT_OF)


def tiny_params(name: str, full: bool) -> dict:
    params = {} if name in ("gapfilling", "meraner_original") else dict(TINY)
    if name == "meraner_original":
        params = {"filters": 8, "blocks": 2}
    if full:
        params |= {"with_20m_bands": True, "with_dem": True}
    if full and name == "crga_os2_unet":  # the time-weighted residual: days maps from the records' timestamps
        params |= {"residual": True, "time_weighted": True}
    return params


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """One training and one validation folder per layout (with 20 m bands and DEM: models take what they need)."""
    root = tmp_path_factory.mktemp("records")
    folders = {}
    for layout in set(LAYOUT_OF.values()):
        names = sample_keys(LAYOUTS[layout], with_20m_bands=True, with_dem=True)
        folders[layout] = (
            write_records(root / layout / "train", names, n_samples=4, patchsize=PATCH),
            write_records(root / layout / "valid", names, n_samples=2, patchsize=PATCH, seed=1),
        )
    return folders


@dataclass(frozen=True)
class Trained:
    model: Model
    result: TrainingResult
    validation: Path  #: validation records of the architecture's layout


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}{'-20m-dem' if f else ''}" for n, f in CASES])
def trained(request, records, tmp_path_factory) -> Trained:
    """The architecture trained two steps and exported: one training per case, whichever tests of it run."""
    name, full = request.param
    model = create_model(name, **tiny_params(name, full))
    training, validation = records[LAYOUT_OF[name]]
    result = train(
        TrainingConfig(
            model=name,
            model_params=model.get_config(),
            training_record=training,
            valid_records=[validation],
            batch_train=2,
            steps_per_epoch=2,
            epochs=1,
            out_savedmodel=tmp_path_factory.mktemp(name) / "savedmodel",
            seed=0,
        )
    )
    return Trained(model, result, validation)


def serving(savedmodel: Path):
    return tf.saved_model.load(str(savedmodel)).signatures["serving_default"]


def test_architecture_trains_exports_and_reloads(trained):
    model, result = trained.model, trained.result
    assert result.epoch == 1 and np.isfinite(result.history["loss"][0])
    assert np.isfinite(result.validation["valid"]["loss"])

    signature = serving(result.savedmodel)
    inputs = signature.structured_input_signature[1]
    assert set(inputs) == set(model.input_keys())
    expected = {out: bands for out, bands in (("s2_estim", 4), ("s2_20m_estim", 6)) if out in model.output_names()}
    assert set(signature.structured_outputs) == set(expected) | {f"{o}_pad{p}" for o in expected for p in PADS}
    for size in (64, 96):
        feed = {}
        for key, spec in inputs.items():
            side = size // (2 if key.startswith("s2_20m") or key == "dem" else 1)
            shape = (1,) if spec.shape.rank == 1 else (1, side, side, spec.shape[-1])
            feed[key] = tf.constant(np.full(shape, 1.6e9 if spec.shape.rank == 1 else 1000.0), spec.dtype)
        outputs = signature(**feed)
        for out, bands in expected.items():
            side = size // (2 if "20m" in out else 1)
            assert outputs[out].shape == (1, side, side, bands)
            margin = 32 // (2 if "20m" in out else 1)
            assert outputs[f"{out}_pad32"].shape == (1, side - 2 * margin, side - 2 * margin, bands)
            assert outputs[f"{out}_pad64"].shape[1] == max(side - 4 * margin, 0)


@pytest.mark.slow  # the conversion: 10 to 75 s a case; tests/test_onnx.py covers it in the default run
def test_architecture_converts_to_onnx_computing_the_same(trained, tmp_path):
    onnx_path = tmp_path / "model.onnx"
    export_onnx(trained.result.savedmodel, onnx_path)
    batch_inputs, _ = next(iter(model_dataset(trained.validation, trained.model, 2)))
    feed = {key: value.numpy() for key, value in batch_inputs.items()}
    saved = {key: value.numpy() for key, value in serving(trained.result.savedmodel)(**batch_inputs).items()}
    onnx = run_onnx(onnx_path, feed)
    for out in saved:
        assert np.max(np.abs(saved[out] - onnx[out]), initial=0.0) < 1e-2, out
