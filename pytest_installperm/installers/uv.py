"""The ``uv`` preset: ``uv pip install --python {python} [--system]``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from packaging.version import Version

from pytest_installperm.installers.base import (
    Command,
    Context,
    Installer,
    Unsupported,
    program,
    shared_flags,
)
from pytest_installperm.oracle import Change
from pytest_installperm.run import Arg
from pytest_installperm.scenarios import Request, Scenario

if TYPE_CHECKING:
    from pytest_installperm.oracle import Expected
    from pytest_installperm.sandbox import Sandbox

#: uv's documented stance: https://docs.astral.sh/uv/pip/compatibility/ and the
#: maintainers' answers in astral-sh/uv#2059 and astral-sh/uv#17102.
UV_NO_USER = (
    "uv has no user scheme: pip's `--user` is unsupported (use a virtual "
    "environment instead), so it never falls back to the user site "
    "(astral-sh/uv#2059, astral-sh/uv#17102)"
)


#: uv's command line by release, each proved on the releases both sides of it
#: (tests/test_versions.py): before, uv rejects that part with a usage error.
UV_CHANGES: Mapping[str, Change] = MappingProxyType(
    {
        "python-with-system": Change(
            Version("0.2.4"),
            "`--python` together with `--system`",
            "astral-sh/uv#3829; 0.2.3 says the argument '--python' cannot be used with '--system'",
        ),
        "prefix": Change(
            Version("0.2.10"),
            "`uv pip install --prefix`",
            "astral-sh/uv#4085; 0.2.9 says unexpected argument '--prefix' found",
        ),
    }
)


class Uv(Installer):
    """``uv pip install --python {python} [--system] [flags] {wheel}``; ``--system``
    for system interpreters only."""

    name = "uv"
    programs = ("uv",)
    #: A native program: a cell takes about a fifth of pip's.
    weight = 0.2
    messages = MappingProxyType({"externally-managed": r"is externally managed"})
    changes = UV_CHANGES

    def isolation(self, sandbox: Sandbox) -> Mapping[str, str]:
        # uv caches interpreter facts by path and mtime: a shared cache would
        # answer for another sandbox's interpreter.
        return {
            "UV_CACHE_DIR": os.path.join(sandbox.cache, "uv"),
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
        }

    def command(self, request: Request, ctx: Context) -> Command | Unsupported:
        if request.user is True:
            return Unsupported(f"uv cannot express {request.describe()}: {UV_NO_USER}")
        if request.root:
            return Unsupported("uv cannot express --root: `uv pip install` has no such option")
        argv: list[Arg] = [program(ctx, "uv"), "pip", "install", "--python", ctx.python]
        if ctx.kind == "system":
            argv.append("--system")
        return Command((*argv, *shared_flags(request, ctx), ctx.wheel))

    def version_command(self, ctx: Context) -> Command | None:
        return Command((program(ctx, "uv"), "--version"))

    def needs(self, request: Request, ctx: Context) -> tuple[str, ...]:
        wanted = ("python-with-system", ctx.kind == "system"), ("prefix", request.prefix)
        return tuple(name for name, used in wanted if used)

    def diverges(self, scenario: Scenario, pip: Expected) -> tuple[str, str] | None:
        return ("error", UV_NO_USER) if pip.message == "fallback" else None
