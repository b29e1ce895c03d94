"""Keep a child inside its sandbox: it can write there and nowhere else.

Why permission bits are not enough: the fake interpreter's stdlib is a set of
symlinks into a session template, and under the ``chmod`` backend the
template's entries are symlinks into the *real* interpreter. A wheel whose data
files target ``lib/pythonX.Y/json/`` writes through them, and a developer's
pyenv Python belongs to the developer, so no mode bit stops it. Installers also
write to ``/tmp`` and ``$HOME/..``, talk to the network, and leave daemons.

What stops them (each child, each run; docs/safety.md has the threat model):

* a private mount namespace in which every mount is read-only except the
  sandbox, bound over itself read-write; ``readonly-fs`` locks bind their
  trees over themselves read-only on top (real EROFS);
* a PID namespace with its own /proc: the child sees no other process, and
  killing its init ends everything it started (:mod:`.reap`);
* a network namespace with only loopback (``network=True`` keeps the host's),
  and an IPC namespace;
* its own uid (as root), no capabilities, ``no_new_privs``, and resource
  limits (:mod:`.limits`).

How, cheaply: the work happens in the forked child before ``exec``
(``Popen``'s ``preexec_fn``, see :mod:`.enter`); no launcher program, no second
interpreter start. Where no namespace is possible, nothing runs: the test is
skipped with the reason (:func:`unavailable`), never passed uncontained.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_installperm.backends.contain import syscalls
from pytest_installperm.backends.contain.channel import Channel
from pytest_installperm.backends.contain.enter import Enter
from pytest_installperm.backends.contain.limits import DEFAULT_LIMITS, Limits
from pytest_installperm.backends.contain.probe import MODES, namespace_mode, unavailable
from pytest_installperm.backends.contain.reap import kill_namespace
from pytest_installperm.errors import BackendError


@dataclass
class Containment:
    """How one environment's children are kept inside its sandbox."""

    root: Path
    mode: str
    readonly: tuple[Path, ...] = ()
    #: The uid and gid to drop to, or None to keep ours.
    identity: tuple[int, int] | None = None
    #: In-place mode (see :class:`Enter`): directories made traversable, as
    #: (closed, kept, aside), and sandbox directories bound over real ones,
    #: as (source, target).
    traverse: tuple[tuple[Path, Path, Path], ...] = ()
    overlays: tuple[tuple[Path, Path], ...] = ()
    binds: tuple[tuple[Path, Path], ...] = ()

    def popen_kwargs(
        self,
        base: Mapping[str, object],
        report_fd: int,
        *,
        network: bool = False,
        limits: Limits = DEFAULT_LIMITS,
    ) -> dict[str, object]:
        """``base`` (a backend's Popen arguments) with the namespace entry added.

        The uid change of ``base`` moves into the entry function, because the
        mounts must be made while we still hold the privilege to make them.
        """
        if self.mode not in ("mount", "userns"):
            raise BackendError(
                f"containment mode {self.mode!r} cannot start a child: "
                f"{unavailable() or 'no namespace kind was probed for it'}"
            )
        kwargs = dict(base)
        for key in ("user", "group", "extra_groups"):
            kwargs.pop(key, None)
        syscalls.libc()  # load it here: never search for a library in the forked child
        uid, gid = self.identity if self.identity else (None, None)
        stays_root = (uid if uid is not None else os.geteuid()) == 0
        kwargs["preexec_fn"] = Enter(
            self.mode,
            os.fsencode(self.root),
            tuple(map(os.fsencode, self.readonly)),
            uid,
            gid,
            (os.getuid(), os.getgid()),
            stays_root,
            _CAP_LAST,
            network,
            limits.rlimits(),
            syscalls.unix_socket_paths(os.fsencode(self.root)),
            os.getpid(),
            report_fd,
            pid_namespace_made=self.mode == "mount",
            traverse=tuple(
                (os.fsencode(c), os.fsencode(k), os.fsencode(a)) for c, k, a in self.traverse
            ),
            overlays=tuple((os.fsencode(a), os.fsencode(b)) for a, b in self.overlays),
            binds=tuple((os.fsencode(s), os.fsencode(t)) for s, t in self.binds),
        )
        kwargs["pass_fds"] = (*tuple(kwargs.get("pass_fds", ())), report_fd)  # type: ignore[arg-type]
        return kwargs

    def started(self, report: tuple[str, int | None]) -> int:
        """The pidfd of the child's init; BackendError if the child failed to start."""
        text, pidfd = report
        if text != "ok" or pidfd is None:
            if pidfd is not None:
                os.close(pidfd)
            raise BackendError(
                f"containment ({self.mode} namespaces) failed to start the child: "
                f"{text.removeprefix('error ') or 'no report from the child'}"
            )
        return pidfd

    def reap(self, pidfd: int | None) -> None:
        """Kill what is left in the child's PID namespace, then let it go."""
        if pidfd is None:
            return
        try:
            if not kill_namespace(pidfd):
                raise BackendError(
                    f"the PID namespace of a run in {self.root} did not end within 10 s "
                    "of SIGKILL to its init"
                )
        finally:
            os.close(pidfd)


_CAP_LAST = syscalls.cap_last()


__all__ = [
    "DEFAULT_LIMITS",
    "MODES",
    "Channel",
    "Containment",
    "Enter",
    "Limits",
    "namespace_mode",
    "unavailable",
]
