"""What every installer declares: the :class:`Installer` base class and the data
it exchanges with the matrix (:class:`Context`, :class:`Command`, :class:`Unsupported`).

An installer is data plus a few pure methods. The matrix never special-cases a
name: what a preset needs (programs on PATH, importable libraries, environment
variables that keep it hermetic) and what it knows (its messages, its usage
errors, its documented differences from pip) are all declared here.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from packaging.version import InvalidVersion, Version

from pytest_installperm.run import Arg
from pytest_installperm.scenarios import InstallerExpectation, Request, Scenario

if TYPE_CHECKING:
    from pytest_installperm.oracle import Change, Expected
    from pytest_installperm.releases import Origin
    from pytest_installperm.run import RunResult
    from pytest_installperm.sandbox import Sandbox


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
    #: A readable directory holding the installer's declared ``libraries``, or
    #: the package of a versioned installer (``NAME==X``, ``NAME@PATH``).
    libraries: Path | None = None
    #: The run's working directory: a tool's project directory, where the
    #: command's ``files`` are written. What a tool writes there about the
    #: project is not residue (the scheme directories above are).
    work: Path = Path("/")
    #: The environment's own schemes (``system``, ``user``): key -> directory.
    schemes: Mapping[str, Mapping[str, Path]] = field(default_factory=dict)
    #: A readable directory holding a versioned installer's own programs.
    programs: Path | None = None


@dataclass(frozen=True)
class Command:
    """A command line plus environment additions (None removes a variable).

    ``files`` are setup files (name -> text) written into the working
    directory before the run, such as the project file of a tool that
    installs projects rather than wheels; they are not the run's changes.
    """

    argv: tuple[Arg, ...]
    env: Mapping[str, str | None] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)


def venv_scheme(venv: Path) -> dict[str, Path]:
    """The scheme of the venv at ``venv`` (PEP 405 layout), its ``pythonX.Y``
    found by listing ``lib`` without following links."""
    names: list[str] = []
    try:
        with os.scandir(venv / "lib") as entries:
            names = sorted(
                e.name
                for e in entries
                if e.name.startswith("python") and e.is_dir(follow_symlinks=False)
            )
    except OSError:
        pass
    version = names[0] if names else "python3"
    site = venv / "lib" / version / "site-packages"
    return {
        "purelib": site,
        "platlib": site,
        "scripts": venv / "bin",
        "data": venv,
        "headers": venv / "include" / "site" / version,
    }


def requirement_of(wheel: Path) -> str:
    """A PEP 508 direct reference to ``wheel``: ``name @ file:///...whl``."""
    name = wheel.name.split("-", 1)[0]
    return f"{name} @ {wheel.resolve().as_uri()}"


@dataclass(frozen=True)
class Unsupported:
    """A request this installer has no way to express; the item skips with this."""

    reason: str


#: argparse, optparse and clap all print a usage line and exit with status 2.
USAGE_STATUS = 2
_USAGE_LINE = re.compile(r"^\s*usage:", re.IGNORECASE | re.MULTILINE)


