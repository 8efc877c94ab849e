"""The package's layering, read from the imports of every module (ast, nothing is imported): lower layers
never import higher ones, library code never imports a command module, every name is imported from the
module that defines it (no re-export shims), a constant is defined in one module, and a library module is
not named like a command module of its package."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

#: The package as Python finds it (PYTHONPATH), read as source.
PACKAGE_ROOT = Path(importlib.util.find_spec("decloud").origin).parent
#: The shared layers, lowest first (DESIGN.md): a module may import its own layer and the ones before it.
LAYERS = ("core", "preprocessing", "acquisitions", "sampling", "models", "production")
#: The command modules (decloud/cli.py registers them; listed here so the test does not trust the code it checks).
COMMAND_MODULES = {
    "decloud.preprocessing.sentinel2_prepare",
    "decloud.preprocessing.sentinel1_prepare",
    "decloud.preprocessing.dem_prepare",
    "decloud.preprocessing.generate_roi_rasters",
    "decloud.models.create_tfrecords",
    "decloud.models.train_from_tfrecords",
    "decloud.models.model_evaluation",
    "decloud.models.assess",
    "decloud.models.export_onnx",
    "decloud.production.crga_processor",
    "decloud.production.meraner_processor",
    "decloud.production.monthly_synthesis_processor",
    "decloud.production.crga_timeseries_processor",
    "decloud.production.meraner_timeseries_processor",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, ast.Module] = {
    _module_name(path): ast.parse(path.read_text(encoding="utf-8"), str(path))
    for path in sorted(PACKAGE_ROOT.rglob("*.py"))
}


def _imports(tree: ast.Module) -> list[tuple[str, str | None]]:
    """(module, name or None) of every decloud import of a module, at any depth (imports inside functions too)."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == "decloud"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "decloud":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.append((submodule, None) if submodule in MODULES else (node.module, alias.name))
    return found


def _defined_names(tree: ast.Module) -> set[str]:
    """Names a module defines at its top level (functions, classes, assignments, including tuple targets)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_the_modules_are_found():
    assert {"decloud.core.raster", "decloud.sampling.catalog", "decloud.production.streaming"} <= set(MODULES)
    assert set(MODULES) >= COMMAND_MODULES


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_itself_and_lower_layers(layer):
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    wrong = sorted(
        f"{module} imports {target}"
        for module, tree in MODULES.items()
        if _layer(module) == layer
        for target, _ in _imports(tree)
        if target != "decloud" and _layer(target) not in allowed
    )
    assert wrong == []


def test_library_layers_never_import_a_command_module():
    wrong = sorted(
        f"{module} imports {target}"
        for module, tree in MODULES.items()
        if _layer(module) is not None
        for target, _ in _imports(tree)
        if target in COMMAND_MODULES and target != module
    )
    assert wrong == []


def test_production_takes_products_from_core_not_from_sampling():
    """Production reads prepared products itself: it needs nothing of the sampling layer."""
    wrong = sorted(
        f"{module} imports {target}"
        for module, tree in MODULES.items()
        if module.startswith("decloud.production.")
        for target, _ in _imports(tree)
        if target.startswith("decloud.sampling")
    )
    assert wrong == []


def test_every_name_is_imported_from_the_module_that_defines_it():
    """A name imported from a module that only imports it itself is a second path to one definition."""
    defined = {module: _defined_names(tree) for module, tree in MODULES.items()}
    wrong = sorted(
        f"{module} imports {name} from {target}"
        for module, tree in MODULES.items()
        for target, name in _imports(tree)
        if name is not None and not name.startswith("__") and name not in defined.get(target, set())
    )
    assert wrong == []


def test_a_constant_of_the_layers_is_defined_in_one_module():
    """An upper-case module constant (HOUR, a suffix, a band order...) defined twice can drift apart."""
    owners: dict[str, list[str]] = {}
    for module, tree in MODULES.items():
        if _layer(module) is not None:
            for name in _defined_names(tree):
                if name.isupper():
                    owners.setdefault(name, []).append(module)
    assert {name: modules for name, modules in owners.items() if len(modules) > 1} == {}


def _words(module: str) -> set[str]:
    """The words of a module's last name, stemmed enough that training/train and evaluation/evaluate meet."""
    return {re.sub(r"(ing|ion|e)$", "", word) for word in module.rsplit(".", 1)[-1].split("_")}


def test_no_library_module_is_named_with_the_words_of_a_command_module_of_its_package():
    """``onnx_export`` beside ``export_onnx``: a reader cannot tell the command from the library."""
    look_alikes = sorted(
        f"{library} / {command}"
        for command in COMMAND_MODULES
        for library in MODULES
        if library not in COMMAND_MODULES
        and library.rsplit(".", 1)[0] == command.rsplit(".", 1)[0]
        and _words(library) == _words(command)
    )
    assert look_alikes == []


