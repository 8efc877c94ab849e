"""Damaged records are never read as if they were whole: a truncated shard (TensorFlow stops at the cut
without a word) is checked against the folder's summary.json and is an error naming the shard, or with
--allow_partial a loud warning; a shard with flipped bytes is an error naming it, not a traceback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from decloud.core.keys import sample_keys
from decloud.models import model_evaluation, train_from_tfrecords
from decloud.models.export import export_savedmodel
from decloud.models.registry import create_model
from decloud.sampling.tfrecords import RecordsError, check_sample_counts, corrupt_records_named, iterate_numpy
from decloud.testing.records import LAYOUTS, write_records

NAMES = sample_keys(LAYOUTS["crga_os2"], with_20m_bands=True)
#: What create-tfrecords writes in summary.json for 20 samples in shards of 8.
SUMMARY = {"total_samples": 20, "shard_samples": {"0.records": 8, "1.records": 8, "2.records": 4}}


@pytest.fixture
def records(tmp_path: Path) -> Path:
    folder = write_records(tmp_path / "records", NAMES, n_samples=20, patchsize=64, n_samples_per_shard=8)
    (folder / "summary.json").write_text(json.dumps(SUMMARY))
    return folder


def truncate(path: Path, cut: int) -> None:
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size - cut)


def cut_last_record(path: Path) -> None:
    """Remove a shard's last record exactly (TFRecord framing: uint64 length, 4-byte CRC, data, 4-byte CRC)."""
    data = path.read_bytes()
    offset = last = 0
    while offset < len(data):
        last = offset
        offset += 8 + 4 + int.from_bytes(data[offset : offset + 8], "little") + 4
    path.write_bytes(data[:last])


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 + 1000  # inside a record's data (the middle of a shard may be a record boundary)
    data[middle : middle + 8] = bytes(255 - value for value in data[middle : middle + 8])
    path.write_bytes(bytes(data))


def test_complete_records_pass(records: Path) -> None:
    assert check_sample_counts(records) == 20


def test_a_shard_cut_between_records_is_an_error(records: Path) -> None:
    """TensorFlow reads such a shard without a word (19 samples); the summary's counts tell."""
    cut_last_record(records / "1.records")
    assert sum(1 for _ in iterate_numpy(records, keys=["patch_row"])) == 19
    with pytest.raises(RecordsError, match=r"shard .*/1\.records holds 7 samples instead of 8"):
        check_sample_counts(records)


def test_a_truncated_shard_is_an_error_naming_it(records: Path) -> None:
    truncate(records / "1.records", 100)
    with pytest.raises(RecordsError, match=r"shard .*/1\.records is truncated: record 8 needs 100 bytes past its end"):
        check_sample_counts(records)


def test_allow_partial_warns_loudly_and_counts_the_complete_samples(
    records: Path, caplog: pytest.LogCaptureFixture
) -> None:
    truncate(records / "1.records", 100)
    with caplog.at_level(logging.WARNING, logger="decloud"):
        assert check_sample_counts(records, allow_partial=True) == 19
    (message,) = [record.getMessage() for record in caplog.records]
    assert message.startswith("INCOMPLETE RECORDS (--allow_partial): shard ") and "1.records is truncated" in message


def test_a_shard_missing_or_short_of_samples_is_an_error(records: Path) -> None:
    """A shard cut exactly between two records looks whole: the summary's count tells."""
    (records / "summary.json").write_text(
        json.dumps({**SUMMARY, "shard_samples": {**SUMMARY["shard_samples"], "2.records": 5}})
    )
    with pytest.raises(RecordsError, match=r"2\.records holds 4 samples instead of 5"):
        check_sample_counts(records)
    (records / "summary.json").write_text(json.dumps({"total_samples": 21}))
    with pytest.raises(RecordsError, match=r"holds 20 samples instead of the 21 of its summary\.json"):
        check_sample_counts(records)


def test_a_damaged_record_length_is_named(records: Path) -> None:
    path = records / "1.records"
    data = bytearray(path.read_bytes())
    data[0:8] = (10**9).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(RecordsError, match=r"1\.records is damaged: record 1 declares 1000000000 bytes"):
        check_sample_counts(records)


def test_flipped_bytes_name_the_shard(records: Path) -> None:
    flip_bytes(records / "2.records")
    damaged = pytest.raises(RecordsError, match=r"shard .*/2\.records is damaged \(write the records again\): ")
    with damaged, corrupt_records_named([records]):
        for _ in iterate_numpy(records, keys=["patch_row"]):
            pass


@pytest.fixture(scope="module")
def gapfilling_savedmodel(tmp_path_factory) -> Path:
    model = create_model("gapfilling", with_20m_bands=True)
    return export_savedmodel(model.model(), model, tmp_path_factory.mktemp("gapfilling") / "savedmodel")


def test_evaluate_fails_on_a_truncated_shard_and_runs_with_allow_partial(
    records: Path, gapfilling_savedmodel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncate(records / "1.records", 100)
    argv = ["--savedmodel", str(gapfilling_savedmodel), "--test_records", str(records)]
    assert model_evaluation.main(argv) == 1
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and "1.records is truncated" in stderr

    output = records.parent / "metrics.json"
    assert model_evaluation.main([*argv, "--allow_partial", "--output", str(output)]) == 0
    assert json.loads(output.read_text())["samples"] == 19


def test_evaluate_names_a_shard_with_flipped_bytes(
    records: Path, gapfilling_savedmodel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flip_bytes(records / "0.records")
    assert model_evaluation.main(["--savedmodel", str(gapfilling_savedmodel), "--test_records", str(records)]) == 1
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and "0.records is damaged" in stderr and "Traceback" not in stderr


def test_train_fails_on_a_truncated_shard_naming_it(records: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truncate(records / "2.records", 10)
    argv = ["--training_record", str(records), "-m", "gapfilling", "--with_20m_bands", "-e", "1"]
    assert train_from_tfrecords.main(argv) == 1
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and "2.records is truncated" in stderr
