"""The ``hatch`` preset: ``hatch env create`` of an environment that depends on the wheel.

Hatch installs only into environments of its own: its documented type,
``virtual``, is a venv under its data directory
(``$XDG_DATA_HOME/hatch/env/virtual/<project>/<hash>/<env>``), made from the
interpreter the environment names (``python = "{python}"``) and filled by pip
(or uv). Its outcome is therefore ``own``. The undocumented ``system`` type
would install into the interpreter on PATH, but fails on a fresh data
directory (see docs/findings.md), so it is not used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from pytest_installperm.installers.base import (
    Command,
    Context,
    Installer,
    Unsupported,
    no_such_option,
    program,
    requirement_of,
    venv_scheme,
)
from pytest_installperm.scenarios import Request, Scenario

if TYPE_CHECKING:
    from pytest_installperm.oracle import Expected
    from pytest_installperm.run import RunResult
    from pytest_installperm.sandbox import Sandbox

OWN_ENV = (
    "hatch installs only into environments of its own (a venv under its data directory, "
    "hatch.pypa.io environment plugin 'virtual'); the interpreter's scheme is never written"
)

PROJECT = """\
[project]
name = "installperm-project"
version = "0"

[tool.hatch.envs.default]
skip-install = true
python = "{python}"
dependencies = ["{requirement}"]
"""


STALE_LIBPYTHON = re.compile(
    r"PermissionError: \[Errno 13\] Permission denied:\s*'([^']*libpython[^']*)'"
)
#: Locks that take hatch's data directory (under XDG_DATA_HOME) away.
BLOCKING_LOCKS = frozenset({"home", "xdg-data"})


PROJECT_NAME = "installperm-project"


def _subdirs(top: Path) -> list[Path]:
    try:
        with os.scandir(top) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


class Hatch(Installer):
    """``hatch env create`` in a project whose default environment needs the wheel."""

    name = "hatch"
    programs = ("hatch",)
    release_constraints = ()

    def isolation(self, sandbox: Sandbox) -> Mapping[str, str]:
        return {
            "HATCH_DATA_DIR": os.path.join(sandbox.home, ".local", "share", "hatch"),
            "HATCH_CACHE_DIR": os.path.join(sandbox.cache, "hatch"),
            "HATCH_INTERACTIVE": "false",
            "VIRTUALENV_OVERRIDE_APP_DATA": os.path.join(sandbox.cache, "virtualenv"),
        }

    def command(self, request: Request, ctx: Context) -> Command | Unsupported:
        if request.user is not None:
            return Unsupported(
                f"hatch cannot express {request.describe()}: it installs only into "
                "environments of its own"
            )
        if (refused := no_such_option(request, "hatch env create", upgrade=True)) is not None:
            return refused
        text = PROJECT.format(python=ctx.python, requirement=requirement_of(ctx.wheel))
        return Command(
            (program(ctx, "hatch"), "env", "create"),
            files=MappingProxyType({"pyproject.toml": text}),
        )

    def version_command(self, ctx: Context) -> Command | None:
        return Command((program(ctx, "hatch"), "--version"))

    def schemes(self, ctx: Context) -> Mapping[str, Mapping[str, Path]]:
        """The venv hatch made: ``<data>/env/virtual/<project>/<hash>/<project>``
        (the default environment is named after the project), found by listing
        without following links."""
        top = ctx.home / ".local" / "share" / "hatch" / "env" / "virtual" / PROJECT_NAME
        found: list[Path] = []
        for hashed in _subdirs(top):
            found += _subdirs(hashed)
        return {"own": venv_scheme(found[0] if found else top / PROJECT_NAME)}

    def artifact(self, result: RunResult, ctx: Context) -> str | None:
        """virtualenv (hatch's venv maker) reads the interpreter's build-time
        ``LIBDIR``: for a relocated copy of a shared-libpython build that is the
        original's library, under a home the dropped uid cannot read."""
        found = STALE_LIBPYTHON.search(result.stderr + result.stdout)
        if found is None or Path(found[1]).is_relative_to(ctx.home.parent):
            return None
        return (
            f"hatch's virtualenv read the relocated interpreter's build-time libpython "
            f"{found[1]} (Permission denied for the dropped uid): a limit of relocated "
            "interpreters, not hatch's behaviour; an in-place interpreter avoids it"
        )

    def diverges(self, scenario: Scenario, pip: Expected) -> tuple[str, str] | None:
        """``own``, unless hatch cannot write its data directory."""
        spec = scenario.environment
        blocked = spec.home != "present" or bool(set(spec.locked) & BLOCKING_LOCKS)
        mine = "error" if blocked else "own"
        return (mine, OWN_ENV) if mine != pip.outcome else None
