"""The scenario matrix (``pytest --installperm``): one pytest item per scenario
and installer, judged against pip's rules.

- :mod:`~pytest_installperm.matrix.settings`: options, installers and scenarios,
  validated once at startup;
- :mod:`~pytest_installperm.matrix.verdict`: what a cell should do and whether it
  did, as pure functions of data;
- :mod:`~pytest_installperm.matrix.item`: one cell as a pytest item, which runs
  the installer in the scenario's environment and ships its result row;
- :mod:`~pytest_installperm.matrix.hooks`: collection, the rows of every worker,
  the terminal summary and the reports.
"""

from __future__ import annotations

from pytest_installperm.matrix.hooks import PLUGIN_NAME, MatrixPlugin
from pytest_installperm.matrix.item import ROW_KEY, ScenarioItem
from pytest_installperm.matrix.settings import Settings, load_settings
from pytest_installperm.matrix.verdict import (
    CellExpectation,
    CellVerdict,
    Landing,
    classify,
    expectation,
    judge,
)

__all__ = [
    "PLUGIN_NAME",
    "ROW_KEY",
    "CellExpectation",
    "CellVerdict",
    "Landing",
    "MatrixPlugin",
    "ScenarioItem",
    "Settings",
    "classify",
    "expectation",
    "judge",
    "load_settings",
]
