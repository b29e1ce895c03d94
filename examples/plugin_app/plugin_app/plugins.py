"""The app's "install a plugin" button.

Plugins are wheels. The app installs them with ``installer`` into the system
site-packages when it may write there, and otherwise into the user site, the
way pip falls back. A Docker image whose system site belongs to root, run as
uid 1000, is the case this exists for; ``tests/`` checks it with
``installperm_fakefs`` in milliseconds.
"""

from __future__ import annotations

import importlib.metadata
import os
import site
import sys
import sysconfig
from pathlib import Path

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile

#: Plugins are the distributions whose name starts with this.
PLUGIN_PREFIX = "plugin-app-"


class PluginInstallError(RuntimeError):
    """No site-packages this process may write to."""


def _writable(path: str) -> bool:
    """Whether we may create ``path``: ask about its nearest existing ancestor."""
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return os.access(path, os.W_OK)


def install_target() -> dict[str, str]:
    """The scheme to install into: the system one if writable, else the user one."""
    system = sysconfig.get_paths()
    if _writable(system["purelib"]) and _writable(system["platlib"]):
        return system
    if not site.ENABLE_USER_SITE:
        raise PluginInstallError(
            f"cannot install plugins: {system['purelib']} is not writable and the user "
            "site-packages are disabled for this Python"
        )
    return sysconfig.get_paths(scheme=sysconfig.get_preferred_scheme("user"))


def install_plugin(wheel: str | os.PathLike[str]) -> Path:
    """Install the plugin ``wheel``; return the site-packages it went to."""
    paths = install_target()
    with WheelFile.open(wheel) as source:
        scheme = {key: paths[key] for key in ("purelib", "platlib", "scripts", "data")}
        scheme["headers"] = os.path.join(paths["include"], source.distribution)
        destination = SchemeDictionaryDestination(
            scheme,
            interpreter=sys.executable,
            script_kind="posix",
            bytecode_optimization_levels=(0,),
        )
        install(source, destination, additional_metadata={"INSTALLER": b"plugin-app\n"})
    return Path(paths["purelib"])


def installed_plugins() -> list[str]:
    """Names of the installed plugins, from the system and user sites."""
    sites = [sysconfig.get_paths()["purelib"]]
    if site.ENABLE_USER_SITE:
        sites.append(sysconfig.get_paths(scheme=sysconfig.get_preferred_scheme("user"))["purelib"])
    names = {dist.metadata["Name"] for dist in importlib.metadata.distributions(path=sites)}
    return sorted(name for name in names if name.startswith(PLUGIN_PREFIX))
