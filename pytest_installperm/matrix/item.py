"""One matrix cell as a pytest item: build the scenario's environment, run the
installer in it, judge the run, and ship the result row."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from pytest_installperm.changepoints import key_message
from pytest_installperm.environment import Environment, InstallPerm
from pytest_installperm.fit import Fit, check, last_words
from pytest_installperm.fixtures import get_session
from pytest_installperm.installers import Command, Context, Installer, Unsupported
from pytest_installperm.matrix.settings import Settings, label
from pytest_installperm.matrix.verdict import (
    CellExpectation,
    Landing,
    classify,
    expectation,
    judge,
)
from pytest_installperm.roles import SCRATCH, is_under
from pytest_installperm.run import RunResult
from pytest_installperm.scenarios import Scenario
from pytest_installperm.schemes import rerooted
from pytest_installperm.wheels import WheelLayout, build_wheel, read_wheel

if TYPE_CHECKING:
    from pytest_installperm.releases import Code

#: The user_properties key under which each item ships its row.
ROW_KEY = "installperm"
#: Seconds an installer may take to say its version.
VERSION_TIMEOUT = 60.0
#: How many lines of the installer's output a failing row keeps.
EXCERPT_LINES = 12


class MatrixFailure(Exception):
    """An item's undeclared problems, shown without a traceback."""


class Runner:
    """Per-process state: wheels and their layouts, each built or read once
    rather than per item."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self._wheels: dict[tuple[str, str, bool], Path] = {}
        self._layouts: dict[Path, WheelLayout] = {}
        self._wheel_dir: Path | None = None
        self._versions: dict[str, str] = {}
        self._fits: dict[tuple[str, Path | None], Fit] = {}
        self._pythons: dict[Path | None, str] = {}

    def wheel(self, name: str, version: str, console_scripts: bool) -> Path:
        key = (name, version, console_scripts)
        if key not in self._wheels:
            if self._wheel_dir is None:
                self._wheel_dir = get_session(self.config).root.new_dir("matrix-wheels-")
            scripts = {name: f"{name}:main"} if console_scripts else None
            self._wheels[key] = build_wheel(self._wheel_dir, name, version, console_scripts=scripts)
        return self._wheels[key]

    def layout(self, wheel: Path) -> WheelLayout:
        """``read_wheel(wheel)``, read once: every item of a scenario judges the same wheel."""
        if wheel not in self._layouts:
            self._layouts[wheel] = read_wheel(wheel)
        return self._layouts[wheel]

    def python(self, python: Path | None = None) -> str:
        """The base interpreter the environments copy: its path and version."""
        if python not in self._pythons:
            base = get_session(self.config).base(python)
            self._pythons[python] = f"{base.executable} ({base.release or base.version})"
        return self._pythons[python]

    def fit(
        self,
        factory: InstallPerm,
        installer: Installer,
        code: Code,
        wheel: Path,
        python: Path | None = None,
    ) -> Fit:
        """Whether a versioned installer's code runs on base ``python`` and the
        version it reports there (see :mod:`.fit`), asked once per process in an
        environment of its own."""
        key = (installer.name, python)
        if key not in self._fits:
            env = factory.system(python=python, locked=())
            ctx = _context(env, wheel, code.lib, code.bin)
            self._fits[key] = check(installer, env, ctx, self.python(python))
        return self._fits[key]

    def version(
        self, installer: Installer, env: Environment, ctx: Context, python: Path | None = None
    ) -> str | None:
        """The installer's version, asked of the installer itself: a versioned
        one's by :meth:`fit`; another's after its run, in the same contained
        environment (so nothing it wrote runs uncontained), once per process,
        when the answer is a version."""
        if installer.origin is not None:
            known = self._fits.get((installer.name, python))
            return known.version if known is not None else None
        if installer.name not in self._versions:
            command = installer.version_command(ctx)
            if command is None:
                return None
            answer = env.run(list(command.argv), env=command.env, timeout=VERSION_TIMEOUT)
            found = installer.version(answer.stdout) if answer.returncode == 0 else None
            if found is None:
                return None
            self._versions[installer.name] = found
        return self._versions[installer.name]

    def build(
        self, factory: InstallPerm, scenario: Scenario, python: Path | None = None
    ) -> Environment:
        spec = scenario.environment
        preinstalled = [
            self.wheel(name, version, scenario.wheel.console_scripts)
            for name, version in scenario.preinstalled()
        ]
        common: dict[str, Any] = {
            "locked": spec.locked,
            "user_site": spec.user_site,
            "home": spec.home,
            "preinstalled": preinstalled,
            "lock_mode": spec.lock_mode,
            "python": python,
        }
        if spec.kind == "venv":
            return factory.venv(system_site_packages=spec.system_site_packages, **common)
        return factory.system(externally_managed=spec.externally_managed, **common)


def _context(
    env: Environment | None, wheel: Path, libraries: Path | None, programs: Path | None = None
) -> Context:
    if env is None:  # only to ask whether a request can be expressed at all
        here = Path("/")
        return Context(here, wheel, here, here, here, here, "system", libraries, programs=programs)
    work = env.sandbox.work
    return Context(
        env.python,
        wheel,
        work / "prefix",
        work / "target",
        work / "root",
        env.home,
        env.kind,
        libraries,
        work,
        {role: dict(env.paths(role)) for role in ("system", "user")},
        programs,
    )


def candidate_schemes(
    env: Environment,
    scenario: Scenario,
    ctx: Context,
    installer: Installer,
    version: str | None = None,
) -> dict[str, dict[str, Path]]:
    """Scheme name -> scheme paths, for every place this request could land,
    the installer's own schemes (``own``: pipx's venv) included; ``--prefix``
    as the installer at ``version`` lays it out (pip before 26.3 by Debian's
    ``posix_local``)."""
    request = scenario.request
    system, user = dict(env.paths("system")), dict(env.paths("user"))
    if request.root:  # --root: the schemes (as the installer sees them), below the root
        system, user = dict(env.paths("root", base=ctx.root)), rerooted(user, ctx.root)
    schemes = {"system": system, "user": user}
    if request.prefix:
        by = installer.prefix_scheme(version, env.schemes.prefix_schemes())
        schemes["prefix"] = dict(env.schemes.prefix(ctx.prefix, by).paths)
    if request.target:
        schemes["target"] = dict(env.paths("target", base=ctx.target))
    for name, scheme in installer.schemes(ctx).items():
        schemes[name] = {k: Path(v) for k, v in scheme.items()}
    return schemes


def _relative(env: Environment, paths: Iterable[Path]) -> list[str]:
    return sorted(os.path.relpath(p, env.root) for p in paths)


def excerpt(result: RunResult, lines: int = EXCERPT_LINES) -> str | None:
    """The installer's last lines of output, sandbox paths shortened."""
    text = "\n".join(result.output.strip().splitlines()[-lines:])
    return text.replace(str(result.environment.root), "<sandbox>") or None


