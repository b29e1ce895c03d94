"""``pytest --installperm``: the verdict logic, the installers, the reports, and
the whole matrix run for real (pip and uv, as root and as a normal user).

Cost: the full pip + uv matrix runs once, serially, in a fresh directory
(``full_run``); every check of its results shares that run. ``-n 2`` reruns a
subset; the non-root run is pip alone. Everything else runs one pip install at
most, or none.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_installperm import oracle
from pytest_installperm.installers import Context, TemplateInstaller, Unsupported, parse
from pytest_installperm.installers.pip import Pip
from pytest_installperm.installers.uv import Uv
from pytest_installperm.matrix import CellExpectation, classify, expectation, judge
from pytest_installperm.matrix.hooks import longest_first
from pytest_installperm.report import FIELDS, to_json, to_markdown
from pytest_installperm.scenarios import OUTCOMES, Request, load_all

BUILTIN = {s.name: s for s in load_all()}
PEP668 = sorted(n for n, s in BUILTIN.items() if s.environment.externally_managed)


# ---------------------------------------------------------------------------
# pure parts
# ---------------------------------------------------------------------------


def test_classify_reads_the_outcome_from_where_the_files_landed():
    a, b = Path("/s/user/a"), Path("/s/user/b")
    system = [Path("/s/sys/a"), Path("/s/sys/b")]
    placement = classify(0, frozenset({a, b}), {"user": [a, b], "system": system})
    assert placement.outcome == "user"
    assert placement.missing("user") == []
    assert classify(1, frozenset({a, b}), {"user": [a, b]}).outcome == "error"
    nothing = classify(0, frozenset(), {"user": [a, b]})
    assert nothing.outcome == "error"
    assert not nothing.landed


def _exp(outcome="user", *, pip="user", declared=None, breaks=None, check=False):
    return CellExpectation(outcome, pip, "fallback", declared, breaks or {}, check)


def _judge(exp, *, landed=("user",), returncode=0, residue=(), outside=(), output=""):
    paths = {"user": [Path("/u/a")], "system": [Path("/s/a")]}
    written = frozenset(p for name in landed for p in paths[name])
    placement = classify(returncode, written, paths)
    return judge(
        exp,
        placement,
        output=output,
        returncode=returncode,
        residue=list(residue),
        outside=list(outside),
        messages=Pip.messages,
    )


def test_judge_agreement_passes_and_divergence_fails_unless_declared():
    assert _judge(_exp()).status == "passed"
    diverged = _judge(_exp(), landed=(), returncode=1)
    assert diverged.status == "failed"
    assert "outcome 'error', expected 'user'" in diverged.undeclared[0]
    declared = _judge(_exp(declared=("error", "no user scheme")), landed=(), returncode=1)
    assert declared.status == "xfailed"
    assert "no user scheme" in declared.declared[0]


def test_judge_fails_a_declaration_that_no_longer_happens():
    stale = _judge(_exp(declared=("error", "no user scheme")))
    assert stale.status == "failed"
    assert "did not happen" in stale.undeclared[0]


def test_judge_checks_each_invariant_and_known_breaks():
    spread = _judge(_exp(), landed=("user", "system"))
    assert spread.broken == ["one-scheme"]
    assert "spread over several schemes" in spread.undeclared[0]
    leftovers = _judge(
        _exp("error", pip="error"),
        landed=(),
        returncode=1,
        residue=["prefix/x"],
        outside=["../etc/x"],
    )
    assert sorted(leftovers.broken) == ["outside", "residue"]
    assert leftovers.status == "failed"
    known = _judge(
        _exp("error", pip="error", breaks={"residue": "no rollback"}),
        landed=(),
        returncode=1,
        residue=["prefix/x"],
    )
    assert known.status == "xfailed"
    unbroken = _judge(_exp(breaks={"residue": "no rollback"}))
    assert "declared broken" in unbroken.undeclared[0]


def test_judge_checks_pip_message_when_pip_is_expected():
    missing = _judge(_exp(check=True), output="Successfully installed demo-1.0")
    assert "message 'fallback' is missing" in missing.undeclared[0]
    said = _judge(
        _exp(check=True),
        output="Defaulting to user installation because normal site-packages is not writeable",
    )
    assert said.status == "passed"


def test_expectations_come_from_the_oracle_presets_and_declarations():
    fallback = BUILTIN["fallback-to-user"]
    assert expectation(fallback, Pip(), {}).outcome == "user"
    uv = expectation(fallback, Uv(), {})
    assert uv.outcome == "user"
    assert uv.declared is not None
    assert uv.declared[0] == "error"
    assert "pip's `--user` is unsupported" in uv.declared[1]
    assert expectation(BUILTIN["pep668-marker"], Uv(), {}).declared is None
    ini = expectation(BUILTIN["system-writable"], Pip(), {("pip", "system-writable"): "why"})
    assert ini.declared == (None, "why")
    installer = expectation(BUILTIN["pep668-marker"], parse("installer"), {})
    assert installer.declared is not None
    assert installer.declared[0] == "system"
    assert expectation(BUILTIN["pep668-locked-system"], parse("installer"), {}).declared is None


CTX = Context(
    Path("/py"), Path("/w/demo.whl"), Path("/p"), Path("/t"), Path("/r"), Path("/h"), "system"
)


def test_presets_translate_requests_or_say_why_they_cannot():
    pip = Pip().command(Request(user=True, upgrade=True), CTX)
    assert not isinstance(pip, Unsupported)
    assert [str(a) for a in pip.argv] == [
        "/py",
        "-m",
        "pip",
        "install",
        "--user",
        "--upgrade",
        "/w/demo.whl",
    ]
    env = Pip().command(Request(user=True, user_via="env"), CTX)
    assert not isinstance(env, Unsupported)
    assert env.env == {"PIP_USER": "1"}
    uv = Uv().command(Request(target=True), CTX)
    assert not isinstance(uv, Unsupported)
    assert [str(a) for a in uv.argv] == [
        "uv",
        "pip",
        "install",
        "--python",
        "/py",
        "--system",
        "--target",
        "/t",
        "/w/demo.whl",
    ]
    refused = Uv().command(Request(user=True), CTX)
    assert isinstance(refused, Unsupported)
    assert "uv cannot express --user" in refused.reason
    assert isinstance(parse("installer").command(Request(target=True), CTX), Unsupported)


def test_xdist_workers_are_handed_the_costliest_installers_cells_first():
    pip, uv, mine = Pip(), Uv(), parse("mine={python} -m pip install {flags} {wheel}")
    assert uv.weight < pip.weight == mine.weight
    cells = [
        SimpleNamespace(installer=i, nodeid=f"{s}[{i.name}]")
        for s in ("a", "b", "c")
        for i in (uv, pip, mine)
    ]
    assert [c.nodeid for c in longest_first(cells)] == [
        "a[pip]",
        "a[mine]",
        "b[pip]",
        "b[mine]",
        "c[pip]",
        "c[mine]",
        "a[uv]",
        "b[uv]",
        "c[uv]",
    ]


def test_templates_expand_placeholders_and_skip_what_they_cannot_say():
    mine = parse("mine={python} -m pip install {flags} --no-index {wheel}")
    assert isinstance(mine, TemplateInstaller)
    command = mine.command(Request(prefix=True), CTX)
    assert not isinstance(command, Unsupported)
    assert [str(a) for a in command.argv] == [
        "/py",
        "-m",
        "pip",
        "install",
        "--prefix",
        "/p",
        "--no-index",
        "/w/demo.whl",
    ]
    plain = parse("plain=tool --into {prefix} {wheel}")
    assert isinstance(plain.command(Request(user=True), CTX), Unsupported)
    assert not isinstance(plain.command(Request(), CTX), Unsupported)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "poetri",
            "unknown preset 'poetri'; presets are hatch, installer, pdm, pip, pipx, poetry, uv",
        ),
        ("mine=tool install", "has no {wheel} placeholder"),
        ("mine=tool {wheels}", "unknown placeholder {wheels}"),
        ("mine=tool --x={flags} {wheel}", "{flags} must be a whole argument"),
        ("bad name=tool {wheel}", "must be letters"),
    ],
)
def test_bad_installer_specs_are_usage_errors(spec, message):
    with pytest.raises(pytest.UsageError) as info:
        parse(spec)
    assert message in str(info.value)


ROWS: list[dict[str, Any]] = [
    {
        "scenario": "b",
        "installer": "uv",
        "outcome": "error",
        "expected": "user",
        "agrees": False,
        "returncode": 2,
        "residue": [],
        "outside": [],
        "verdict": "xfailed",
        "broken": [],
        "declared": "why",
    },
    {
        "scenario": "a",
        "installer": "pip",
        "outcome": "user",
        "expected": "user",
        "agrees": True,
        "returncode": 0,
        "residue": [],
        "outside": [],
        "verdict": "passed",
        "broken": [],
        "declared": None,
    },
    {"scenario": "a", "installer": "uv", "skipped": "cannot express --user"},
]


def test_json_report_is_sorted_and_keeps_skips_apart():
    data = json.loads(to_json(ROWS))
    assert data["version"] == 2
    assert [(r["scenario"], r["installer"]) for r in data["results"]] == [("a", "pip"), ("b", "uv")]
    assert all(list(r)[: len(FIELDS)] == list(FIELDS) for r in data["results"])
    assert [{k: r[k] for k in ("scenario", "installer", "reason")} for r in data["skipped"]] == [
        {"scenario": "a", "installer": "uv", "reason": "cannot express --user"}
    ]


def test_markdown_table_has_a_row_per_scenario_and_a_column_per_installer():
    text = to_markdown(ROWS, ["a", "b"], ["pip", "uv"])
    lines = text.splitlines()
    header = lines.index("| scenario | pip | uv |")
    assert lines[header + 2] == "| `a` | user ok | skip |"
    assert lines[header + 3] == "| `b` | - | error xfail |"


# ---------------------------------------------------------------------------
# the real thing
# ---------------------------------------------------------------------------


def _pytest(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The README's matrix for pip and uv, once, serially, in a fresh directory.

    The directory holds a failing test of its own: without explicit paths,
    ``--installperm`` must run the matrix only.
    """
    work = tmp_path_factory.mktemp("matrix")
    (work / "test_own.py").write_text("def test_own_must_not_run():\n    assert False\n")
    done = _pytest(
        work,
        "--installperm",
        "--installperm-installer=pip",
        "--installperm-installer=uv",
        "--installperm-report=report.json",
        "--installperm-markdown=matrix.md",
        "-rfEx",
    )
    report = json.loads((work / "report.json").read_text())
    return {
        "proc": done,
        "report": report,
        "markdown": (work / "matrix.md").read_text(),
        "rows": {(r["scenario"], r["installer"]): r for r in report["results"]},
        "skipped": {(r["scenario"], r["installer"]): r["reason"] for r in report["skipped"]},
    }


