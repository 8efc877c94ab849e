"""Evaluation of a SavedModel on test records, side by side with the baselines a user would otherwise use, on
the pixels the model had to produce:

- records of same-date truth (``s2_holes_<acquisition>``, see :mod:`decloud.acquisitions.transplant`) are
  scored on their hole pixels only, against the target, the same clear image; other records (Decloud's original
  recipe: the target is another date) on every valid target pixel;
- ``model``: the SavedModel's outputs (``s2_estim``, and ``s2_20m_estim`` if it has one);
- with the prepared series (``s2_root``: the records carry tile, patch position and dates, so evaluation reads
  the series rather than records carrying it): ``gapfilling_series``, linear gap-filling per pixel between the
  nearest clear observations before and after over the whole series; ``gapfilling_model_inputs``, the same
  over the dates of the model's own S2 inputs; ``copy_nearest``, the nearest clear observation of the series
  (10 m output; the target date itself is never used);
- without the series, from the records alone (which hold no cloud mask of the inputs, so only no-data counts
  as unusable): ``gapfilling_model_inputs``, interpolation between ``tm1`` and ``tp1`` (the ``gapfilling``
  model); ``copy_nearest``, the valid input date nearest to the target, the target's own day last.

Every method is scored on the same pixels (where all of them give a value), with
:class:`decloud.models.scores.HoleScores`: MAE, RMSE, PSNR from the pooled MSE, SSIM, SAM.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from decloud.acquisitions.transplant import holes_at_scale
from decloud.core import keys
from decloud.core.constants import HOUR, S2_MODEL_SCALE, S2_NODATA
from decloud.core.days import days_keys, days_map_from_timestamps, timestamp_keys_of
from decloud.core.errors import DecloudError
from decloud.models.export import DESCRIPTION_FILE, ServingModel, read_description
from decloud.models.gapfilling import AFTER, AT, BEFORE
from decloud.models.model import OUTPUT_BANDS, TARGET, output_source, target_key
from decloud.models.registry import available_models, create_model, model_class
from decloud.models.scores import HoleScores, format_scores, scorable
from decloud.models.series_baselines import SeriesReader, copy_nearest, gap_fill
from decloud.sampling.tfrecords import (
    RecordsError,
    check_sample_counts,
    corrupt_records_named,
    make_dataset,
    read_metadata,
)

log = logging.getLogger(__name__)

#: Dates closer than this to the target's are "the same day" (the cloudy acquisition).
SAME_DAY_SECONDS = 12 * HOUR
UNITS = (
    f"reflectance (prepared value x {S2_MODEL_SCALE:g}); psnr in dB for a data range of 1, from the pooled MSE; "
    "ssim unitless; sam_degrees in degrees"
)
SERIES_METHODS = ("gapfilling_series", "gapfilling_model_inputs", "copy_nearest")

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

        found["gapfilling_model_inputs"] = gap_fill
        needed.update(stamps + dates)
    nearest = {source: _acquisitions(types, source) for source in sources}
    if keys.key(keys.S2_TIMESTAMP, TARGET) in types and all(nearest.values()):

        def copy(batch):
            return {
                name: copy_nearest_date(batch, output_source(name), nearest[output_source(name)]) for name in outputs
            }

        found["copy_nearest"] = copy
        needed.add(keys.key(keys.S2_TIMESTAMP, TARGET))
        for source, names in nearest.items():
            needed.update(keys.key(source, name) for name in names)
            needed.update(keys.key(keys.S2_TIMESTAMP, name) for name in names)
    return found, needed


def evaluator_of(savedmodel: str | os.PathLike[str]) -> tuple[Any, Any] | None:
    """The evaluation of the SavedModel's architecture, when its system has its own (see ``Model.evaluator``)."""
    description = Path(savedmodel) / DESCRIPTION_FILE
    if not description.is_file():
        return None
    name = read_description(description).get("model")
    return model_class(name).evaluator() if name in available_models() else None


def holes_key(types: dict[str, str]) -> str | None:
    """The key of the records' transplanted holes (same-date truth), None for records without; several are an
    error (which one would the target's be?)."""
    found = keys.keys_of_source(types, keys.S2_HOLES)
    if len(found) > 1:
        raise RecordsError(f"the records hold several hole keys {sorted(found)}: evaluation needs one")
    return found[0] if found else None


