"""The ``pip`` preset: ``python -m pip install``, the reference the oracle describes."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from pytest_installperm import oracle
from pytest_installperm.installers.base import (
    Command,
    Context,
    Installer,
    Unsupported,
    library_path,
    pip_flags,
)
from pytest_installperm.scenarios import Request

if TYPE_CHECKING:
    from pytest_installperm.sandbox import Sandbox


class Pip(Installer):
    """``{python} -m pip install [flags] {wheel}``, with the session's copy of pip
    installed in the environment's system site as a distribution would."""

    name = "pip"
    messages = MappingProxyType(
        {
            "fallback": r"Defaulting to user installation because normal site-packages is not "
            r"writeable",
            "externally-managed": r"error: externally-managed-environment",
            "user-with-target": r"Can not combine '--user' and '--target'",
            "user-with-prefix": r"Can not combine '--user' and '--prefix'",
            "user-in-venv": r"User site-packages are not visible in this virtualenv",
            "user-site-disabled": r"User site-packages are disabled for this Python",
            "oserror-consider-user": r"OSError: \[Errno 13\][^\n]*\nConsider using the `--user` "
            r"option or check the permissions",
            "oserror-check-permissions": r"OSError: \[Errno 13\][^\n]*\nCheck the permissions",
            "oserror-no-hint": r"OSError: \[Errno 30\][^\n]*\n(?![\s\S]*heck the permissions)",
        }
    )

    def isolation(self, sandbox: Sandbox) -> Mapping[str, str]:
        # The host's pip configuration (index, find-links, certificates) must not
        # reach the child; PIP_BREAK_SYSTEM_PACKAGES is never passed through.
        return {
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
        }

    def missing(self, tools: Path) -> str | None:
        if self.origin is None and importlib.util.find_spec("pip") is None:
            return "installer 'pip': pip is not installed in the environment running pytest"
        return None

    def command(self, request: Request, ctx: Context) -> Command | Unsupported:
        flags, env = pip_flags(request, ctx)
        env.update(library_path(ctx))  # a versioned pip, ahead of the preinstalled one
        return Command((ctx.python, "-m", "pip", "install", *flags, ctx.wheel), env)

    def version_command(self, ctx: Context) -> Command | None:
        return Command((ctx.python, "-m", "pip", "--version"), library_path(ctx))

    def smoke_command(self, ctx: Context) -> Command | None:
        # Listing reads every distribution, through pkg_resources on the releases
        # that vendor one that needs pkgutil.ImpImporter (gone in Python 3.12);
        # ``--version`` imports neither.
        return Command((ctx.python, "-m", "pip", "list"), library_path(ctx))

    def prefix_scheme(self, version: str | None, schemes: tuple[str, ...]) -> str:
        return oracle.prefix_scheme(version, schemes)

    def messages_for(self, version: str | None) -> Mapping[str, str]:
        return oracle.messages(self.messages, version)
