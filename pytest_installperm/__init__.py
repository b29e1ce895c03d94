"""pytest-installperm: test what installers do when they may not write.

Fixtures: ``installperm`` (an :class:`InstallPerm`), ``make_wheel`` and
``installperm_fakefs``. See the README for the contract.

The names below load on first use: pytest imports this package (through the
plugin) in every session of every project that has it installed, and most
sessions never ask for a fixture.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_installperm.backends.contain.limits import Limits
    from pytest_installperm.changes import Changes
    from pytest_installperm.environment import Environment, InstallPerm
    from pytest_installperm.errors import (
        BackendError,
        FakefsError,
        InstallPermError,
        InterpreterError,
        LockUnavailable,
        PlacementError,
        RoleError,
        ScenarioError,
        WheelError,
    )
    from pytest_installperm.fakefs import FakeInstallPerm
    from pytest_installperm.run import RunResult
    from pytest_installperm.wheels import MakeWheel, WheelLayout, build_wheel, read_wheel

#: Exported name -> the module that defines it.
_EXPORTS = {
    "BackendError": "errors",
    "Changes": "changes",
    "Environment": "environment",
    "FakeInstallPerm": "fakefs",
    "FakefsError": "errors",
    "InstallPerm": "environment",
    "InstallPermError": "errors",
    "InterpreterError": "errors",
    "Limits": "backends.contain.limits",
    "LockUnavailable": "errors",
    "MakeWheel": "wheels",
    "PlacementError": "errors",
    "RoleError": "errors",
    "RunResult": "run",
    "ScenarioError": "errors",
    "WheelError": "errors",
    "WheelLayout": "wheels",
    "build_wheel": "wheels",
    "read_wheel": "wheels",
}

__all__ = [
    "BackendError",
    "Changes",
    "Environment",
    "FakeInstallPerm",
    "FakefsError",
    "InstallPerm",
    "InstallPermError",
    "InterpreterError",
    "Limits",
    "LockUnavailable",
    "MakeWheel",
    "PlacementError",
    "RoleError",
    "RunResult",
    "ScenarioError",
    "WheelError",
    "WheelLayout",
    "build_wheel",
    "read_wheel",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_installperm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pytest_installperm.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
