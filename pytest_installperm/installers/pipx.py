"""The ``pipx`` preset: ``pipx install --python {python} {wheel}``.

pipx installs an application into a venv of its own under ``PIPX_HOME``
(``$XDG_DATA_HOME/pipx``) and links its scripts into ``PIPX_BIN_DIR``
(``~/.local/bin``, the user scheme's scripts directory): never into the
interpreter's scheme. Its outcome is therefore ``own``: the wheel complete in
that venv. It uses uv as its backend (``--backend uv``): with pip, pipx first
upgrades pip in its shared venv from the index (``pip >= 26.1``), which a
hermetic sandbox cannot reach; the wheel under test needs no index either way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from pytest_installperm.installers.base import (
    Command,
    Context,
    Installer,
    Unsupported,
    no_such_option,
    program,
    venv_scheme,
)
from pytest_installperm.run import Arg
from pytest_installperm.scenarios import InstallerExpectation, Request, Scenario

if TYPE_CHECKING:
    from pytest_installperm.oracle import Expected
    from pytest_installperm.sandbox import Sandbox

OWN_VENV = (
    "pipx installs every application into a venv of its own under PIPX_HOME and links its "
    "scripts into PIPX_BIN_DIR (~/.local/bin); it never installs into the interpreter's "
    "scheme, so PEP 668 and a locked site do not concern it (pipx docs, pypa/pipx#1806)"
)


APP_LINKS = (
    "pipx exposes each app by a symlink in PIPX_BIN_DIR (~/.local/bin, the user scheme's "
    "scripts directory) to the script in its venv: by design, one install seen in two schemes"
)
HOME_FIRST = (
    "pipx makes its home (PIPX_HOME with logs/ and venvs/) and writes its log before it finds "
    "PIPX_BIN_DIR unwritable ('Cannot create ~/.local/bin: permission denied'): an empty home "
    "and a log are left, no install"
)
#: Locks that take pipx's home (under XDG_DATA_HOME) or its bin directory away.
BLOCKING_LOCKS = frozenset({"home", "user", "user-scripts", "xdg-data"})


class Pipx(Installer):
    """``pipx install --backend uv --python {python} {wheel}``."""

    name = "pipx"
    programs = ("pipx", "uv")
    release_constraints = ()

    def isolation(self, sandbox: Sandbox) -> Mapping[str, str]:
        home = sandbox.home
        return {
            "PIPX_HOME": os.path.join(home, ".local", "share", "pipx"),
            "PIPX_BIN_DIR": os.path.join(home, ".local", "bin"),
            "PIPX_MAN_DIR": os.path.join(home, ".local", "share", "man"),
            "PIPX_GLOBAL_HOME": os.path.join(sandbox.tmp, "pipx-global"),
            "PIPX_GLOBAL_BIN_DIR": os.path.join(sandbox.tmp, "pipx-global", "bin"),
            "PIPX_GLOBAL_MAN_DIR": os.path.join(sandbox.tmp, "pipx-global", "man"),
            "USE_EMOJI": "0",
        }

    def command(self, request: Request, ctx: Context) -> Command | Unsupported:
        if request.user is not None:
            return Unsupported(
                f"pipx cannot express {request.describe()}: every pipx install is per user, "
                "into a venv of its own"
            )
        if (refused := no_such_option(request, "pipx install")) is not None:
            return refused
        argv: list[Arg] = [
            program(ctx, "pipx"),
            "install",
            "--backend",
            "uv",
            "--python",
            ctx.python,
        ]
        if request.upgrade:
            argv.append("--force")
        return Command((*argv, ctx.wheel), {"UV_OFFLINE": "1"})

    def version_command(self, ctx: Context) -> Command | None:
        return Command((program(ctx, "pipx"), "--version"))

    def schemes(self, ctx: Context) -> Mapping[str, Mapping[str, Path]]:
        project = canonicalize_name(ctx.wheel.name.split("-", 1)[0])
        return {"own": venv_scheme(ctx.home / ".local" / "share" / "pipx" / "venvs" / project)}

    def diverges(self, scenario: Scenario, pip: Expected) -> tuple[str, str] | None:
        """``own``, unless pipx cannot write its home or its bin directory."""
        spec = scenario.environment
        blocked = spec.home != "present" or bool(set(spec.locked) & BLOCKING_LOCKS)
        mine = "error" if blocked else "own"
        return (mine, OWN_VENV) if mine != pip.outcome else None

    def expect(self, scenario: Scenario, pip: Expected, ctx: Context) -> InstallerExpectation:
        found = InstallerExpectation(diverges=self.diverges(scenario, pip))
        if found.diverges is not None and found.diverges[0] == "own":
            return replace(found, breaks={"one-scheme": APP_LINKS})
        spec = scenario.environment
        if spec.home == "present" and set(spec.locked) & {"user", "user-scripts"}:
            return replace(found, breaks={"residue": HOME_FIRST})
        return found
