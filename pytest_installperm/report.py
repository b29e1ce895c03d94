"""The matrix as terminal text, JSON and Markdown.

Rows come from the items (see the matrix package), one per scenario and
installer, as plain JSON-able dicts, so the same data feeds all three forms and
survives the trip from an xdist worker. Everything is sorted: equal runs give
equal files.

Cell marks: ``ok`` agrees with the expectation; ``xfail`` a declared
divergence (the installer chose to differ); ``xINV`` a known invariant break
(declared, yet a defect, so it is listed apart from the choices); ``DIFF`` an
undeclared difference; ``INV`` an invariant broken that nothing declares;
``skip`` the item did not run. Every cell that is not ``ok`` is listed under
the table with its reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_installperm import changepoints

REPORT_VERSION = 2
#: The JSON fields of the version 1 contract, in this order.
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
#: What ran, added in version 2.
RUN_FIELDS = ("installer_version", "python", "backend", "mode")
EXTRAS = ("verdict", "mark", "broken", "declared", "reason", "excerpt")
#: Marks in the order totals and the list of reasons show them (defects first).
MARKS = ("ok", "INV", "DIFF", "xINV", "xfail", "skip")
LEGEND = (
    "ok = agrees, INV = invariant broken, DIFF = differs (undeclared), "
    "xINV = known invariant break (declared, a defect), xfail = declared divergence "
    "(the installer's choice), skip = not run"
)
#: Section titles of the reasons under the table, by mark.
SECTIONS = {
    "INV": "Invariants broken (defects nothing declares)",
    "DIFF": "Undeclared differences",
    "xINV": "Known invariant breaks (declared, still defects)",
    "xfail": "Declared divergences (the installer chose to differ)",
    "skip": "Skipped",
}

Row = Mapping[str, Any]


def mark(row: Row) -> str:
    """The mark of one cell."""
    if "skipped" in row:
        return "skip"
    if row.get("verdict") == "xfailed":
        return "xINV" if row.get("broken") else "xfail"
    if row.get("verdict") == "failed":
        return "INV" if row.get("agrees") and row.get("broken") else "DIFF"
    return "ok"


def reason(row: Row) -> str | None:
    """Why a cell is not ok (None when it is): the item's own words first."""
    if mark(row) == "ok":
        return None
    text = row.get("reason") or row.get("skipped") or row.get("declared") or ""
    broken = row.get("broken") or []
    if broken and "invariant" not in text:
        # the matrix verdict's own words name the invariants they judge
        prefix = f"invariants broken: {', '.join(broken)}"
        text = f"{prefix}: {text}" if text else prefix
    if not text:
        text = f"outcome {row.get('outcome')!r}, expected {row.get('expected')!r}"
    return str(text)


def totals(rows: Iterable[Row]) -> dict[str, int]:
    """``cells`` and a count per mark, every mark present."""
    found = dict.fromkeys(MARKS, 0)
    count = 0
    for row in rows:
        found[mark(row)] += 1
        count += 1
    return {"cells": count, **found}


def _values(rows: Iterable[Row], key: str) -> list[str]:
    return sorted({str(r[key]) for r in rows if r.get(key)})


def installer_label(rows: Sequence[Row], installer: str) -> str:
    """``pip 26.3``; several versions joined; ``(not run)`` with no row that ran."""
    mine = [r for r in rows if r["installer"] == installer]
    versions = _values(mine, "installer_version")
    if versions:
        return f"{installer} {' / '.join(versions)}"
    ran = [r for r in mine if "skipped" not in r]
    return f"{installer} (version unknown)" if ran else f"{installer} (not run)"


def context(rows: Sequence[Row], installers: Sequence[str]) -> dict[str, str]:
    """What ran: installers with versions, Python(s), backend(s), mode(s)."""
    return {
        "installers": ", ".join(installer_label(rows, i) for i in installers) or "none",
        "python": ", ".join(_values(rows, "python")) or "unknown",
        "backend": ", ".join(_values(rows, "backend")) or "unknown",
        "mode": ", ".join(_values(rows, "mode")) or "unknown",
    }


def _totals_text(rows: Sequence[Row]) -> str:
    counts = totals(rows)
    if not counts["cells"]:
        return "no results"
    parts = [f"{counts[m]} {m}" for m in MARKS if counts[m]]
    cells = counts["cells"]
    return f"{cells} cell{'s' if cells != 1 else ''}: {', '.join(parts)}"


def _ordered(rows: Sequence[Row], scenarios: Sequence[str], installers: Sequence[str]) -> list[Row]:
    """Rows in table order: scenarios as given, then installers as given."""
    s_rank = {name: i for i, name in enumerate(scenarios)}
    i_rank = {name: i for i, name in enumerate(installers)}
    return sorted(
        rows,
        key=lambda r: (
            s_rank.get(r["scenario"], len(s_rank)),
            r["scenario"],
            i_rank.get(r["installer"], len(i_rank)),
            r["installer"],
        ),
    )