def test_real_pip_agrees_with_the_oracle_on_every_builtin_scenario(full_run):
    rows, skipped = full_run["rows"], full_run["skipped"]
    disagreements = []
    for name, scenario in sorted(BUILTIN.items()):
        if (name, "pip") in skipped:
            # Only a lock no backend can make real may skip, with the engine's reason.
            assert scenario.environment.lock_mode == "readonly-fs", skipped[(name, "pip")]
            continue
        row = rows[(name, "pip")]
        decided = oracle.decide(scenario)
        known = scenario.installers.get("pip")
        allowed = {"passed"} | ({"xfailed"} if known is not None and known.breaks else set())
        if row["outcome"] != decided.outcome or row["verdict"] not in allowed:
            disagreements.append(f"{name}: real pip {row}, oracle {decided}")
    assert not disagreements, "\n".join(disagreements)
    assert (("erofs-fallback", "pip") in skipped) == (("erofs-no-user", "pip") in skipped)


def test_uv_fails_where_pip_falls_back_in_its_own_words(full_run):
    row = full_run["rows"][("fallback-to-user", "uv")]
    assert (row["outcome"], row["expected"], row["agrees"]) == ("error", "user", False)
    assert row["verdict"] == "xfailed"
    assert full_run["rows"][("fallback-to-user", "pip")]["outcome"] == "user"
    (line,) = [
        ln
        for ln in full_run["proc"].stdout.splitlines()
        if ln.startswith("XFAIL") and "fallback-to-user[uv]" in ln
    ]
    assert "Permission denied (os error 13)" in line
    assert "declared divergence: outcome 'error', expected 'user'" in line
    assert "known invariant break" not in line


