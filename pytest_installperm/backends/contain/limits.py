"""What one run may consume: processes, file size, CPU time, captured output.

Why: a child that forks without end, writes a file the size of the disk, or
prints gigabytes would take the test session (and a CI machine) down with it.
The kernel enforces the first three as rlimits set in the child before exec;
the parent enforces the last by keeping only the head and tail of each stream.
Each default is generous for a real installer, and a test raises any of them
with ``env.run(..., limits=Limits(...))``.
"""

from __future__ import annotations

import os
import resource
import selectors
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run; ``None`` leaves a limit as this process has it."""

    #: Processes (and threads) of the child's uid (RLIMIT_NPROC). Under the
    #: ``privdrop`` and ``mountns`` backends each sandbox has a uid of its own;
    #: as a normal user the count is of the run's own user namespace.
    processes: int | None = 512
    #: Largest file the child may write, in bytes (RLIMIT_FSIZE; SIGXFSZ beyond).
    file_size: int | None = 4096 * MiB
    #: CPU seconds per process (RLIMIT_CPU); the wall-clock limit is ``timeout``.
    cpu_seconds: int | None = 600
    #: Bytes kept of stdout and of stderr each; the middle beyond is dropped
    #: and counted in ``RunResult.stdout_dropped`` / ``stderr_dropped``.
    output_bytes: int = 16 * MiB

    def rlimits(self) -> tuple[tuple[int, int, int], ...]:
        """(resource, soft, hard) for the child; core dumps are always off.

        The CPU limit's hard value is a second above the soft one: a process
        that handles SIGXCPU gets a second to end; the installer itself, pid 1
        of its namespace, ignores SIGXCPU and is SIGKILLed at the hard limit.
        """
        found = [(resource.RLIMIT_CORE, 0, 0)]
        for which, value, grace in (
            (resource.RLIMIT_NPROC, self.processes, 0),
            (resource.RLIMIT_FSIZE, self.file_size, 0),
            (resource.RLIMIT_CPU, self.cpu_seconds, 1),
        ):
            if value is not None:
                found.append((which, int(value), int(value) + grace))
        return tuple(found)


DEFAULT_LIMITS = Limits()


def apply_rlimits(limits: tuple[tuple[int, int, int], ...]) -> None:
    """Set each limit, soft and hard: the child cannot raise them again. A
    limit this process already has lower stays as low (raising it needs root)."""
    for which, soft, hard in limits:
        _soft, current = resource.getrlimit(which)
        if current != resource.RLIM_INFINITY:
            hard = min(hard, current)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))


class _Stream:
    """One pipe's output: the first and last ``cap // 2`` bytes and a count."""

    def __init__(self, cap: int) -> None:
        self.half = max(cap // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail += data
        excess = len(self.tail) - self.half
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        body = self.head.decode("utf-8", "replace")
        if self.dropped:
            body += (
                f"\n[pytest-installperm] {self.dropped} bytes of output dropped here "
                f"(the first and last {self.half} bytes are kept; raise "
                "Limits(output_bytes=...))\n"
            )
        return body + self.tail.decode("utf-8", "replace")


@dataclass(frozen=True)
class Captured:
    stdout: str
    stderr: str
    stdout_dropped: int
    stderr_dropped: int
    timed_out: bool


def capture(
    proc: subprocess.Popen[bytes],
    timeout: float,
    cap: int,
    kill: Callable[[], None],
    drain: float,
) -> Captured:
    """Read ``proc``'s stdout and stderr, keeping at most ``cap`` bytes each.

    On timeout ``kill`` everything the child started, then keep reading for
    ``drain`` seconds; a descendant that still holds the pipes after that
    (one that escaped its namespace) is given up on rather than waited for.
    """
    assert proc.stdout is not None
    assert proc.stderr is not None
    out, err = _Stream(cap), _Stream(cap)
    streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    selector = selectors.DefaultSelector()
    for fd in streams:
        selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                if timed_out:
                    err.add(
                        b"\n[pytest-installperm] stopped reading: a descendant holds the pipes\n"
                    )
                    break
                timed_out = True
                kill()
                deadline = time.monotonic() + drain
                continue
            for key, _events in selector.select(left):
                fd = int(key.fd)
                data = os.read(fd, 1 << 16)
                if data:
                    streams[fd].add(data)
                else:
                    selector.unregister(fd)
    finally:
        selector.close()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if timed_out:
        kill()
    proc.wait()
    return Captured(out.text(), err.text(), out.dropped, err.dropped, timed_out)
