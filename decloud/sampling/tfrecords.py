"""Sharded TFRecords of samples, and their reading back as a ``tf.data.Dataset``.

A records folder holds ``0.records``, ``1.records``... and two JSON files, ``output_types.json`` and
``output_shapes.json``, that give each key's dtype and shape: a reader needs nothing else. Each record
is a ``tf.train.Example`` with one bytes feature per key holding ``tf.io.serialize_tensor`` bytes
(a serialized TensorProto). Keys follow :mod:`decloud.core.keys`.

The whole folder is written under a temporary name and renamed when complete: an interrupted run
leaves no truncated shard and no folder without its metadata.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from decloud.core.atomic import Outputs, atomic_outputs
from decloud.core.errors import DecloudError, InputNotFoundError
from decloud.core.raster import write_failure

log = logging.getLogger(__name__)

TYPES_FILE = "output_types.json"
SHAPES_FILE = "output_shapes.json"
#: Summary of a records folder written by create-tfrecords: how many samples it holds, per shard.
SUMMARY_FILE = "summary.json"
#: Key of the summary giving the number of samples of each shard (by file name), and of the total.
SHARD_SAMPLES_KEY = "shard_samples"
TOTAL_SAMPLES_KEY = "total_samples"
#: TFRecord framing: a little-endian uint64 length and its uint32 CRC, the data, the data's uint32 CRC.
_LENGTH_HEADER = struct.Struct("<QI")
_DATA_CRC_BYTES = 4
SHARD_SUFFIX = ".records"
_SHARD_NAME = re.compile(r"^(\d+)\.records$")


class RecordsError(DecloudError):
    """A records folder or a sample does not match the declared keys, types or shapes."""


def _tensorflow():
    """TensorFlow, imported on first use: preparation steps must not pay its import time."""
    import tensorflow as tf

    return tf


def _dtype_name(array: np.ndarray) -> str:
    return "string" if array.dtype.kind in "SUO" else array.dtype.name


class RecordsWriter(AbstractContextManager):
    """Write samples (dicts key -> numpy array) into ``n_samples_per_shard``-sample shards.

    The first sample fixes the keys, dtypes and shapes; every later sample must match them exactly.
    Use as a context manager: the folder appears at ``output_dir`` only when the block ends without error
    (or, when ``outputs`` is given, when that group of outputs is published, with the others).
    """

    def __init__(
        self, output_dir: str | os.PathLike[str], n_samples_per_shard: int, outputs: Outputs | None = None
    ) -> None:
        if n_samples_per_shard <= 0:
            raise RecordsError(f"n_samples_per_shard must be positive, not {n_samples_per_shard}")
        self.output_dir = Path(output_dir)
        self.n_samples_per_shard = n_samples_per_shard
        self.count = 0
        self.shard_samples: dict[str, int] = {}  #: shard file name -> samples written in it
        self.types: dict[str, str] = {}
        self.shapes: dict[str, list[int]] = {}
        self._outputs = outputs
        self._stack = ExitStack()
        self._work_dir: Path | None = None
        self._shard: Any = None

    def __enter__(self) -> RecordsWriter:
        outputs = self._outputs or self._stack.enter_context(atomic_outputs())
        self._work_dir = outputs.directory(self.output_dir)
        return self

    def write(self, sample: Mapping[str, np.ndarray]) -> None:
        arrays = {name: np.asarray(value) for name, value in sample.items()}
        if not self.types:
            self.types = {name: _dtype_name(array) for name, array in sorted(arrays.items())}
            self.shapes = {name: list(array.shape) for name, array in sorted(arrays.items())}
        self._check(arrays)
        with self._write_failures_named():
            if self.count % self.n_samples_per_shard == 0:
                self._next_shard()
            self._shard.write(serialize_sample(arrays))
        self.count += 1
        self.shard_samples[self._shard_name] += 1

    def attach_json(self, name: str, content: object) -> None:
        """Write a JSON file (e.g. a summary) into the folder; it appears with the shards."""
        with self._write_failures_named(name):
            (self._work_dir / name).write_text(json.dumps(content, indent=2) + "\n")

    @contextmanager
    def _write_failures_named(self, name: str | None = None) -> Iterator[None]:
        """Turn a failed write (a full disk: TensorFlow's ResourceExhaustedError, or an OSError) into one
        :class:`~decloud.core.errors.OutputWriteError` naming the records folder and the file."""
        try:
            yield
        except (OSError, _tensorflow().errors.OpError) as error:
            path = self.output_dir / (name or self._shard_name)
            raise write_failure(path, getattr(error, "message", None) or str(error)) from error

    def _check(self, arrays: Mapping[str, np.ndarray]) -> None:
        if set(arrays) != set(self.types):
            missing, extra = sorted(set(self.types) - set(arrays)), sorted(set(arrays) - set(self.types))
            raise RecordsError(
                f"sample {self.count} keys differ from the first sample's: missing {missing}, extra {extra}"
            )
        for name, array in arrays.items():
            if _dtype_name(array) != self.types[name] or list(array.shape) != self.shapes[name]:
                raise RecordsError(
                    f"sample {self.count}, key {name!r}: {_dtype_name(array)} {list(array.shape)} instead of "
                    f"{self.types[name]} {self.shapes[name]}"
                )

    def _next_shard(self) -> None:
        if self._shard is not None:
            self._shard.close()
        index = self.count // self.n_samples_per_shard
        self._shard_name = f"{index}{SHARD_SUFFIX}"
        self.shard_samples[self._shard_name] = 0
        self._shard = _tensorflow().io.TFRecordWriter(str(self._work_dir / self._shard_name))

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> bool | None:
        if self._shard is not None:
            try:
                with self._write_failures_named():
                    self._shard.close()
            except DecloudError as error:
                if kind is None:
                    self._stack.__exit__(type(error), error, None)  # removes the temporary folder
                    raise
        if kind is None and self.count == 0:
            empty = RecordsError(f"no sample to write in {self.output_dir}")
            self._stack.__exit__(RecordsError, empty, None)  # removes the temporary folder
            raise empty
        if kind is None:
            self.attach_json(TYPES_FILE, self.types)
            self.attach_json(SHAPES_FILE, self.shapes)
        return self._stack.__exit__(kind, value, traceback)


def serialize_tensor(array: np.ndarray) -> bytes:
    """The bytes of ``tf.io.serialize_tensor(array)`` (a serialized TensorProto), built directly from the
    array's buffer: ``tf.make_tensor_proto`` copies element by element for some types (uint16), which
    made writing 30 times slower."""
    tf = _tensorflow()
    if array.dtype.kind in "SUO":
        return tf.make_tensor_proto(array).SerializeToString()
    little_endian = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    proto = tf.make_tensor_proto(np.zeros(0, dtype=array.dtype))
    proto.tensor_shape.CopyFrom(tf.TensorShape(array.shape).as_proto())
    proto.tensor_content = little_endian.tobytes()
    return proto.SerializeToString()


def serialize_sample(sample: Mapping[str, np.ndarray]) -> bytes:
    """One ``tf.train.Example`` with a serialized tensor per key. Serialized deterministically (the
    feature map in key order): otherwise protobuf writes the map in an order that depends on the
    process's string hash seed, and the same sample gives different bytes in another process."""
    tf = _tensorflow()
    features = {
        name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[serialize_tensor(np.asarray(sample[name]))]))
        for name in sample
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(deterministic=True)


