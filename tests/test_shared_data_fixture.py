"""The ``shared_data`` fixture skips when ../shared/data is absent, fails instead when
DECLOUD_REQUIRE_SHARED_DATA=1 (as .ci/run sets it), and gives the folder when it exists.

Each case runs pytest in a subprocess on a copy of tests/conftest.py placed in a scratch repository, so the
presence of the data is under the test's control."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
USES_DATA = """
def test_reads_the_data(shared_data):
    assert (shared_data / "README.md").read_text() == "real data"
"""


def run_pytest(repository: Path, require: str | None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "DECLOUD_REQUIRE_SHARED_DATA"}
    environment["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the scratch tests need no plugin: start fast
    if require is not None:
        environment["DECLOUD_REQUIRE_SHARED_DATA"] = require
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q", str(repository / "tests")],
        cwd=repository, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture
def repository(tmp_path) -> Path:
    """<tmp>/repo/tests/{conftest.py, test_uses_data.py}; the fixture looks for <tmp>/shared/data."""
    tests = tmp_path / "repo" / "tests"
    tests.mkdir(parents=True)
    shutil.copy(TESTS / "conftest.py", tests / "conftest.py")
    (tests / "test_uses_data.py").write_text(USES_DATA)
    return tmp_path / "repo"


def test_absent_data_skips_with_the_reason(repository):
    done = run_pytest(repository, None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    assert f"real Sentinel data not found at {repository.parent / 'shared' / 'data'}" in done.stdout


def test_absent_data_fails_when_required(repository):
    done = run_pytest(repository, "1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 error" in done.stdout and "skipped" not in done.stdout
    assert "DECLOUD_REQUIRE_SHARED_DATA=1 requires it" in done.stdout


def test_present_data_is_given_to_the_tests(repository):
    data = repository.parent / "shared" / "data"
    data.mkdir(parents=True)
    (data / "README.md").write_text("real data")
    for require in (None, "1"):
        done = run_pytest(repository, require)
        assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


def test_ci_requires_the_data():
    lines = (TESTS.parent / ".ci" / "run").read_text().splitlines()
    exported = lines.index("export DECLOUD_REQUIRE_SHARED_DATA=1")
    assert exported < lines.index("python -m pytest")  # set before the tests run
