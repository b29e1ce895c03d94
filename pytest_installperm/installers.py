"""Installers under test: the presets (pip, uv, installer) and user templates.

An installer turns a scenario's abstract :class:`~pytest_installperm.scenarios.Request`
into its own command line. What it cannot express (uv has no ``--user``) is an
:class:`Unsupported` with a reason, which the matrix reports as a skip, never as
a pass. A preset also carries its *declared divergences*: differences from pip
that the installer documents as intended, which the matrix shows as xfails with
the reason instead of failures.

Templates (``NAME=TEMPLATE``) are split like a shell command line; placeholders:

``{python}`` the environment's interpreter; ``{wheel}`` the wheel (required);
``{prefix}``, ``{target}``, ``{root}`` directories for ``--prefix``-like options;
``{home}`` the sandbox HOME; ``{flags}`` (a whole argument on its own) pip-style
flags for the request: ``--user``, ``--no-user``, ``--prefix DIR``,
``--target DIR``, ``--root DIR``, ``--break-system-packages``, ``--upgrade``.
A template without ``{flags}`` runs only plain requests; others skip.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import pytest

from pytest_installperm import oracle
from pytest_installperm.oracle import Expected
from pytest_installperm.run import Arg
from pytest_installperm.scenarios import Request, Scenario

PRESETS = ("installer", "pip", "uv")
PLACEHOLDERS = ("flags", "home", "prefix", "python", "root", "target", "wheel")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class Context:
    """Where one run happens: the values of the placeholders."""

    python: Path
    wheel: Path
    prefix: Path
    target: Path
    root: Path
    home: Path
    kind: str  # "system" or "venv"
    #: A directory holding a readable copy of the ``installer`` package.
    installer_lib: Path | None = None


@dataclass(frozen=True)
class Command:
    """A command line plus environment additions (None removes a variable)."""

    argv: tuple[Arg, ...]
    env: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Unsupported:
    """A request this installer has no way to express; the item skips with this."""

    reason: str


class Installer:
    """Base class: a name, a way to build commands, and its declared divergences."""

    name = "installer"
    #: Message kind -> regex the installer's output must contain (pip's words).
    messages: Mapping[str, str] = MappingProxyType({})

    def missing(self, tools: Path) -> str | None:
        """Why this installer cannot run here at all, or None."""
        return None

    def command(self, request: Request, ctx: Context) -> Command | Unsupported:
        raise NotImplementedError

    def diverges(self, scenario: Scenario, pip: Expected) -> tuple[str, str] | None:
        """A documented difference from pip here: (outcome instead, reason), or None."""
        return None

    def describe(self) -> str:
        return self.name


def pip_flags(request: Request, ctx: Context) -> tuple[list[Arg], dict[str, str | None]]:
    """pip's spelling of a request: flags, plus ``PIP_USER`` when asked for by env."""
    flags: list[Arg] = []
    env: dict[str, str | None] = {}
    if request.user is not None:
        if request.user_via == "env":
            env["PIP_USER"] = "1" if request.user else "0"
        else:
            flags.append("--user" if request.user else "--no-user")
    return flags + _shared_flags(request, ctx), env


def _shared_flags(request: Request, ctx: Context) -> list[Arg]:
    """The options pip and uv spell alike: directories, PEP 668 override, upgrade."""
    flags: list[Arg] = []
    for wanted, option, path in (
        (request.prefix, "--prefix", ctx.prefix),
        (request.target, "--target", ctx.target),
        (request.root, "--root", ctx.root),
    ):
        if wanted:
            flags += [option, path]
    if request.break_system_packages:
        flags.append("--break-system-packages")
    if request.upgrade:
        flags.append("--upgrade")
    return flags


class Pip(Installer):
    """``python -m pip install``: the reference the oracle describes."""

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

    def missing(self, tools: Path) -> str | None:
        if importlib.util.find_spec("pip") is None:
            return "installer 'pip': pip is not installed in the environment running pytest"
        return None

    def command(self, request: Request, ctx: Context) -> Command | Unsupported:
        flags, env = pip_flags(request, ctx)
        return Command((ctx.python, "-m", "pip", "install", *flags, ctx.wheel), env)


#: uv's documented stance: https://docs.astral.sh/uv/pip/compatibility/ and the
#: maintainers' answers in astral-sh/uv#2059 and astral-sh/uv#17102.
UV_NO_USER = (
    "uv has no user scheme: pip's `--user` is unsupported (use a virtual "
    "environment instead), so it never falls back to the user site "
    "(astral-sh/uv#2059, astral-sh/uv#17102)"
)


class Uv(Installer):
    """``uv pip install --python {python} [--system]``."""

    name = "uv"
    messages = MappingProxyType({"externally-managed": r"is externally managed"})

    def missing(self, tools: Path) -> str | None:
        if not (tools / "uv").exists():
            return (
                "installer 'uv': program 'uv' was not found on PATH or next to this "
                "interpreter when the session started"
            )
        return None

    def command(self, request: Request, ctx: Context) -> Command | Unsupported:
        if request.user is True:
            return Unsupported(f"uv cannot express {request.describe()}: {UV_NO_USER}")
        if request.root:
            return Unsupported("uv cannot express --root: `uv pip install` has no such option")
        argv: list[Arg] = ["uv", "pip", "install", "--python", ctx.python]
        if ctx.kind == "system":
            argv.append("--system")
        return Command((*argv, *_shared_flags(request, ctx), ctx.wheel))

    def diverges(self, scenario: Scenario, pip: Expected) -> tuple[str, str] | None:
        return ("error", UV_NO_USER) if pip.message == "fallback" else None


