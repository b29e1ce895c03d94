"""The scenario matrix: one pytest item per scenario and installer, and its verdict.

Why a verdict of our own instead of comparing exit codes: an installer can exit
0 and still scatter a wheel over two schemes, or fail and leave half a package
behind. So the outcome is read from *where the wheel's files landed* (the run's
changes) and the exit status, compared with what is expected (the scenario's
own expectation for that installer, else pip's, from the oracle), and three
invariants are checked whatever the installer:

``outside``
    no writes outside the roles the environment allows;
``residue``
    a failed run leaves the environment as it found it (cache and tmp aside);
``one-scheme``
    a successful run installs the whole wheel, in exactly one scheme.

A difference is a failure unless it is declared (in a preset, a scenario file
or the ``installperm_divergences`` ini option); a declared one is an xfail with
the declared reason. A declaration that no longer matches what happens fails
too, so declarations cannot rot. Each item ships its result row through
``user_properties``, so under pytest-xdist the controller sees every row.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_installperm import oracle
from pytest_installperm.environment import Environment, InstallPerm
from pytest_installperm.errors import ScenarioError
from pytest_installperm.fixtures import get_session
from pytest_installperm.installers import Command, Context, Installer, Unsupported, parse_all
from pytest_installperm.installers.registry import config_registry
from pytest_installperm.roles import SCRATCH
from pytest_installperm.run import RunResult
from pytest_installperm.scenarios import Scenario, load_all
from pytest_installperm.schemes import rerooted
from pytest_installperm.wheels import WheelLayout, build_wheel, read_wheel

#: The user_properties key under which each item ships its row.
ROW_KEY = "installperm"
#: Order in which a tie between schemes is broken when classifying.
_SCHEME_ORDER = ("target", "prefix", "user", "system")


@dataclass(frozen=True)
class Settings:
    """Everything the matrix needs from the command line and the ini file."""

    installers: tuple[Installer, ...]
    scenarios: tuple[Scenario, ...]
    #: (installer, scenario) -> reason, from the ``installperm_divergences`` ini.
    declared: Mapping[tuple[str, str], str]
    only_matrix: bool
    report: Path | None
    markdown: Path | None


def _option(config: pytest.Config, name: str) -> Any:
    value = config.getoption(name, None)
    return value if value not in (None, [], "") else config.getini(name)


def parse_declarations(lines: Iterable[str]) -> dict[tuple[str, str], str]:
    """``INSTALLER SCENARIO: reason`` per line; UsageError for anything else."""
    found: dict[tuple[str, str], str] = {}
    for line in lines:
        if not line.strip():
            continue
        match = re.fullmatch(r"\s*(\S+)\s+(\S+)\s*:\s*(\S.*)", line)
        if match is None:
            raise pytest.UsageError(
                f"installperm_divergences: line {line!r} must read 'INSTALLER SCENARIO: reason'"
            )
        found[(match[1], match[2])] = match[3].strip()
    return found


def load_settings(config: pytest.Config) -> Settings:
    """Validate options, installers and scenario files; UsageError names the problem."""
    specs = list(_option(config, "installperm_installer") or [])
    installers = tuple(parse_all(specs, config_registry(config)))
    extra = [Path(p) for p in config.getini("installperm_scenarios")]
    try:
        scenarios = tuple(load_all(extra))
    except ScenarioError as exc:
        raise pytest.UsageError(f"ScenarioError: {exc}") from exc
    declared = parse_declarations(config.getini("installperm_divergences"))
    names = {s.name for s in scenarios}
    for installer, scenario in declared:
        if scenario not in names:
            raise pytest.UsageError(
                f"installperm_divergences: unknown scenario {scenario!r} "
                f"(for installer {installer!r})"
            )
    only = config.args_source != pytest.Config.ArgsSource.ARGS
    report = _option(config, "installperm_report")
    markdown = _option(config, "installperm_markdown")
    return Settings(
        installers,
        scenarios,
        declared,
        only,
        Path(report) if report else None,
        Path(markdown) if markdown else None,
    )


# ---------------------------------------------------------------------------
# expectation and verdict (pure)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """What one item should do, and which divergence, if any, is declared."""

    outcome: str
    pip_outcome: str
    pip_message: str
    #: Declared divergence: (outcome it allows, None for any; reason).
    declared: tuple[str | None, str] | None
    #: Known invariant breaks: invariant -> reason.
    breaks: Mapping[str, str]
    #: Whether pip's message for this scenario must appear in the output.
    check_message: bool


def expectation(
    scenario: Scenario, installer: Installer, declared: Mapping[tuple[str, str], str]
) -> Expectation:
    """The expected outcome: the scenario's own for this installer, else pip's."""
    decided = oracle.decide(scenario)
    pip_outcome = scenario.outcome or decided.outcome
    pip_message = scenario.message or decided.message
    # A template that inherits a preset inherits the declarations made for it.
    names = dict.fromkeys((installer.name, installer.preset))
    own = next((scenario.installers[n] for n in names if n in scenario.installers), None)
    ini = next(
        (declared[(n, scenario.name)] for n in names if (n, scenario.name) in declared), None
    )
    outcome = own.outcome if own is not None and own.outcome else pip_outcome
    divergence: tuple[str | None, str] | None = None
    if own is not None and own.diverges is not None:
        divergence = own.diverges
    elif ini is not None:
        divergence = (None, ini)
    elif own is None or own.outcome is None:
        pip = oracle.Expected(pip_outcome, pip_message, decided.rule)
        divergence = installer.diverges(scenario, pip)
    breaks = dict(own.breaks) if own is not None else {}
    check = outcome == pip_outcome and divergence is None and pip_message in installer.messages
    return Expectation(outcome, pip_outcome, pip_message, divergence, breaks, check)


@dataclass(frozen=True)
class Placement:
    """Where the wheel's files landed, read from a run's changes."""

    outcome: str
    #: scheme name -> wheel destinations that this run wrote there.
    landed: Mapping[str, frozenset[Path]]
    #: scheme name -> every destination the wheel has in that scheme.
    expected: Mapping[str, frozenset[Path]]

    def missing(self, scheme: str) -> list[Path]:
        return sorted(self.expected[scheme] - self.landed.get(scheme, frozenset()))


def classify(
    returncode: int, written: frozenset[Path], destinations: Mapping[str, Iterable[Path]]
) -> Placement:
    """The outcome: "error" for a non-zero exit, else the scheme that got the wheel.

    ``written`` are the paths the run created or modified. A scheme "got" a
    destination when the run wrote exactly that path. Ties go to the most
    specific scheme (target, prefix, user, system). An exit status of 0 with no
    file of the wheel anywhere is reported as "error" (and breaks one-scheme).
    """
    expected = {name: frozenset(paths) for name, paths in destinations.items()}
    landed = {name: paths & written for name, paths in expected.items() if paths & written}
    if returncode != 0 or not landed:
        return Placement("error", landed, expected)
    ranked = sorted(landed, key=lambda n: (-len(landed[n]), _SCHEME_ORDER.index(n)))
    return Placement(ranked[0], landed, expected)


@dataclass
class Verdict:
    """Problems found for one item, declared or not, and the row for reports."""

    undeclared: list[str] = field(default_factory=list)
    declared: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "failed" if self.undeclared else "xfailed" if self.declared else "passed"


def judge(
    exp: Expectation,
    placement: Placement,
    *,
    output: str,
    returncode: int,
    residue: Sequence[str],
    outside: Sequence[str],
    messages: Mapping[str, str],
    timed_out: bool = False,
) -> Verdict:
    """Compare one run with its expectation and check the three invariants.

    A run that timed out (or was killed) has no outcome to judge: that alone fails.
    """
    verdict = Verdict()
    if timed_out or returncode < 0:
        verdict.undeclared.append(
            f"the run did not finish (exit status {returncode}, "
            f"{'timed out' if timed_out else 'killed by a signal'}): "
            "no outcome to judge"
        )
        return verdict
    actual = placement.outcome
    if actual != exp.outcome:
        allowed = exp.declared is not None and exp.declared[0] in (None, actual)
        text = f"outcome {actual!r}, expected {exp.outcome!r}"
        if allowed and exp.declared is not None:
            verdict.declared.append(f"{text}: declared divergence: {exp.declared[1]}")
        else:
            verdict.undeclared.append(
                f"{text} (a divergence from pip's rules that nothing declares)"
                if exp.outcome == exp.pip_outcome
                else text
            )
    elif exp.declared is not None:
        verdict.undeclared.append(
            f"declared divergence did not happen (outcome {actual!r} is the expected one): "
            f"remove the declaration {exp.declared[1]!r}"
        )
    if exp.check_message and actual == exp.outcome:
        pattern = messages[exp.pip_message]
        if not re.search(pattern, output):
            verdict.undeclared.append(
                f"pip's message {exp.pip_message!r} is missing from the "
                f"output (looked for /{pattern}/)"
            )
    problems = {
        "outside": (
            f"wrote outside the allowed roles: {', '.join(outside[:10])}" if outside else None
        ),
        "residue": (
            f"failed and left residue: {', '.join(residue[:10])}"
            + (f" (+{len(residue) - 10} more)" if len(residue) > 10 else "")
            if returncode != 0 and residue
            else None
        ),
        "one-scheme": _one_scheme(placement) if returncode == 0 else None,
    }
    for name, problem in problems.items():
        reason = exp.breaks.get(name)
        if problem is not None:
            verdict.broken.append(name)
            if reason is not None:
                verdict.declared.append(f"invariant {name} broken: {problem}: known: {reason}")
            else:
                verdict.undeclared.append(f"invariant {name} broken: {problem}")
        elif reason is not None:
            verdict.undeclared.append(
                f"invariant {name} was declared broken ({reason!r}) but "
                "holds: remove the declaration"
            )
    return verdict


def _one_scheme(placement: Placement) -> str | None:
    if not placement.landed:
        return "exit status 0, yet no file of the wheel was installed anywhere"
    if len(placement.landed) > 1:
        spread = ", ".join(f"{n} ({len(p)} files)" for n, p in sorted(placement.landed.items()))
        return f"the wheel is spread over several schemes: {spread}"
    missing = placement.missing(placement.outcome)
    if missing:
        return (
            f"the wheel is incomplete in {placement.outcome}: missing "
            f"{', '.join(str(p) for p in missing[:5])}"
        )
    return None


# ---------------------------------------------------------------------------
# running one item
# ---------------------------------------------------------------------------


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

    def build(self, factory: InstallPerm, scenario: Scenario) -> Environment:
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
        }
        if spec.kind == "venv":
            return factory.venv(system_site_packages=spec.system_site_packages, **common)
        return factory.system(externally_managed=spec.externally_managed, **common)


def _context(env: Environment | None, wheel: Path, libraries: Path | None) -> Context:
    if env is None:  # only to ask whether a request can be expressed at all
        here = Path("/")
        return Context(here, wheel, here, here, here, here, "system", libraries)
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
    )


def candidate_schemes(
    env: Environment, scenario: Scenario, ctx: Context
) -> dict[str, dict[str, Path]]:
    """Scheme name -> scheme paths, for every place this request could land."""
    request = scenario.request
    system, user = dict(env.paths("system")), dict(env.paths("user"))
    if request.root:  # --root: the schemes, below the root
        system, user = rerooted(system, ctx.root), rerooted(user, ctx.root)
    schemes = {"system": system, "user": user}
    if request.prefix:
        schemes["prefix"] = dict(env.paths("prefix", base=ctx.prefix))
    if request.target:
        schemes["target"] = dict(env.paths("target", base=ctx.target))
    return schemes


def _relative(env: Environment, paths: Iterable[Path]) -> list[str]:
    return sorted(os.path.relpath(p, env.root) for p in paths)


def last_words(result: RunResult) -> str:
    """The installer's last line of output, sandbox paths shortened: its own words."""
    lines = [ln.strip() for ln in (result.stderr.strip() or result.stdout.strip()).splitlines()]
    text = lines[-1] if lines else ""
    return text.replace(str(result.environment.root), "<sandbox>")


