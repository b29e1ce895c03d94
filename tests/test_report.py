"""report.py: the matrix as terminal text, Markdown (a job summary) and JSON v2.

The rows are built here the way the matrix items build them (one per scenario
and installer, the contract's keys), so every form is checked line by line;
tests/test_matrix.py checks the same forms end to end on real runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_installperm.report import (
    FIELDS,
    RUN_FIELDS,
    mark,
    reason,
    terminal,
    to_json,
    to_markdown,
    totals,
    write_all,
)

PY = "/usr/bin/python3.11 (3.11.2)"


def _row(scenario: str, installer: str, **fields: Any) -> dict[str, Any]:
    version = {"pip": "26.3", "uv": "0.13.8"}[installer]
    base: dict[str, Any] = {
        "scenario": scenario,
        "installer": installer,
        "installer_version": version,
        "python": PY,
        "backend": "privdrop",
        "mode": "relocated",
        "outcome": "user",
        "expected": "user",
        "agrees": True,
        "returncode": 0,
        "residue": [],
        "outside": [],
        "verdict": "passed",
        "broken": [],
        "declared": None,
        "reason": None,
        "excerpt": None,
    }
    return {**base, **fields}


ROWS = [
    _row("fallback", "pip"),
    _row(
        "fallback",
        "uv",
        outcome="error",
        agrees=False,
        returncode=2,
        verdict="xfailed",
        declared="uv has no user scheme",
        reason="outcome 'error', expected 'user': declared divergence: uv has no user scheme",
    ),
    _row(
        "scripts-lock",
        "pip",
        outcome="error",
        expected="error",
        returncode=1,
        residue=["prefix/lib/python3.11/site-packages/demo/__init__.py"],
        verdict="xfailed",
        broken=["residue"],
        reason="failed and left residue: prefix/lib/.../demo/__init__.py: known: no rollback",
    ),
    _row(
        "scripts-lock",
        "uv",
        outcome="system",
        expected="error",
        agrees=False,
        verdict="failed",
        reason="outcome 'system', expected 'error'",
        excerpt="Installed 1 package in 3ms\n + demo==1.0",
    ),
    _row(
        "target",
        "pip",
        outcome="target",
        expected="target",
        verdict="failed",
        broken=["outside"],
        reason="wrote outside the allowed roles: home/.cache/x",
        excerpt="Successfully installed demo-1.0 | see `x`",
    ),
    {
        "scenario": "target",
        "installer": "uv",
        "installer_version": "0.13.8",
        "python": PY,
        "backend": "privdrop",
        "mode": "relocated",
        "skipped": "uv cannot express --target with --user",
    },
]
SCENARIOS = ["fallback", "scripts-lock", "target"]
INSTALLERS = ["pip", "uv"]


def test_every_mark_is_told_apart() -> None:
    assert [mark(r) for r in ROWS] == ["ok", "xfail", "xINV", "DIFF", "INV", "skip"]
    assert totals(ROWS) == {
        "cells": 6,
        "ok": 1,
        "INV": 1,
        "DIFF": 1,
        "xINV": 1,
        "xfail": 1,
        "skip": 1,
    }


@pytest.mark.parametrize(
    "own",
    [
        "known invariant break (residue): failed and left residue: x.py: no rollback",
        "invariant residue broken: failed and left residue: x.py",
    ],
)
def test_a_verdict_that_names_its_invariant_is_not_prefixed_again(own: str) -> None:
    row = _row("scripts-lock", "pip", verdict="xfailed", broken=["residue"], reason=own)
    assert reason(row) == own
    bare = {**row, "reason": "failed and left residue: x.py"}
    assert reason(bare) == "invariants broken: residue: failed and left residue: x.py"


def test_terminal_has_what_ran_the_table_totals_and_every_reason() -> None:
    assert terminal(ROWS, SCENARIOS, INSTALLERS) == [
        "installers: pip 26.3, uv 0.13.8",
        f"python: {PY}",
        "backend: privdrop",
        "mode: relocated",
        "",
        "scenario      pip         uv",
        "------------  ----------  -----------",
        "fallback      user ok     error xfail",
        "scripts-lock  error xINV  system DIFF",
        "target        target INV  skip",
        "ok = agrees, INV = invariant broken, DIFF = differs (undeclared), xINV = known "
        "invariant break (declared, a defect), xfail = declared divergence (the "
        "installer's choice), skip = not run",
        "totals: 6 cells: 1 ok, 1 INV, 1 DIFF, 1 xINV, 1 xfail, 1 skip",
        "",
        "Invariants broken (defects nothing declares):",
        "  INV   target[pip]: invariants broken: outside: wrote outside the allowed roles: "
        "home/.cache/x",
        "",
        "Undeclared differences:",
        "  DIFF  scripts-lock[uv]: outcome 'system', expected 'error'",
        "",
        "Known invariant breaks (declared, still defects):",
        "  xINV  scripts-lock[pip]: invariants broken: residue: failed and left residue: "
        "prefix/lib/.../demo/__init__.py: known: no rollback",
        "",
        "Declared divergences (the installer chose to differ):",
        "  xfail fallback[uv]: outcome 'error', expected 'user': declared divergence: uv has "
        "no user scheme",
        "",
        "Skipped:",
        "  skip  target[uv]: uv cannot express --target with --user",
    ]


def test_markdown_is_a_job_summary_with_heading_totals_reasons_and_output() -> None:
    text = to_markdown(ROWS, SCENARIOS, INSTALLERS)
    assert text == "\n".join(
        [
            "## installperm matrix",
            "",
            "**Installers:** pip 26.3, uv 0.13.8  ",
            "**Python:** /usr/bin/python3.11 (3.11.2)  ",
            "**Backend:** privdrop · **Mode:** relocated  ",
            "**Totals:** 6 cells: 1 ok, 1 INV, 1 DIFF, 1 xINV, 1 xfail, 1 skip",
            "",
            "| scenario | pip | uv |",
            "|---|---|---|",
            "| `fallback` | user ok | error xfail |",
            "| `scripts-lock` | error xINV | system DIFF |",
            "| `target` | target INV | skip |",
            "",
            "ok = agrees, INV = invariant broken, DIFF = differs (undeclared), xINV = known "
            "invariant break (declared, a defect), xfail = declared divergence (the "
            "installer's choice), skip = not run",
            "",
            "### Invariants broken (defects nothing declares)",
            "",
            "- **INV** `target` with pip: invariants broken: outside: wrote outside the "
            "allowed roles: home/.cache/x",
            "",
            "### Undeclared differences",
            "",
            "- **DIFF** `scripts-lock` with uv: outcome 'system', expected 'error'",
            "",
            "### Known invariant breaks (declared, still defects)",
            "",
            "- **xINV** `scripts-lock` with pip: invariants broken: residue: failed and left "
            "residue: prefix/lib/.../demo/\\_\\_init\\_\\_.py: known: no rollback",
            "",
            "### Declared divergences (the installer chose to differ)",
            "",
            "- **xfail** `fallback` with uv: outcome 'error', expected 'user': declared "
            "divergence: uv has no user scheme",
            "",
            "### Skipped",
            "",
            "- **skip** `target` with uv: uv cannot express --target with --user",
            "",
            "### Output of failing cells",
            "",
            "<details>",
            "<summary>target with pip</summary>",
            "",
            "```",
            "Successfully installed demo-1.0 | see `x`",
            "```",
            "",
            "</details>",
            "",
            "<details>",
            "<summary>scripts-lock with uv</summary>",
            "",
            "```",
            "Installed 1 package in 3ms",
            " + demo==1.0",
            "```",
            "",
            "</details>",
            "",
        ]
    )


def test_a_code_fence_is_longer_than_any_backticks_in_the_output() -> None:
    row = _row("s", "pip", verdict="failed", agrees=False, excerpt="a ``` b\n````")
    text = to_markdown([row], ["s"], ["pip"])
    assert "\n`````\na ``` b\n````\n`````\n" in text


def test_json_v2_has_totals_what_ran_reasons_and_excerpts() -> None:
    data = json.loads(to_json(ROWS))
    assert list(data) == ["version", "totals", "results", "skipped", "bisect"]
    assert data["bisect"] == []  # one version of each installer: nothing to bisect
    assert data["version"] == 2
    assert data["totals"] == totals(ROWS)
    keys = [(r["scenario"], r["installer"]) for r in data["results"]]
    assert (
        keys
        == sorted(keys)
        == [
            ("fallback", "pip"),
            ("fallback", "uv"),
            ("scripts-lock", "pip"),
            ("scripts-lock", "uv"),
            ("target", "pip"),
        ]
    )
    for entry in data["results"]:
        assert list(entry)[: len(FIELDS) + len(RUN_FIELDS)] == [*FIELDS, *RUN_FIELDS]
        assert entry["python"] == PY
        assert (entry["backend"], entry["mode"]) == ("privdrop", "relocated")
        assert (entry["reason"] is None) == (entry["mark"] == "ok")
    by_key = {(r["scenario"], r["installer"]): r for r in data["results"]}
    assert by_key[("fallback", "uv")]["installer_version"] == "0.13.8"
    assert by_key[("scripts-lock", "uv")]["excerpt"] == "Installed 1 package in 3ms\n + demo==1.0"
    assert by_key[("scripts-lock", "pip")]["mark"] == "xINV"
    assert by_key[("scripts-lock", "pip")]["reason"].startswith("invariants broken: residue: ")
    assert data["skipped"] == [
        {
            "scenario": "target",
            "installer": "uv",
            "installer_version": "0.13.8",
            "python": PY,
            "backend": "privdrop",
            "mode": "relocated",
            "reason": "uv cannot express --target with --user",
        }
    ]


def test_equal_rows_give_equal_reports_whatever_their_order() -> None:
    backwards = list(reversed(ROWS))
    assert to_json(backwards) == to_json(ROWS)
    assert to_markdown(backwards, SCENARIOS, INSTALLERS) == to_markdown(ROWS, SCENARIOS, INSTALLERS)


def test_rows_without_run_facts_say_unknown_and_a_skipped_column_not_run() -> None:
    rows = [
        {"scenario": "a", "installer": "pip", "outcome": "user", "verdict": "passed"},
        {"scenario": "a", "installer": "uvv", "skipped": "program 'uvv' not found"},
    ]
    lines = terminal(rows, ["a"], ["pip", "uvv"])
    assert lines[:4] == [
        "installers: pip (version unknown), uvv (not run)",
        "python: unknown",
        "backend: unknown",
        "mode: unknown",
    ]
    assert lines[-1] == "  skip  a[uvv]: program 'uvv' not found"


def test_write_all_names_the_report_and_path_and_writes_the_others(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = blocker / "report.json"
    good = tmp_path / "out" / "matrix.md"
    errors = write_all([("JSON report", bad, "{}"), ("Markdown summary", good, "# m\n")])
    assert errors == [
        f"installperm: cannot write the JSON report to {bad}: {blocker} is not a directory"
    ]
    assert good.read_text() == "# m\n"
    assert [p.name for p in good.parent.iterdir()] == ["matrix.md"]


@pytest.mark.parametrize("rows", [[], ROWS[:1]])
def test_totals_line_for_no_results_and_all_ok(rows: list[dict[str, Any]]) -> None:
    line = next(x for x in terminal(rows, ["fallback"], ["pip"]) if x.startswith("totals: "))
    assert line == ("totals: no results" if not rows else "totals: 1 cell: 1 ok")


def test_a_report_that_cannot_be_written_fails_after_the_matrix(pytester: pytest.Pytester) -> None:
    """The table is printed, then one line per report naming it and the path; the
    other report is still written and the exit status is not 0."""
    out = pytester.mkdir("out")
    pytester.makepyfile(
        test_block=f"""
        import os

        def test_turn_the_report_directory_into_a_file():
            os.rmdir({str(out)!r})
            open({str(out)!r}, "w").close()
        """
    )
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--installperm",
        "--installperm-installer=pip",
        "-k",
        "fallback-to-user or test_turn",
        f"--installperm-report={out}/report.json",
        "--installperm-markdown=summary.md",
        "test_block.py",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = result.outlines
    table = next(i for i, line in enumerate(lines) if line.startswith("fallback-to-user "))
    assert lines[table].split() == ["fallback-to-user", "user", "ok"]
    error = lines.index(
        f"ERROR: installperm: cannot write the JSON report to {out}/report.json: "
        f"{out} is not a directory"
    )
    assert error > table
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    summary = (pytester.path / "summary.md").read_text()
    assert summary.startswith("## installperm matrix\n")
    assert "| `fallback-to-user` | user ok |" in summary
