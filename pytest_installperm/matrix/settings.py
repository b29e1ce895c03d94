"""The matrix's settings: options, ini values, installers and scenario files,
read and validated once, at startup."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_installperm import options
from pytest_installperm.errors import ScenarioError
from pytest_installperm.installers import Installer, parse_all
from pytest_installperm.installers.registry import config_registry
from pytest_installperm.scenarios import Scenario, load_all


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
    #: Installers named with ``--installperm-installer-optional``: a column that
    #: skips when they cannot run, instead of a failed session.
    optional: frozenset[str] = frozenset()
    #: Whether the installers were named by the user (not the default, pip).
    requested: bool = False
    #: Base interpreters (``--installperm-python``); (None,): the running one.
    pythons: tuple[Path | None, ...] = (None,)

    def columns(self) -> list[str]:
        """One column per installer, and per base interpreter when there are several."""
        return [label(i, p, self.pythons) for p in self.pythons for i in self.installers]


def label(installer: Installer, python: Path | None, pythons: Sequence[Path | None]) -> str:
    """An item's installer label: ``NAME``, or ``NAME@PYTHON`` among several pythons."""
    return installer.name if len(pythons) < 2 else f"{installer.name}@{python}"


SETTINGS_KEY = pytest.StashKey[Settings]()


def load_settings(config: pytest.Config) -> Settings:
    """:func:`read_settings`, once per process (``pytest_cmdline_main`` checks
    them, the matrix plugin uses them); the result is kept in ``config.stash``."""
    found = config.stash.get(SETTINGS_KEY, None)
    if found is None:
        found = read_settings(config)
        config.stash[SETTINGS_KEY] = found
    return found


def read_settings(config: pytest.Config) -> Settings:
    """Validate options, installers and scenario files; UsageError names the problem."""
    opts = options.check(config)
    installers = tuple(parse_all(list(opts.installers), config_registry(config)))
    try:
        scenarios = tuple(load_all(list(opts.scenario_dirs)))
    except ScenarioError as exc:
        raise pytest.UsageError(f"ScenarioError: {exc}") from exc
    names = {s.name for s in scenarios}
    for installer, scenario in opts.divergences:
        if scenario not in names:
            raise pytest.UsageError(
                f"installperm_divergences: unknown scenario {scenario!r} "
                f"(for installer {installer!r})"
            )
    optional = frozenset(options.option(config, "installperm_installer_optional") or ())
    unknown = sorted(optional - {i.name for i in installers})
    if unknown:
        raise pytest.UsageError(
            f"--installperm-installer-optional={unknown[0]!r}: no installer under test has "
            f"that name; the installers are {', '.join(i.name for i in installers)}"
        )
    only = config.args_source != pytest.Config.ArgsSource.ARGS
    return Settings(
        installers,
        scenarios,
        opts.divergences,
        only,
        opts.report,
        opts.markdown,
        optional,
        bool(opts.installers),
        opts.pythons or (None,),
    )


def check_runnable(settings: Settings, tools: Path) -> None:
    """UsageError for an installer asked for by name that cannot run here: a
    typo or a missing tool must never give a green run of skips."""
    if not settings.requested:
        return
    for installer in settings.installers:
        reason = installer.missing(tools)
        if reason is not None and installer.name not in settings.optional:
            raise pytest.UsageError(
                f"{reason}; an installer asked for by name must run (fix the name or "
                f"install it), or mark it --installperm-installer-optional={installer.name} "
                "to skip its column instead"
            )
