"""Which presets exist: the built-in ones, entry points, and a pytest hook.

A preset is an :class:`~pytest_installperm.installers.base.Installer` subclass
(or any callable returning an installer) that takes no arguments. Three ways
to register one, all ending in :meth:`Registry.add`:

- built in: one line in :data:`BUILTIN`, naming the module and class;
- a distribution's entry point in the group ``pytest_installperm.installers``
  (``NAME = "module:Class"``), loaded when the preset is asked for;
- a ``pytest_installperm_installers(registry)`` hook in a plugin or an initial
  ``conftest.py``, which calls ``registry.add(NAME, Class)``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import pytest

from pytest_installperm.installers.base import Installer
from pytest_installperm.installers.template import NAME

if TYPE_CHECKING:
    from pytest_installperm.sandbox import Sandbox

#: The built-in presets: name -> "module:attribute". Adding a preset is one
#: module in this package and one line here.
BUILTIN: Mapping[str, str] = {
    "hatch": "pytest_installperm.installers.hatch:Hatch",
    "installer": "pytest_installperm.installers.pypa_installer:InstallerCli",
    "pdm": "pytest_installperm.installers.pdm:Pdm",
    "pip": "pytest_installperm.installers.pip:Pip",
    "pipx": "pytest_installperm.installers.pipx:Pipx",
    "poetry": "pytest_installperm.installers.poetry:Poetry",
    "uv": "pytest_installperm.installers.uv:Uv",
}
ENTRY_POINT_GROUP = "pytest_installperm.installers"

Factory = Callable[[], Installer]


def _load(target: str) -> Factory:
    module, _, attribute = target.partition(":")
    factory: Factory = getattr(importlib.import_module(module), attribute)
    return factory


class Registry:
    """Preset name -> how to make one; names are unique."""

    def __init__(self) -> None:
        self._factories: dict[str, Factory | str] = {}
        self._origins: dict[str, str] = {}

    def add(self, name: str, factory: Factory | str, *, origin: str = "a plugin") -> None:
        """Register ``factory`` (or ``"module:attribute"``) as preset ``name``."""
        if not NAME.fullmatch(name):
            raise ValueError(
                f"installer preset name {name!r} (from {origin}) must be letters, digits, "
                "'.', '_' or '-'"
            )
        if name in self._factories:
            raise ValueError(
                f"installer preset {name!r} from {origin} is already registered by "
                f"{self._origins[name]}"
            )
        self._factories[name] = factory
        self._origins[name] = origin

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._factories))

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def make(self, name: str) -> Installer:
        """A fresh instance of preset ``name`` (KeyError if there is none)."""
        factory = self._factories[name]
        if isinstance(factory, str):
            factory = self._factories[name] = _load(factory)
        installer = factory()
        if installer.name != name:
            raise ValueError(
                f"installer preset {name!r} (from {self._origins[name]}) made an "
                f"installer named {installer.name!r}"
            )
        return installer

    def presets(self) -> list[Installer]:
        """One instance of every preset, in name order."""
        return [self.make(name) for name in self.names()]


def default_registry() -> Registry:
    """The built-in presets and every installed entry point's."""
    registry = Registry()
    for name, target in BUILTIN.items():
        registry.add(name, target, origin="pytest-installperm")
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        registry.add(point.name, point.value, origin=f"entry point {point.value!r}")
    return registry


_REGISTRY_KEY = pytest.StashKey[Registry]()


def config_registry(config: pytest.Config) -> Registry:
    """The default registry plus what plugins and conftests add through the
    hook; built once per session."""
    registry = config.stash.get(_REGISTRY_KEY, None)
    if registry is None:
        registry = default_registry()
        try:
            config.hook.pytest_installperm_installers(registry=registry)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from exc
        config.stash[_REGISTRY_KEY] = registry
    return registry


def isolation(installers: Iterable[Installer], sandbox: Sandbox) -> dict[str, str]:
    """Every installer's isolation variables; two presets may not disagree on one."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for installer in installers:
        for key, value in installer.isolation(sandbox).items():
            if key in merged and merged[key] != value:
                raise ValueError(
                    f"installer {installer.name!r} sets {key}={value!r}, but "
                    f"{owner[key]!r} sets {key}={merged[key]!r}"
                )
            merged[key], owner[key] = value, installer.name
    return merged
