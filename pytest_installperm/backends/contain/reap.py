"""End a contained run: kill its PID namespace and wait until it is gone.

Killing a namespace's init makes the kernel kill every other process in it,
however it was started (a double fork, ``setsid``, a nested user or PID
namespace); init's exit is reported only after they are all gone. A pidfd
names that one process and never a recycled pid, so there is no pid
arithmetic and no scan of /proc.
"""

from __future__ import annotations

import contextlib
import select
import signal
import time


def kill_namespace(pidfd: int, limit: float = 10.0) -> bool:
    """SIGKILL the init behind ``pidfd`` and wait up to ``limit`` seconds for
    its exit (and so for the whole namespace's). True once it is gone."""
    with contextlib.suppress(ProcessLookupError, OSError):
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    return wait_gone(pidfd, limit)


def wait_gone(pidfd: int, limit: float) -> bool:
    """Whether the process behind ``pidfd`` exited within ``limit`` seconds."""
    deadline = time.monotonic() + limit
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        if poller.poll(max(int(left * 1000), 0)):
            return True
        if left <= 0:
            return False


def alive_in(pidfd: int) -> bool:
    """Whether the process behind ``pidfd`` still runs (a zero-timeout poll)."""
    return not wait_gone(pidfd, 0)


__all__ = ["alive_in", "kill_namespace", "wait_gone"]
