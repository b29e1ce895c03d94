"""pytest-installperm: test what installers do when they may not write.

Fixtures: ``installperm`` (an :class:`InstallPerm`), ``make_wheel`` and
``installperm_fakefs``. See the README for the contract.
"""

from __future__ import annotations

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
from pytest_installperm.fakefs import FakeEnvironment, FakeInstallPerm, FakeResult
from pytest_installperm.run import RunResult
from pytest_installperm.wheels import MakeWheel, WheelLayout, build_wheel, read_wheel

__all__ = [
    "BackendError",
    "Changes",
    "Environment",
    "FakeEnvironment",
    "FakeInstallPerm",
    "FakeResult",
    "FakefsError",
    "InstallPerm",
    "InstallPermError",
    "InterpreterError",
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
