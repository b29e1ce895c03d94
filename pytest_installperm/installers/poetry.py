"""The ``poetry`` preset: ``python -m poetry install`` with venv creation off.

Poetry installs projects, not wheels: the wheel becomes a path dependency of a
one-file project (``package-mode = false``) written into the run's working
directory, its project directory. With ``virtualenvs.create = false`` (poetry's
recipe for containers) poetry installs into the interpreter that runs it, so
it runs on the environment's own interpreter, its distributions coming from a
readable copy on ``PYTHONPATH``: as ``pip install poetry`` into the system
site would have it, without adding files to the scheme being judged.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
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
    requirement_of,
)
from pytest_installperm.scenarios import InstallerExpectation, Request, Scenario

if TYPE_CHECKING:
    from pytest_installperm.oracle import Expected
    from pytest_installperm.sandbox import Sandbox

#: Poetry swaps its scheme to the user base when the site is not writable
#: (``utils/env``'s writability probe, python-poetry/poetry#3107).
NO_USER_OPTION = (
    "poetry has no option for the user scheme: it decides by itself, falling back to the "
    "user base when the site is not writable (python-poetry/poetry#3107)"
)
NO_PEP668 = (
    "poetry does not read the EXTERNALLY-MANAGED marker: with virtualenvs.create=false it "
    "installs into a marked interpreter (python-poetry/poetry#6398)"
)
FALLS_BACK_ON_SCRIPTS = (
    "poetry probes the scripts directory too: when only it is locked, poetry moves the whole "
    "install to the user base, where pip fails"
)
UPGRADES_IN_PLACE = (
    "poetry updates a package where it is installed: over a root-owned older version it "
    "fails (Permission denied), where pip installs the new version in the user site"
)
NO_FALLBACK_IN_VENV = (
    "in a venv poetry installs into the venv or fails: it never falls back to the user base, "
    "where pip does when the venv sees the system site"
)
IGNORES_USER_SITE_OFF = (
    "poetry falls back to the user base even when the user site is disabled "
    "(PYTHONNOUSERSITE), where pip refuses: the files land where Python will not look"
)
DEBIAN_DIST_PACKAGES = (
    "poetry bug on Debian: its fallback moves the system scheme onto the user base and keeps "
    "'dist-packages', writing ~/.local/lib/pythonX.Y/dist-packages, which is not on sys.path "
    "(only the scripts land in the user scheme; python-poetry/poetry#6459)"
)

PROJECT = """\
[project]
name = "installperm-project"
version = "0"
dependencies = ["{requirement}"]

[tool.poetry]
package-mode = false
"""


class Poetry(Installer):
    """``{python} -m poetry install --no-root`` in a project that depends on the wheel."""

    name = "poetry"
    libraries = ("poetry",)
    release_constraints = ()

    def missing(self, tools: Path) -> str | None:
        if self.origin is not None:
            return None
        if importlib.util.find_spec("poetry") is None and shutil.which("poetry") is None:
            return (
                "installer 'poetry': poetry is neither importable here nor a program on PATH "
                "(install the test extra, or pipx install poetry)"
            )
        return None

    def isolation(self, sandbox: Sandbox) -> Mapping[str, str]:
        return {
            "POETRY_CACHE_DIR": os.path.join(sandbox.cache, "pypoetry"),
            "POETRY_NO_INTERACTION": "1",
            "POETRY_KEYRING_ENABLED": "false",
        }

    def command(self, request: Request, ctx: Context) -> Command | Unsupported:
        if request.user is not None:
            return Unsupported(f"poetry cannot express {request.describe()}: {NO_USER_OPTION}")
        if (refused := no_such_option(request, "poetry install")) is not None:
            return refused
        # --upgrade needs no flag: poetry installs the locked version over an older one.
        files = {"pyproject.toml": PROJECT.format(requirement=requirement_of(ctx.wheel))}
        env: dict[str, str | None] = {"POETRY_VIRTUALENVS_CREATE": "false", **_path(ctx)}
        if ctx.kind == "venv":  # an activated venv, as a user runs poetry in one
            env["VIRTUAL_ENV"] = str(ctx.python.parent.parent)
        argv = (ctx.python, "-m", "poetry", "install", "--no-root", "--no-interaction")
        return Command(argv, env, files=MappingProxyType(files))

    def version_command(self, ctx: Context) -> Command | None:
        return Command((ctx.python, "-m", "poetry", "--version"), _path(ctx))

    def version(self, output: str) -> str | None:
        found = re.search(r"version (\d+(?:\.\d+)+\w*)", output)  # "Poetry (version 2.5.1)"
        return found[1] if found else None

    def expect(self, scenario: Scenario, pip: Expected, ctx: Context) -> InstallerExpectation:
        """Poetry's own rules (``utils/env``): no PEP 668 check; the site and the
        scripts directory probed for writing; the user base as the fallback,
        whether or not the user site is enabled; an upgrade where the old
        version is. On Debian the fallback lands where Python does not look."""
        mine, reasons = _poetry_outcome(scenario)
        system = ctx.schemes.get("system", {})
        debian = Path(system.get("purelib", "")).name == "dist-packages"
        breaks = {"one-scheme": DEBIAN_DIST_PACKAGES} if mine == "user" and debian else {}
        if mine == pip.outcome:
            return InstallerExpectation(breaks=breaks)
        text = "; ".join([*reasons, *breaks.values()])
        return InstallerExpectation(diverges=(mine, text), breaks=breaks)


def _poetry_outcome(scenario: Scenario) -> tuple[str, list[str]]:
    """Where poetry installs in ``scenario``, and which of its rules differ from pip's."""
    spec = scenario.environment
    locked = set(spec.locked)
    reasons = [NO_PEP668] if spec.externally_managed else []
    if spec.home != "present":
        return "error", reasons
    if spec.kind == "venv":
        writable = "system" not in locked
        return ("system" if writable else "error"), [*reasons, NO_FALLBACK_IN_VENV]
    if scenario.preinstalled() and "system" in locked:
        return "error", [*reasons, UPGRADES_IN_PLACE]
    if not locked & {"system", "system-scripts"}:
        return "system", reasons
    if "system-scripts" in locked and "system" not in locked:
        reasons.append(FALLS_BACK_ON_SCRIPTS)
    if locked & {"user", "home"}:
        return "error", reasons
    if not spec.user_site:
        reasons.append(IGNORES_USER_SITE_OFF)
    return "user", [*reasons, NO_USER_OPTION]


def _path(ctx: Context) -> dict[str, str | None]:
    return {"PYTHONPATH": str(ctx.libraries)} if ctx.libraries is not None else {}
