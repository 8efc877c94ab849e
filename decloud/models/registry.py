"""The model factory: ``--model NAME`` finds any registered architecture.

An architecture registers itself with ``@register("name")`` when its module is imported. decloud's own
modules are imported on first use; a user's architectures are found by importing their module
(``--model_module my_pkg.my_models``) or through the ``decloud.models`` entry-point group of an installed
package (``[options.entry_points] decloud.models = mine = my_pkg.my_models``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

from decloud.core.errors import InvalidArgumentError
from decloud.models.model import Model

#: Entry-point group through which installed packages add architectures.
ENTRY_POINT_GROUP = "decloud.models"
#: decloud's own architecture modules.
BUILTIN_MODULES = (
    "decloud.models.meraner",
    "decloud.models.crga",
    "decloud.models.monthly_synthesis",
    "decloud.models.gapfilling",
    "decloud.superres.models",
)

_REGISTRY: dict[str, type[Model]] = {}


def register(name: str) -> Callable[[type[Model]], type[Model]]:
    """Class decorator: make ``cls`` available as ``--model name``."""

    def decorate(cls: type[Model]) -> type[Model]:
        if not (isinstance(cls, type) and issubclass(cls, Model)):
            raise TypeError(f"@register({name!r}) decorates {cls!r}, which is not a decloud Model subclass")
        known = _REGISTRY.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise InvalidArgumentError(
                f"model name {name!r} is already taken by {known.__module__}.{known.__qualname__}"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def import_modules(modules: Iterable[str]) -> None:
    """Import modules that register architectures (a user's module named on the command line)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise InvalidArgumentError(f"cannot import model module {module!r}: {error}") from error


def _load_all() -> None:
    import_modules(BUILTIN_MODULES)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()


def available_models() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def model_class(name: str) -> type[Model]:
    _load_all()
    if name not in _REGISTRY:
        raise InvalidArgumentError(f"unknown model {name!r}; available models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, **params: Any) -> Model:
    """An instance of the architecture registered as ``name`` with ``params`` (see its ``DEFAULTS``)."""
    return model_class(name)(**params)