def residue_of(result: RunResult, ctx: Context) -> list[str]:
    """Every change outside the scratch roles, a tool's settings and logs (the
    XDG config and state directories) and the project directory (the working
    directory, where a tool keeps its lock file; the ``--prefix``, ``--target``
    and ``--root`` directories in it do count), relative to the sandbox."""
    env = result.environment
    schemes = (ctx.prefix, ctx.target, ctx.root)
    state = (ctx.home / ".config", ctx.home / ".local" / "state")

    def project(path: Path) -> bool:
        if any(is_under(path, d) for d in state):
            return True
        return is_under(path, ctx.work) and not any(is_under(path, d) for d in schemes)

    changed = [p for p in result.changes.all if env.role_of(p) not in SCRATCH]
    left_out = [p for p in changed if project(p)]
    # The directories made to hold what is left out (``~/.local`` for a log) go with it.
    kept = [p for p in changed if not project(p) and not any(is_under(o, p) for o in left_out)]
    return _relative(env, kept)


def _write_setup_files(env: Environment, files: Mapping[str, str]) -> None:
    """Write a command's setup files into the working directory, as the user
    would before running the tool; they are not the run's changes."""
    if not files:
        return
    for name, text in sorted(files.items()):
        path = env.sandbox.work / name
        if path.parent != env.sandbox.work:
            raise ValueError(f"setup file {name!r}: must be a plain file name")
        path.write_text(text)
        os.chmod(path, 0o644)
    env.snapshot().update()