def test_uv_agrees_with_pip_on_pep668(full_run):
    compared = 0
    for name in PEP668:
        if (name, "uv") in full_run["skipped"]:
            assert "uv cannot express" in full_run["skipped"][(name, "uv")]
            continue
        row = full_run["rows"][(name, "uv")]
        assert row["agrees"], row
        assert row["outcome"] == full_run["rows"][(name, "pip")]["outcome"]
        compared += 1
    # Skips alone must not make this pass: uv can express most PEP 668 requests.
    assert compared >= 3, f"only {compared} PEP 668 scenarios ran for uv"


def test_every_invariant_is_evaluated_for_uv_and_its_breaks_are_reported(full_run):
    uv_rows = {k[0]: r for k, r in full_run["rows"].items() if k[1] == "uv"}
    assert all(isinstance(r["broken"], list) for r in uv_rows.values())
    broken = {name: r["broken"] for name, r in uv_rows.items() if r["broken"]}
    # uv 0.13.8 writes site-packages, then fails on the locked scripts directory
    # and keeps what it wrote, like pip: the break is declared in the scenario
    # file for both, so the item is an xfail that still reports the break.
    assert broken == {"scripts-only-lock": ["residue"]}
    assert uv_rows["scripts-only-lock"]["verdict"] == "xfailed"
    assert "scripts-only-lock[uv]: known invariant break (residue): " in full_run["proc"].stdout
    (xfail,) = [
        ln
        for ln in full_run["proc"].stdout.splitlines()
        if ln.startswith("XFAIL") and "scripts-only-lock[uv]" in ln
    ]
    assert "known invariant break (residue): failed and left residue" in xfail
    assert "declared divergence" not in xfail
    assert full_run["proc"].returncode == 0, full_run["proc"].stdout[-3000:]
    assert "FAILED " not in full_run["proc"].stdout


