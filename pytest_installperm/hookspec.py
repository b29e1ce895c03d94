"""The plugin's hooks: how plugins and conftests add installer presets.

Kept apart from the installers package so that registering the hook, which
happens in every pytest session, imports none of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_installperm.installers.registry import Registry


@pytest.hookspec
def pytest_installperm_installers(registry: Registry) -> None:
    """Add presets: ``registry.add("mytool", MyTool)``, with ``MyTool`` an
    :class:`pytest_installperm.installers.Installer` subclass taking no arguments.

    Called once per session, before the matrix reads ``--installperm-installer``;
    implement it in a plugin or in an initial (rootdir) ``conftest.py``.
    """
