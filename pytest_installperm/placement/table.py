"""The table every verdict fails with: one sorted row per path, relative to the
sandbox, then the run's exit status and output."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pytest_installperm.errors import PlacementError
from pytest_installperm.placement.protocol import Result


@dataclass(frozen=True, order=True)
class Row:
    """One line of a verdict's table: a path and what was found there."""

    path: Path
    found: str

    @property
    def ok(self) -> bool:
        return self.found == "ok" or self.found.startswith("ok ")


def shown_path(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _fold_bytecode(rows: Iterable[Row]) -> list[Row]:
    """More than three ``.pyc`` of one ``__pycache__`` with one finding: one row."""
    groups: dict[tuple[Path, str], list[Row]] = {}
    kept: list[Row] = []
    for row in rows:
        if row.path.suffix == ".pyc" and row.path.parent.name == "__pycache__":
            groups.setdefault((row.path.parent, row.found), []).append(row)
        else:
            kept.append(row)
    for (directory, found), group in groups.items():
        if len(group) > 3:
            kept.append(Row(directory / "*.pyc", f"{found} ({len(group)} bytecode files)"))
        else:
            kept.extend(group)
    return kept


def table(rows: Iterable[Row], root: Path, heading: str = "expected path") -> list[str]:
    """Rows sorted by path, aligned, paths relative to ``root``."""
    ordered = sorted(set(_fold_bytecode(set(rows))))
    shown = [(shown_path(r.path, root), r.found) for r in ordered]
    width = max([len(heading), *(len(p) for p, _ in shown)])
    lines = [f"  {heading:<{width}}  found"]
    lines += [f"  {p:<{width}}  {found}" for p, found in shown]
    return lines


def require_started(verdict: str, result: Result) -> None:
    """Refuse to judge a run whose command never started.

    "Nothing was installed" is trivially true of a command that was not found;
    passing on it would be a pass the installer never earned.
    """
    __tracebackhide__ = True
    error = getattr(result, "error", None)
    if error:
        raise_failure(
            f"{verdict}: the installer never started ({error}); there is nothing to judge",
            result,
            [],
        )


def raise_failure(title: str, result: Result, body: list[str], notes: Iterable[str] = ()) -> None:
    __tracebackhide__ = True
    root = result.environment.root
    text = [title, f"paths relative to {root}", *body]
    text += [f"note: {n}" for n in notes]
    if result.outside:
        shown = sorted(result.outside)
        text.append(
            f"note: this run also wrote outside the roles it may write: "
            f"{', '.join(shown_path(p, root) for p in shown[:5])}"
            + (f" (+{len(shown) - 5} more)" if len(shown) > 5 else "")
        )
    text.append(result.describe())
    raise PlacementError("\n".join(text))


__all__ = [
    "Row",
    "raise_failure",
    "require_started",
    "shown_path",
    "table",
]