def test_rows_say_what_ran_where_and_why_a_cell_is_not_ok(full_run, installperm):
    """Every row names the installer's version (asked inside the sandbox), the
    interpreter, the backend and the mode; every non-ok cell has a reason."""
    rows = [*full_run["report"]["results"]]
    versions = {r["installer"]: r["installer_version"] for r in rows}
    assert versions == {
        "pip": importlib.metadata.version("pip"),
        "uv": importlib.metadata.version("uv"),
    }
    base = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    # The matrix's system cells run in the mode a fixture user gets on this
    # interpreter (auto: in place only where every scheme directory can be
    # replaced); venvs are relocated.
    system_mode = installperm.system(locked=()).mode
    assert system_mode.name in ("in-place", "relocated") and system_mode.reason
    for row in rows:
        assert row["python"] == f"{base} ({platform.python_version()})"
        assert row["backend"] in ("chmod", "privdrop", "mountns")
        kind = BUILTIN[row["scenario"]].environment.kind
        assert row["mode"] == (system_mode.name if kind == "system" else "relocated"), row
        assert (row["reason"] is None) == (row["verdict"] == "passed"), row
        assert row["excerpt"] is None  # no failing row
    fallback = full_run["rows"][("fallback-to-user", "uv")]
    assert fallback["reason"].startswith("declared divergence: ")
    for (name, installer), reason in full_run["skipped"].items():
        assert reason, (name, installer)


def test_report_fields_matrix_and_markdown(full_run):
    report = full_run["report"]
    keys = [(r["scenario"], r["installer"]) for r in report["results"]]
    assert keys == sorted(keys)
    for row in report["results"]:
        assert set(FIELDS) <= set(row)
        assert row["outcome"] in OUTCOMES
        assert row["agrees"] == (row["outcome"] == row["expected"])
    assert len(report["results"]) + len(report["skipped"]) == 2 * len(BUILTIN)
    out = full_run["proc"].stdout
    assert "installperm matrix" in out
    header = [ln for ln in out.splitlines() if ln.startswith("scenario ")]
    assert header
    assert header[0].split() == ["scenario", "pip", "uv"]
    assert "test_own_must_not_run" not in out
    assert full_run["markdown"].startswith("## installperm matrix\n")
    assert "\n| scenario | pip | uv |\n" in full_run["markdown"]
    assert "| `fallback-to-user` | user ok | error xfail |" in full_run["markdown"]


SUBSET_NAMES = ("fallback-to-user", "pep668-marker", "scripts-only-lock")
SUBSET = " or ".join(SUBSET_NAMES)


def test_xdist_gives_the_same_results_and_one_report(full_run, tmp_path):
    done = _pytest(
        tmp_path,
        "--installperm",
        "--installperm-installer=pip",
        "--installperm-installer=uv",
        "--installperm-report=report.json",
        "-n",
        "2",
        "-k",
        SUBSET,
    )
    assert "installperm matrix" in done.stdout, done.stdout[-3000:]
    assert done.stdout.count("installperm matrix") == 1
    report = json.loads((tmp_path / "report.json").read_text())
    parallel = {(r["scenario"], r["installer"]): r for r in report["results"]}
    assert len(parallel) == 6
    serial = {k: full_run["rows"][k] for k in parallel}
    assert parallel == serial
    skipped = {(r["scenario"], r["installer"]): r["reason"] for r in report["skipped"]}
    assert skipped == {k: v for k, v in full_run["skipped"].items() if k[0] in SUBSET_NAMES}
    assert [(r["scenario"], r["installer"]) for r in report["results"]] == sorted(parallel)


