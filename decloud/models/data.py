"""Records -> model: check that a records folder holds what a model reads (before any training), and
turn its samples into the ``(inputs, targets)`` pairs Keras trains on."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from decloud.acquisitions.transplant import CLOUDY_AS_ACQUIRED, CLOUDY_AS_NODATA
from decloud.core import keys
from decloud.core.constants import S2_NODATA
from decloud.models.model import Model, is_image_key, output_source
from decloud.sampling.tfrecords import RecordsError, make_dataset, read_metadata, shard_paths, shard_records


def required_keys(model: Model) -> list[str]:
    """Keys a records folder must hold to train or evaluate ``model``."""
    return model.record_keys()


def _patchsize(shapes: dict[str, tuple[int, ...]], names: Sequence[str]) -> int | None:
    """Patch size in 10 m pixels, read from the first image key of ``names`` present in the records."""
    for name in names:
        if name in shapes and is_image_key(name) and len(shapes[name]) == 3:
            return shapes[name][0] * keys.spec_of(name).scale
    return None


def cloudy_pixels_of(records_dir: str | os.PathLike[str]) -> str:
    """How the records show the model the cloudy pixels of the image to reconstruct: holes set to no-data
    when they carry transplanted masks (``s2_holes_<acquisition>``, same-date truth), as acquired otherwise."""
    types, _ = read_metadata(records_dir)
    return CLOUDY_AS_NODATA if keys.keys_of_source(types, keys.S2_HOLES) else CLOUDY_AS_ACQUIRED


def check_records(records_dir: str | os.PathLike[str], model: Model) -> int:
    """The patch size of ``records_dir`` after checking that it holds every key ``model`` needs with the
    contract's dtype and shape; otherwise a RecordsError naming each missing or mismatched key."""
    types, shapes = read_metadata(records_dir)
    needed = required_keys(model)
    missing = [name for name in needed if name not in types]
    patchsize = _patchsize(shapes, needed)
    problems = []
    for name in needed:
        if name in missing:
            continue
        spec = keys.spec_of(name)
        expected = spec.shape(patchsize) if patchsize is not None else shapes[name]
        if types[name] != spec.dtype or tuple(shapes[name]) != tuple(expected):
            problems.append(f"{name!r} is {types[name]} {list(shapes[name])} instead of {spec.dtype} {list(expected)}")
    if missing:
        problems.insert(0, f"missing keys {missing} (the records hold {sorted(types)})")
        s1_only = all(keys.split_key(name)[0] == keys.S1 for name in missing)
        if s1_only and model.params.get("with_s1"):
            problems.insert(
                1, """records without Sentinel-1 train the S2-only variant: --model_params '{"with_s1": false}'"""
            )
    if patchsize is not None and patchsize % model.size_multiple:
        problems.append(f"patch size {patchsize} is not a multiple of {model.size_multiple}, as {model.name} needs")
    if problems:
        raise RecordsError(f"{records_dir} does not fit model {model.name!r}: " + "; ".join(problems))
    return patchsize


def split_sample(sample: dict[str, Any], model: Model) -> tuple[dict[str, Any], dict[str, Any]]:
    """(inputs, targets) of a (batched) sample, as ``model`` trains on them."""
    return model.training_pair(sample)


def holes_of(records_dir: str | os.PathLike[str]) -> str:
    """The key of the transplanted holes of records of same-date truth; a RecordsError for other records."""
    types, _ = read_metadata(records_dir)
    found = keys.keys_of_source(types, keys.S2_HOLES)
    if len(found) != 1:
        raise RecordsError(
            f"{records_dir}: a loss on the holes needs records of same-date truth with one hole key "
            f"(s2_holes_<acquisition>), not {sorted(found) or 'none'}"
        )
    return found[0]


def on_holes(targets: dict[str, Any], holes: Any, margin: int) -> dict[str, Any]:
    """``targets`` set to no-data (which the losses skip) outside the holes grown by ``margin`` pixels (a square):
    the pixels a model must produce and those around them that the processors blend its estimate into. Coarser
    outputs (20 m) take a pixel when any of its 10 m pixels is taken."""
    region = tf.cast(holes, tf.float32)
    if margin:  # the square's maximum as a row's then a column's: the same, a fraction of the work
        region = tf.nn.max_pool2d(region, (1, 2 * margin + 1), 1, "SAME")
        region = tf.nn.max_pool2d(region, (2 * margin + 1, 1), 1, "SAME")
    focused = {}
    for name, target in targets.items():
        scale = keys.SOURCES[output_source(name)].scale
        scaled = tf.nn.max_pool2d(region, scale, scale, "SAME") if scale > 1 else region
        focused[name] = tf.where(scaled > 0, target, float(S2_NODATA))
    return focused


def model_dataset(
    records_dir: str | os.PathLike[str],
    model: Model,
    batch_size: int,
    *,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    shard: tuple[int, int] | None = None,
    allow_partial: bool = False,
    hole_margin: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``(inputs, targets)`` for ``model`` from a records folder (checked first). With ``hole_margin``
    (records of same-date truth), the targets count only the holes and ``hole_margin`` pixels around them
    (:func:`on_holes`)."""
    check_records(records_dir, model)
    holes = None if hole_margin is None else holes_of(records_dir)
    dataset = make_dataset(
        records_dir,
        keys=required_keys(model) + ([holes] if holes else []),
        batch_size=batch_size,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
        shard=shard,
        allow_partial=allow_partial,
    )

    def pair(sample):
        inputs, targets = split_sample(sample, model)
        return (inputs, targets) if holes is None else (inputs, on_holes(targets, sample[holes], hole_margin))

    return dataset.map(pair, num_parallel_calls=tf.data.AUTOTUNE)


def count_samples(records_dir: str | os.PathLike[str]) -> int:
    """Number of complete samples in a records folder (reads the shards' record framing, not the tensors)."""
    count = sum(shard_records(path)[0] for path in shard_paths(records_dir))
    if count == 0:
        raise RecordsError(f"{records_dir} holds no sample")
    return count
