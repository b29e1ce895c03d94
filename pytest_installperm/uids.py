"""A uid of its own for each sandbox's children (as root), from a pool.

Why: children of different tests that share a uid may signal each other,
connect to each other's unix sockets and write each other's files wherever
the mounts allow. With a uid per sandbox the kernel's own permission checks
keep them apart, and a process limit (RLIMIT_NPROC counts per uid) is per
sandbox too.

The pool is a range of uids that no account uses (checked against the
password database). A uid is taken by an ``flock`` on its lock file in
:data:`LOCK_DIR`, held while the sandbox lives: the kernel drops it when the
session ends, however it ends, so a uid is never leaked and never shared by
two live sandboxes, across sessions and PID namespaces alike.
"""

from __future__ import annotations

import fcntl
import functools
import os
import pwd
from dataclasses import dataclass

from pytest_installperm.errors import LockUnavailable

#: First uid of the pool, and how many there are. Far above any account and
#: any /etc/subuid range a distribution hands out by default.
POOL_START = 0x5EED0000
POOL_SIZE = 4096
#: Where the per-uid lock files live (a tmpfs: nothing survives a reboot).
LOCK_DIR = "/run/lock/pytest-installperm"


@dataclass
class Lease:
    """One uid (and the gid of the same number), held until :meth:`release`."""

    uid: int
    gid: int
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def lease(lock_dir: str = LOCK_DIR, start: int = POOL_START, size: int = POOL_SIZE) -> Lease:
    """The first free uid of the pool; LockUnavailable (a skip) if none is."""
    os.makedirs(lock_dir, mode=0o755, exist_ok=True)
    for uid in range(start, start + size):
        path = os.path.join(lock_dir, f"uid-{uid}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        if _account_exists(uid):
            os.close(fd)
            continue
        return Lease(uid, uid, fd)
    raise LockUnavailable(
        f"every uid of the pool {start}..{start + size - 1} is in use (lock files in {lock_dir})"
    )


@functools.cache  # once per uid and process: every sandbox leases one
def _account_exists(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True