# ---------------------------------------------------------------------------
# bad input, collection, declarations (one pip run each at most)
# ---------------------------------------------------------------------------


def test_unknown_preset_is_a_usage_error_listing_presets(pytester):
    result = pytester.runpytest("--installperm", "--installperm-installer=poetri")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*unknown preset 'poetri'; presets are hatch, installer, pdm, pip, pipx, poetry, uv*"]
    )


def test_template_without_wheel_is_refused_at_startup(pytester):
    result = pytester.runpytest("--installperm", "--installperm-installer=mine=tool install")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no {wheel} placeholder*"])


def test_a_missing_requested_installer_fails_the_session_with_the_reason(pytester):
    """A typo (``uvv``) must not give a green run of skips."""
    result = pytester.runpytest(
        "--installperm", "--installperm-installer=uvv=uvv pip install {wheel}"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: installer 'uvv': program 'uvv' was not found on PATH; an installer "
            "asked for by name must run (fix the name or install it), or mark it "
            "--installperm-installer-optional=uvv to skip its column instead"
        ]
    )
    assert "installperm matrix" not in result.stdout.str()


def test_an_optional_missing_installer_skips_its_column_with_the_reason(pytester):
    pytester.makeini("[pytest]\ninstallperm_installer_optional = ghost\n")
    result = pytester.runpytest(
        "--installperm",
        "--installperm-installer=uv",
        "--installperm-installer=ghost=ghost-install {wheel}",
        "-k",
        "system-writable",
        "-rs",
    )
    result.assert_outcomes(passed=1, skipped=1)
    # The skip names the scenario file, not the plugin's own line.
    scenario = BUILTIN["system-writable"].path
    items = 2 * len(BUILTIN)  # two installers, every built-in scenario
    result.stdout.fnmatch_lines(
        [
            f"collected {items} items / {items - 2} deselected / 2 selected",
            f"SKIPPED [[]1[]] *{scenario.name}:1: installer 'ghost': program 'ghost-install' "
            "was not found on PATH",
            "*installperm matrix*",
            "system-writable*system ok*skip*",
        ]
    )


def test_optional_must_name_an_installer_under_test(pytester):
    result = pytester.runpytest(
        "--installperm", "--installperm-installer=uv", "--installperm-installer-optional=uvv"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --installperm-installer-optional='uvv': no installer under test has "
            "that name; the installers are uv"
        ]
    )


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (
            "badpip=pip:{python} -m pip install --no-such-option {flags} {wheel}",
            "no such option: --no-such-option",
        ),
        (
            "baduv=uv:uv pip install --no-such-option --python {python} --system {wheel}",
            "error: unexpected argument '--no-such-option' found",
        ),
    ],
)
def test_a_usage_error_is_a_skip_with_the_installers_words(pytester, spec, words):
    """An installer that rejects its own command line says nothing about
    permissions: never a pass, never an xfail (``fallback-to-user`` would be an
    expected ``error`` for uv)."""
    result = pytester.runpytest(
        "--installperm",
        f"--installperm-installer={spec}",
        "--installperm-report=report.json",
        "-k",
        "system-writable or fallback-to-user",
        "-rs",
    )
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        [
            f"SKIPPED*rejected its own command line (a usage error, exit status 2, not an "
            f"outcome): {words}*"
        ]
    )
    report = json.loads((pytester.path / "report.json").read_text())
    assert report["results"] == []
    assert len(report["skipped"]) == 2


def test_an_expected_divergence_is_reported_by_its_reason_without_a_traceback(pytester):
    # A plugin, not a conftest: the matrix's items live beside their scenario files.
    pytester.makepyfile(
        longrepr="""
        from pathlib import Path

        def pytest_runtest_logreport(report):
            if getattr(report, "wasxfail", None):
                Path("longrepr.txt").write_text(str(report.longrepr))
        """
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "longrepr",
        "--installperm",
        "--installperm-installer=pip",
        "-k",
        "scripts-only-lock",
        "-rx",
    )
    result.assert_outcomes(xfailed=1)
    reason = "known invariant break (residue): failed and left residue: *pypa/pip#11535*"
    result.stdout.fnmatch_lines([f"XFAIL*scripts-only-lock*{reason}"])
    longrepr = (pytester.path / "longrepr.txt").read_text()
    assert fnmatch.fnmatch(longrepr, reason), longrepr
    assert "Traceback" not in longrepr and "item.py" not in longrepr


