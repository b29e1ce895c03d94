"""Install schemes: where each kind of wheel file goes, for every way of asking.

A scheme maps the five wheel scheme keys (:data:`SCHEME_KEYS`) to directories.
An environment has two of its own, ``system`` (its prefix's, or the venv's) and
``user`` (below the user base). An installer can also be sent elsewhere:

================  =============================================================
spelling          where
================  =============================================================
``system``        the environment's own scheme
``user``          the user scheme (``pip install --user``)
``prefix:DIR``    ``--prefix DIR``: ``sysconfig``'s ``posix_prefix`` with DIR as
                  its base. Debian's ``posix_local`` is *not* applied: pip 26.3
                  maps it to ``posix_prefix``, so ``DIR/lib/python3.X/
                  site-packages`` and ``DIR/bin`` (pip 25.3 and older wrote
                  ``DIR/local/...``)
``target:DIR``    ``--target DIR``: packages and data at the top, scripts in
                  ``DIR/bin``, headers in ``DIR/include/python`` (pip) or
                  ``DIR/include`` (uv); both are accepted
``root:DIR``      ``--root DIR``: the system scheme below DIR
================  =============================================================

Every fact a scheme needs is learned when the environment is built, before
any child runs (the ``--prefix`` layout comes from the same probe as the
system and user schemes): nothing here runs the environment's interpreter, so
nothing a child wrote can execute in this process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from types import MappingProxyType

from pytest_installperm.errors import RoleError

SCHEME_KEYS = ("purelib", "platlib", "scripts", "data", "headers")
#: The scheme names; those after the first two take a directory (``NAME:DIR``).
SCHEME_NAMES = ("system", "user", "prefix", "target", "root")
_NEEDS_DIR = frozenset({"prefix", "target", "root"})

Paths = Mapping[str, Path]


@dataclass(frozen=True)
class Scheme:
    """Where an install should go: scheme paths and where headers may live."""

    label: str
    paths: Paths
    #: Directories whose ``<project>`` subdirectory receives the headers.
    header_dirs: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if not self.header_dirs:
            object.__setattr__(self, "header_dirs", (Path(self.paths["headers"]),))


def parse(spelling: str) -> tuple[str, Path | None]:
    """``"prefix:/x"`` -> ``("prefix", Path("/x"))``; ``"user"`` -> ``("user", None)``."""
    name, sep, where = spelling.partition(":")
    if name not in SCHEME_NAMES or (name in _NEEDS_DIR) != bool(sep and where):
        raise RoleError(
            f"scheme {spelling!r}: must be one of 'system', 'user', 'prefix:DIR', "
            "'target:DIR' or 'root:DIR'"
        )
    return name, Path(where) if sep else None


def target(top: str | os.PathLike[str]) -> Scheme:
    """``--target DIR``: packages at the top, scripts in ``bin``."""
    top = Path(os.path.abspath(top))
    paths = {
        "purelib": top,
        "platlib": top,
        "scripts": top / "bin",
        "data": top,
        "headers": top / "include" / "python",
    }
    return Scheme(f"target {top}", paths, (top / "include" / "python", top / "include"))


def rerooted(paths: Paths, root: str | os.PathLike[str]) -> dict[str, Path]:
    """``paths`` below ``root``, as ``--root`` places them."""
    top = Path(root)
    return {k: top / Path(v).relative_to(Path(v).anchor) for k, v in paths.items()}


def relative_layout(paths: Mapping[str, str], base: str) -> dict[str, PurePosixPath]:
    """A scheme computed for ``base``, as paths relative to it (for any other base)."""
    return {k: PurePosixPath(os.path.relpath(paths[k], base)) for k in SCHEME_KEYS}


@dataclass(frozen=True)
class Schemes:
    """The scheme facts of one environment, fixed when it is built.

    ``prefix_layout`` is ``posix_prefix`` relative to its base, so that
    ``paths("prefix", base=DIR)`` needs no interpreter. ``prefix_local_layout``
    is Debian's ``posix_local`` the same way (empty elsewhere): where pip before
    26.3 installs ``--prefix DIR`` (:meth:`prefix`).
    """

    system: Paths
    user: Paths
    prefix_layout: Mapping[str, PurePath] = field(default_factory=dict)
    prefix_local_layout: Mapping[str, PurePath] = field(default_factory=dict)
    #: The system scheme as the installer sees it, where that differs (in
    #: place: the real paths the sandbox is bound on); ``--root DIR`` puts
    #: these below DIR.
    seen_system: Paths = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.seen_system:
            object.__setattr__(self, "seen_system", self.system)
        for name in ("system", "user", "prefix_layout", "prefix_local_layout", "seen_system"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def paths(self, name: str, base: str | os.PathLike[str] | None = None) -> Paths:
        """The scheme called ``name``; ``prefix``, ``target`` and ``root`` need ``base``."""
        return self.scheme(name, base).paths

    def scheme(self, name: str, base: str | os.PathLike[str] | None = None) -> Scheme:
        """:meth:`paths` with a label and the header directories."""
        if name not in SCHEME_NAMES:
            raise RoleError(
                f"paths({name!r}): scheme paths exist for {', '.join(map(repr, SCHEME_NAMES))}"
            )
        if (name in _NEEDS_DIR) != (base is not None):
            need = "needs base=DIR" if name in _NEEDS_DIR else "takes no base"
            raise RoleError(f"paths({name!r}, base={base!r}): scheme {name!r} {need}")
        if name == "system":
            return Scheme(name, self.system)
        if name == "user":
            return Scheme(name, self.user)
        top = Path(os.path.abspath(os.fspath(base)))  # type: ignore[arg-type]
        if name == "target":
            return target(top)
        if name == "root":
            return Scheme(f"root {top}", rerooted(self.seen_system, top))
        return self.prefix(top)

    def prefix_schemes(self) -> tuple[str, ...]:
        """The sysconfig schemes :meth:`prefix` knows here, sorted."""
        return ("posix_local", "posix_prefix") if self.prefix_local_layout else ("posix_prefix",)

    def prefix(self, base: str | os.PathLike[str], scheme: str = "posix_prefix") -> Scheme:
        """``--prefix DIR`` by sysconfig scheme ``scheme`` (one of :meth:`prefix_schemes`)."""
        layout = {"posix_prefix": self.prefix_layout, "posix_local": self.prefix_local_layout}
        if not layout.get(scheme):
            raise RoleError(
                f"paths('prefix') by scheme {scheme!r}: this environment's --prefix layout "
                "is unknown"
            )
        top = Path(os.path.abspath(os.fspath(base)))
        return Scheme(f"prefix {top}", {k: top / v for k, v in layout[scheme].items()})


__all__ = [
    "SCHEME_KEYS",
    "SCHEME_NAMES",
    "Scheme",
    "Schemes",
    "parse",
    "relative_layout",
    "rerooted",
    "target",
]
