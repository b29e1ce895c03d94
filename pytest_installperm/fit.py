"""Whether an installer's code runs on an interpreter, asked of the code itself.

A release's metadata says part of it (``Requires-Python``, see
:meth:`releases.Code.runs_on`), but not what it imports that a later Python
removed: pip 20.x imports ``distutils`` and pip 21.3 to 23.0.1 reach
``pkgutil.ImpImporter`` through their vendored ``pkg_resources`` (both gone in
Python 3.12), while their ``Requires-Python`` admits 3.12. So the installer is
asked inside a sandbox made from that interpreter, as the child runs: its
version command, then its smoke command (what an install imports, changing
nothing). A failure belongs to the release on that interpreter, not to a
scenario: every cell of that pair is a skip naming the release, the interpreter
and the installer's own words, decided once per session (the matrix's
``Runner.fit``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_installperm.environment import Environment
    from pytest_installperm.installers import Command, Context, Installer
    from pytest_installperm.run import RunResult

#: Seconds an installer may take to say its version or to pass its smoke command.
FIT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Fit:
    """What an installer said on one interpreter: its version, and why it cannot
    run there (None: it can)."""

    version: str | None
    reason: str | None = None


def last_words(result: RunResult) -> str:
    """The installer's last line of output, sandbox paths shortened: its own words."""
    lines = [ln.strip() for ln in (result.stderr.strip() or result.stdout.strip()).splitlines()]
    text = lines[-1] if lines else ""
    return text.replace(str(result.environment.root), "<sandbox>")


def _shown(command: Command) -> str:
    head, *rest = command.argv
    return " ".join([os.path.basename(str(head)), *map(str, rest)])


def check(installer: Installer, env: Environment, ctx: Context, interpreter: str) -> Fit:
    """Ask ``installer`` in ``env`` (built from the interpreter described by
    ``interpreter``, as in a report) for its version, then run its smoke command."""
    version: str | None = None
    steps = (("version", installer.version_command(ctx)), ("smoke", installer.smoke_command(ctx)))
    for step, command in steps:
        if command is None:
            continue
        answer = env.run(list(command.argv), env=command.env, timeout=FIT_TIMEOUT)
        if step == "version" and answer.returncode == 0:
            version = installer.version(answer.stdout)
        if answer.returncode != 0 or (step == "version" and version is None):
            status = "timed out" if answer.timed_out else f"exited with status {answer.returncode}"
            return Fit(
                version,
                f"{installer.describe()} cannot run on {interpreter}: `{_shown(command)}` "
                f"{status}: {last_words(answer) or '(no output)'}",
            )
    return Fit(version)


__all__ = ["FIT_TIMEOUT", "Fit", "check", "last_words"]