INSTALLER_NO_USER = (
    "installer's CLI has no user scheme: it installs into the "
    "interpreter's own scheme and never falls back to the user site"
)
INSTALLER_NO_PEP668 = (
    "installer is a low-level tool and does not implement PEP 668; the "
    "EXTERNALLY-MANAGED marker is for frontends such as pip"
)


class InstallerCli(Installer):
    """``python -m installer``, importable through PYTHONPATH.

    The environment's interpreter has an empty site, so ``installer`` comes from
    a readable per-session copy on ``PYTHONPATH`` instead of being preinstalled:
    a preinstall would add files to the very scheme whose changes we judge.
    """

    name = "installer"

    def missing(self, tools: Path) -> str | None:
        if importlib.util.find_spec("installer") is None:
            return "installer 'installer': the installer package is not importable here"
        return None

    def command(self, request: Request, ctx: Context) -> Command | Unsupported:
        if request.user is True:
            return Unsupported(
                f"installer cannot express {request.describe()}: {INSTALLER_NO_USER}"
            )
        if request.target:
            return Unsupported(
                "installer cannot express --target: its CLI has --prefix and --destdir only"
            )
        if request.upgrade:
            return Unsupported(
                "installer cannot express --upgrade: its CLI never removes an installed version"
            )
        argv: list[Arg] = [ctx.python, "-m", "installer"]
        if request.prefix:
            argv += ["--prefix", ctx.prefix]
        if request.root:
            argv += ["--destdir", ctx.root]
        env: dict[str, str | None] = {}
        if ctx.installer_lib is not None:
            env["PYTHONPATH"] = str(ctx.installer_lib)
        return Command((*argv, ctx.wheel), env)

    def diverges(self, scenario: Scenario, pip: Expected) -> tuple[str, str] | None:
        """No PEP 668 check, then no fallback: what pip would do without those."""
        mine, reasons = pip, []
        if mine.message == "externally-managed":
            unmarked = replace(
                scenario, environment=replace(scenario.environment, externally_managed=False)
            )
            mine = oracle.decide(unmarked)
            reasons.append(INSTALLER_NO_PEP668)
        if mine.message == "fallback":
            mine = oracle.Expected("error", "none", INSTALLER_NO_USER)
            reasons.append(INSTALLER_NO_USER)
        return (mine.outcome, "; ".join(reasons)) if mine.outcome != pip.outcome else None


class Template(Installer):
    """A user's ``NAME=TEMPLATE``: expected to behave like pip unless declared."""

    def __init__(self, name: str, template: str) -> None:
        self.name = name
        self.template = template
        self.tokens = tuple(shlex.split(template))

    def describe(self) -> str:
        return f"{self.name}={self.template}"

    def missing(self, tools: Path) -> str | None:
        program = self.tokens[0]
        if _PLACEHOLDER.search(program):
            return None
        search = os.pathsep.join([str(tools), os.environ.get("PATH", os.defpath)])
        if shutil.which(program, path=search) is None:
            return f"installer {self.name!r}: program {program!r} was not found on PATH"
        return None

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
                argv.append(_PLACEHOLDER.sub(lambda m: values[m.group(1)], token))
        return Command(tuple(argv), env)


_PRESET_TYPES: dict[str, type[Installer]] = {"installer": InstallerCli, "pip": Pip, "uv": Uv}


def parse(spec: str) -> Installer:
    """``NAME`` (a preset) or ``NAME=TEMPLATE``; pytest.UsageError otherwise."""
    name, sep, template = spec.partition("=")
    name = name.strip()
    if not sep:
        if name not in _PRESET_TYPES:
            raise pytest.UsageError(
                f"--installperm-installer={spec!r}: unknown preset {name!r}; presets are "
                f"{', '.join(PRESETS)}, or give NAME=TEMPLATE"
            )
        return _PRESET_TYPES[name]()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise pytest.UsageError(
            f"--installperm-installer={spec!r}: the name {name!r} must be "
            "letters, digits, '.', '_' or '-'"
        )
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
        for found in _PLACEHOLDER.findall(token):
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
    if "{wheel}" not in tokens:
        raise pytest.UsageError(
            f"--installperm-installer={spec!r}: the template has no {{wheel}} placeholder "
            "as a whole argument; the installer would not know what to install"
        )
    return Template(name, template)


def parse_all(specs: Sequence[str]) -> list[Installer]:
    """Parse every spec; names must be unique. Default: pip alone."""
    found: list[Installer] = []
    for spec in specs or ["pip"]:
        installer = parse(spec)
        if any(i.name == installer.name for i in found):
            raise pytest.UsageError(
                f"--installperm-installer: {installer.name!r} is given "
                "twice; each installer needs a unique name"
            )
        found.append(installer)
    return found
