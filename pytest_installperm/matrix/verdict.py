"""What one matrix cell should do and whether it did: pure functions of data.

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
too, so declarations cannot rot. Nothing here touches a file or a process.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_installperm import oracle
from pytest_installperm.installers import Context, Installer
from pytest_installperm.scenarios import InstallerExpectation, Scenario

#: Order in which a tie between schemes is broken when classifying.
_SCHEME_ORDER = ("own", "target", "prefix", "user", "system")


@dataclass(frozen=True)
class CellExpectation:
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
    scenario: Scenario,
    installer: Installer,
    declared: Mapping[tuple[str, str], str],
    ctx: Context | None = None,
    version: str | None = None,
) -> CellExpectation:
    """The expected outcome: the scenario's own for this installer, else the
    preset's for this environment (``ctx``: which interpreter, which schemes),
    else pip's. ``version`` is what the installer said it is: a pip release is
    judged by that release's rules (the scenario files' ``[expect]`` describe
    the default one)."""
    pip_version = version if installer.preset == "pip" else None
    decided = oracle.decide(scenario, pip_version)
    own_words = pip_version is None or oracle.is_default(pip_version)
    pip_outcome = (own_words and scenario.outcome) or decided.outcome
    pip_message = (own_words and scenario.message) or decided.message
    # A template that inherits a preset inherits the declarations made for it.
    names = dict.fromkeys((installer.name, installer.preset))
    own = next((scenario.installers[n] for n in names if n in scenario.installers), None)
    ini = next(
        (declared[(n, scenario.name)] for n in names if (n, scenario.name) in declared), None
    )
    breaks = dict(own.breaks) if own is not None else {}
    outcome = own.outcome if own is not None and own.outcome else pip_outcome
    divergence: tuple[str | None, str] | None = None
    if own is not None and own.diverges is not None:
        divergence = own.diverges
    elif ini is not None:
        divergence = (None, ini)
    elif own is None or own.outcome is None:
        pip = oracle.Expected(pip_outcome, pip_message, decided.rule)
        preset = (
            installer.expect(scenario, pip, ctx)
            if ctx is not None
            else InstallerExpectation(diverges=installer.diverges(scenario, pip))
        )
        outcome = preset.outcome or outcome
        divergence = preset.diverges
        breaks = {**preset.breaks, **breaks}
    messages = installer.messages_for(version)
    check = outcome == pip_outcome and divergence is None and pip_message in messages
    return CellExpectation(outcome, pip_outcome, pip_message, divergence, breaks, check)


@dataclass(frozen=True)
class Landing:
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
) -> Landing:
    """The outcome: "error" for a non-zero exit, else the scheme that got the wheel.

    ``written`` are the paths the run created or modified. A scheme "got" a
    destination when the run wrote exactly that path. Ties go to the most
    specific scheme (target, prefix, user, system). An exit status of 0 with no
    file of the wheel anywhere is reported as "error" (and breaks one-scheme).
    """
    expected = {name: frozenset(paths) for name, paths in destinations.items()}
    landed = {name: paths & written for name, paths in expected.items() if paths & written}
    if returncode != 0 or not landed:
        return Landing("error", landed, expected)
    ranked = sorted(landed, key=lambda n: (-len(landed[n]), _SCHEME_ORDER.index(n)))
    return Landing(ranked[0], landed, expected)


@dataclass
class CellVerdict:
    """Problems found for one item, and the row for reports.

    Kept apart: ``declared`` (the installer chose to differ, and says so) and
    ``known`` (a known invariant break: the installer leaves residue, writes
    outside, or splits a wheel; a defect, if an expected one). Both are xfails.
    """

    undeclared: list[str] = field(default_factory=list)
    declared: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.undeclared:
            return "failed"
        return "xfailed" if self.declared or self.known else "passed"

    @property
    def reason(self) -> str | None:
        """Why the cell is not ok, in words: None for a pass."""
        if self.undeclared:
            return "; ".join(self.undeclared)
        return "; ".join(self.declared + self.known) or None


def judge(
    exp: CellExpectation,
    landing: Landing,
    *,
    output: str,
    returncode: int,
    residue: Sequence[str],
    outside: Sequence[str],
    messages: Mapping[str, str],
    timed_out: bool = False,
) -> CellVerdict:
    """Compare one run with its expectation and check the three invariants.

    A run that timed out (or was killed) has no outcome to judge: that alone fails.
    """
    verdict = CellVerdict()
    if timed_out or returncode < 0:
        verdict.undeclared.append(
            f"the run did not finish (exit status {returncode}, "
            f"{'timed out' if timed_out else 'killed by a signal'}): "
            "no outcome to judge"
        )
        return verdict
    actual = landing.outcome
    if actual != exp.outcome:
        allowed = exp.declared is not None and exp.declared[0] in (None, actual)
        text = f"outcome {actual!r}, expected {exp.outcome!r}"
        if allowed and exp.declared is not None:
            verdict.declared.append(f"declared divergence: {text}: {exp.declared[1]}")
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
        "one-scheme": _one_scheme(landing) if returncode == 0 else None,
    }
    for name, problem in problems.items():
        reason = exp.breaks.get(name)
        if problem is not None:
            verdict.broken.append(name)
            if reason is not None:
                verdict.known.append(f"known invariant break ({name}): {problem}: {reason}")
            else:
                verdict.undeclared.append(f"invariant {name} broken: {problem}")
        elif reason is not None:
            verdict.undeclared.append(
                f"invariant {name} was declared broken ({reason!r}) but "
                "holds: remove the declaration"
            )
    return verdict


def _one_scheme(landing: Landing) -> str | None:
    if not landing.landed:
        return "exit status 0, yet no file of the wheel was installed anywhere"
    if len(landing.landed) > 1:
        spread = ", ".join(f"{n} ({len(p)} files)" for n, p in sorted(landing.landed.items()))
        return f"the wheel is spread over several schemes: {spread}"
    missing = landing.missing(landing.outcome)
    if missing:
        return (
            f"the wheel is incomplete in {landing.outcome}: missing "
            f"{', '.join(str(p) for p in missing[:5])}"
        )
    return None
