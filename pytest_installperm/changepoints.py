"""The bisect view: with several versions of one installer in a matrix, the
first version at which each scenario's outcome or key message changed.

Columns are grouped by preset and base interpreter (a template that inherits
``pip`` counts as pip), and ordered by the version each one reported inside the
sandbox (:class:`packaging.version.Version`; then by label, so equal versions
keep a stable order). A column with no version that parses is left out. A
cell's state is its outcome (``skip`` when it did not run) and its key message
(:func:`key_message`); a change is recorded wherever that state differs from
the previous version's. Families with fewer than two versions have no view.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

Row = Mapping[str, Any]
#: Longest key message the terminal shows (the JSON report has it whole).
SHOWN = 90


def key_message(output: str, messages: Mapping[str, str], root: str) -> str | None:
    """What the installer said that decides a cell, every path as ``<path>``:
    the text each of its known messages (``messages``: kind -> regex, in the
    words of the version that ran) matched, in kind order, else its first error
    line, else None."""
    found = []
    for kind in sorted(messages):
        match = re.search(messages[kind], output)
        if match is not None:
            found.append(match[0])
    if not found:
        errors = [ln.strip() for ln in output.splitlines() if re.match(r"\s*error\b", ln, re.I)]
        found = errors[:1]
    text = " / ".join(" / ".join(ln.strip() for ln in f.splitlines() if ln.strip()) for f in found)
    return _PATH.sub("<path>", text.replace(root, "<sandbox>")) or None


#: An absolute path in a message: which file an installer hit first, and uv's
#: random temporary names, change from run to run; the wording is what changes
#: between releases.
_PATH = re.compile(r"(?<![\w.<>])(?:<sandbox>)?/[^\s'\"`,;)]+")


@dataclass(frozen=True)
class Column:
    """One installer column of a family: its label and the version that ran."""

    installer: str
    version: Version


@dataclass(frozen=True)
class Change:
    """Where a scenario's state moved: at ``column``, from ``before`` to ``after``
    (each an (outcome, key message) pair)."""

    column: Column
    before: tuple[str, str | None]
    after: tuple[str, str | None]

    def fields(self) -> dict[str, Any]:
        """What changed, for the JSON report: ``outcome`` and/or ``message``, each
        ``[before, after]``."""
        out: dict[str, Any] = {
            "version": str(self.column.version),
            "installer": self.column.installer,
        }
        for index, name in enumerate(("outcome", "message")):
            if self.before[index] != self.after[index]:
                out[name] = [self.before[index], self.after[index]]
        return out

    def describe(self, width: int = SHOWN) -> str:
        parts = []
        for index, name in enumerate(("outcome", "message")):
            old, new = self.before[index], self.after[index]
            if old != new:
                parts.append(f"{name} {_short(old, width)} -> {_short(new, width)}")
        return f"{self.column.version} ({self.column.installer}): {'; '.join(parts)}"


def _short(text: str | None, width: int) -> str:
    if text is None:
        return "(none)"
    return repr(text if len(text) <= width else text[: width - 3] + "...")


@dataclass(frozen=True)
class Family:
    """Several versions of one preset on one base interpreter."""

    preset: str
    python: str
    columns: tuple[Column, ...]
    #: scenario -> its changes in version order (empty: the same everywhere).
    changes: Mapping[str, tuple[Change, ...]]

    def to_json(self) -> dict[str, Any]:
        return {
            "installer": self.preset,
            "python": self.python,
            "versions": [
                {"version": str(c.version), "installer": c.installer} for c in self.columns
            ],
            "scenarios": [
                {
                    "scenario": name,
                    "first_change": str(found[0].column.version) if found else None,
                    "changes": [change.fields() for change in found],
                }
                for name, found in sorted(self.changes.items())
            ],
        }

    def heading(self) -> str:
        order = str(self.columns[0].version)
        for before, column in itertools.pairwise(self.columns):
            order += f" {'=' if column.version == before.version else '<'} {column.version}"
        return f"{self.preset} on {self.python}: {order}"


def _version(row: Row) -> Version | None:
    try:
        return Version(str(row.get("installer_version")))
    except InvalidVersion:
        return None


def _state(row: Row) -> tuple[str, str | None]:
    if "skipped" in row:
        return ("skip", None)
    return (str(row.get("outcome")), row.get("message"))


def families(rows: Sequence[Row]) -> list[Family]:
    """Every preset and interpreter with two versions or more, sorted."""
    columns: dict[tuple[str, str], dict[str, Version]] = {}
    for row in rows:
        version = _version(row)
        if version is None or not row.get("preset"):
            continue
        key = (str(row["preset"]), str(row.get("python")))
        columns.setdefault(key, {})[str(row["installer"])] = version
    by_cell = {(str(r["scenario"]), str(r["installer"])): r for r in rows}
    found = []
    for (preset, python), labels in sorted(columns.items()):
        ordered = tuple(
            Column(label, version)
            for label, version in sorted(labels.items(), key=lambda lv: (lv[1], lv[0]))
        )
        if len({c.version for c in ordered}) < 2:
            continue
        scenarios = sorted({s for s, label in by_cell if label in labels})
        changes = {}
        for scenario in scenarios:
            cells = [(c, by_cell.get((scenario, c.installer))) for c in ordered]
            states = [(c, _state(row)) for c, row in cells if row is not None]
            changes[scenario] = tuple(
                Change(column, before, after)
                for (_, before), (column, after) in itertools.pairwise(states)
                if before != after
            )
        found.append(Family(preset, python, ordered, changes))
    return found


def terminal(rows: Sequence[Row]) -> list[str]:
    """For each family: its versions in order, each scenario that changed with
    its first change (and any later ones), then the unchanged ones by name."""
    lines: list[str] = []
    for family in families(rows):
        lines += ["", f"Bisect, {family.heading()}"]
        same = [name for name, found in family.changes.items() if not found]
        for name, found in sorted(family.changes.items()):
            if found:
                lines.append(f"  {name}: first change at {found[0].describe()}")
                lines += [f"    then at {change.describe()}" for change in found[1:]]
        if same:
            lines.append(f"  unchanged ({len(same)}): {', '.join(same)}")
    return lines


def markdown(rows: Sequence[Row], text: Any) -> list[str]:
    """For each family, a table: scenario, first change, what changed there and
    later. ``text`` escapes plain text for Markdown."""
    out: list[str] = []
    for family in families(rows):
        out += [
            "",
            f"### Bisect: {text(family.heading())}",
            "",
            "| scenario | first change | what changed |",
            "|---|---|---|",
        ]
        for name, found in sorted(family.changes.items()):
            first = str(found[0].column.version) if found else "none"
            what = "; ".join(text(change.describe(width=200)) for change in found) or "-"
            out.append(f"| `{name}` | {first} | {what} |")
    return out


def to_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The ``bisect`` key of the JSON report: one entry per family."""
    return [family.to_json() for family in families(rows)]


__all__ = [
    "Change",
    "Column",
    "Family",
    "families",
    "key_message",
    "markdown",
    "terminal",
    "to_json",
]
