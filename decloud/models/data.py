"""Records -> model: check that a records folder holds what a model reads (before any training), and
turn its samples into the ``(inputs, targets)`` pairs Keras trains on."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from decloud.core import keys
from decloud.models.model import Model, is_image_key
from decloud.sampling.tfrecords import RecordsError, make_dataset, read_metadata, shard_paths, shard_records


def required_keys(model: Model) -> list[str]:
    """Keys a records folder must hold to train or evaluate ``model``: its inputs and its targets."""
    return [*model.input_keys(), *model.target_keys().values()]


def _patchsize(shapes: dict[str, tuple[int, ...]], names: Sequence[str]) -> int | None:
    """Patch size in 10 m pixels, read from the first image key of ``names`` present in the records."""
    for name in names:
        if name in shapes and is_image_key(name) and len(shapes[name]) == 3:
            return shapes[name][0] * keys.spec_of(name).scale
    return None


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
    """(inputs, targets) of a (batched) sample: images as float32 prepared values (the model scales them),
    timestamps as float64; targets keyed by the output they supervise."""
    inputs = {
        name: tf.cast(sample[name], tf.float32 if is_image_key(name) else tf.float64) for name in model.input_keys()
    }
    targets = {output: tf.cast(sample[key], tf.float32) for output, key in model.target_keys().items()}
    return inputs, targets


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
) -> tf.data.Dataset:
    """Batches of ``(inputs, targets)`` for ``model`` from a records folder (checked first)."""
    check_records(records_dir, model)
    dataset = make_dataset(
        records_dir,
        keys=required_keys(model),
        batch_size=batch_size,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
        shard=shard,
        allow_partial=allow_partial,
    )
    return dataset.map(lambda sample: split_sample(sample, model), num_parallel_calls=tf.data.AUTOTUNE)


def count_samples(records_dir: str | os.PathLike[str]) -> int:
    """Number of complete samples in a records folder (reads the shards' record framing, not the tensors)."""
    count = sum(shard_records(path)[0] for path in shard_paths(records_dir))
    if count == 0:
        raise RecordsError(f"{records_dir} holds no sample")
    return count