def residue_of(result: RunResult) -> list[str]:
    """Every change outside the scratch roles, relative to the sandbox."""
    env = result.environment
    kept = [p for p in result.changes.all if env.role_of(p) not in SCRATCH]
    return _relative(env, kept)


class ScenarioItem(pytest.Item):
    """One scenario run by one installer."""

    def __init__(
        self, *, scenario: Scenario, installer: Installer, runner: Runner, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.installer = installer
        self.runner = runner
        self.detail = ""

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.scenario.path, None, f"{self.scenario.name}[{self.installer.name}]"

    def _row(self, **fields: Any) -> None:
        row = {"scenario": self.scenario.name, "installer": self.installer.name, **fields}
        self.user_properties.append((ROW_KEY, row))

    def _skip(self, reason: str) -> None:
        self._row(skipped=reason)
        pytest.skip(reason)

    def runtest(self) -> None:
        scenario, installer = self.scenario, self.installer
        session = get_session(self.config)
        missing = installer.missing(session.tools())
        if missing is not None:
            self._skip(missing)
        wheel = self.runner.wheel(
            scenario.wheel.name, scenario.wheel.version, scenario.wheel.console_scripts
        )
        probe = installer.command(scenario.request, _context(None, wheel, None))
        if isinstance(probe, Unsupported):
            self._skip(probe.reason)
        factory = InstallPerm(session)
        try:
            try:
                env = self.runner.build(factory, scenario)
            except pytest.skip.Exception as exc:
                self._row(skipped=str(exc.msg))
                raise
            lib = session.libraries(installer.libraries) if installer.libraries else None
            ctx = _context(env, wheel, lib)
            command = installer.command(scenario.request, ctx)
            assert isinstance(command, Command)
            result = env.run(list(command.argv), env=command.env)
            self._judge(env, ctx, wheel, result)
        finally:
            factory.close()

    def _judge(self, env: Environment, ctx: Context, wheel: Path, result: RunResult) -> None:
        scenario, installer = self.scenario, self.installer
        exp = expectation(scenario, installer, self.runner.settings.declared)
        layout = self.runner.layout(wheel)
        schemes = candidate_schemes(env, scenario, ctx)
        destinations = {
            name: layout.destinations(scheme).keys() for name, scheme in schemes.items()
        }
        written = frozenset(
            p for p in result.changes.created | result.changes.modified if os.path.lexists(p)
        )
        placement = classify(result.returncode, written, destinations)
        residue = residue_of(result) if result.returncode != 0 else []
        outside = _relative(env, result.outside)
        verdict = judge(
            exp,
            placement,
            output=result.output,
            returncode=result.returncode,
            residue=residue,
            outside=outside,
            messages=installer.messages,
            timed_out=result.timed_out,
        )
        says = last_words(result)
        self._row(
            outcome=placement.outcome,
            expected=exp.outcome,
            agrees=placement.outcome == exp.outcome,
            returncode=result.returncode,
            residue=residue,
            outside=outside,
            verdict=verdict.status,
            broken=sorted(verdict.broken),
            declared=exp.declared[1] if exp.declared else None,
            says=says,
        )
        if verdict.undeclared:
            verdict_text = _placement_verdict(result, wheel, placement, schemes)
            self.detail = _explain(self, exp, placement, result, verdict_text)
            lines = verdict.undeclared + [f"(declared) {d}" for d in verdict.declared]
            raise MatrixFailure("\n".join(f"- {line}" for line in lines))
        if verdict.declared:
            pytest.xfail(
                "; ".join(verdict.declared) + (f" [{installer.name} said: {says}]" if says else "")
            )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, MatrixFailure):
            return (
                f"{self.scenario.name} with {self.installer.describe()}:\n"
                f"{excinfo.value}\n\n{self.detail}"
            )
        return str(super().repr_failure(excinfo, style=style))


