"""Lock profiles: which roles of a sandbox are denied to the child, and how.

This module only *describes* a lock. Making it real for a child process is a
backend's job (see :mod:`pytest_installperm.backends`), so the same profile can
be enforced by ``chmod`` for a normal user or by dropping privileges as root.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pytest_installperm.errors import RoleError
from pytest_installperm.roles import ALWAYS_ALLOWED, LOCK_ROLES

HOME_STATES = ("missing", "present", "unwritable")
LOCK_MODES = ("deny", "readonly-fs")


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
        if "system" not in self.locked:
            allowed.add("system")
            if "system-scripts" not in self.locked:
                allowed.add("system-scripts")
        if "home" not in self.locked and self.home == "present":
            allowed.add("home")
            if "user" not in self.locked:
                allowed.add("user")
        return frozenset(allowed)


__all__ = ["HOME_STATES", "LOCK_MODES", "LOCK_ROLES", "LockSpec"]