# --- Reading -------------------------------------------------------------------------------------


def read_metadata(records_dir: str | os.PathLike[str]) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(types, shapes) of a records folder, checked to describe the same keys."""
    folder = Path(records_dir)
    if not folder.is_dir():
        raise InputNotFoundError(folder, "records folder")
    loaded = []
    for name in (TYPES_FILE, SHAPES_FILE):
        path = folder / name
        if not path.is_file():
            raise RecordsError(f"{folder} has no {name}: it is not a decloud records folder (or it is incomplete)")
        try:
            content = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise RecordsError(f"{path} is not valid JSON: {error}") from error
        if not isinstance(content, dict):
            raise RecordsError(f"{path} must hold a JSON object key -> value")
        loaded.append(content)
    types, shapes = loaded
    if set(types) != set(shapes):
        raise RecordsError(
            f"{folder}: {TYPES_FILE} and {SHAPES_FILE} describe different keys: {sorted(set(types) ^ set(shapes))}"
        )
    return types, {name: tuple(int(size) for size in shape) for name, shape in shapes.items()}


def shard_paths(records_dir: str | os.PathLike[str]) -> list[Path]:
    """The shards of a records folder in numeric order (0, 1, ..., 10, not 0, 1, 10)."""
    folder = Path(records_dir)
    numbered = [(int(match[1]), path) for path in folder.iterdir() if (match := _SHARD_NAME.match(path.name))]
    if not numbered:
        raise RecordsError(f"{folder} holds no N{SHARD_SUFFIX} shard")
    return [path for _, path in sorted(numbered)]


def shard_records(path: Path) -> tuple[int, str | None]:
    """The number of complete records of a shard, from its framing alone (a seek per record, no data
    read), and what is wrong with it when it is cut short (its last record runs past the end of the file)."""
    size = path.stat().st_size
    count, offset = 0, 0
    with path.open("rb") as file:
        while offset < size:
            header = file.read(_LENGTH_HEADER.size)
            if len(header) < _LENGTH_HEADER.size:
                return count, f"shard {path} is truncated: it ends inside the header of record {count + 1}"
            length, _ = _LENGTH_HEADER.unpack(header)
            offset += _LENGTH_HEADER.size + length + _DATA_CRC_BYTES
            if length > size:
                return count, f"shard {path} is damaged: record {count + 1} declares {length} bytes, more than the file"
            if offset > size:
                return count, f"shard {path} is truncated: record {count + 1} needs {offset - size} bytes past its end"
            file.seek(offset)
            count += 1
    return count, None


def check_sample_counts(records_dir: str | os.PathLike[str], *, allow_partial: bool = False) -> int:
    """The number of samples of a records folder, after checking every shard against the folder's
    summary (``summary.json``, when create-tfrecords wrote one): a truncated or short shard is an error
    naming it, or with ``allow_partial`` a loud warning (the complete records are then used)."""
    folder = Path(records_dir)
    summary_path = folder / SUMMARY_FILE
    summary = {}
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except json.JSONDecodeError as error:
            raise RecordsError(f"{summary_path} is not valid JSON: {error}") from error
    expected = summary.get(SHARD_SAMPLES_KEY, {}) if isinstance(summary, dict) else {}
    problems, total = [], 0
    for shard in shard_paths(folder):
        count, truncated = shard_records(shard)
        total += count
        if truncated:
            problems.append(truncated)
        elif shard.name in expected and count != expected[shard.name]:
            problems.append(f"shard {shard} holds {count} samples instead of {expected[shard.name]}")
    declared = summary.get(TOTAL_SAMPLES_KEY) if isinstance(summary, dict) else None
    if not problems and isinstance(declared, int) and total != declared:
        problems.append(f"{folder} holds {total} samples instead of the {declared} of its {SUMMARY_FILE}")
    if problems and not allow_partial:
        raise RecordsError("; ".join(problems) + " (write the records again, or use --allow_partial)")
    for problem in problems:
        log.warning("INCOMPLETE RECORDS (--allow_partial): %s; only its complete samples are used", problem)
    return total


def corrupt_shard(records_dir: str | os.PathLike[str]) -> Path | None:
    """The first shard of a folder whose records fail TensorFlow's checksums, if any (reads them all)."""
    tf = _tensorflow()
    for shard in shard_paths(records_dir):
        try:
            for _ in tf.data.TFRecordDataset(str(shard)):
                pass
        except tf.errors.DataLossError:
            return shard
    return None