def test_malformed_scenario_in_an_extra_directory_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\ninstallperm_scenarios = mine\n")
    (pytester.path / "mine").mkdir()
    bad = pytester.path / "mine" / "broken.toml"
    bad.write_text('name = "broken"\ndescription = "x"\n[request]\nuser = "yes"\n')
    result = pytester.runpytest("--installperm")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*ScenarioError: {bad}: key 'request.user' must be a bool*"])


def test_explicit_paths_run_both_and_no_paths_run_the_matrix_only(pytester):
    pytester.makepyfile(test_own="def test_own():\n    pass\n")
    both = pytester.runpytest("--installperm", "--collect-only", "-q", "test_own.py")
    both.stdout.fnmatch_lines(["test_own.py::test_own", "installperm::fallback-to-user[[]pip]"])
    alone = pytester.runpytest("--installperm", "--collect-only", "-q")
    assert "test_own" not in alone.stdout.str()
    alone.stdout.fnmatch_lines(["installperm::venv-user[[]pip]"])
    plain = pytester.runpytest("--collect-only", "-q")
    assert "installperm::" not in plain.stdout.str()


def test_ini_mirrors_turn_the_matrix_on_and_choose_installers(pytester):
    pytester.makeini(
        "[pytest]\ninstallperm = true\ninstallperm_installer =\n    uv\n    installer\n"
    )
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(
        ["installperm::erofs-fallback[[]uv]", "installperm::erofs-fallback[[]installer]"]
    )
    assert "[pip]" not in result.stdout.str()


def test_an_own_expectation_can_fail_and_a_declaration_must_hold(pytester):
    """Items can fail: a repo's scenario expecting something else, and an ini
    declaration of a divergence that does not happen (a template on uv, for speed)."""
    pytester.makeini(
        textwrap.dedent("""
        [pytest]
        installperm_scenarios = mine
        installperm_divergences =
            mine system-writable: pretend it differs here
    """)
    )
    (pytester.path / "mine").mkdir()
    (pytester.path / "mine" / "mine-expects-user.toml").write_text(
        textwrap.dedent("""
        name = "mine-expects-user"
        description = "a writable system site, yet this repo's installer should go user"
        [environment]
        locked = []
        [installer.mine]
        outcome = "user"
    """)
    )
    result = pytester.runpytest(
        "--installperm",
        "--installperm-installer=mine=uv pip install --python {python} --system {wheel}",
        "-k",
        "mine-expects-user or system-writable",
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["*outcome 'system', expected 'user'*", "*declared divergence did not happen*"]
    )


# ---------------------------------------------------------------------------
# as a normal user
# ---------------------------------------------------------------------------


def matrix_cells(stdout: str) -> dict[str, list[str]]:
    """The terminal matrix read back: scenario -> cells ("user ok", "skip", ...)."""
    lines = stdout.split("installperm matrix", 1)[-1].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("scenario "))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if line.startswith("ok = "):
            break
        name, *tokens = line.split()
        cells, i = [], 0
        while i < len(tokens):
            width = 1 if tokens[i] in ("skip", "-") else 2
            cells.append(" ".join(tokens[i : i + width]))
            i += width
        rows[name] = cells
    return rows


def test_pip_matrix_passes_as_a_normal_user(unprivileged):
    run = unprivileged.runpytest(
        "def test_inner():\n    pass\n", "--installperm", "--installperm-installer=pip"
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    cells = matrix_cells(run.stdout)
    assert set(cells) == set(BUILTIN)
    marks = {name: row[0].split()[-1] for name, row in cells.items()}
    assert set(marks.values()) <= {"ok", "xINV", "skip"}, marks
    outcomes = run.outcomes()
    assert outcomes.get("failed", 0) == 0
    # All scenarios ran or skipped with a reason, plus the inner test itself.
    ran = sum(outcomes.get(k, 0) for k in ("passed", "xfailed", "skipped"))
    assert ran == len(BUILTIN) + 1
    assert cells["fallback-to-user"] == ["user ok"]
    # pip's known break (residue after a scripts-only lock) is a defect, not a choice.
    assert [n for n, m in marks.items() if m == "xINV"] == ["scripts-only-lock"]
