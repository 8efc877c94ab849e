"""The umbrella command as users run it (the installed ``decloud`` console script), its commands and their
flags against literal expectations (the Decloud user guide's flags and the README's commands), and the
command reference, which must not drift from the parsers."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from decloud.cli import main, reference_markdown
from decloud.core.cli import run_command

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Every command, with flags users' scripts rely on (those of the Decloud user guide for the commands it
#: documents). Literal: a command or flag renamed or dropped fails here; new flags are welcome.
COMMAND_FLAGS = {
    "s2-prepare": ["--in_image", "--out_s2_dir", "--overwrite"],
    "s1-prepare": ["--input_s1_vh", "--out_s1_dir", "--overwrite"],
    "dem-prepare": ["--reference", "--input", "--output"],
    "generate-roi-rasters": ["--tiles", "--datasets", "--props", "--output_dir", "--rois", "--patchsize", "--seed"],
    "create-tfrecords": [
        "--acquisition_train", "--output_train", "--acquisitions_valid", "--outputs_valid", "--acquisitions_test",
        "--outputs_test", "--tiles", "--rois", "--patchsize", "--n_samples_per_shard", "--maxntrain",
        "--with_20m_bands", "--with_dem", "--seed", "--strategy",
    ],
    "crga-processor": [
        "--il_s1before", "--il_s2before", "--il_s1", "--in_s2", "--il_s1after", "--il_s2after", "--dem",
        "--savedmodel", "--output", "--output_20m", "--ts", "--pad", "--maxgap", "--with_20m_bands", "--keep_clear",
        "--write_intermediate", "--cog",
    ],
    "meraner-processor": ["--il_s1", "--in_s2", "--dem", "--savedmodel", "--output", "--output_20m", "--ts", "--pad"],
    "monthly-synthesis-processor": ["--il_s2", "--il_s1", "--year", "--month", "--savedmodel", "--output"],
    "crga-timeseries-processor": [
        "--s2_dir", "--s1_dir", "--dem", "--model", "--out_dir", "--start", "--end", "--ulx", "--uly", "--lrx",
        "--lry", "--overwrite", "--keep_clear",
    ],
    "meraner-timeseries-processor": ["--s2_dir", "--s1_dir", "--model", "--out_dir", "--start", "--end"],
    "train": [
        "--training_record", "--valid_records", "--model", "--model_params", "-lr", "-bt", "-bv", "-e",
        "--save_ckpt_dir", "--load_ckpt_dir", "--logdir", "--out_savedmodel", "--previews", "--strategy",
    ],
    "evaluate": ["--savedmodel", "--test_records", "--output"],
    "assess": ["--prediction", "--truth", "--mask", "--output"],
    "export-onnx": ["--savedmodel", "--output"],
    "superres": ["--in_image", "--out", "--model", "--ts", "--bicubic", "--cog"],
    "superres-export-onnx": ["--savedmodel", "--output"],
    "demo": ["--out", "--seed"],
    "demo-superres": ["--out", "--seed", "--quick"],
    "sits-extract": [
        "--s2_dir", "--from_npy", "--tile", "--out", "--window", "--reference_year", "--export_npy", "--overwrite",
    ],
    "sits-pretrain": [
        "--store", "--out", "--source", "--backbone", "--dim", "--depth", "--heads", "--projector", "--view_length",
        "--noise", "--lambda", "--batch", "--epochs", "--steps_per_epoch", "--learning_rate", "--seed", "--logdir",
        "--strategy",
    ],
    "sits-finetune": [
        "--store", "--labels", "--class_field", "--encoder", "--out", "--methods", "--test_share", "--labelled_share",
        "--epochs", "--batch", "--learning_rate", "--max_pixels_per_parcel", "--seed",
    ],
    "sits-embed": ["--encoder", "--store", "--out", "--dtype", "--window", "--no_pca", "--overwrite"],
    "sits-classify": ["--classifier", "--store", "--out", "--window", "--overwrite"],
    "sits-export-onnx": ["--encoder", "--output", "--opset"],
}  # fmt: skip


def installed_decloud(*arguments: str) -> subprocess.CompletedProcess:
    """Run the ``decloud`` console script that ``pip install`` put on PATH (not ``python -m``)."""
    script = shutil.which("decloud")
    assert script is not None, "the decloud console script is not on PATH: pip install -e '.[test]'"
    return subprocess.run([script, *arguments], capture_output=True, text=True, env=os.environ, timeout=300)


def test_the_console_script_lists_every_command():
    done = installed_decloud()
    assert done.returncode == 2
    assert done.stdout.startswith("usage: decloud <command> [flags]")
    listed = [line.split()[0] for line in done.stdout.split("commands:\n", 1)[1].splitlines() if line.strip()]
    assert listed == list(COMMAND_FLAGS)
    assert installed_decloud("--help").returncode == 0


def test_the_console_script_runs_a_command_and_reports_bad_input_in_one_line(tmp_path):
    done = installed_decloud("s2-prepare", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: decloud s2-prepare")
    missing = tmp_path / "S1B_missing_vh.tif"
    done = installed_decloud("s1-prepare", "--input_s1_vh", str(missing), "--out_s1_dir", str(tmp_path / "out"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and str(missing) in done.stderr
    assert done.stderr.startswith("decloud s1-prepare: error: ")
    assert not (tmp_path / "out").exists()


def test_an_unknown_command_exits_2_with_the_usage():
    done = installed_decloud("prepare-everything")
    assert done.returncode == 2
    assert "unknown command 'prepare-everything'" in done.stderr and "s2-prepare" in done.stderr


@pytest.mark.parametrize("command", list(COMMAND_FLAGS))
def test_every_command_has_its_flags(command, capsys):
    with pytest.raises(SystemExit) as exit_status:
        main([command, "--help"])
    assert exit_status.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: decloud {command}")
    words = set(shown.replace(",", " ").replace("[", " ").replace("]", " ").split())
    assert [flag for flag in COMMAND_FLAGS[command] if flag not in words] == []


def test_the_command_reference_matches_the_parsers():
    """docs/commands.md is generated from the parsers: a flag added without regenerating it fails here."""
    documented = (REPO_ROOT / "docs" / "commands.md").read_text()
    assert documented == reference_markdown(), "run: python -m decloud.cli --reference > docs/commands.md"
    for command, flags in COMMAND_FLAGS.items():
        section = documented.split(f"## `decloud {command}`\n", 1)[1].split("\n## ", 1)[0]
        assert [flag for flag in flags if f"`{flag}`" not in section] == [], command


def test_readme_names_every_command():
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [name for name in COMMAND_FLAGS if f"decloud {name}" not in readme and f"`{name}`" not in readme]
    assert missing == []


@pytest.mark.parametrize(
    ("signum", "status", "said"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_an_error_that_an_interruption_turned_into_is_reported_as_the_interruption(
    ctrl_c_raises, signum, status, said, capsys
):
    """A Ctrl-C that lands in TensorFlow's C code was seen to come out as a ValueError about the model call's
    arguments: the command says it was interrupted, with no traceback."""

    def action(args):
        try:
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt:
            raise ValueError("Signature specifies 14 arguments, got: 13") from None

    assert run_command(argparse.ArgumentParser(prog="decloud x"), action, []) == status
    assert capsys.readouterr().err.splitlines()[-1] == f"decloud x: {said}"

    def failing(args):
        raise ValueError("Signature specifies 14 arguments, got: 13")

    with pytest.raises(ValueError, match="14 arguments"):  # with no interruption, the error is not hidden
        run_command(argparse.ArgumentParser(prog="decloud x"), failing, [])