@contextmanager
def corrupt_records_named(records_dirs: Sequence[str | os.PathLike[str]]) -> Iterator[None]:
    """Turn TensorFlow's DataLossError (a record whose checksum fails, e.g. flipped bytes), which names
    no file, into a :class:`RecordsError` naming the damaged shard."""
    tf = _tensorflow()
    try:
        yield
    except tf.errors.DataLossError as error:
        damaged = next((shard for folder in records_dirs if (shard := corrupt_shard(folder))), None)
        where = f"shard {damaged}" if damaged else f"a shard of {', '.join(map(str, records_dirs))}"
        reason = (error.message or str(error)).splitlines()[0]
        raise RecordsError(f"{where} is damaged (write the records again): {reason}") from error


def make_dataset(
    records_dir: str | os.PathLike[str],
    *,
    keys: Sequence[str] | None = None,
    batch_size: int | None = None,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    shard: tuple[int, int] | None = None,
    allow_partial: bool = False,
) -> Any:
    """A ``tf.data.Dataset`` of dicts key -> tensor with static shapes, from a records folder alone.

    ``keys`` selects the keys (all by default; an unknown key is an error naming the available ones);
    ``shard`` = (number of workers, this worker's index) keeps one worker's share of the shards for
    multi-worker training; ``shuffle_buffer`` > 0 shuffles samples (reproducibly with ``seed``).
    With ``allow_partial``, a shard cut inside a record gives its complete records instead of an error
    (:func:`check_sample_counts` has warned about it).
    """
    tf = _tensorflow()
    types, shapes = read_metadata(records_dir)
    selected = list(types) if keys is None else list(keys)
    unknown = [name for name in selected if name not in types]
    if unknown:
        raise RecordsError(f"{records_dir} has no key {unknown}; its keys are {sorted(types)}")
    files = [str(path) for path in shard_paths(records_dir)]
    dtypes = {name: tf.string if types[name] == "string" else tf.as_dtype(types[name]) for name in selected}
    description = {name: tf.io.FixedLenFeature([], tf.string) for name in selected}

    def parse(serialized):
        features = tf.io.parse_single_example(serialized, description)
        return {
            name: tf.ensure_shape(tf.io.parse_tensor(features[name], dtypes[name]), shapes[name]) for name in selected
        }

    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shard is not None:
        dataset = dataset.shard(*shard) if len(files) >= shard[0] else dataset

    def records(path):
        shard_dataset = tf.data.TFRecordDataset(path)
        return shard_dataset.ignore_errors(log_warning=True) if allow_partial else shard_dataset

    dataset = dataset.interleave(records, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shard is not None and len(files) < shard[0]:
        dataset = dataset.shard(*shard)
    if shuffle_buffer > 0:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size:
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


def iterate_numpy(records_dir: str | os.PathLike[str], keys: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    """The samples of a records folder as dicts of numpy values, in shard order (for checks and tools)."""
    yield from make_dataset(records_dir, keys=keys).as_numpy_iterator()
