"""Evaluation of a SavedModel on test records, side by side with the baselines a user would try first.

- ``model``: the SavedModel's outputs (``s2_estim``, and ``s2_20m_estim`` if it has one);
- ``gapfilling``: linear interpolation in time between ``tm1`` and ``tp1`` (the ``gapfilling`` model),
  when the records hold both dates and their timestamps;
- ``copy_nearest_date``: per pixel, the value of the input date nearest in time to the target that is
  valid there; dates on the target's own day (the cloudy image) are used only when no other date is.

Metrics (overall and per band) come from :class:`decloud.models.metrics.BandAccumulator`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from decloud.core import keys
from decloud.core.errors import DecloudError
from decloud.models.export import ServingModel
from decloud.models.gapfilling import AFTER, AT, BEFORE
from decloud.models.metrics import BandAccumulator
from decloud.models.model import OUTPUT_BANDS, TARGET, output_source, target_key
from decloud.models.registry import create_model
from decloud.preprocessing.constants import S2_MODEL_SCALE, S2_NODATA
from decloud.sampling.tfrecords import (
    RecordsError,
    check_sample_counts,
    corrupt_records_named,
    make_dataset,
    read_metadata,
)

log = logging.getLogger(__name__)

#: Dates closer than this to the target's are "the same day" (the cloudy acquisition).
SAME_DAY_SECONDS = 12 * 3600.0
UNITS = (
    f"reflectance (prepared value x {S2_MODEL_SCALE:g}); psnr in dB for a data range of 1; ssim unitless; "
    "sam_degrees in degrees"
)

Baseline = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def copy_nearest_date(batch: dict[str, np.ndarray], source: str, acquisitions: list[str]) -> np.ndarray:
    """Per pixel and band, the value of the valid acquisition nearest in time to the target."""
    stack = np.stack([batch[keys.key(source, name)] for name in acquisitions], axis=1)
    target_time = batch[keys.key(keys.S2_TIMESTAMP, TARGET)][:, None]
    distance = np.abs(
        np.stack([batch[keys.key(keys.S2_TIMESTAMP, name)] for name in acquisitions], axis=1) - target_time
    )
    same_day = distance < SAME_DAY_SECONDS
    distance = np.where(same_day & ~same_day.all(axis=1, keepdims=True), np.inf, distance)
    order = np.argsort(distance, axis=1, kind="stable")[:, :, None, None, None]
    ordered = np.take_along_axis(stack, order, axis=1)
    valid = ordered != S2_NODATA
    first = np.argmax(valid, axis=1)[:, None]
    chosen = np.take_along_axis(ordered, first, axis=1)[:, 0]
    return np.where(valid.any(axis=1), chosen, S2_NODATA).astype(np.float32)


def _acquisitions(types: dict[str, str], source: str) -> list[str]:
    """Input acquisitions of ``source`` in the records that have a Sentinel-2 timestamp."""
    found = []
    for name in types:
        try:
            key_source, acquisition = keys.split_key(name)
        except DecloudError:  # a key outside the contract is no acquisition
            continue
        if key_source == source and acquisition != TARGET and keys.key(keys.S2_TIMESTAMP, acquisition) in types:
            found.append(acquisition)
    return sorted(found)


def baselines(types: dict[str, str], outputs: list[str]) -> tuple[dict[str, Baseline], set[str]]:
    """The baselines the records allow, and the keys they read."""
    sources = [output_source(name) for name in outputs]
    found: dict[str, Baseline] = {}
    needed: set[str] = set()
    stamps = [keys.key(keys.S2_TIMESTAMP, name) for name in (BEFORE, AT, AFTER)]
    dates = [keys.key(source, name) for source in sources for name in (BEFORE, AFTER)]
    if all(name in types for name in stamps + dates):
        gapfilling = create_model("gapfilling", with_20m_bands=keys.S2_20M in sources).model()

        def gap_fill(batch):
            estimates = gapfilling({name: batch[name] for name in stamps + dates}, training=False)
            return {name: np.asarray(estimates[name]) for name in outputs}

        found["gapfilling"] = gap_fill
        needed.update(stamps + dates)
    nearest = {source: _acquisitions(types, source) for source in sources}
    if keys.key(keys.S2_TIMESTAMP, TARGET) in types and all(nearest.values()):

        def copy(batch):
            return {
                name: copy_nearest_date(batch, output_source(name), nearest[output_source(name)]) for name in outputs
            }

        found["copy_nearest_date"] = copy
        needed.add(keys.key(keys.S2_TIMESTAMP, TARGET))
        for source, names in nearest.items():
            needed.update(keys.key(source, name) for name in names)
            needed.update(keys.key(keys.S2_TIMESTAMP, name) for name in names)
    return found, needed


def evaluate(
    savedmodel: str | os.PathLike[str],
    test_records: str | os.PathLike[str],
    batch_size: int = 8,
    *,
    allow_partial: bool = False,
) -> dict[str, Any]:
    """Metrics of the SavedModel and of the baselines over every sample of ``test_records`` (checked
    against its summary first: see :func:`~decloud.sampling.tfrecords.check_sample_counts`)."""
    serving = ServingModel(savedmodel)
    outputs = serving.main_outputs()
    targets = {name: target_key(name) for name in outputs}
    types, _ = read_metadata(test_records)
    missing = sorted(name for name in [*serving.inputs, *targets.values()] if name not in types)
    if missing:
        raise RecordsError(
            f"{test_records} lacks keys {missing} that {savedmodel} needs (records hold {sorted(types)})"
        )
    methods, baseline_keys = baselines(types, outputs)
    if not methods:
        log.warning("%s allows no baseline (needs timestamps and tm1/tp1 or other dates)", test_records)
    accumulators = {
        method: {name: BandAccumulator(OUTPUT_BANDS[output_source(name)]) for name in outputs}
        for method in ["model", *methods]
    }
    read = sorted({*serving.inputs, *targets.values(), *baseline_keys})
    check_sample_counts(test_records, allow_partial=allow_partial)
    samples = 0
    with corrupt_records_named([test_records]):
        dataset = make_dataset(test_records, keys=read, batch_size=batch_size, allow_partial=allow_partial)
        for batch in dataset.as_numpy_iterator():
            estimates = {"model": serving({name: batch[name] for name in serving.inputs})}
            estimates.update({method: baseline(batch) for method, baseline in methods.items()})
            for method, by_output in estimates.items():
                for name in outputs:
                    accumulators[method][name].update(batch[targets[name]], by_output[name])
            samples += len(batch[targets[outputs[0]]])
    return {
        "savedmodel": str(Path(savedmodel)),
        "test_records": str(Path(test_records)),
        "samples": samples,
        "units": UNITS,
        "outputs": {
            name: {
                "target": targets[name],
                "bands": list(OUTPUT_BANDS[output_source(name)]),
                "methods": {method: accumulators[method][name].results() for method in accumulators},
            }
            for name in outputs
        },
    }


def format_table(report: dict[str, Any]) -> str:
    """Overall metrics of every method, side by side, one table per output."""
    lines = []
    for name, output in report["outputs"].items():
        methods = output["methods"]
        metrics = [metric for metric in next(iter(methods.values()))["overall"] if metric != "valid_pixels"]
        lines.append(f"{name} vs {output['target']} ({report['samples']} samples)")
        lines.append(f"  {'method':<20}" + "".join(f"{metric:>13}" for metric in metrics))
        for method, results in methods.items():
            values = [results["overall"][metric] for metric in metrics]
            lines.append(f"  {method:<20}" + "".join("            -" if v is None else f"{v:13.5g}" for v in values))
    return "\n".join(lines)