def not_ok(
    rows: Sequence[Row], scenarios: Sequence[str], installers: Sequence[str]
) -> dict[str, list[Row]]:
    """Mark -> its rows in table order, for every mark but ``ok`` that occurs."""
    found: dict[str, list[Row]] = {}
    for row in _ordered(rows, scenarios, installers):
        if mark(row) != "ok":
            found.setdefault(mark(row), []).append(row)
    return {m: found[m] for m in MARKS if m in found}


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
    """What ran, the table (scenarios as rows, installers as columns), the
    legend and totals, then every cell that is not ok with its reason."""
    lines = [f"{key}: {value}" for key, value in context(rows, installers).items()]
    grid = _grid(rows, scenarios, installers)
    header = ["scenario", *installers]
    widths = [max(len(r[i]) for r in [header, *grid]) for i in range(len(header))]
    table = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *grid]
    ]
    table.insert(1, "  ".join("-" * w for w in widths))
    lines += ["", *table, LEGEND, f"totals: {_totals_text(rows)}"]
    for name, group in not_ok(rows, scenarios, installers).items():
        lines += ["", f"{SECTIONS[name]}:"]
        lines += [f"  {name:<5} {r['scenario']}[{r['installer']}]: {reason(r)}" for r in group]
    return lines + changepoints.terminal(rows)


def _json_row(row: Row) -> dict[str, Any]:
    fields = {k: row.get(k) for k in (*FIELDS, *RUN_FIELDS, *EXTRAS)}
    fields["mark"] = mark(row)
    fields["reason"] = reason(row)
    return fields


def to_json(rows: Sequence[Row]) -> str:
    """Schema version 2 (docs/scenarios.md): ``version``, ``totals``,
    ``results`` and ``skipped``, sorted by scenario then installer, and
    ``bisect`` (:mod:`.changepoints`; empty without several versions of one
    installer).

    Skipped items have no outcome, so they are listed apart with their reason,
    and every entry of ``results`` has an outcome from the contract.
    """
    results = []
    skipped = []
    for row in sorted(rows, key=lambda r: (r["scenario"], r["installer"])):
        if "skipped" in row:
            entry = {k: row.get(k) for k in ("scenario", "installer", *RUN_FIELDS)}
            skipped.append({**entry, "reason": row["skipped"]})
        else:
            results.append(_json_row(row))
    data = {
        "version": REPORT_VERSION,
        "totals": totals(rows),
        "results": results,
        "skipped": skipped,
        "bisect": changepoints.to_json(rows),
    }
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``."""
    longest = 0
    run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def _md_text(text: str) -> str:
    """Plain text that GitHub renders as written (no HTML, no stray markup)."""
    escaped = text.replace("\\", "\\\\")
    for char in "<>*_[]|`":
        escaped = escaped.replace(char, "\\" + char)
    return escaped.replace("\n", " ")


def to_markdown(rows: Sequence[Row], scenarios: Sequence[str], installers: Sequence[str]) -> str:
    """A job summary, ready for ``$GITHUB_STEP_SUMMARY``: a heading with what
    ran, totals, the table, the legend, every cell that is not ok with its
    reason (defects first), and the installer's last output of failing rows."""
    facts = context(rows, installers)
    out = [
        "## installperm matrix",
        "",
        f"**Installers:** {_md_text(facts['installers'])}  ",
        f"**Python:** {_md_text(facts['python'])}  ",
        f"**Backend:** {_md_text(facts['backend'])} · **Mode:** {_md_text(facts['mode'])}  ",
        f"**Totals:** {_totals_text(rows)}",
        "",
        "| scenario | " + " | ".join(installers) + " |",
        "|---|" + "---|" * len(installers),
    ]
    out += [
        "| " + " | ".join(f"`{c}`" if i == 0 else c for i, c in enumerate(row)) + " |"
        for row in _grid(rows, scenarios, installers)
    ]
    out += ["", LEGEND]
    groups = not_ok(rows, scenarios, installers)
    for name, group in groups.items():
        out += ["", f"### {SECTIONS[name]}", ""]
        out += [
            f"- **{name}** `{r['scenario']}` with {r['installer']}: {_md_text(reason(r) or '')}"
            for r in group
        ]
    out += changepoints.markdown(rows, _md_text)
    failing = [r for m in ("INV", "DIFF") for r in groups.get(m, []) if r.get("excerpt")]
    if failing:
        out += ["", "### Output of failing cells"]
    for row in failing:
        excerpt = str(row["excerpt"]).rstrip("\n")
        fence = _fence(excerpt)
        out += [
            "",
            "<details>",
            f"<summary>{row['scenario']} with {row['installer']}</summary>",
            "",
            fence,
            excerpt,
            fence,
            "",
            "</details>",
        ]
    return "\n".join(out) + "\n"


def write(path: Path, text: str) -> None:
    """Write ``text`` atomically, creating the parent directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _why_unwritable(path: Path, exc: OSError) -> str:
    """The cause in the user's terms: the first ancestor that is a file, else the OS's words."""
    ancestor = path.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if os.path.lexists(ancestor) and not os.path.isdir(ancestor):
        return f"{ancestor} is not a directory"
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    return f"{exc.strerror or exc}{where}"


def write_all(reports: Iterable[tuple[str, Path, str]]) -> list[str]:
    """Write each ``(what, path, text)``; one error line per report that could
    not be written, naming it and the path (the others are still written)."""
    errors = []
    for what, path, text in reports:
        try:
            write(path, text)
        except OSError as exc:
            errors.append(
                f"installperm: cannot write the {what} to {path}: {_why_unwritable(path, exc)}"
            )
    return errors


__all__ = [
    "FIELDS",
    "LEGEND",
    "MARKS",
    "REPORT_VERSION",
    "RUN_FIELDS",
    "cell",
    "context",
    "mark",
    "not_ok",
    "reason",
    "terminal",
    "to_json",
    "to_markdown",
    "totals",
    "write",
    "write_all",
]
