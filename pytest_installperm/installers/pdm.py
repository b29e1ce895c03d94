"""The ``pdm`` preset: ``pdm install`` of a global project into the environment's interpreter.

A wheel is a dependency of a one-file project (``distribution = false``) in the
run's working directory; ``-g -p .`` makes that directory pdm's *global*
project, the mode in which pdm installs into an interpreter's own scheme
instead of a venv or ``__pypackages__``, and ``PDM_PYTHON`` chooses the
environment's interpreter. pdm has a user scheme for the global project
(``global_project.user_site``, pdm-project/pdm#987), which expresses ``--user``;
it never falls back to it.
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
)
from pytest_installperm.scenarios import Request, Scenario

if TYPE_CHECKING:
    from pytest_installperm.oracle import Expected
    from pytest_installperm.run import RunResult
    from pytest_installperm.sandbox import Sandbox

NO_FALLBACK = (
    "pdm never falls back to the user site: it installs the global project into the "
    "interpreter's scheme, or into the user site only when global_project.user_site is set "
    "(pdm-project/pdm#987)"
)

OUTSIDE = re.compile(r"\[Errno 30\] Read-only file system:\s*'(/[^']*)'")
NO_PEP668 = (
    "pdm does not read the EXTERNALLY-MANAGED marker: it installs the global project into a "
    "marked interpreter"
)
USER_SITE_OFF_IGNORED = (
    "pdm installs into the user site when global_project.user_site is set even if the user "
    "site is disabled (PYTHONNOUSERSITE), where pip refuses"
)
USER_IN_VENV_IGNORED = (
    "pdm ignores global_project.user_site for a venv and installs into the venv, where pip "
    "refuses --user or falls back"
)

PROJECT = """\
[project]
name = "installperm-project"
version = "0"
requires-python = ">=3.8"
dependencies = ["{requirement}"]

[tool.pdm]
distribution = false
"""
#: pdm's own configuration file for the run: the user site when asked for.
CONFIG = "[global_project]\nuser_site = {user}\n"


class Pdm(Installer):
    """``pdm install -g -p . --no-self`` with ``PDM_PYTHON={python}``."""

    name = "pdm"
    programs = ("pdm",)
    #: pdm 2.29.4 fails at `pdm lock` with hishel 2 (an AttributeError).
    release_constraints = ("hishel<2",)

    def isolation(self, sandbox: Sandbox) -> Mapping[str, str]:
        return {
            "PDM_CACHE_DIR": os.path.join(sandbox.cache, "pdm"),
            "PDM_CHECK_UPDATE": "false",
            "PDM_NON_INTERACTIVE": "1",
        }

    def command(self, request: Request, ctx: Context) -> Command | Unsupported:
        if request.user is False:
            return Unsupported("pdm cannot express --no-user: it has no such option")
        if request.user is True and request.user_via == "env":
            return Unsupported("pdm cannot express PIP_USER=1: it reads no such variable")
        if (refused := no_such_option(request, "pdm install")) is not None:
            return refused
        files = {
            "pyproject.toml": PROJECT.format(requirement=requirement_of(ctx.wheel)),
            "pdm-config.toml": CONFIG.format(user="true" if request.user else "false"),
        }
        env: dict[str, str | None] = {
            "PDM_PYTHON": str(ctx.python),
            "PDM_IGNORE_SAVED_PYTHON": "1",
            "PDM_USE_VENV": "false",
            "PDM_CONFIG_FILE": str(ctx.work / "pdm-config.toml"),
        }
        argv = (program(ctx, "pdm"), "install", "--global", "--project", ".", "--no-self")
        return Command(argv, env, files=MappingProxyType(files))

    def version_command(self, ctx: Context) -> Command | None:
        return Command((program(ctx, "pdm"), "--version"))

    def artifact(self, result: RunResult, ctx: Context) -> str | None:
        """pdm computes a Debian interpreter's scripts directory from its
        build-time prefix (``/usr``): for a relocated copy that is outside the
        sandbox, where the containment refuses the write (EROFS)."""
        for path in OUTSIDE.findall(result.stderr + result.stdout):
            if not Path(path).is_relative_to(ctx.home.parent):
                return (
                    f"pdm wrote to {path}, outside the sandbox (refused: read-only), a path "
                    "taken from the relocated interpreter's build-time prefix: a limit of "
                    "relocated interpreters, not pdm's behaviour; an in-place interpreter "
                    "avoids it"
                )
        return None

    def diverges(self, scenario: Scenario, pip: Expected) -> tuple[str, str] | None:
        mine, reasons = _pdm_outcome(scenario)
        return (mine, "; ".join(reasons)) if mine != pip.outcome else None


def _pdm_outcome(scenario: Scenario) -> tuple[str, list[str]]:
    """Where pdm installs the global project (``environments/python.py``), and why
    that differs from pip: no PEP 668 check, no fallback, the user site taken
    when configured whether or not it is enabled, and never in a venv."""
    spec, request = scenario.environment, scenario.request
    locked = set(spec.locked)
    reasons = [NO_PEP668] if spec.externally_managed else []
    if spec.home != "present" or "home" in locked:
        return "error", reasons  # pdm keeps its log in XDG_STATE_HOME
    if request.user and spec.kind == "system":
        if not spec.user_site:
            reasons.append(USER_SITE_OFF_IGNORED)
        return ("error" if "user" in locked else "user"), reasons
    if request.user:
        reasons.append(USER_IN_VENV_IGNORED)
    if locked & {"system", "system-scripts"}:
        return "error", [*reasons, NO_FALLBACK]
    return "system", reasons
