"""The child's way into its containment: runs between fork and exec.

Two processes::

    waiter   Popen's child, in the host's PID namespace. It makes the new
             namespaces and mounts, forks the installer, and exits as the
             installer did (the same status, or the same signal), so the
             parent reads the installer's status from the process it started.
    child    pid 1 of a new PID namespace: it mounts that namespace's /proc,
             drops to its uid, sets its limits, reports and execs. When it
             ends, the kernel kills everything left in the namespace: daemons,
             double forks, processes in nested namespaces.

The installer is pid 1, as in a container started without an init: signals
it has no handler for are ignored when they come from inside its namespace,
and its orphans are reparented to it. A separate init process would cost a
fork of this (large) process per run, about a millisecond, and more on a
loaded machine; Docker runs installers as pid 1 every day.

Everything is computed in the parent (bytes paths, numbers, a loaded libc), so
the forked processes only make system calls. The child reports on a socket:
"ok" with a pidfd of itself (killing it through that pidfd from outside ends
the namespace, and a pidfd never names a recycled pid), or "error <why>".
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pytest_installperm.backends.contain import syscalls
from pytest_installperm.backends.contain.limits import apply_rlimits
from pytest_installperm.backends.contain.syscalls import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
)

T = TypeVar("T")


@dataclass
class Enter:
    """The ``preexec_fn`` of a contained child (see the module docstring)."""

    #: "mount" (as root: namespaces without a user namespace) or "userns".
    mode: str
    #: The sandbox, bound read-write over the read-only rest; None in the probe.
    root: bytes | None
    #: Trees bound read-only on top (``readonly-fs`` locks).
    readonly: tuple[bytes, ...]
    uid: int | None
    gid: int | None
    #: Our own uid and gid, mapped to themselves in a user namespace.
    own: tuple[int, int]
    #: A child that stays uid 0 loses every capability (and gets a read-only /proc).
    drop_caps: bool
    cap_last: int
    #: Keep the host's network (no network namespace): an explicit opt-in.
    network: bool
    rlimits: tuple[tuple[int, int, int], ...]
    #: Unix socket files outside the sandbox, covered with /dev/null.
    masked: tuple[bytes, ...]
    #: The test session's pid: the waiter dies with it (PR_SET_PDEATHSIG).
    session_pid: int
    report_fd: int = -1
    #: The PID namespace was made by the thread that starts us (as root, see
    #: :func:`in_new_pid_namespace`): we are its pid 1 already, no waiter.
    pid_namespace_made: bool = False
    #: In-place mode (:mod:`pytest_installperm.inplace`): each (closed, kept,
    #: aside) makes the directory ``closed`` traversable (a 0711 tmpfs) with
    #: only ``kept`` in it, bound back through the empty directory ``aside``;
    #: then each (source, target) binds a sandbox directory over a real one.
    traverse: tuple[tuple[bytes, bytes, bytes], ...] = ()
    #: (layer, directory): a read-only overlay of ``layer`` over ``directory``.
    overlays: tuple[tuple[bytes, bytes], ...] = ()
    binds: tuple[tuple[bytes, bytes], ...] = ()

    def __call__(self) -> None:
        try:
            self._enter()
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.write(self.report_fd, f"error {exc}".encode(errors="replace"))
            raise
        finally:
            with contextlib.suppress(OSError):
                os.close(self.report_fd)

    def _enter(self) -> None:
        libc = syscalls.libc()
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "prctl(PR_SET_PDEATHSIG)")
        # (our parent is outside our PID namespace when it made it: pid 0 here)
        if os.getppid() != (0 if self.pid_namespace_made else self.session_pid):
            os._exit(1)  # the session died before the line above
        flags = CLONE_NEWNS | CLONE_NEWIPC | (0 if self.network else CLONE_NEWNET)
        if not self.pid_namespace_made:
            flags |= CLONE_NEWPID
        if self.mode == "userns":
            syscalls.check(libc.lib.unshare(CLONE_NEWUSER | flags), "unshare(CLONE_NEWUSER|...)")
            uid, gid = self.own
            syscalls.write_file("/proc/self/setgroups", b"deny")
            syscalls.write_file("/proc/self/uid_map", b"%d %d 1" % (uid, uid))
            syscalls.write_file("/proc/self/gid_map", b"%d %d 1" % (gid, gid))
        else:
            syscalls.check(libc.lib.unshare(flags), "unshare(CLONE_NEWNS|CLONE_NEWPID|...)")
        libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, "mount --make-rprivate /")
        libc.set_readonly(b"/", True, recursive=True)
        if self.root is not None:
            libc.mount(self.root, self.root, None, MS_BIND | MS_REC, "bind the sandbox")
            libc.set_readonly(self.root, False, recursive=True)
        for path in self.readonly:
            libc.mount(path, path, None, MS_BIND | MS_REC, "bind a locked tree")
            libc.set_readonly(path, True, recursive=True)
        self._in_place(libc)
        for path in self.masked:
            # Gone meanwhile, or out of our own reach (and so of the child's).
            with contextlib.suppress(OSError):
                libc.mount(b"/dev/null", path, None, MS_BIND, "cover a unix socket")
        if not self.network:
            syscalls.loopback_up()
        if not self.pid_namespace_made:
            apply_rlimits(self.rlimits[:1])  # no core dumps from the waiter's re-raise
            child = libc.fork()
            if child < 0:
                raise OSError("fork of the contained child failed")
            if child > 0:
                _wait_as_waiter(child)
        # pid 1 of the new PID namespace from here on.
        if syscalls.PROC_IS_MOUNT:
            # This namespace's own /proc: the host's processes are not in it.
            # Writable for a non-root child (its uid_map, for a nested
            # sandbox), read-only for a root child (sysctls are root's 0644).
            proc_flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | (MS_RDONLY if self.drop_caps else 0)
            libc.mount(b"proc", b"/proc", b"proc", proc_flags, "mount a private /proc")
        os.chdir(os.getcwd())  # re-enter the working directory through the new mounts
        self._drop(libc)
        # After the uid change, which clears it: die with the waiter.
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "prctl(PR_SET_PDEATHSIG)")
        channel = socket.socket(fileno=self.report_fd)
        pidfd = os.pidfd_open(os.getpid())
        socket.send_fds(channel, [b"ok"], [pidfd])
        channel.detach()
        os.close(pidfd)

    def _in_place(self, libc: syscalls.Libc) -> None:
        """The real interpreter's directories, replaced by the sandbox's. After
        the locked trees: a bind of a read-only sandbox tree is read-only too."""
        for closed, kept, aside in self.traverse:
            libc.mount(kept, aside, None, MS_BIND | MS_REC, "bind aside")
            libc.mount(
                b"tmpfs",
                closed,
                b"tmpfs",
                MS_NOSUID | MS_NODEV,
                "mount a traversable tmpfs",
                b"mode=0711",
            )
            os.mkdir(kept, 0o755)
            os.chmod(kept, 0o755)
            libc.mount(aside, kept, None, MS_BIND | MS_REC, "bind back")
            libc.detach(aside, "unmount the aside bind")
            libc.set_readonly(closed, True, recursive=True)
        for layer, directory in self.overlays:
            libc.mount(
                b"overlay",
                directory,
                b"overlay",
                MS_RDONLY | MS_NOSUID | MS_NODEV,
                "lay the PEP 668 marker over the stdlib",
                b"lowerdir=" + layer + b":" + directory,
            )
        for source, target in self.binds:
            libc.mount(source, target, None, MS_BIND | MS_REC, "bind in place")

    def _drop(self, libc: syscalls.Libc) -> None:
        if self.uid is not None and self.gid is not None:
            os.setgroups([])
            os.setresgid(self.gid, self.gid, self.gid)
            os.setresuid(self.uid, self.uid, self.uid)
        if self.drop_caps:
            libc.drop_capabilities(self.cap_last)
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, "prctl(PR_SET_NO_NEW_PRIVS)")
        apply_rlimits(self.rlimits)


def _wait_as_waiter(child: int) -> None:
    """Wait for the child, then end as it ended. Never returns."""
    try:
        syscalls.close_all_but()
        _pid, status = os.waitpid(child, 0)
        if os.WIFEXITED(status):
            os._exit(os.WEXITSTATUS(status))
        if os.WIFSIGNALED(status):
            _die_of(os.WTERMSIG(status))
    finally:
        os._exit(255)


def _die_of(signum: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        signal.signal(signum, signal.SIG_DFL)
    with contextlib.suppress(OSError, ValueError):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    os.kill(os.getpid(), signum)


def in_new_pid_namespace(work: Callable[[], T]) -> T:
    """``work()`` in a new thread whose children start a new PID namespace.

    Why: the child that ``Popen`` forks is then pid 1 of its namespace at
    once, and no waiter has to be forked from it: a fork costs about a
    millisecond per 100 MB of this process, and more on a loaded machine.
    ``unshare(CLONE_NEWPID)`` changes only the calling thread's children, so
    the rest of this process is untouched, and a namespace serves one child:
    each run has a thread of its own. Needs CAP_SYS_ADMIN (as root); a normal
    user's namespaces come with a user namespace, which a thread of a
    threaded process cannot make, so that path keeps the waiter.
    """
    found: list[T] = []
    failed: list[BaseException] = []

    def target() -> None:
        try:
            syscalls.check(syscalls.libc().lib.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
            found.append(work())
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=target, name="installperm-run")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return found[0]