def record_inputs(serving: ServingModel) -> list[str]:
    """The record keys the model's inputs come from: the inputs themselves, the timestamps of its days maps."""
    derived = days_keys(list(serving.inputs))
    names = [name for name in serving.inputs if name not in derived]
    return list(dict.fromkeys([*names, *(name for days in derived for name in timestamp_keys_of(days))]))


def model_feed(serving: ServingModel, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's inputs from a batch of records, days maps derived from the timestamps."""
    derived = days_keys(list(serving.inputs))
    feed = {name: batch[name] for name in serving.inputs if name not in derived}
    like = batch[keys.keys_of_source(list(feed), keys.S2)[0]].astype(np.float64) if derived else None
    feed.update({name: days_map_from_timestamps(batch, name, like) for name in derived})
    return feed


def _input_dates(serving: ServingModel, batch: dict[str, np.ndarray], index: int) -> list[float]:
    """Dates of the model's S2 inputs for sample ``index``."""
    dates = []
    for name in serving.inputs:
        source, acquisition = keys.split_key(name)
        if source == keys.S2 and keys.key(keys.S2_TIMESTAMP, acquisition) in batch:
            dates.append(float(batch[keys.key(keys.S2_TIMESTAMP, acquisition)][index]))
    return dates


def series_estimates(
    series: SeriesReader, batch: dict[str, np.ndarray], index: int, size: int, input_dates: list[float]
) -> dict[str, np.ndarray]:
    """The series baselines of sample ``index`` (10 m), from the prepared series of its tile."""
    tile = bytes(batch[keys.TILE][index]).decode()
    window = Window(int(batch[keys.PATCH_COL][index]), int(batch[keys.PATCH_ROW][index]), size, size)
    target = float(batch[keys.key(keys.S2_TIMESTAMP, TARGET)][index])
    patch = series.read(tile, window)
    others = patch.without(np.abs(patch.times - target) >= SAME_DAY_SECONDS)
    inputs = others.without(np.isin(others.times, input_dates))
    return {
        "gapfilling_series": gap_fill(others.values, others.clear, others.times, target),
        "gapfilling_model_inputs": gap_fill(inputs.values, inputs.clear, inputs.times, target),
        "copy_nearest": copy_nearest(others.values, others.clear, others.times, target),
    }


def _record_baselines(
    test_records: str | os.PathLike[str], types: dict[str, str], outputs: list[str], series: SeriesReader | None
) -> tuple[dict[str, Baseline], set[str]]:
    """The baselines computed from the records' own inputs, and the keys they read; with the series, none
    (its baselines are read per sample) but the keys that place a sample in it."""
    if series is None:
        return baselines(types, outputs)
    needed = {keys.TILE, keys.PATCH_ROW, keys.PATCH_COL, keys.key(keys.S2_TIMESTAMP, TARGET)}
    if not needed <= set(types):
        raise RecordsError(f"{test_records} lacks {sorted(needed - set(types))}: the series cannot be read")
    return {}, needed | set(keys.keys_of_source(types, keys.S2_TIMESTAMP))


def _hole_mask(
    batch: dict[str, np.ndarray], holes: str | None, index: int, scale: int, shape: tuple[int, int]
) -> np.ndarray:
    """The pixels of sample ``index`` that methods had to produce, at ``scale``: its holes, or every pixel
    for records without holes (the target is another date)."""
    if holes is None:
        return np.ones(shape, dtype=bool)
    return holes_at_scale(batch[holes][index][..., 0] != 0, scale)


def _sample_estimates(
    name: str,
    batch: dict[str, np.ndarray],
    index: int,
    estimates: dict[str, dict[str, np.ndarray]],
    serving: ServingModel,
    series: SeriesReader | None,
) -> dict[str, np.ndarray]:
    """Every method's estimate of output ``name`` for sample ``index``: the model's and the records' baselines,
    then, at 10 m, the baselines from the prepared series."""
    by_method = {method: values[name][index] for method, values in estimates.items()}
    if series is not None and keys.SOURCES[output_source(name)].scale == 1:
        size = batch[target_key(name)][index].shape[0]
        by_method.update(series_estimates(series, batch, index, size, _input_dates(serving, batch, index)))
    return by_method


def _score_sample(
    accumulators: dict[str, HoleScores],
    bands: tuple[str, ...],
    truth: np.ndarray,
    hole: np.ndarray,
    by_method: dict[str, np.ndarray],
) -> None:
    """Add one sample's output to each method's scores, every method on the same pixels (hole pixels where
    the truth and every estimate are valid)."""
    scored = scorable(truth, hole, list(by_method.values()))
    for method, estimate in by_method.items():
        accumulators.setdefault(method, HoleScores(bands)).update(truth, estimate, scored)


def _score_batch(
    scores: dict[str, dict[str, HoleScores]],
    batch: dict[str, np.ndarray],
    estimates: dict[str, dict[str, np.ndarray]],
    serving: ServingModel,
    holes: str | None,
    series: SeriesReader | None,
) -> int:
    """Add every sample of a batch to ``scores`` (output -> method -> scores); return the number of samples."""
    samples = len(batch[target_key(next(iter(scores)))])
    for index in range(samples):
        for name, accumulators in scores.items():
            truth = batch[target_key(name)][index]
            hole = _hole_mask(batch, holes, index, keys.SOURCES[output_source(name)].scale, truth.shape[:2])
            by_method = _sample_estimates(name, batch, index, estimates, serving, series)
            _score_sample(accumulators, OUTPUT_BANDS[output_source(name)], truth, hole, by_method)
    return samples


def _score(
    serving: ServingModel,
    test_records: str | os.PathLike[str],
    batch_size: int,
    types: dict[str, str],
    holes: str | None,
    series: SeriesReader | None,
    allow_partial: bool,
) -> tuple[dict[str, dict[str, HoleScores]], int]:
    """Scores of every method per output over the records, and the number of samples."""
    outputs = serving.main_outputs()
    methods, baseline_keys = _record_baselines(test_records, types, outputs, series)
    targets = [target_key(name) for name in outputs]
    read = sorted({*record_inputs(serving), *targets, *baseline_keys, *([holes] if holes else [])})
    scores: dict[str, dict[str, HoleScores]] = {name: {} for name in outputs}
    samples = 0
    dataset = make_dataset(test_records, keys=read, batch_size=batch_size, allow_partial=allow_partial)
    with corrupt_records_named([test_records]):
        for batch in dataset.as_numpy_iterator():
            estimates = {"model": serving(model_feed(serving, batch))}
            estimates.update({method: baseline(batch) for method, baseline in methods.items()})
            samples += _score_batch(scores, batch, estimates, serving, holes, series)
    return scores, samples


def evaluate(
    savedmodel: str | os.PathLike[str],
    test_records: str | os.PathLike[str],
    batch_size: int = 8,
    s2_root: str | os.PathLike[str] | None = None,
    *,
    allow_partial: bool = False,
) -> dict[str, Any]:
    """Scores of the SavedModel and of the baselines over every sample of ``test_records`` (checked against
    its summary first: see :func:`~decloud.sampling.tfrecords.check_sample_counts`); ``s2_root`` (the folder
    of the tiles' prepared S2 products) gives the series baselines."""
    serving = ServingModel(savedmodel)
    outputs = serving.main_outputs()
    targets = {name: target_key(name) for name in outputs}
    types, _ = read_metadata(test_records)
    missing = sorted(name for name in [*record_inputs(serving), *targets.values()] if name not in types)
    if missing:
        raise RecordsError(
            f"{test_records} lacks keys {missing} that {savedmodel} needs (records hold {sorted(types)})"
        )
    holes = holes_key(types)
    check_sample_counts(test_records, allow_partial=allow_partial)
    with SeriesReader(s2_root) if s2_root is not None else nullcontext() as series:
        scores, samples = _score(serving, test_records, batch_size, types, holes, series, allow_partial)
    return {
        "savedmodel": str(Path(savedmodel)),
        "test_records": str(Path(test_records)),
        "s2_root": None if s2_root is None else str(Path(s2_root)),
        "samples": samples,
        "scored_pixels": f"hole pixels ({holes}) vs the same-date target"
        if holes
        else "every valid target pixel (the records carry no holes: the target is another date)",
        "units": UNITS,
        "outputs": {
            name: {
                "target": targets[name],
                "bands": list(OUTPUT_BANDS[output_source(name)]),
                "methods": {method: accumulator.results() for method, accumulator in scores[name].items()},
            }
            for name in outputs
        },
    }


def format_table(report: dict[str, Any]) -> str:
    """Overall scores of every method, side by side, one table per output."""
    tables = []
    for name, output in report["outputs"].items():
        title = f"{name} vs {output['target']} ({report['samples']} samples; scored: {report['scored_pixels']})"
        tables.append(format_scores(output["methods"], title))
    return "\n".join(tables)
