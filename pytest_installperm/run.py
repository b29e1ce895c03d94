"""Run one installer command in an environment and record what it did.

:class:`RunResult` is the one result type of both worlds: a child process
(``env.run()``) or an in-process call (``env.call()``, which also fills
``value`` and ``exception``). A child gets a constructed environment (see
:meth:`Sandbox.child_env`), its own session and namespaces, and a timeout
that kills its PID namespace. The result carries the installer's own words
and every change to the sandbox.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_installperm.backends import Launch
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
    #: Bytes dropped from the middle of stdout / stderr (``Limits.output_bytes``).
    stdout_dropped: int = 0
    stderr_dropped: int = 0

    @property
    def backend(self) -> str:
        return self.environment.backend

    @property
    def output(self) -> str:
        """stdout and stderr together, for matching an installer's message."""
        return self.stdout + self.stderr

    def describe(self, lines: int = 15) -> str:
        """Exit status and the last lines of stdout then stderr, for messages.

        Both, because pip prints its decision ("Defaulting to user
        installation ...") on stdout and its warnings on stderr."""
        status = (
            f"timed out after {self.duration_s:.1f}s (PID namespace killed)"
            if (self.timed_out)
            else f"exit status {self.returncode}"
        )
        head = f"$ {' '.join(self.argv)}\n  {status} (backend {self.backend})"
        head += f"\n  mode: {self.environment.mode}"
        if self.error:
            head += f"\n  could not start: {self.error}"
        for name, dropped in (("stdout", self.stdout_dropped), ("stderr", self.stderr_dropped)):
            if dropped:
                head += f"\n  {name} truncated: {dropped} bytes dropped (Limits.output_bytes)"
        output = "\n".join(filter(None, (self.stdout.strip(), self.stderr.strip())))
        tail = "\n".join(f"  | {line}" for line in output.splitlines()[-lines:])
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
    #: Bytes dropped from the middle of each stream (``Limits.output_bytes``).
    stdout_dropped: int = 0
    stderr_dropped: int = 0
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
            stdout_dropped=self.stdout_dropped,
            stderr_dropped=self.stderr_dropped,
        )


def execute(launch: Launch, *, env: Mapping[str, str], cwd: Path, timeout: float) -> Exit:
    """Start ``launch`` and wait for it (at most ``timeout`` seconds).

    As root the run happens in a thread of its own whose children start a new
    PID namespace (see ``contain.enter.in_new_pid_namespace``), so the child
    needs no waiter process.
    """
    containment = launch.containment
    if containment is not None and containment.mode == "mount":
        from pytest_installperm.backends.contain.enter import in_new_pid_namespace

        return in_new_pid_namespace(lambda: _execute(launch, env, cwd, timeout))
    return _execute(launch, env, cwd, timeout)


def _execute(launch: Launch, env: Mapping[str, str], cwd: Path, timeout: float) -> Exit:
    """Start ``launch`` and wait for it (at most ``timeout`` seconds).

    The child leads its own session. With a containment (every backend's
    launch has one), the child starts in its own namespaces; after the run (or
    at the timeout) its PID namespace is killed whole. A containment that
    cannot start is a :class:`BackendError`: it never looks like an
    installer's result. Output beyond ``Limits.output_bytes`` per stream is
    dropped from the middle and counted.
    """
    from pytest_installperm.backends.contain.limits import DEFAULT_LIMITS, capture

    argv, containment = launch.argv, launch.containment
    limits = launch.limits or DEFAULT_LIMITS
    kwargs = dict(launch.popen_kwargs)
    channel = None
    if containment is not None:
        from pytest_installperm.backends.contain import Channel

        channel = Channel()
        kwargs = containment.popen_kwargs(
            kwargs, channel.child_fd, network=launch.network, limits=limits
        )
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
        init: list[int | None] = [None]

        def kill() -> None:
            if containment is None:
                _kill_group(proc.pid)
                return
            held, init[0] = init[0], None
            try:
                containment.reap(held)
            finally:
                proc.kill()  # the waiter (or the child); Popen never signals a reaped pid

        try:
            if containment is not None and channel is not None:
                init[0] = containment.started(channel.receive())
            captured = capture(proc, timeout, limits.output_bytes, kill, DRAIN_SECONDS)
        finally:
            if proc.returncode is None or init[0] is not None:
                kill()
                proc.wait()
    finally:
        if channel is not None:
            channel.close()
    err = captured.stderr
    if captured.timed_out:
        err += f"\n[pytest-installperm] timed out after {timeout}s; its PID namespace was killed\n"
    return Exit(
        proc.returncode,
        captured.stdout,
        err,
        timed_out=captured.timed_out,
        seconds=time.monotonic() - start,
        stdout_dropped=captured.stdout_dropped,
        stderr_dropped=captured.stderr_dropped,
    )


def _kill_group(pgid: int) -> None:
    """SIGKILL whatever is left of an uncontained child's process group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


__all__ = ["DRAIN_SECONDS", "NOT_STARTED", "Arg", "Exit", "RunResult", "execute"]
