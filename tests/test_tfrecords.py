"""TFRecords: the key contract, writing shards and reading them back with nothing but the folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from decloud.core import keys
from decloud.core.errors import InputNotFoundError, InvalidArgumentError
from decloud.sampling.tfrecords import (
    SHAPES_FILE,
    TYPES_FILE,
    RecordsError,
    RecordsWriter,
    iterate_numpy,
    make_dataset,
    read_metadata,
    serialize_tensor,
    shard_paths,
)


def test_keys_are_built_and_split_unambiguously():
    assert keys.key(keys.S2_20M, "tp1") == "s2_20m_tp1"
    assert keys.split_key("s2_20m_tp1") == ("s2_20m", "tp1")
    assert keys.split_key("s2_t") == ("s2", "t")
    assert keys.split_key("s2_timestamp_target") == ("s2_timestamp", "target")
    assert keys.split_key("dem") == ("dem", None)
    assert keys.spec_of("s2_20m_t").shape(256) == (128, 128, 6)
    assert keys.spec_of("s1_tm1").shape(64) == (64, 64, 2)
    assert keys.spec_of("dem").shape(256) == (128, 128, 1)
    for bad in ("s3_t", "s2", "s2_t_m1", "dem_t"):
        with pytest.raises(InvalidArgumentError):
            keys.split_key(bad)
    with pytest.raises(InvalidArgumentError, match="letters and digits"):
        keys.key(keys.S2, "t-1")
    with pytest.raises(InvalidArgumentError):
        keys.key(keys.DEM, "t")


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint16).reshape(2, 3, 4),
        np.arange(6, dtype=np.int16).reshape(2, 3) - 3,
        np.float64(1.5e9),
        np.int32(7),
        np.array(b"T31TEJ"),
        np.zeros((0, 3), np.float32),
    ],
)
def test_serialized_tensors_are_those_of_tensorflow(array):
    import tensorflow as tf

    assert serialize_tensor(np.asarray(array)) == tf.io.serialize_tensor(array).numpy()


def sample(index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(index)
    return {
        "s2_t": rng.integers(-10000, 10000, size=(8, 8, 4), dtype=np.int16),
        "s1_t": rng.integers(0, 65535, size=(8, 8, 2), dtype=np.uint16),
        "s2_timestamp_t": np.float64(1.6e9 + index),
        "tile": np.array(b"T31TEJ"),
        "patch_row": np.int32(64 * index),
    }


def write(folder, count: int, per_shard: int = 3) -> None:
    with RecordsWriter(folder, per_shard) as writer:
        for index in range(count):
            writer.write(sample(index))


def test_samples_come_back_equal_with_static_shapes(tmp_path):
    write(tmp_path / "rec", 7)
    assert [path.name for path in shard_paths(tmp_path / "rec")] == ["0.records", "1.records", "2.records"]
    types, shapes = read_metadata(tmp_path / "rec")
    assert types == {
        "patch_row": "int32",
        "s1_t": "uint16",
        "s2_t": "int16",
        "s2_timestamp_t": "float64",
        "tile": "string",
    }
    assert shapes["s2_t"] == (8, 8, 4) and shapes["tile"] == ()
    read = list(iterate_numpy(tmp_path / "rec"))
    assert len(read) == 7
    for index, record in enumerate(read):
        expected = sample(index)
        for name, value in expected.items():
            np.testing.assert_array_equal(record[name], value)
    batched = make_dataset(tmp_path / "rec", keys=["s2_t"], batch_size=2, drop_remainder=True)
    assert batched.element_spec["s2_t"].shape.as_list() == [2, 8, 8, 4]
    assert list(batched.element_spec) == ["s2_t"]


def test_rewriting_gives_identical_bytes(tmp_path):
    write(tmp_path / "a", 5)
    write(tmp_path / "b", 5)
    for first, second in zip(shard_paths(tmp_path / "a"), shard_paths(tmp_path / "b"), strict=True):
        assert first.read_bytes() == second.read_bytes()


def test_worker_shards_split_the_samples(tmp_path):
    write(tmp_path / "rec", 7, per_shard=1)
    rows = [
        sorted(int(r["patch_row"]) // 64 for r in make_dataset(tmp_path / "rec", shard=(2, i)).as_numpy_iterator())
        for i in (0, 1)
    ]
    assert sorted(rows[0] + rows[1]) == list(range(7))
    assert not set(rows[0]) & set(rows[1])


def test_interrupted_writing_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), RecordsWriter(tmp_path / "rec", 2) as writer:
        writer.write(sample(0))
        writer.write(sample(1))
        writer.write(sample(2))
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_sample_with_other_keys_or_shapes_is_refused(tmp_path):
    with pytest.raises(RecordsError, match="missing \\['tile'\\]"), RecordsWriter(tmp_path / "rec", 2) as writer:
        writer.write(sample(0))
        writer.write({k: v for k, v in sample(1).items() if k != "tile"})
    with pytest.raises(RecordsError, match="'s2_t'"), RecordsWriter(tmp_path / "rec", 2) as writer:
        writer.write(sample(0))
        writer.write({**sample(1), "s2_t": np.zeros((4, 4, 4), np.int16)})
    with pytest.raises(RecordsError, match="no sample"), RecordsWriter(tmp_path / "rec", 2):
        pass
    assert list(tmp_path.iterdir()) == []


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(InputNotFoundError):
        make_dataset(tmp_path / "missing")
    write(tmp_path / "rec", 2)
    with pytest.raises(RecordsError, match="no key \\['s2_tm1'\\]"):
        make_dataset(tmp_path / "rec", keys=["s2_tm1"])
    (tmp_path / "rec" / SHAPES_FILE).write_text(json.dumps({"s2_t": [8, 8, 4]}))
    with pytest.raises(RecordsError, match="different keys"):
        make_dataset(tmp_path / "rec")
    (tmp_path / "rec" / TYPES_FILE).unlink()
    with pytest.raises(RecordsError, match=TYPES_FILE):
        make_dataset(tmp_path / "rec")