class ScenarioItem(pytest.Item):
    """One scenario run by one installer."""

    def __init__(
        self,
        *,
        scenario: Scenario,
        installer: Installer,
        runner: Runner,
        python: Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.installer = installer
        self.runner = runner
        #: The base interpreter (``--installperm-python``); None: the running one.
        self.python = python
        self.label = label(installer, python, runner.settings.pythons)
        self.detail = ""

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.scenario.path, None, f"{self.scenario.name}[{self.label}]"

    def _row(self, env: Environment | None, **fields: Any) -> None:
        row = {
            "scenario": self.scenario.name,
            "installer": self.label,
            "installer_version": None,
            "preset": self.installer.preset,
            "python": self.runner.python(self.python),
            "backend": env.backend if env is not None else None,
            "mode": env.mode.name if env is not None else None,
            "reason": None,
            "excerpt": None,
            **fields,
        }
        self.user_properties.append((ROW_KEY, row))

    def _skip(self, reason: str, env: Environment | None = None, **fields: Any) -> NoReturn:
        self._row(env, skipped=reason, reason=reason, **fields)
        pytest.skip(reason)

    def runtest(self) -> None:
        scenario, installer = self.scenario, self.installer
        session = get_session(self.config)
        missing = installer.missing(session.tools(installer.programs))
        if missing is not None:
            self._skip(missing)
        wheel = self.runner.wheel(
            scenario.wheel.name, scenario.wheel.version, scenario.wheel.console_scripts
        )
        probe = installer.command(scenario.request, _context(None, wheel, None))
        if isinstance(probe, Unsupported):
            self._skip(probe.reason)
        code = None
        if installer.origin is not None:
            code = session.release(
                installer.origin, constraints=installer.release_constraints, python=self.python
            )
        if code is not None:
            cannot = code.runs_on(session.base(self.python).version)
            if cannot is not None:
                self._skip(cannot)
        factory = InstallPerm(session)
        try:
            if code is not None:  # before any cell: can this code run on this interpreter?
                try:
                    fit = self.runner.fit(factory, installer, code, wheel, self.python)
                except pytest.skip.Exception as exc:
                    self._skip(str(exc.msg))
                if fit.reason is not None:
                    self._skip(fit.reason, installer_version=fit.version)
            try:
                env = self.runner.build(factory, scenario, self.python)
            except pytest.skip.Exception as exc:
                self._skip(str(exc.msg))
            if code is not None:  # NAME==X, NAME@PATH: that code, not the one installed here
                ctx = _context(env, wheel, code.lib, code.bin)
            else:
                lib = session.libraries(installer.libraries) if installer.libraries else None
                ctx = _context(env, wheel, lib)
            command = installer.command(scenario.request, ctx)
            assert isinstance(command, Command)
            _write_setup_files(env, command.files)
            result = env.run(list(command.argv), env=command.env)
            self._judge(env, ctx, wheel, result)
        finally:
            factory.close()

    def _judge(self, env: Environment, ctx: Context, wheel: Path, result: RunResult) -> None:
        scenario, installer = self.scenario, self.installer
        version = self.runner.version(installer, env, ctx, self.python)
        words = installer.usage_error(result)
        rejects = installer.rejects(scenario.request, ctx, version)
        knows = installer.knows_usage(version)
        if words is not None and (rejects is not None or not knows):
            known = f" (as its preset knows: {rejects})" if rejects else ""
            self._skip(
                f"{installer.name} rejected its own command line (a usage error, exit "
                f"status {result.returncode}, not an outcome): {words}{known}",
                env,
                installer_version=version,
                excerpt=excerpt(result),
            )
        artifact = installer.artifact(result, ctx) if result.returncode != 0 else None
        if artifact is not None:
            self._skip(artifact, env, installer_version=version, excerpt=excerpt(result))
        exp = expectation(scenario, installer, self.runner.settings.declared, ctx, version)
        layout = self.runner.layout(wheel)
        schemes = candidate_schemes(env, scenario, ctx, installer, version)
        destinations = {
            name: layout.destinations(scheme).keys() for name, scheme in schemes.items()
        }
        written = frozenset(
            p for p in result.changes.created | result.changes.modified if os.path.lexists(p)
        )
        landing = classify(result.returncode, written, destinations)
        residue = residue_of(result, ctx) if result.returncode != 0 else []
        outside = _relative(env, result.outside)
        messages = installer.messages_for(version)
        verdict = judge(
            exp,
            landing,
            output=result.output,
            returncode=result.returncode,
            residue=residue,
            outside=outside,
            messages=messages,
            timed_out=result.timed_out,
        )
        if knows and words is not None:
            verdict.undeclared.append(
                f"{installer.name} rejected its own command line ({words}), yet the "
                f"{installer.preset} preset's table of changes says {version} accepts it"
            )
        elif knows and rejects is not None:
            verdict.undeclared.append(
                f"{installer.name} accepted its command line, yet the {installer.preset} "
                f"preset's table of changes says {version} rejects it: {rejects}"
            )
        says = last_words(result)
        self._row(
            env,
            outcome=landing.outcome,
            expected=exp.outcome,
            agrees=landing.outcome == exp.outcome,
            returncode=result.returncode,
            residue=residue,
            outside=outside,
            verdict=verdict.status,
            broken=sorted(verdict.broken),
            declared=exp.declared[1] if exp.declared else None,
            says=says,
            message=key_message(result.output, messages, str(env.root)),
            installer_version=version,
            reason=verdict.reason,
            excerpt=excerpt(result) if verdict.status == "failed" else None,
        )
        if verdict.undeclared:
            verdict_text = _placement_verdict(result, wheel, landing, schemes)
            self.detail = _explain(self, exp, landing, result, verdict_text)
            lines = verdict.undeclared + [f"(xfail) {d}" for d in verdict.declared + verdict.known]
            raise MatrixFailure("\n".join(f"- {line}" for line in lines))
        if verdict.reason is not None:
            pytest.xfail(verdict.reason + (f" [{installer.name} said: {says}]" if says else ""))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, pytest.xfail.Exception):
            # pytest reports an xfail by its reason alone, yet formats the
            # traceback first: 60-100 ms a cell, shipped by every xdist worker.
            return str(excinfo.value)
        if isinstance(excinfo.value, MatrixFailure):
            return (
                f"{self.scenario.name} with {self.installer.describe()}:\n"
                f"{excinfo.value}\n\n{self.detail}"
            )
        return str(super().repr_failure(excinfo, style=style))


