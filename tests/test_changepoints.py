"""changepoints.py: the bisect view, computed from rows (made here, and from a
real matrix run of four pip releases), and shown in all three reports."""

from __future__ import annotations

import json
import random
import sys
from typing import Any

import pytest

from pytest_installperm import changepoints, report
from pytest_installperm.installers.pip import Pip

PY = "/usr/bin/python3.11 (3.11.2)"


def _row(scenario: str, version: str, outcome: str | None, message: str | None = None, **extra):
    row: dict[str, Any] = {
        "scenario": scenario,
        "installer": extra.pop("installer", f"pip=={version}"),
        "installer_version": version,
        "preset": extra.pop("preset", "pip"),
        "python": extra.pop("python", PY),
        "verdict": "passed",
        "agrees": True,
        "outcome": outcome,
        "expected": outcome,
        "message": message,
        **extra,
    }
    if outcome is None:
        row["skipped"] = "pip rejected its own command line"
    return row


def _changes(rows: list[dict[str, Any]]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    (family,) = changepoints.to_json(rows)
    return {
        s["scenario"]: [(c["version"], {k: c[k] for k in ("outcome", "message") if k in c})
                        for c in s["changes"]]
        for s in family["scenarios"]
    }  # fmt: skip


def test_versions_are_ordered_as_versions_not_as_text():
    rows = [_row("s", v, "user" if v in ("9.0.3", "10.0") else "error") for v in
            ("23.0.1", "10.0", "9.0.3", "23.0", "23.0.1rc1")]  # fmt: skip
    (family,) = changepoints.families(rows)
    assert [str(c.version) for c in family.columns] == ["9.0.3", "10.0", "23.0", "23.0.1rc1",
                                                        "23.0.1"]  # fmt: skip
    assert _changes(rows) == {"s": [("23.0", {"outcome": ["user", "error"]})]}


def test_outcome_message_and_skip_changes_each_counted_where_they_happen():
    rows = [
        _row("flip", "20.3.4", "user"),
        _row("flip", "21.1", "error", "E"),
        _row("flip", "25.3", "user"),  # back again: a second change
        _row("words", "20.3.4", "error", "EnvironmentError: [Errno 13]"),
        _row("words", "21.1", "error", "OSError: [Errno 13]"),
        _row("words", "25.3", "error", "OSError: [Errno 13]"),
        _row("option", "20.3.4", None),
        _row("option", "21.1", None),
        _row("option", "25.3", "system"),
        _row("same", "20.3.4", "system"),
        _row("same", "21.1", "system"),
        _row("same", "25.3", "system"),
    ]
    assert _changes(rows) == {
        "flip": [
            ("21.1", {"outcome": ["user", "error"], "message": [None, "E"]}),
            ("25.3", {"outcome": ["error", "user"], "message": ["E", None]}),
        ],
        "option": [("25.3", {"outcome": ["skip", "system"]})],
        "same": [],
        "words": [("21.1", {"message": ["EnvironmentError: [Errno 13]", "OSError: [Errno 13]"]})],
    }
    (family,) = changepoints.to_json(rows)
    firsts = {s["scenario"]: s["first_change"] for s in family["scenarios"]}
    assert firsts == {"flip": "21.1", "option": "25.3", "same": None, "words": "21.1"}


def test_families_by_preset_and_python_and_only_with_two_versions():
    rows = [
        _row("s", "0.4.30", "error", preset="uv", installer="uv==0.4.30"),
        _row("s", "0.13.9", "error", preset="uv", installer="uv==0.13.9"),
        _row("s", "26.3", "user", installer="pip"),
        _row("s", "26.3", "user", installer="pip==26.3"),  # one version: no view
        _row("s", "25.3", "user", python="/py3.12 (3.12.1)", installer="pip==25.3@/py3.12"),
        _row("s", "26.3", "error", python="/py3.12 (3.12.1)", installer="pip==26.3@/py3.12"),
        _row("s", "dev", "user", installer="pipsrc"),  # no version: left out
        _row("s", "1.0", "user", preset=None, installer="mine"),  # no preset: left out
    ]
    found = [(f.preset, f.python, [c.installer for c in f.columns])
             for f in changepoints.families(rows)]  # fmt: skip
    assert found == [
        ("pip", "/py3.12 (3.12.1)", ["pip==25.3@/py3.12", "pip==26.3@/py3.12"]),
        ("uv", PY, ["uv==0.4.30", "uv==0.13.9"]),
    ]


def test_the_view_is_the_same_whatever_order_rows_arrive_in():
    rows = [_row(s, v, o) for s in ("b", "a") for v, o in
            (("23.0", "error"), ("22.3.1", "system"), ("25.3", "error"))]  # fmt: skip
    views = set()
    for seed in range(5):
        random.Random(seed).shuffle(rows)
        views.add((json.dumps(changepoints.to_json(rows)), "\n".join(changepoints.terminal(rows))))
    assert len(views) == 1
    ((data, text),) = views
    assert [s["scenario"] for s in json.loads(data)[0]["scenarios"]] == ["a", "b"]
    assert text.splitlines()[1] == f"Bisect, pip on {PY}: 22.3.1 < 23.0 < 25.3"


def test_key_message_is_what_the_known_messages_matched_in_that_releases_words():
    root = "/dev/shm/installperm-x/sandbox-1"
    output = (
        "Processing ./demo-1.0-py3-none-any.whl\n"
        "ERROR: Could not install packages due to an EnvironmentError: [Errno 13] "
        f"Permission denied: '{root}/prefix/lib/python3.11/site-packages/demo'\n"
        "Consider using the `--user` option or check the permissions.\n"
    )
    old = changepoints.key_message(output, Pip().messages_for("20.3.4"), root)
    assert old == (
        "EnvironmentError: [Errno 13] Permission denied: "
        "'<path>' / Consider using the `--user` option or check the permissions"
    )
    # pip 26.3's words do not match 20.3.4's output: its first error line stands in.
    assert changepoints.key_message(output, Pip().messages_for("26.3"), root) == (
        "ERROR: Could not install packages due to an EnvironmentError: [Errno 13] "
        "Permission denied: '<path>'"
    )
    # which file was hit first, and uv's temporary names, are not the wording
    uv = (
        f"error: failed to create directory `{root}/prefix/lib/python3.11/site-packages/"
        ".tmp5Hw6gm`: Permission denied (os error 13)\n"
    )
    assert changepoints.key_message(uv, {}, root) == (
        "error: failed to create directory `<path>`: Permission denied (os error 13)"
    )
    assert (
        changepoints.key_message("Successfully installed demo-1.0\n", Pip().messages, root) is None
    )


def test_terminal_and_markdown_show_the_first_change_of_each_scenario():
    rows = [_row("pep668-marker", "22.3.1", "system"),
            _row("pep668-marker", "23.0", "error", "error: externally-managed-environment"),
            _row("system-writable", "22.3.1", "system"),
            _row("system-writable", "23.0", "system")]  # fmt: skip
    names = ["pip==22.3.1", "pip==23.0"]
    text = report.terminal(rows, ["pep668-marker", "system-writable"], names)
    at = text.index(f"Bisect, pip on {PY}: 22.3.1 < 23.0")
    assert text[at + 1 :] == [
        "  pep668-marker: first change at 23.0 (pip==23.0): outcome 'system' -> 'error'; "
        "message (none) -> 'error: externally-managed-environment'",
        "  unchanged (1): system-writable",
    ]
    md = report.to_markdown(rows, ["pep668-marker", "system-writable"], names)
    assert "| `pep668-marker` | 23.0 | 23.0 (pip==23.0): outcome 'system' -\\> 'error'" in md
    assert "| `system-writable` | none | - |" in md
    assert json.loads(report.to_json(rows))["bisect"] == changepoints.to_json(rows)


@pytest.mark.skipif(
    sys.version_info >= (3, 12),
    reason="pip 20.3.4 and 21.x cannot run on Python 3.12 and later (distutils, "
    "pkgutil.ImpImporter): see test_releases",
)
def test_a_real_matrix_of_four_releases_bisects_where_pips_rules_changed(pytester):
    """Given out of order; pip's words changed at 21.0.1 (EnvironmentError ->
    OSError) and 21.1 (no --user hint in a venv), its outcome at 25.3."""
    pytester.makeini("[pytest]\n")
    scenarios = ("venv-locked", "user-flag-user-site-disabled", "system-writable")
    result = pytester.runpytest(
        "--installperm",
        *(f"--installperm-installer=pip=={v}" for v in ("25.3", "21.1", "20.3.4", "25.2")),
        "--installperm-report=report.json",
        "-k",
        " or ".join(scenarios),
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    (family,) = json.loads((pytester.path / "report.json").read_text())["bisect"]
    assert [v["version"] for v in family["versions"]] == ["20.3.4", "21.1", "25.2", "25.3"]
    by_name = {s["scenario"]: s for s in family["scenarios"]}
    assert sorted(by_name) == sorted(scenarios)
    assert by_name["system-writable"] == {
        "scenario": "system-writable", "first_change": None, "changes": []}  # fmt: skip
    (venv,) = by_name["venv-locked"]["changes"]  # both words changed between 20.3.4 and 21.1
    assert (venv["version"], "outcome" in venv) == ("21.1", False)
    before, after = venv["message"]
    assert "EnvironmentError" in before and "Consider using the `--user`" in before, before
    assert "OSError" in after and "Check the permissions" in after, after
    (flag,) = by_name["user-flag-user-site-disabled"]["changes"]
    assert (flag["version"], flag["outcome"]) == ("25.3", ["user", "error"])
    assert "User site-packages are disabled" in flag["message"][1]
    summary = result.stdout.str()
    assert "Bisect, pip on " in summary and ": 20.3.4 < 21.1 < 25.2 < 25.3" in summary
    assert "  user-flag-user-site-disabled: first change at 25.3 (pip==25.3): " in summary