class Installer:
    """Base class: a name, a way to build commands, and what the preset knows."""

    name = "installer"
    #: The preset whose declarations (scenario files, ini) apply: a subclass's
    #: own ``name`` unless it says otherwise; a template may inherit another's.
    preset = "installer"
    #: Programs the child runs by name: made readable to a dropped uid, on PATH.
    programs: tuple[str, ...] = ()
    #: Packages the child imports from a readable copy on ``PYTHONPATH``
    #: (``Context.libraries``), instead of from the environment under test.
    libraries: tuple[str, ...] = ()
    #: Message kind -> regex the installer's output must contain (pip's words).
    messages: Mapping[str, str] = MappingProxyType({})
    #: Where a versioned installer's code comes from (``NAME==X``, ``NAME@PATH``);
    #: None for the one installed with the plugin.
    origin: Origin | None = None
    #: The installer's command line by release: name -> the first release that
    #: accepts that part of it (:meth:`needs` says which parts a request uses).
    #: A preset with a table claims to know its usage errors (:meth:`rejects`).
    changes: Mapping[str, Change] = MappingProxyType({})
    #: None: a release of this installer is its own wheel alone (pip, uv). A
    #: tuple: it needs its dependencies, resolved under these pip constraints
    #: into a venv of its own for the interpreter under test (toolvenvs.py).
    release_constraints: tuple[str, ...] | None = None
    #: What one run of this installer costs beside others: 1 for a Python
    #: program, which starts an interpreter and imports itself for every run.
    #: Only the order in which xdist workers are handed the matrix's cells uses it.
    weight: float = 1.0

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if "preset" not in vars(cls):
            cls.preset = cls.name

    def describe(self) -> str:
        return self.name

    def isolation(self, sandbox: Sandbox) -> Mapping[str, str]:
        """Environment variables that keep this installer inside ``sandbox``:
        its config, cache and data directories, no prompts, no downloads."""
        return {}

    def missing(self, tools: Path) -> str | None:
        """Why this installer cannot run here at all, or None.

        ``tools`` is the session's directory of readable program copies. A
        versioned installer brings its own code (releases.py checks it).
        """
        if self.origin is not None:
            return None
        for program in self.programs:
            if not (tools / program).exists():
                return (
                    f"installer {self.name!r}: program {program!r} was not found on PATH "
                    "or next to this interpreter when the session started"
                )
        for library in self.libraries:
            if importlib.util.find_spec(library) is None:
                return f"installer {self.name!r}: the {library} package is not importable here"
        return None

    def command(self, request: Request, ctx: Context) -> Command | Unsupported:
        raise NotImplementedError

    def messages_for(self, version: str | None) -> Mapping[str, str]:
        """:attr:`messages` in the words of ``version`` (None: unknown)."""
        return self.messages

    def version_command(self, ctx: Context) -> Command | None:
        """A command that prints this installer's version, run contained in an
        environment of the interpreter under test (after the install, or, for a
        versioned installer, before the first; see :mod:`.fit`); None when there
        is no way to ask."""
        return None

    def smoke_command(self, ctx: Context) -> Command | None:
        """A command that runs what an install imports and changes nothing, asked
        after :meth:`version_command` (which imports less) before the first run on
        an interpreter: its failure means this code cannot run there. None: the
        version command is the whole check."""
        return None

    def version(self, output: str) -> str | None:
        """The version in the output of :meth:`version_command`."""
        found = re.search(r"\d+(?:\.\d+)+\S*", output)
        return found[0] if found else None

    def usage_error(self, result: RunResult) -> str | None:
        """The installer's words if it rejected its own command line, else None.

        A usage error says nothing about permissions: the matrix reports it as a
        skip, never as the outcome ``error``.
        """
        if result.returncode != USAGE_STATUS:
            return None
        text = result.stderr or result.stdout
        if not _USAGE_LINE.search(text):
            return None
        words = [ln.strip() for ln in text.splitlines() if ln.strip()]
        errors = [ln for ln in words if re.match(r"(error|no such option)\b", ln, re.I)]
        return (errors or words)[0]

    def prefix_scheme(self, version: str | None, schemes: tuple[str, ...]) -> str:
        """The sysconfig scheme ``--prefix DIR`` installs by, among ``schemes``
        (those the environment has: ``posix_prefix``, Debian's ``posix_local``),
        for ``version`` (None: unknown)."""
        return "posix_prefix"

    def needs(self, request: Request, ctx: Context) -> tuple[str, ...]:
        """The :attr:`changes` this request's command line depends on."""
        return ()

    def knows_usage(self, version: str | None) -> bool:
        """Whether :meth:`rejects` is conclusive for ``version``: the preset has
        a table of changes and the version is known."""
        return bool(self.changes) and _release(version) is not None

    def rejects(self, request: Request, ctx: Context, version: str | None) -> str | None:
        """Why release ``version`` must reject this request's command line (a
        usage error), by :attr:`changes`; None if it must not or cannot be told."""
        release = _release(version)
        if release is None:
            return None
        missing = [self.changes[n] for n in self.needs(request, ctx)]
        return (
            "; ".join(
                f"{c.rule} only from {self.preset} {c.since} ({c.reference})"
                for c in missing
                if release < c.since
            )
            or None
        )

    def diverges(self, scenario: Scenario, pip: Expected) -> tuple[str, str] | None:
        """A documented difference from pip here: (outcome instead, reason), or None."""
        return None

    def artifact(self, result: RunResult, ctx: Context) -> str | None:
        """Why this run's failure says nothing about the installer (a limit of
        the test environment, such as a relocated interpreter's stale build
        paths), or None. The matrix reports such a run as a skip with this
        reason, never as an outcome."""
        return None

    def expect(self, scenario: Scenario, pip: Expected, ctx: Context) -> InstallerExpectation:
        """What this installer should do in this very environment (``ctx`` says
        which interpreter, which schemes): by default pip's outcome, unless
        :meth:`diverges` declares otherwise. A preset overrides this for a
        difference that depends on the interpreter (Debian's ``dist-packages``)
        or for a known invariant break."""
        return InstallerExpectation(diverges=self.diverges(scenario, pip))

    def schemes(self, ctx: Context) -> Mapping[str, Mapping[str, Path]]:
        """Schemes of the installer's own, besides the environment's: for a tool
        that installs into an environment it makes (pipx's venvs), ``"own"``.
        Asked after the run, so it may name what the run created."""
        return {}


def _release(version: str | None) -> Version | None:
    """``version`` as the release it is or leads to (a dev build counts as its
    release), or None."""
    try:
        return Version(Version(version).base_version) if version else None
    except InvalidVersion:
        return None


def program(ctx: Context, name: str) -> Arg:
    """A versioned installer's own copy of program ``name``, else ``name`` (on PATH)."""
    if ctx.programs is not None and (ctx.programs / name).exists():
        return ctx.programs / name
    return name


def library_path(ctx: Context) -> dict[str, str | None]:
    """``PYTHONPATH`` for the installer's readable library copy, if it has one."""
    return {"PYTHONPATH": str(ctx.libraries)} if ctx.libraries is not None else {}


def pip_flags(request: Request, ctx: Context) -> tuple[list[Arg], dict[str, str | None]]:
    """pip's spelling of a request: flags, plus ``PIP_USER`` when asked for by env."""
    flags: list[Arg] = []
    env: dict[str, str | None] = {}
    if request.user is not None:
        if request.user_via == "env":
            env["PIP_USER"] = "1" if request.user else "0"
        else:
            flags.append("--user" if request.user else "--no-user")
    return flags + shared_flags(request, ctx), env


def shared_flags(request: Request, ctx: Context) -> list[Arg]:
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


def no_such_option(request: Request, command: str, *, upgrade: bool = False) -> Unsupported | None:
    """The skip for a request of pip's directory or PEP 668 options that ``command``
    (``"poetry install"``) lacks; with ``upgrade``, ``--upgrade`` too. None if none."""
    for wanted, option in (
        (request.prefix, "--prefix"),
        (request.target, "--target"),
        (request.root, "--root"),
        (request.break_system_packages, "--break-system-packages"),
        (upgrade and request.upgrade, "--upgrade"),
    ):
        if wanted:
            tool = command.split()[0]
            return Unsupported(f"{tool} cannot express {option}: `{command}` has no such option")
    return None
