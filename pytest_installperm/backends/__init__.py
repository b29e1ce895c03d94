"""How a lock profile becomes real for a child process.

A backend gets a sandbox whose directories were all created by us, and a plan
saying which trees the child may write (``grant``) and which it must not
(``deny``). It makes that plan hold at the kernel level, or says why it cannot,
in which case the test is skipped with that reason. It never pretends.

* ``chmod``: for a normal user. Denied trees lose their write bits.
* ``privdrop``: for root. The child runs as an unprivileged uid; granted trees
  are chowned to it, denied ones stay root's, exactly like a Docker image whose
  system site belongs to root and whose user runs as uid 1000.
* ``mountns``: locked trees are read-only bind mounts in the child's private
  mount namespace, so writes fail with EROFS (``lock_mode="readonly-fs"``).

Whatever the backend, every child is *contained* (see :mod:`.contain`): it runs
in its own mount, PID, IPC and network namespaces, where all but its sandbox is
read-only. Where the platform allows no namespace, no child runs: the test is
skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pytest_installperm.errors import BackendError
from pytest_installperm.locks import LockSpec, Plan

if TYPE_CHECKING:  # contain/ (ctypes, the namespace code) loads on the first launch
    from pytest_installperm.backends.contain import Containment
    from pytest_installperm.backends.contain.limits import Limits
    from pytest_installperm.uids import Lease

BACKENDS = ("auto", "chmod", "privdrop", "mountns")

CAP_DAC_OVERRIDE = 1


def effective_capabilities() -> int:
    """This process's effective capability mask, from /proc (0 if unknown)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0xFFFFFFFF if os.geteuid() == 0 else 0


def bypasses_permissions() -> bool:
    """True when this process ignores file permission bits (root, or the cap)."""
    return bool(effective_capabilities() & (1 << CAP_DAC_OVERRIDE))


@dataclass(frozen=True)
class Launch:
    """How to start one child: what runs, the Popen arguments that put it in
    place (uid, groups), and the containment it starts in (or None)."""

    argv: tuple[str, ...]
    popen_kwargs: Mapping[str, object] = field(default_factory=dict)
    containment: Containment | None = None
    #: Keep the host's network (no network namespace): ``env.run(network=True)``.
    network: bool = False
    #: Resource limits of the run; None: the defaults (``Limits()``).
    limits: Limits | None = None


class Backend(Protocol):
    """A named way to enforce a :class:`Plan` on a child."""

    #: The name ``--installperm-backend`` and ``env.backend`` use.
    name: str
    #: Whether the interpreter must be copied so another uid can read it.
    needs_readable_copies: bool

    def cannot_hold(self, spec: LockSpec) -> str | None:
        """Why this backend cannot make ``spec`` hold here, or None if it can.

        A query: it changes nothing.
        """

    def apply(self, plan: Plan) -> None:
        """Make ``plan`` hold before the child starts."""

    def popen_kwargs(self) -> Mapping[str, object]:
        """``subprocess.Popen`` arguments that give a child the backend's identity."""

    def launch(self, argv: Sequence[str], sandbox_root: Path, plan: Plan) -> Launch:
        """How to start ``argv`` contained in ``sandbox_root`` under ``plan``."""

    def owner(self) -> tuple[int, int]:
        """The uid and gid the child runs as."""

    #: The pooled uid this backend's children run as (as root), or None.
    lease: Lease | None

    def release(self) -> None:
        """Give the pooled uid back: the environment is gone."""


class BackendBase:
    """What the backends share: the launch of a contained child.

    A backend serves one environment, so the containment is built once and
    reused per run.
    """

    name = "base"
    needs_readable_copies = False

    def __init__(self) -> None:
        self._containment: Containment | None = None
        self.lease: Lease | None = None

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    def popen_kwargs(self) -> Mapping[str, object]:
        return {}

    def identity(self) -> tuple[int, int] | None:
        """The uid and gid the child drops to, or None to keep ours."""
        return None

    def owner(self) -> tuple[int, int]:
        return os.geteuid(), os.getegid()

    def launch(self, argv: Sequence[str], sandbox_root: Path, plan: Plan) -> Launch:
        from pytest_installperm.backends.contain import Containment, namespace_mode

        readonly = plan.readonly_trees()
        held = self._containment
        if held is None or held.root != sandbox_root or held.readonly != readonly:
            mode, _why = namespace_mode()
            held = self._containment = Containment(sandbox_root, mode, readonly, self.identity())
        return Launch(tuple(argv), self.popen_kwargs(), held)


def _walk(top: Path, skip: frozenset[Path]) -> list[tuple[str, bool, int]]:
    """(path, is_dir, nlink) for ``top`` and all below it, minus ``skip`` trees."""
    found: list[tuple[str, bool, int]] = []
    stack = [str(top)]
    skipped = {str(p) for p in skip}
    while stack:
        directory = stack.pop()
        if directory in skipped:
            continue
        found.append((directory, True, 1))
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    if entry.path in skipped:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        st = entry.stat(follow_symlinks=False)
                        found.append(
                            (
                                entry.path,
                                False,
                                st.st_nlink if entry.is_file(follow_symlinks=False) else 0,
                            )
                        )
        except FileNotFoundError:
            continue
    return found


def choose(name: str, spec: LockSpec, *, uid: int, gid: int) -> Backend:
    """The backend called ``name`` ("auto" picks one), or BackendError."""
    from pytest_installperm.backends.chmod import ChmodBackend
    from pytest_installperm.backends.privdrop import PrivdropBackend

    if name == "auto":
        if spec.mode == "readonly-fs":
            name = "mountns"
        else:
            name = "privdrop" if os.geteuid() == 0 else "chmod"
    if name == "chmod":
        return ChmodBackend()
    if name == "privdrop":
        return PrivdropBackend(uid, gid)
    if name == "mountns":
        from pytest_installperm.backends.mountns import MountnsBackend

        return MountnsBackend(uid, gid)
    raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendBase",
    "Launch",
    "Plan",
    "bypasses_permissions",
    "choose",
    "effective_capabilities",
]
