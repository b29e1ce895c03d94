"""The pip of every sandbox: a readable, read-only copy of the pip running
pytest, made once per session (or taken from the template cache), which each
sandbox's system site links to."""

from __future__ import annotations

import functools
import importlib.metadata
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pytest_installperm.cache import identity
from pytest_installperm.interpreter import readable_link

#: ``cached(kind, key, build)``: the tree ``build`` writes, kept under ``key``.
Cached = Callable[[str, dict[str, object], Callable[[Path], None]], Path]


@dataclass(frozen=True)
class PipCopy:
    """A readable copy of the running environment's pip."""

    package: Path
    dist_info: Path
    version: str = ""
    requires_python: str | None = None

    def runs_on(self, python_version: str) -> bool:
        """True if this pip's Requires-Python admits ``python_version`` (e.g. "3.9")."""
        return _admits(self.requires_python, python_version)


@functools.cache  # asked for every sandbox, with the same two strings
def _admits(requires_python: str | None, python_version: str) -> bool:
    if not requires_python:
        return True
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(requires_python).contains(python_version + ".0")


def copy_pip(cached: Cached) -> PipCopy | None:
    """The running environment's pip, copied into the tree ``cached`` gives
    (with its bytecode), or None if it has none."""
    try:
        dist = importlib.metadata.distribution("pip")
    except importlib.metadata.PackageNotFoundError:
        return None
    package = _package_dir(dist)
    dist_info = Path(str(dist._path))  # type: ignore[attr-defined]

    def build(tree: Path) -> None:
        # Keep pip's bytecode: a child cannot write caches into this read-only
        # copy, and without them every pip run recompiles pip (2 s vs 0.4 s).
        tree.mkdir()
        shutil.copytree(package, tree / "pip", symlinks=True, copy_function=readable_link)
        shutil.copytree(dist_info, tree / dist_info.name, copy_function=readable_link)

    key: dict[str, object] = {
        "version": dist.version,
        "package": identity(package),
        "init": identity(package / "__init__.py"),
        "dist_info": identity(dist_info),
    }
    tree = cached("pip", key, build)
    return PipCopy(
        tree / "pip",
        tree / dist_info.name,
        version=dist.version,
        requires_python=(dist.metadata.get_all("Requires-Python") or [None])[0],
    )


def _package_dir(dist: importlib.metadata.Distribution) -> Path:
    """Where pip's package really lives: beside its dist-info, or, for an
    editable install (flit leaves only a ``.pth`` file there), in the source
    tree that its ``direct_url.json`` names."""
    from pytest_installperm.releases import installed_location

    site = Path(str(dist.locate_file("")))
    found = installed_location("pip", site)
    if found is None:
        raise FileNotFoundError(
            f"pip is installed in {site} ({dist.version}), but neither its package nor "
            "the source tree of an editable install (direct_url.json) was found"
        )
    return found / "pip"


__all__ = ["PipCopy", "copy_pip"]
