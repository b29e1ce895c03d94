"""Run one installer command in an environment and record what it did.

:class:`RunResult` is the one result type of both worlds: a child process
(``env.run()``) or an in-process call (``env.call()``, which also fills
``value`` and ``exception``). A child gets a constructed environment (see
:meth:`Sandbox.child_env`), its own session and process group, and a timeout
that kills the whole group. The result carries the installer's own words and
every change to the sandbox.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_installperm.backends import Launch
from pytest_installperm.backends.contain import Channel
from pytest_installperm.changes import Changes
from pytest_installperm.errors import BackendError
from pytest_installperm.verdicts import PlacementAssertions
from pytest_installperm.world import Arg

if TYPE_CHECKING:
    from pytest_installperm.environment import Environment

#: Exit status reported when the command could not be started at all.
NOT_STARTED = 127
#: How long to drain a killed child's pipes before giving up on them.
DRAIN_SECONDS = 10.0


@dataclass(frozen=True)
class RunResult(PlacementAssertions):
    """What one installer run (or in-process call) did: status, output, and
    changes by role.

    For a call, ``returncode`` is 0 when the function returned, the status of a
    ``SystemExit``, and 1 for any other exception, whose text ends ``stderr``.
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    changes: Changes
    outside: frozenset[Path]
    environment: Environment = field(repr=False, compare=False)
    timed_out: bool = False
    #: The OS error that prevented the start, e.g. a missing command.
    error: str | None = None
    duration_s: float = 0.0
    #: What the called function returned (in-process calls only).
    value: Any = field(default=None, repr=False, compare=False)
    #: What the called function raised (in-process calls only).
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def backend(self) -> str:
        return self.environment.backend

    @property
    def output(self) -> str:
        """stdout and stderr together, for matching an installer's message."""
        return self.stdout + self.stderr

    def describe(self, lines: int = 15) -> str:
        """Exit status and the last lines of stderr (or stdout), for messages."""
        status = (
            f"timed out after {self.duration_s:.1f}s (process group killed)"
            if (self.timed_out)
            else f"exit status {self.returncode}"
        )
        head = f"$ {' '.join(self.argv)}\n  {status} (backend {self.backend})"
        if self.error:
            head += f"\n  could not start: {self.error}"
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()[-lines:]
        tail = "\n".join(f"  | {line}" for line in text)
        return head + (f"\n  last lines of output:\n{tail}" if tail else "")

    def _wheel_for_verdict(self, wheel: str | os.PathLike[str]) -> Path:
        """The wheel where the code under test saw it (in-process: a fake copy)."""
        return self.environment.world.visible(Path(wheel))


@dataclass(frozen=True)
class Exit:
    """How one child (or call) ended: status, output, and whether it ran at all."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False
    #: The OS error that prevented the start, e.g. a missing command.
    error: str | None = None
    seconds: float = 0.0
    value: Any = None
    exception: BaseException | None = None

    def result(
        self,
        argv: tuple[str, ...],
        changes: Changes,
        outside: frozenset[Path],
        environment: Environment,
    ) -> RunResult:
        return RunResult(
            argv,
            self.returncode,
            self.stdout,
            self.stderr,
            changes,
            outside,
            environment,
            timed_out=self.timed_out,
            error=self.error,
            duration_s=self.seconds,
            value=self.value,
            exception=self.exception,
        )


def execute(launch: Launch, *, env: Mapping[str, str], cwd: Path, timeout: float) -> Exit:
    """Start ``launch`` and wait for it (at most ``timeout`` seconds).

    The child leads its own session, so a timeout (or leftovers of a finished
    run) can be killed as one process group. With a containment (every
    backend's launch has one), the child starts in its private mount
    namespace; whatever is left in that namespace afterwards is killed, even
    processes that left the group. A containment that cannot start is a
    :class:`BackendError`, and a write caught outside the sandbox (detect mode)
    a :class:`ContainmentError`: neither ever looks like an installer's result.
    """
    argv, containment = launch.argv, launch.containment
    kwargs = dict(launch.popen_kwargs)
    channel = None
    if containment is not None:
        channel = Channel()
        kwargs = containment.popen_kwargs(kwargs, channel.child_fd)
    start = time.monotonic()
    try:
        try:
            proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                umask=0o022,
                **kwargs,
            )
        except subprocess.SubprocessError as exc:  # our preexec_fn failed
            report = channel.receive()[0] if channel is not None else ""
            raise BackendError(
                f"the child could not be started in its containment: "
                f"{report.removeprefix('error ') or exc}"
            ) from exc
        except OSError as exc:
            if exc.filename is None:
                # Not the program (that names it) nor the cwd: the step that
                # puts the child in place (setgroups, setgid, setuid) failed.
                raise BackendError(
                    f"the child could not be put in place (privilege change before exec "
                    f"failed): {exc}; popen arguments {sorted(kwargs)}"
                ) from exc
            message = f"{type(exc).__name__}: {exc}"
            return Exit(NOT_STARTED, "", message + "\n", False, message, time.monotonic() - start)
        namespace: list[int | None] = [None]

        def kill() -> None:
            _kill_group(proc.pid)
            if containment is not None:
                held, namespace[0] = namespace[0], None
                containment.reap(held, proc.pid)

        try:
            if containment is not None and channel is not None:
                namespace[0] = containment.started(channel.receive())
            out, err, timed_out = _communicate(proc, timeout, kill)
        finally:
            kill()
            if containment is not None:
                containment.finish()
    finally:
        if channel is not None:
            channel.close()
    text_out = out.decode("utf-8", "replace")
    text_err = err.decode("utf-8", "replace")
    if timed_out:
        text_err += f"\n[pytest-installperm] timed out after {timeout}s; process group killed\n"
    return Exit(proc.returncode, text_out, text_err, timed_out, None, time.monotonic() - start)


def _communicate(
    proc: subprocess.Popen[bytes], timeout: float, kill: Callable[[], None]
) -> tuple[bytes, bytes, bool]:
    """Output of ``proc``; on timeout ``kill`` everything it started, then drain.

    A descendant that escaped both the process group and the namespace (detect
    mode only) may still hold the pipes: the drain then gives up after a grace
    period rather than hang the test session.
    """
    try:
        out, err = proc.communicate(timeout=timeout)
        return out, err, False
    except subprocess.TimeoutExpired:
        kill()
    try:
        out, err = proc.communicate(timeout=DRAIN_SECONDS)
    except subprocess.TimeoutExpired:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()
        out, err = b"", b"[pytest-installperm] output lost: a descendant kept the pipes open\n"
    return out, err, True


def _kill_group(pgid: int) -> None:
    """SIGKILL whatever is left of the child's process group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


__all__ = ["DRAIN_SECONDS", "NOT_STARTED", "Arg", "Exit", "RunResult", "execute"]
