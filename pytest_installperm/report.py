"""The matrix as terminal text, JSON and Markdown.

Rows come from the items (see matrix.py), one per scenario and installer, as
plain JSON-able dicts, so the same data feeds all three forms and survives the
trip from an xdist worker. Everything is sorted: equal runs give equal files.

Cell marks: ``ok`` agrees with the expectation, ``DIFF`` diverges (undeclared),
``xfail`` a declared divergence or known invariant break, ``INV`` an invariant
broken that nothing declares, ``skip`` the item did not run (see its reason).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPORT_VERSION = 1
#: The JSON fields of the contract (DESIGN.md part B), in this order, then extras.
FIELDS = (
    "scenario",
    "installer",
    "outcome",
    "expected",
    "agrees",
    "returncode",
    "residue",
    "outside",
)
EXTRAS = ("verdict", "broken", "declared")
LEGEND = (
    "ok = agrees, DIFF = diverges (undeclared), xfail = declared divergence or known "
    "invariant break, INV = invariant broken, skip = not run"
)

Row = Mapping[str, Any]


def mark(row: Row) -> str:
    """The mark of one cell."""
    if "skipped" in row:
        return "skip"
    if row.get("verdict") == "xfailed":
        return "xfail"
    if row.get("verdict") == "failed":
        return "DIFF" if not row.get("agrees") or not row.get("broken") else "INV"
    return "ok"


def cell(row: Row | None) -> str:
    if row is None:
        return "-"
    if "skipped" in row:
        return "skip"
    return f"{row['outcome']} {mark(row)}"


def _grid(
    rows: Sequence[Row], scenarios: Sequence[str], installers: Sequence[str]
) -> list[list[str]]:
    by_key = {(r["scenario"], r["installer"]): r for r in rows}
    seen = {r["scenario"] for r in rows}
    return [
        [name, *(cell(by_key.get((name, i))) for i in installers)]
        for name in scenarios
        if name in seen
    ]


def terminal(rows: Sequence[Row], scenarios: Sequence[str], installers: Sequence[str]) -> list[str]:
    """Scenarios as rows, installers as columns, aligned; a legend and counts."""
    grid = _grid(rows, scenarios, installers)
    header = ["scenario", *installers]
    widths = [max(len(r[i]) for r in [header, *grid]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *grid]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    counts = Counter(mark(row) for row in rows)
    lines.append(LEGEND)
    lines.append(", ".join(f"{counts[k]} {k}" for k in sorted(counts)) or "no results")
    lines += [
        f"{row['scenario']}[{row['installer']}]: invariants broken: {', '.join(row['broken'])}"
        for row in rows
        if row.get("broken")
    ]
    return lines


def to_json(rows: Sequence[Row]) -> str:
    """``{"version": 1, "results": [...], "skipped": [...]}``, sorted.

    Skipped items have no outcome, so they are listed apart with their reason,
    and every entry of ``results`` has an outcome from the contract.
    """
    results = []
    skipped = []
    for row in sorted(rows, key=lambda r: (r["scenario"], r["installer"])):
        if "skipped" in row:
            skipped.append(
                {
                    "scenario": row["scenario"],
                    "installer": row["installer"],
                    "reason": row["skipped"],
                }
            )
            continue
        results.append({k: row.get(k) for k in (*FIELDS, *EXTRAS)})
    data = {"version": REPORT_VERSION, "results": results, "skipped": skipped}
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def to_markdown(rows: Sequence[Row], scenarios: Sequence[str], installers: Sequence[str]) -> str:
    """A GitHub-flavoured table, fit for ``$GITHUB_STEP_SUMMARY``."""
    grid = _grid(rows, scenarios, installers)
    out = ["| scenario | " + " | ".join(installers) + " |", "|---|" + "---|" * len(installers)]
    out += [
        "| " + " | ".join(f"`{c}`" if i == 0 else c for i, c in enumerate(row)) + " |"
        for row in grid
    ]
    out += ["", LEGEND, ""]
    return "\n".join(out)


def write(path: Path, text: str) -> None:
    """Write ``text`` atomically, creating the parent directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
