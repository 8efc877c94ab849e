"""The acquisition layouts shipped with decloud (package data, so they exist in every installation, not only
in a source checkout): one JSON file per family of models, described in ``layouts/README.md``."""

from __future__ import annotations

from pathlib import Path

from decloud.core.errors import InputNotFoundError

#: Folder of the shipped layouts, inside the installed package.
LAYOUTS_DIR = Path(__file__).resolve().parent / "layouts"


def shipped_layouts() -> dict[str, Path]:
    """Every shipped layout, by name (the file name without ``.json``)."""
    return {path.stem: path for path in sorted(LAYOUTS_DIR.glob("*.json"))}


def layout_path(name: str) -> Path:
    """The file of the shipped layout ``name`` (e.g. ``crga_os2``); the error lists the names that exist."""
    layouts = shipped_layouts()
    if name not in layouts:
        shipped = ", ".join(layouts)
        raise InputNotFoundError(LAYOUTS_DIR / f"{name}.json", f"acquisition layout {name!r} (shipped: {shipped})")
    return layouts[name]
