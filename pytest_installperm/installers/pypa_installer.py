"""The ``installer`` preset: pypa/installer's ``python -m installer``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pytest_installperm import oracle
from pytest_installperm.installers.base import Command, Context, Installer, Unsupported
from pytest_installperm.run import Arg
from pytest_installperm.scenarios import InstallerExpectation, Request, Scenario

INSTALLER_NO_USER = (
    "installer's CLI has no user scheme: it installs into the "
    "interpreter's own scheme and never falls back to the user site"
)
INSTALLER_NO_PEP668 = (
    "installer is a low-level tool and does not implement PEP 668; the "
    "EXTERNALLY-MANAGED marker is for frontends such as pip"
)


INSTALLER_DEBIAN_PREFIX = (
    "installer's --prefix keeps the interpreter's default sysconfig scheme, Debian's "
    "posix_local: PREFIX/local/lib/pythonX.Y/dist-packages and PREFIX/local/bin, where pip "
    "26.3 maps it to posix_prefix (PREFIX/lib/pythonX.Y/site-packages, PREFIX/bin)"
)


class InstallerCli(Installer):
    """``python -m installer``, importable through PYTHONPATH.

    The environment's interpreter has an empty site, so ``installer`` comes from
    a readable per-session copy on ``PYTHONPATH`` instead of being preinstalled:
    a preinstall would add files to the very scheme whose changes we judge.
    """

    name = "installer"
    libraries = ("installer",)

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
        return Command((*argv, ctx.wheel), self._path(ctx))

    def version_command(self, ctx: Context) -> Command | None:
        code = "import installer; print(installer.__version__)"
        return Command((ctx.python, "-c", code), self._path(ctx))

    @staticmethod
    def _path(ctx: Context) -> dict[str, str | None]:
        return {"PYTHONPATH": str(ctx.libraries)} if ctx.libraries is not None else {}

    def diverges(self, scenario: Scenario, pip: oracle.Expected) -> tuple[str, str] | None:
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

    def expect(
        self, scenario: Scenario, pip: oracle.Expected, ctx: Context
    ) -> InstallerExpectation:
        """On Debian, ``--prefix`` follows the interpreter's default scheme."""
        system = ctx.schemes.get("system", {})
        debian = Path(system.get("purelib", "")).name == "dist-packages"
        if scenario.request.prefix and debian:
            return InstallerExpectation(
                diverges=("error", INSTALLER_DEBIAN_PREFIX),
                breaks={"one-scheme": INSTALLER_DEBIAN_PREFIX},
            )
        return super().expect(scenario, pip, ctx)
