"""User templates: ``NAME=TEMPLATE`` and ``NAME=PRESET:TEMPLATE``.

A template is split like a shell command line. Placeholders, anywhere inside
an argument (``demo@file://{wheel}``) except ``{flags}``:

``{python}`` the environment's interpreter; ``{wheel}`` the wheel (required);
``{prefix}``, ``{target}``, ``{root}`` directories for ``--prefix``-like options;
``{home}`` the sandbox HOME; ``{flags}`` (a whole argument on its own) pip-style
flags for the request: ``--user``, ``--no-user``, ``--prefix DIR``,
``--target DIR``, ``--root DIR``, ``--break-system-packages``, ``--upgrade``.
A template without ``{flags}`` runs only plain requests; others skip.

With ``PRESET:`` in front, the template inherits what that preset knows: its
messages, its usage-error detection, its declared divergences, and the
declarations that scenario files and the ini file make for the preset's name.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import pytest

from pytest_installperm.installers.base import (
    Command,
    Context,
    Installer,
    Unsupported,
    pip_flags,
)
from pytest_installperm.run import Arg
from pytest_installperm.scenarios import Request, Scenario

if TYPE_CHECKING:
    from pytest_installperm.oracle import Expected
    from pytest_installperm.run import RunResult

PLACEHOLDERS = ("flags", "home", "prefix", "python", "root", "target", "wheel")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: ``PRESET:`` at the start of a template (not ``scheme://``).
INHERITS = re.compile(rf"({NAME.pattern}):(?!//)")


class TemplateInstaller(Installer):
    """A user's template: behaves like pip unless declared, or like ``base`` if given."""

    def __init__(self, name: str, template: str, base: Installer | None = None) -> None:
        self.name = name
        self.template = template
        self.base = base
        self.preset = base.preset if base is not None else name
        self.tokens = tuple(shlex.split(template))

    @property
    def messages(self) -> Mapping[str, str]:  # type: ignore[override]
        return self.base.messages if self.base is not None else MappingProxyType({})

    def describe(self) -> str:
        inherited = f"{self.base.name}:" if self.base is not None else ""
        return f"{self.name}={inherited}{self.template}"

    def missing(self, tools: Path) -> str | None:
        program = self.tokens[0]
        if PLACEHOLDER.search(program):
            return None
        search = os.pathsep.join([str(tools), os.environ.get("PATH", os.defpath)])
        if shutil.which(program, path=search) is None:
            return f"installer {self.name!r}: program {program!r} was not found on PATH"
        return None

    def usage_error(self, result: RunResult) -> str | None:
        if self.base is not None:
            return self.base.usage_error(result)
        return super().usage_error(result)

    def diverges(self, scenario: Scenario, pip: Expected) -> tuple[str, str] | None:
        return self.base.diverges(scenario, pip) if self.base is not None else None

    def prefix_scheme(self, version: str | None, schemes: tuple[str, ...]) -> str:
        if self.base is not None:
            return self.base.prefix_scheme(version, schemes)
        return super().prefix_scheme(version, schemes)

    def command(self, request: Request, ctx: Context) -> Command | Unsupported:
        flags, env = pip_flags(request, ctx)
        if (flags or env) and "{flags}" not in self.tokens:
            return Unsupported(
                f"template {self.name!r} has no {{flags}} placeholder, so it "
                f"cannot express {request.describe()}"
            )
        values: dict[str, str] = {
            "python": str(ctx.python),
            "wheel": str(ctx.wheel),
            "prefix": str(ctx.prefix),
            "target": str(ctx.target),
            "root": str(ctx.root),
            "home": str(ctx.home),
        }
        argv: list[Arg] = []
        for token in self.tokens:
            if token == "{flags}":
                argv += flags
            elif token == "{wheel}":
                argv.append(ctx.wheel)  # a Path, so the engine stages it readably
            else:
                argv.append(PLACEHOLDER.sub(lambda m: values[m.group(1)], token))
        return Command(tuple(argv), env)


def check_template(spec: str, template: str) -> None:
    """UsageError unless ``template`` splits, names known placeholders and has a wheel."""
    try:
        tokens = shlex.split(template)
    except ValueError as exc:
        raise pytest.UsageError(
            f"--installperm-installer={spec!r}: template cannot be split "
            f"like a shell command: {exc}"
        ) from exc
    if not tokens:
        raise pytest.UsageError(f"--installperm-installer={spec!r}: the template is empty")
    for token in tokens:
        for found in PLACEHOLDER.findall(token):
            if found not in PLACEHOLDERS:
                raise pytest.UsageError(
                    f"--installperm-installer={spec!r}: unknown placeholder {{{found}}}; "
                    f"placeholders are {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
                )
        if "{flags}" in token and token != "{flags}":
            raise pytest.UsageError(
                f"--installperm-installer={spec!r}: {{flags}} must be a "
                f"whole argument, got {token!r}"
            )
    if not any("{wheel}" in token for token in tokens):
        raise pytest.UsageError(
            f"--installperm-installer={spec!r}: the template has no {{wheel}} placeholder; "
            "the installer would not know what to install"
        )
