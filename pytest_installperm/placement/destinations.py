"""Where an install should go: a scheme (``user``, ``system``, ``--target``,
``--prefix``, ``--root``, a mapping; all defined in
:mod:`pytest_installperm.schemes`) and each wheel member's destination in it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Union

from packaging.utils import canonicalize_name

from pytest_installperm import schemes
from pytest_installperm.errors import RoleError
from pytest_installperm.placement.protocol import EnvironmentLike
from pytest_installperm.schemes import Scheme
from pytest_installperm.wheels import Member, WheelLayout

SchemeArg = Union[str, "os.PathLike[str]", Mapping[str, Path]]


def target_scheme(target: str | os.PathLike[str]) -> Scheme:
    """The layout of ``--target DIR`` (see :mod:`pytest_installperm.schemes`)."""
    return schemes.target(target)


def prefix_scheme(env: EnvironmentLike, prefix: str | os.PathLike[str]) -> Scheme:
    """The layout of ``--prefix DIR`` for ``env`` (``posix_prefix`` below DIR)."""
    top = Path(os.path.abspath(prefix))
    return Scheme(f"prefix {top}", env.paths("prefix", base=top))


def resolve_scheme(env: EnvironmentLike, scheme: SchemeArg | Scheme) -> Scheme:
    """``"user"``, ``"system"``, ``"prefix:DIR"``, ``"target:DIR"`` (or a Path: a
    ``--target`` directory), or any scheme mapping."""
    if isinstance(scheme, Scheme):
        return scheme
    if isinstance(scheme, Mapping):
        return Scheme("custom scheme", {k: Path(v) for k, v in scheme.items()})
    if isinstance(scheme, str) and scheme in ("user", "system"):
        return Scheme(scheme, env.paths(scheme))
    if isinstance(scheme, str) and scheme.partition(":")[0] in schemes.SCHEME_NAMES[2:]:
        kind, _, where = scheme.partition(":")
        if not where:
            raise RoleError(f"scheme={scheme!r}: give the directory, as in '{kind}:/path/to/dir'")
        if kind == "target":
            return target_scheme(where)
        if kind == "prefix":
            return prefix_scheme(env, where)
        top = Path(os.path.abspath(where))
        return Scheme(f"root {top}", env.paths("root", base=top))
    if isinstance(scheme, os.PathLike) or os.path.isabs(scheme):
        return target_scheme(scheme)
    raise RoleError(
        f"scheme={scheme!r}: must be 'user', 'system', 'prefix:DIR' (--prefix DIR), "
        "'target:DIR' or a Path (--target DIR), 'root:DIR' (--root DIR), or a mapping "
        "with keys purelib, platlib, scripts, data, headers"
    )


def other_schemes(env: EnvironmentLike, scheme: Scheme) -> list[Scheme]:
    """The environment's own schemes that are not the one asked about."""
    found = []
    for role in ("system", "user"):
        paths = env.paths(role)
        if Path(paths["purelib"]) != Path(scheme.paths["purelib"]):
            found.append(Scheme(role, paths))
    return found


def sites_of(scheme: Scheme) -> list[Path]:
    return sorted({Path(scheme.paths["purelib"]), Path(scheme.paths["platlib"])})


def destinations(layout: WheelLayout, scheme: Scheme) -> dict[Path, Member]:
    """Where each member of ``layout`` is (or would be) in ``scheme``.

    A header goes to the first header directory that has a subdirectory with
    the project's canonical name holding it, else to the canonical spelling.
    """
    layout.destinations(scheme.paths)  # refuses a mapping that lacks a key, naming it
    return {destination_of(layout, scheme, member): member for member in layout.members}


def _header_path(layout: WheelLayout, scheme: Scheme, member: Member) -> Path:
    for top in scheme.header_dirs:
        try:
            names = sorted(os.listdir(top))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for name in names:
            candidate = top / name / member.path
            if canonicalize_name(name) == layout.project and os.path.lexists(candidate):
                return candidate
    return scheme.header_dirs[0] / layout.project / member.path


def destination_of(layout: WheelLayout, scheme: Scheme, member: Member) -> Path:
    if member.scheme == "headers":
        return _header_path(layout, scheme, member)
    return Path(os.path.normpath(Path(scheme.paths[member.scheme]) / member.path))


__all__ = [
    "Scheme",
    "SchemeArg",
    "destination_of",
    "destinations",
    "other_schemes",
    "prefix_scheme",
    "resolve_scheme",
    "sites_of",
    "target_scheme",
]
