"""Roles: the named directories of a sandbox, and which of them a run may write.

A *role* names a directory of an environment by what it is for, so that locks,
changes and verdicts speak of ``system`` or ``cache`` instead of paths. Both
worlds (a real sandbox on disk and the in-process fake one) lay a sandbox out
with the same names below its root, :data:`SANDBOX_LAYOUT`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePath

SYSTEM = "system"
SYSTEM_SCRIPTS = "system-scripts"
USER = "user"
HOME = "home"
CACHE = "cache"
TMP = "tmp"
WORK = "work"
STAGE = "stage"
#: A venv's base interpreter prefix; only venvs have it.
BASE = "base"

#: Roles a test may lock. ``system`` is the environment's own scheme (the whole
#: prefix of a system interpreter, or the venv), ``system-scripts`` only its
#: scripts directory, ``user`` the user base, ``home`` the home directory.
LOCK_ROLES = (HOME, SYSTEM, SYSTEM_SCRIPTS, USER)

#: The directories directly below a sandbox root, by role. ``prefix`` is the
#: system interpreter's prefix (a venv's base), ``venv`` the venv.
SANDBOX_LAYOUT: Mapping[str, str] = {
    "prefix": "prefix",
    "venv": "venv",
    HOME: "home",
    CACHE: "cache",
    TMP: "tmp",
    WORK: "work",
    STAGE: "stage",
}

#: Where an installer keeps its own working files (caches, temporary
#: directories): never an installation, never residue. ``stage`` is not one:
#: it holds our read-only copies of a run's arguments, and the child may not
#: write there at all.
SCRATCH = frozenset({CACHE, TMP})
#: Roles every run may write to, whatever is locked.
ALWAYS_ALLOWED = SCRATCH | {WORK}


def is_under(path: PurePath, top: PurePath) -> bool:
    """True when ``path`` is ``top`` or below it (lexically; nothing is resolved)."""
    return path == top or top in path.parents


def role_of(roles: Mapping[str, Path], path: Path) -> str | None:
    """The most specific role whose directory holds ``path``, if any."""
    best: tuple[int, str] | None = None
    for name, top in roles.items():
        if is_under(path, top):
            depth = len(top.parts)
            if best is None or depth > best[0]:
                best = (depth, name)
    return best[1] if best else None


def is_scratch(roles: Mapping[str, Path], path: Path) -> bool:
    """True when ``path`` lies in an installer's working directories."""
    return role_of(roles, path) in SCRATCH


def sandbox_roles(
    root: Path, *, prefix: Path, scripts: Path, userbase: Path, venv: bool
) -> dict[str, Path]:
    """Every role of an environment whose sandbox is ``root``.

    ``prefix`` is the environment's own prefix (the venv, for a venv),
    ``scripts`` its scripts directory and ``userbase`` the user base.
    """
    roles = {
        SYSTEM: prefix,
        SYSTEM_SCRIPTS: scripts,
        USER: userbase,
        **{name: root / SANDBOX_LAYOUT[name] for name in (HOME, CACHE, TMP, WORK, STAGE)},
    }
    if venv:
        roles[BASE] = root / SANDBOX_LAYOUT["prefix"]
    return roles


__all__ = [
    "ALWAYS_ALLOWED",
    "BASE",
    "CACHE",
    "HOME",
    "LOCK_ROLES",
    "SANDBOX_LAYOUT",
    "SCRATCH",
    "STAGE",
    "SYSTEM",
    "SYSTEM_SCRIPTS",
    "TMP",
    "USER",
    "WORK",
    "is_scratch",
    "is_under",
    "role_of",
    "sandbox_roles",
]
