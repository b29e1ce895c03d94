"""Lock profiles: which roles of a sandbox are denied to the child, and how.

This module only *describes* a lock. Making it real for a child process is a
backend's job (see :mod:`pytest_installperm.backends`), so the same profile can
be enforced by ``chmod`` for a normal user or by dropping privileges as root.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_installperm.errors import RoleError
from pytest_installperm.roles import (
    ALWAYS_ALLOWED,
    BASE,
    CACHE,
    HOME,
    LOCK_ROLES,
    STAGE,
    SYSTEM,
    SYSTEM_SCRIPTS,
    TMP,
    USER,
    USER_SCRIPTS,
    WORK,
    XDG_LAYOUT,
)

HOME_STATES = ("missing", "present", "unwritable")
LOCK_MODES = ("deny", "readonly-fs")


#: Roles whose trees are handed to the child when allowed, in this order. The
#: user base and the system scripts are inside HOME and the prefix.
_GRANTABLE = (CACHE, TMP, WORK, HOME, SYSTEM)


@dataclass(frozen=True)
class Plan:
    """Which trees the child may write and which it must not, and how.

    Every backend and the in-process world apply this, and only this.
    """

    grant: tuple[Path, ...] = ()
    #: Denied directories; with ``True`` the whole tree below is denied too.
    deny: tuple[tuple[Path, bool], ...] = ()
    #: Deny by read-only mounts (EROFS) instead of permissions (EACCES).
    readonly_fs: bool = False

    def denied_trees(self) -> tuple[Path, ...]:
        return tuple(p for p, recursive in self.deny if recursive)

    def readonly_trees(self) -> tuple[Path, ...]:
        """The trees a child's namespace binds read-only (``readonly-fs`` only)."""
        return self.denied_trees() if self.readonly_fs else ()


@dataclass(frozen=True)
class LockSpec:
    """A validated lock profile for one environment."""

    locked: frozenset[str] = frozenset({"system"})
    mode: str = "deny"
    home: str = "present"
    user_site: bool = True
    externally_managed: bool | None = None

    @classmethod
    def make(
        cls,
        locked: Iterable[str] | str,
        *,
        mode: str = "deny",
        home: str = "present",
        user_site: bool = True,
        externally_managed: bool | None = None,
    ) -> LockSpec:
        """Validate the fixture's arguments; errors list what is allowed."""
        roles = (locked,) if isinstance(locked, str) else tuple(locked)
        unknown = sorted(set(roles) - set(LOCK_ROLES))
        if unknown:
            raise RoleError(
                f"unknown role {', '.join(map(repr, unknown))} in locked=: "
                f"valid roles are {', '.join(LOCK_ROLES)}"
            )
        if home not in HOME_STATES:
            raise RoleError(f"home={home!r}: must be one of {', '.join(HOME_STATES)}")
        if mode not in LOCK_MODES:
            raise RoleError(f"lock_mode={mode!r}: must be one of {', '.join(LOCK_MODES)}")
        if externally_managed not in (None, True, False):
            raise RoleError(
                f"externally_managed={externally_managed!r}: must be None, True or False"
            )
        frozen = frozenset(roles)
        if home == "unwritable":
            frozen |= {"home"}
        return cls(frozen, mode, home, bool(user_site), externally_managed)

    @property
    def needs_denial(self) -> bool:
        """True when some write must be refused by the kernel for this profile."""
        return bool(self.locked) or self.home != "present"

    def describe(self) -> str:
        parts = [f"locked={','.join(sorted(self.locked)) or '-'}"]
        if self.mode != "deny":
            parts.append(f"lock_mode={self.mode}")
        if self.home != "present":
            parts.append(f"home={self.home}")
        if not self.user_site:
            parts.append("user_site=False")
        if self.externally_managed is not None:
            parts.append(f"externally_managed={self.externally_managed}")
        return " ".join(parts)

    def allowed_roles(self) -> frozenset[str]:
        """Roles a run may write to under this profile (both modes use this).

        A locked ``system`` also locks its scripts; the user base lives in HOME,
        so a locked or missing HOME closes it too.
        """
        allowed = set(ALWAYS_ALLOWED)
        if SYSTEM not in self.locked:
            allowed.add(SYSTEM)
            if SYSTEM_SCRIPTS not in self.locked:
                allowed.add(SYSTEM_SCRIPTS)
        if HOME not in self.locked and self.home == "present":
            allowed.add(HOME)
            if USER not in self.locked:
                allowed.add(USER)
                if USER_SCRIPTS not in self.locked:
                    allowed.add(USER_SCRIPTS)
            allowed |= {r for r in XDG_LAYOUT if r not in self.locked}
        return frozenset(allowed)

    def scaffold(
        self,
        system: Mapping[str, Path],
        *,
        home: Path,
        userbase: Path,
        user_scripts: Path | None = None,
    ) -> tuple[Path, ...]:
        """The directories a sandbox is built with, before the lock, in order.

        The system scheme's sites, scripts and headers exist as on a real
        system; HOME unless it is to be missing; a locked directory (the user
        base, the user scripts, an XDG directory), since a denial needs a
        directory to deny. With the user base locked its XDG directories are
        made too: the lock covers the user scheme, not them.
        """
        dirs = [system[k] for k in ("purelib", "platlib", "scripts", "headers")]
        if self.home != "missing":
            dirs.append(home)
            if USER in self.locked:
                dirs += [userbase, *(home / rel for rel in XDG_LAYOUT.values())]
            if USER_SCRIPTS in self.locked:
                dirs.append(user_scripts or userbase / "bin")
            dirs += [home / rel for role, rel in XDG_LAYOUT.items() if role in self.locked]
        return tuple(dict.fromkeys(dirs))

    def plan(
        self,
        roles: Mapping[str, Path],
        root: Path,
        *,
        exists: Callable[[Path], bool] = os.path.isdir,
        subdirs: Callable[[Path], list[Path]] | None = None,
    ) -> Plan:
        """Grant every allowed role's tree; deny the locked ones and the scaffolding.

        ``root`` is the sandbox (the child may not add entries to it),
        ``exists`` says which directories were built (a missing HOME has no
        tree to grant or deny).
        """
        allowed = self.allowed_roles()
        deny: list[tuple[Path, bool]] = [(root, False), (roles[STAGE], True)]
        if BASE in roles:
            deny.append((roles[BASE], True))
        for role in LOCK_ROLES:
            if role not in self.locked or not exists(roles[role]):
                continue
            if role == USER and self.mode != "readonly-fs":
                # The user scheme, not everything below the user base: the base
                # itself takes no new entries (lib, bin, include), and what it
                # holds already is denied, except the XDG directories there.
                # (A read-only mount cannot spare subdirectories: with
                # readonly-fs the whole user base is read-only.)
                deny.append((roles[USER], False))
                xdg = {roles[r] for r in XDG_LAYOUT if r in roles}
                held = (subdirs or _entries)(roles[USER])
                deny += [(p, True) for p in held if p not in xdg]
            else:
                deny.append((roles[role], True))
        grant = tuple(roles[r] for r in _GRANTABLE if r in allowed and exists(roles[r]))
        return Plan(grant, tuple(deny), self.mode == "readonly-fs")


def _entries(top: Path) -> list[Path]:
    """The directories directly in ``top`` (ours: built before any child ran)."""
    try:
        with os.scandir(top) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


__all__ = ["HOME_STATES", "LOCK_MODES", "LOCK_ROLES", "LockSpec", "Plan"]
