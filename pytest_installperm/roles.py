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
#: The user scheme's scripts directory (``~/.local/bin``): part of ``user``.
USER_SCRIPTS = "user-scripts"
HOME = "home"
#: XDG base directories, where tools keep settings, data (pipx's venvs,
#: hatch's environments) and state (logs). Inside HOME, two of them inside
#: the user base, yet not part of the user scheme: see :data:`DETACHED`.
XDG_CONFIG = "xdg-config"
XDG_DATA = "xdg-data"
XDG_STATE = "xdg-state"
CACHE = "cache"
TMP = "tmp"
WORK = "work"
STAGE = "stage"
#: A venv's base interpreter prefix; only venvs have it.
BASE = "base"

#: Roles a test may lock. ``system`` is the environment's own scheme (the whole
#: prefix of a system interpreter, or the venv), ``system-scripts`` only its
#: scripts directory, ``user`` the user scheme as pip defines it (its site,
#: scripts, headers and data below the user base, not the XDG directories
#: there), ``user-scripts`` only its scripts directory, ``home`` the home
#: directory, ``xdg-*`` one XDG base directory.
LOCK_ROLES = (HOME, SYSTEM, SYSTEM_SCRIPTS, USER, USER_SCRIPTS, XDG_CONFIG, XDG_DATA, XDG_STATE)

#: The XDG base directories below HOME (their defaults in the XDG spec; the
#: child's ``XDG_*_HOME`` variables name them).
XDG_LAYOUT: Mapping[str, str] = {
    XDG_CONFIG: ".config",
    XDG_DATA: ".local/share",
    XDG_STATE: ".local/state",
}
#: Roles whose directory lies inside another role's but that are not part of
#: it: ``~/.local/share`` is below the user base, not in the user scheme.
DETACHED: Mapping[str, frozenset[str]] = {USER: frozenset({XDG_DATA, XDG_STATE})}

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
    # Comparing parts, not ``top in path.parents``: that makes a Path per parent.
    outer = top.parts
    return path.parts[: len(outer)] == outer


def role_of(roles: Mapping[str, Path], path: Path) -> str | None:
    """The most specific role whose directory holds ``path``, if any."""
    best: tuple[int, str] | None = None
    for name, top in roles.items():
        if is_under(path, top):
            depth = len(top.parts)
            if best is None or depth > best[0]:
                best = (depth, name)
    return best[1] if best else None


def members(roles: Mapping[str, Path], role: str, path: Path) -> bool:
    """True when ``path`` belongs to ``role``: below its directory, and not in a
    role that lies there without being part of it (:data:`DETACHED`)."""
    if not is_under(path, roles[role]):
        return False
    return not any(is_under(path, roles[d]) for d in DETACHED.get(role, ()) if d in roles)


def is_scratch(roles: Mapping[str, Path], path: Path) -> bool:
    """True when ``path`` lies in an installer's working directories."""
    return role_of(roles, path) in SCRATCH


def sandbox_roles(
    root: Path,
    *,
    prefix: Path,
    scripts: Path,
    userbase: Path,
    venv: bool,
    user_scripts: Path | None = None,
) -> dict[str, Path]:
    """Every role of an environment whose sandbox is ``root``.

    ``prefix`` is the environment's own prefix (the venv, for a venv),
    ``scripts`` its scripts directory, ``userbase`` the user base and
    ``user_scripts`` the user scheme's scripts directory (default
    ``userbase/bin``).
    """
    home = root / SANDBOX_LAYOUT[HOME]
    roles = {
        SYSTEM: prefix,
        SYSTEM_SCRIPTS: scripts,
        USER: userbase,
        USER_SCRIPTS: user_scripts or userbase / "bin",
        **{name: root / SANDBOX_LAYOUT[name] for name in (HOME, CACHE, TMP, WORK, STAGE)},
        **{name: home / rel for name, rel in XDG_LAYOUT.items()},
    }
    if venv:
        roles[BASE] = root / SANDBOX_LAYOUT["prefix"]
    return roles


__all__ = [
    "ALWAYS_ALLOWED",
    "BASE",
    "CACHE",
    "DETACHED",
    "HOME",
    "LOCK_ROLES",
    "SANDBOX_LAYOUT",
    "SCRATCH",
    "STAGE",
    "SYSTEM",
    "SYSTEM_SCRIPTS",
    "TMP",
    "USER",
    "USER_SCRIPTS",
    "WORK",
    "XDG_CONFIG",
    "XDG_DATA",
    "XDG_LAYOUT",
    "XDG_STATE",
    "is_scratch",
    "is_under",
    "members",
    "role_of",
    "sandbox_roles",
]
