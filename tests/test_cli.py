"""The umbrella command and the command reference, which must not drift from the parsers."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from decloud.cli import COMMANDS, main, reference_markdown

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_command_reference_matches_the_parsers():
    """docs/commands.md is generated from the parsers: a flag added without regenerating it fails here."""
    documented = (REPO_ROOT / "docs" / "commands.md").read_text()
    assert documented == reference_markdown(), "run: python -m decloud.cli --reference > docs/commands.md"


def test_every_flag_is_in_the_reference():
    reference = reference_markdown()
    for module in COMMANDS.values():
        for action in importlib.import_module(module).build_parser()._actions:
            for flag in action.option_strings:
                assert flag in ("-h", "--help") or f"`{flag}`" in reference


def test_readme_names_every_command():
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [name for name in COMMANDS if f"decloud {name}" not in readme and f"`{name}`" not in readme]
    assert missing == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_status:
        main([command, "--help"])
    assert exit_status.value.code == 0
    assert "usage: decloud " + command in capsys.readouterr().out


def test_unknown_command_and_no_command_exit_non_zero(capsys):
    assert main(["prepare-everything"]) == 2
    assert "unknown command 'prepare-everything'" in capsys.readouterr().err
    assert main([]) == 2


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "decloud"], capture_output=True, text=True)
    assert result.returncode == 2 and "s2-prepare" in result.stdout