def test_the_library_modules_of_train_evaluate_and_export_onnx_say_they_are_not_the_commands():
    """The libraries once named ``training``, ``evaluation`` and ``onnx_export`` beside the commands
    ``train_from_tfrecords``, ``model_evaluation`` and ``export_onnx``."""
    former = {"decloud.models.training", "decloud.models.evaluation", "decloud.models.onnx_export"}
    renamed = {"decloud.models.training_loop", "decloud.models.record_scoring", "decloud.models.onnx_conversion"}
    assert former & set(MODULES) == set()
    assert renamed <= set(MODULES)


def test_the_stemming_matches_reordered_words():
    assert _words("decloud.models.onnx_export") == _words("decloud.models.export_onnx")
    assert _words("decloud.models.training") == _words("decloud.models.train")
    assert _words("decloud.models.onnx_conversion") != _words("decloud.models.export_onnx")


_BLOCKS = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.AsyncWith, ast.Try)


def _nesting(node: ast.AST, depth: int = 0) -> int:
    """The deepest nesting of blocks (for, while, if, with, try) in a function; an ``elif`` is no deeper than
    its ``if``, and nested functions count on their own."""
    deepest = depth
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        is_elif = isinstance(node, ast.If) and node.orelse == [child] and isinstance(child, ast.If)
        deeper = isinstance(child, _BLOCKS) and not is_elif
        deepest = max(deepest, _nesting(child, depth + 1 if deeper else depth))
    return deepest


def test_the_nesting_measure():
    function = ast.parse(
        "def f(x):\n"
        "    for a in x:\n"
        "        if a:\n"
        "            pass\n"
        "        elif not a:\n"
        "            with a:\n"
        "                pass\n"
    ).body[0]
    assert _nesting(function) == 3


def test_no_function_of_the_layers_nests_more_than_four_blocks():
    """Deeper code (a loop in a loop in a loop under a context...) hides what a step does: split it."""
    deep = sorted(
        f"{module}.{node.name}: {_nesting(node)}"
        for module, tree in MODULES.items()
        if _layer(module) is not None
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _nesting(node) > 4
    )
    assert deep == []


def test_one_png_writer():
    """Pictures (quicklooks, drawings) are written by decloud.core.raster.write_png only."""
    writers = sorted(
        module
        for module, tree in MODULES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword)
        and node.arg in ("driver", "format")
        and isinstance(node.value, ast.Constant)
        and str(node.value.value).upper() == "PNG"
    )
    assert writers == ["decloud.core.raster"]


def _identifiers(tree: ast.Module) -> set[str]:
    """Every name a module binds or reads: variables, arguments, functions, classes, attributes, keywords."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.keyword) and node.arg:
            found.add(node.arg)
    return found


@pytest.mark.parametrize(
    "module", ["decloud.production.streaming", "decloud.production.sources", "decloud.production.processors"]
)
def test_the_engine_says_chunk_and_keeps_tile_for_the_sentinel2_tile(module):
    """The engine runs a model chunk by chunk (``--ts`` is the chunk side); it knows nothing of MGRS tiles."""
    assert sorted(name for name in _identifiers(MODULES[module]) if "tile" in name.lower()) == []


#: The JSON keys of an acquisition layout (the Decloud user guide's names).
LAYOUT_JSON_KEYS = (
    "acquisition", "timeframe_start_hours", "timeframe_end_hours", "max_s1s2_gap_hours", "timeframe_origin",
    "clouds_from", "type", "min_cloud_percent", "max_cloud_percent", "random", "siblings",
)  # fmt: skip


def test_the_layout_json_keys_are_spelled_in_one_module():
    """The layouts' JSON form is written and read with the same names: one module spells them."""
    spellers = {
        key: sorted(
            module
            for module, tree in MODULES.items()
            if module.startswith("decloud.acquisitions")
            and any(isinstance(node, ast.Constant) and node.value == key for node in ast.walk(tree))
        )
        for key in LAYOUT_JSON_KEYS
    }
    assert spellers == {key: ["decloud.acquisitions.sensing_layout"] for key in LAYOUT_JSON_KEYS}


def test_the_s1_statistics_name_is_built_by_one_module():
    """The name of a prepared S1 image's statistics raster: written by s1-prepare, read by the catalog."""
    users = sorted(
        module
        for module, tree in MODULES.items()
        if module != "decloud.core.constants"
        and any(isinstance(node, ast.Name) and node.id == "S1_SUFFIX_NODATA_STATS" for node in ast.walk(tree))
    )
    assert users == ["decloud.core.products"]


def test_complete_products_are_listed_by_one_module():
    """Listing a folder's complete products (a folder, its completion marker, not a temporary) is one rule,
    core.products.prepared_s2_series: the catalog, the processors and the tile grid all call it."""
    listers = sorted(
        module
        for module, tree in MODULES.items()
        if module != "decloud.core.atomic"  # publishes outputs, and cleans what killed runs left
        and any(isinstance(node, ast.Attribute) and node.attr == "iterdir" for node in ast.walk(tree))
        and any(
            isinstance(node, ast.Name) and node.id in ("is_complete", "COMPLETION_MARKER") for node in ast.walk(tree)
        )
    )
    assert listers == ["decloud.core.products"]