def _placement_verdict(
    result: RunResult, wheel: Path, placement: Placement, schemes: Mapping[str, Mapping[str, Path]]
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
        elif placement.outcome in schemes:
            scheme = verdicts.Scheme(placement.outcome, schemes[placement.outcome])
            verdicts.assert_installed(result, wheel, scheme)
    except PlacementError as exc:
        return str(exc)
    return ""


def _explain(
    item: ScenarioItem, exp: Expectation, placement: Placement, result: RunResult, verdict_text: str
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
        f"got {placement.outcome!r}",
    ]
    for name, paths in sorted(placement.landed.items()):
        lines.append(
            f"  wheel files written to {name}: {len(paths)} of {len(placement.expected[name])}"
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


# ---------------------------------------------------------------------------
# the pytest side
# ---------------------------------------------------------------------------


class Matrix(pytest.Collector):
    """The virtual collector that holds every scenario item."""

    def collect(self) -> Iterator[ScenarioItem]:
        plugin: MatrixPlugin = self.config.pluginmanager.get_plugin(PLUGIN_NAME)  # type: ignore[assignment]
        runner = Runner(self.config, plugin.settings)
        for scenario in plugin.settings.scenarios:
            for installer in plugin.settings.installers:
                yield ScenarioItem.from_parent(
                    self,
                    name=f"{scenario.name}[{installer.name}]",
                    scenario=scenario,
                    installer=installer,
                    runner=runner,
                    path=scenario.path,
                )


PLUGIN_NAME = "installperm-matrix"


class MatrixPlugin:
    """Hooks active with ``--installperm``; registered by plugin.py."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings = load_settings(config)
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        """Without explicit paths, ``--installperm`` runs the matrix only."""
        return True if self.settings.only_matrix else None

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        matrix = Matrix.from_parent(session, name="installperm", nodeid="installperm")
        found = list(matrix.collect())
        # Report the collection as pytest's own collection would, so the
        # "collected N items" line and collection plugins see the matrix.
        session.ihook.pytest_collectreport(
            report=pytest.CollectReport(matrix.nodeid, "passed", None, list(found))
        )
        for item in found:
            item.ihook.pytest_itemcollected(item=item)
        items.extend(found)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for key, value in report.user_properties:
            if key == ROW_KEY and isinstance(value, dict):
                self.rows[(value["scenario"], value["installer"])] = value

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> Generator[None, None, None]:
        """Print the matrix after pytest's own summaries (the outermost
        wrapper resumes last), so a run ends with the table."""
        yield
        if hasattr(self.config, "workerinput"):
            return
        from pytest_installperm import report

        names = [i.name for i in self.settings.installers]
        terminalreporter.write_sep("=", "installperm matrix")
        for line in report.terminal(
            self.sorted_rows(), [s.name for s in self.settings.scenarios], names
        ):
            terminalreporter.write_line(line)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return
        from pytest_installperm import report

        rows = self.sorted_rows()
        if self.settings.report is not None:
            report.write(self.settings.report, report.to_json(rows))
        if self.settings.markdown is not None:
            names = [i.name for i in self.settings.installers]
            report.write(
                self.settings.markdown,
                report.to_markdown(rows, [s.name for s in self.settings.scenarios], names),
            )

    def sorted_rows(self) -> list[dict[str, Any]]:
        return [self.rows[k] for k in sorted(self.rows)]