def _placement_verdict(
    result: RunResult, wheel: Path, landing: Landing, schemes: Mapping[str, Mapping[str, Path]]
) -> str:
    """The placement module's own table for what this run did, for a failure.

    A failed run gets ``assert_no_residue``; a successful one
    ``assert_installed`` in the scheme it chose. Empty when that verdict passes.
    """
    from pytest_installperm import placement as verdicts
    from pytest_installperm.errors import PlacementError

    try:
        if result.returncode != 0:
            verdicts.assert_no_residue(result)
        elif landing.outcome in schemes:
            scheme = verdicts.Scheme(landing.outcome, schemes[landing.outcome])
            verdicts.assert_installed(result, wheel, scheme)
    except PlacementError as exc:
        return str(exc)
    return ""


def _explain(
    item: ScenarioItem, exp: CellExpectation, landing: Landing, result: RunResult, verdict_text: str
) -> str:
    """The scenario, what was expected, then the placement verdict's table (which
    shows the command and its output) or, when that verdict passes, the command,
    its output and the changes."""
    scenario = item.scenario
    env = result.environment
    lines = [
        f"scenario: {scenario.path}",
        f"  why: {scenario.description.splitlines()[0]}",
        f"  environment: {env!r}",
        f"  request: {scenario.request.describe()}",
        f"  expected {exp.outcome!r} (pip: {exp.pip_outcome!r}, message {exp.pip_message!r}); "
        f"got {landing.outcome!r}",
    ]
    for name, paths in sorted(landing.landed.items()):
        lines.append(
            f"  wheel files written to {name}: {len(paths)} of {len(landing.expected[name])}"
        )
    if verdict_text:
        return "\n".join([*lines, "", "placement verdict:", verdict_text])
    lines.append(result.describe())
    changes = [
        line for line in result.changes.lines() if env.role_of(Path(line[2:])) not in SCRATCH
    ]
    if changes:
        lines.append("  changes (cache and tmp left out):")
        lines += [f"    {line.replace(str(env.root) + os.sep, '')}" for line in changes[:40]]
    return "\n".join(lines)
