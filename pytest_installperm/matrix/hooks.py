"""The matrix's pytest side: collecting one item per scenario and installer,
gathering their rows (from xdist workers too), and the summary and reports."""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_installperm.fixtures import get_session
from pytest_installperm.matrix.item import ROW_KEY, Runner, ScenarioItem
from pytest_installperm.matrix.settings import check_runnable, label, load_settings


class Matrix(pytest.Collector):
    """The virtual collector that holds every scenario item."""

    def collect(self) -> Iterator[ScenarioItem]:
        plugin: MatrixPlugin = self.config.pluginmanager.get_plugin(PLUGIN_NAME)  # type: ignore[assignment]
        settings = plugin.settings
        runner = Runner(self.config, settings)
        for scenario in settings.scenarios:
            for python in settings.pythons:
                for installer in settings.installers:
                    yield ScenarioItem.from_parent(
                        self,
                        name=f"{scenario.name}[{label(installer, python, settings.pythons)}]",
                        scenario=scenario,
                        installer=installer,
                        runner=runner,
                        path=scenario.path,
                        python=python,
                    )


def longest_first(items: list[ScenarioItem]) -> list[ScenarioItem]:
    """The cells in the order xdist should hand them out: the costliest
    installers' first (by :attr:`Installer.weight`; a stable sort, so each
    installer's cells keep the scenarios' order).

    xdist's ``load`` and ``worksteal`` schedulers give out items in collection
    order; with pip's and uv's cells interleaved, one worker often ends on a
    pip cell or two while the other is done. Long cells first leave only short
    ones to even out the end. The rows and reports are sorted by scenario and
    installer whatever the order; a serial run keeps the scenarios' order.
    """
    return sorted(items, key=lambda item: -item.installer.weight)


PLUGIN_NAME = "installperm-matrix"


class MatrixPlugin:
    """Hooks active with ``--installperm``; registered by plugin.py."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings = load_settings(config)
        wanted = [p for i in self.settings.installers for p in i.programs]
        check_runnable(self.settings, get_session(config).tools(wanted))
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        #: One line per report that could not be written, shown after the table.
        self.report_errors: list[str] = []

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        """Without explicit paths, ``--installperm`` runs the matrix only."""
        return True if self.settings.only_matrix else None

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        matrix = Matrix.from_parent(session, name="installperm", nodeid="installperm")
        found = list(matrix.collect())
        if hasattr(config, "workerinput"):
            found = longest_first(found)
        # Report the collection as pytest's own collection would, so the
        # "collected N items" line and collection plugins see the matrix.
        session.ihook.pytest_collectreport(
            report=pytest.CollectReport(matrix.nodeid, "passed", None, list(found))
        )
        for item in found:
            item.ihook.pytest_itemcollected(item=item)
        items.extend(found)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """A skip points at the scenario file, not at the line of this plugin
        that raised it: that is where the user can look and act."""
        report = yield
        if isinstance(item, ScenarioItem) and report.skipped and isinstance(report.longrepr, tuple):
            report.longrepr = (str(item.scenario.path), 1, report.longrepr[2])
        return report

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

        names = self.settings.columns()
        terminalreporter.write_sep("=", "installperm matrix")
        for line in report.terminal(
            self.sorted_rows(), [s.name for s in self.settings.scenarios], names
        ):
            terminalreporter.write_line(line)
        for line in self.report_errors:
            terminalreporter.write_line(f"ERROR: {line}", red=True)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the reports. One that cannot be written is an error, shown
        after the table (the terminal summary comes later) and in the exit
        status; it never costs the table or the other report."""
        if hasattr(self.config, "workerinput"):
            return
        from pytest_installperm import report

        rows = self.sorted_rows()
        wanted = []
        if self.settings.report is not None:
            wanted.append(("JSON report", self.settings.report, report.to_json(rows)))
        if self.settings.markdown is not None:
            names = self.settings.columns()
            scenarios = [s.name for s in self.settings.scenarios]
            text = report.to_markdown(rows, scenarios, names)
            wanted.append(("Markdown summary", self.settings.markdown, text))
        self.report_errors = report.write_all(wanted)
        if not self.report_errors:
            return
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
        if self.config.pluginmanager.get_plugin("terminalreporter") is None:
            for line in self.report_errors:
                print(f"ERROR: {line}", file=sys.stderr)

    def sorted_rows(self) -> list[dict[str, Any]]:
        return [self.rows[k] for k in sorted(self.rows)]
