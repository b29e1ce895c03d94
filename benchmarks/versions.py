"""The scenario matrix against many pip and uv releases, written to docs/versions.md.

    .venv/bin/python benchmarks/versions.py                   # every release below
    .venv/bin/python benchmarks/versions.py --pip 23.0 23.0.1 --uv   # some pip, no uv

Each release is fetched once (``--installperm-installer=pip==X``: the host's
own pip downloads it from its configured index into the shared release cache)
and judged by its own rules. One pytest session per installer family runs every
release side by side, so the table reads across releases like a bisect: the
section "Where the outcomes or key messages change" is the report's bisect view
(per scenario, the releases at which its outcome or key message moved). The
run is green when every cell agrees or is a declared divergence with its reason;
the exit status says whether it was.

Too slow for CI (tens of releases, 30 scenarios each): its output is committed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: At least one release of each line, more where pip's rules changed.
PIP = (
    "20.0.2", "20.1", "20.3.4", "21.0.1", "21.1", "21.3.1", "22.0.4", "22.3.1",
    "23.0", "23.0.1", "23.3.2", "24.0", "24.3.1", "25.0.1", "25.2", "25.3",
    "26.0.1", "26.1", "26.2", "26.3",
)  # fmt: skip
#: The last release of every minor line from 0.2 to the newest.
UV = (
    "0.2.37", "0.3.5", "0.4.30", "0.5.31", "0.6.17", "0.7.22", "0.8.24", "0.9.30",
    "0.10.12", "0.11.33", "0.12.24", "0.13.8", "0.13.9",
)  # fmt: skip
#: The part of docs/versions.md that is not generated.
USAGE = """\
`--installperm-installer` takes, besides a preset (`pip`, `uv`, `installer`) and a
template (`NAME=TEMPLATE`), a preset at a release or from a path; several side by side:

    pytest --installperm --installperm-installer=pip==23.0 --installperm-installer=pip==23.0.1
    pytest --installperm --installperm-installer=uv==0.4.30 --installperm-installer=uv
    pytest --installperm --installperm-installer=pip@../pip     # a checkout (src/pip)

- `NAME==VERSION`: that release's wheel, downloaded by this machine's own pip
  (`python -m pip download --no-deps --only-binary=:all:`, so its configuration files
  and `PIP_*` variables choose the index) once, into a cache shared by all sessions:
  `/var/cache/pytest-installperm` as root (root-owned, 0755: the dropped uid reads it,
  never writes it), else `$XDG_CACHE_HOME/pytest-installperm` (default
  `~/.cache/pytest-installperm`). Downloads run under a lock and land by an atomic
  rename. The wheel's sha256 is recorded at download and checked on every use; a
  wheel that no longer matches is fetched again, and refused (naming it) if the index
  serves other bytes or cannot be reached.
- `NAME@PATH`: a wheel, an unpacked tree (a directory holding `NAME/`), a source
  checkout (`src/NAME`), an environment where the package is installed, editable
  installs included (their `direct_url.json` names the source tree), or a program
  (uv's binary).
- The sandbox runs a read-only, per-session copy of exactly that code (pip and
  installer through `PYTHONPATH`, ahead of the preinstalled pip; uv's own binary),
  readable by the dropped uid. The plain `pip` and `uv` are the ones installed with
  the plugin.
- The version that ran is asked from the installer inside the sandbox and reported
  (`installer_version` in every JSON row). A pip release is judged by its own rules
  (`oracle.decide(scenario, version)`; each change of pip's rules is listed in
  `oracle.CHANGES` with its release and reference, and proved against the releases on
  both sides of it in `tests/test_versions.py`). On Debian's interpreters,
  `--prefix DIR` cells expect the layout of the release that ran: pip 26.3 maps
  Debian's `posix_local` to `posix_prefix` (`DIR/lib/python3.X/site-packages`,
  `DIR/bin`); older releases write `DIR/local/lib/python3.X/dist-packages` and
  `DIR/local/bin` (the session's scheme probe reads both layouts).
- Bad input fails the session with a usage error naming it: a version that is not
  PEP 440 (`pip==NOPE`), a release the index does not have, an index that cannot be
  reached, a corrupt cached wheel, a path that is not an installer. A release whose
  `Requires-Python` excludes the interpreter under test skips its cells with the
  reason; so does one that cannot run there although its metadata admits it (pip
  20.x imports `distutils`, pip 21.3 to 23.0.1 `pkgutil.ImpImporter`, both gone in
  Python 3.12): before its first cell on an interpreter, the release is asked for
  its version and to run its smoke command (pip: `pip list`, which imports what an
  install does), inside a sandbox of that interpreter as the child runs; a failure
  skips every cell of that release there, naming the release, the interpreter and
  the installer's last words. An installer that rejects its own
  command line (uv before 0.2.4 refuses `--python` with `--system`; pip before
  23.0.1 has no `--break-system-packages`) skips the cell with its own words: a usage
  error is never an outcome.
- uv's command line by release is a table in its preset (`UV_CHANGES` in
  `installers/uv.py`, each change with its release and reference, proved on the
  releases both sides of it in `tests/test_versions.py`): `--python` together with
  `--system` from 0.2.4, `--prefix` from 0.2.10. A usage error the table expects is
  a skip that cites it; one it does not expect, or a missing one it does, fails the
  cell: the preset's knowledge of that release is wrong.

## Bisect view

With two versions or more of one installer on one base interpreter (for
example `--installperm-installer=pip==22.3.1 --installperm-installer=pip==23.0
--installperm-installer=pip==23.0.1 --installperm-installer=pip==25.3`), the
terminal summary, the Markdown summary (`### Bisect: ...`) and the JSON report
(`bisect`, documented in `scenarios.md`) show for each scenario the first
version at which its outcome or its key message changed, and every later
change:

    Bisect, pip on /usr/bin/python3.11 (3.11.2): 22.3.1 < 23.0 < 23.0.1 < 25.3
      pep668-break-system-packages: first change at 23.0.1 (pip==23.0.1): outcome 'skip' -> 'system'
      pep668-marker: first change at 23.0 (pip==23.0): outcome 'system' -> 'error'; message ...
      unchanged (25): erofs-fallback, ...

- Columns are grouped by preset (a template that inherits `pip` is pip) and base
  interpreter, and ordered by the version each reported inside the sandbox
  (`packaging.version.Version`, then the column's label); a column whose
  version is unknown is left out.
- A cell's state is its outcome (`skip` when it did not run) and its key
  message: the text each of the preset's known messages matched, in the words
  of the release that ran (pip 20.x's `EnvironmentError`, 21.1's venv hint),
  else the installer's first error line. Every absolute path reads `<path>`:
  which file an installer hits first, and uv's random temporary names, change
  from run to run; the wording is what changes between releases.
- A change is recorded wherever a state differs from the previous version's."""
#: A verdict that keeps the matrix green.
GREEN = {"passed", "xfailed"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pip", nargs="*", default=list(PIP), help="pip releases (none: skip)")
    parser.add_argument("--uv", nargs="*", default=list(UV), help="uv releases (none: skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "versions.md")
    parser.add_argument("-n", "--workers", default="0", help="pytest-xdist workers (default 0)")
    parser.add_argument(
        "--no-proofs",
        action="store_true",
        help="skip tests/test_versions.py -m installperm_versions (the slow proofs)",
    )
    return parser.parse_args(argv)


def run_family(name: str, versions: Sequence[str], workers: str) -> dict[str, Any]:
    """One pytest session with every release of ``name`` as an installer."""
    work = Path(tempfile.mkdtemp(prefix="installperm-versions-"))
    try:
        argv = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--installperm",
            "--installperm-report=report.json", "-rfE",
            *(f"--installperm-installer={name}=={v}" for v in versions),
        ]  # fmt: skip
        if workers != "0":
            argv += ["-n", workers]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        started = datetime.datetime.now(datetime.UTC)
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, check=False)
        seconds = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
        report_file = work / "report.json"
        report = json.loads(report_file.read_text()) if report_file.exists() else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "name": name,
        "installers": [f"{name}=={v}" for v in versions],
        "returncode": done.returncode,
        "tail": done.stdout.strip().splitlines()[-1:] or done.stderr.strip().splitlines()[-3:],
        "output": done.stdout[-20000:] + done.stderr[-5000:],
        "seconds": seconds,
        "report": report,
    }


def run_proofs() -> dict[str, Any]:
    """The slow tests of tests/test_versions.py (deselected from the default suite)."""
    argv = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
        "-m", "installperm_versions", "tests/test_versions.py",
    ]  # fmt: skip
    started = datetime.datetime.now(datetime.UTC)
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
    lines = done.stdout.strip().splitlines()
    tests = sorted(ln.split(" ", 1)[1] for ln in lines if ln.startswith(("PASSED ", "FAILED ")))
    results = [ln.split(" ", 1)[0] for ln in lines if ln.startswith(("PASSED ", "FAILED "))]
    return {"returncode": done.returncode, "tests": tests, "results": results,
            "tail": lines[-1:], "seconds": seconds}  # fmt: skip


def _proofs(proofs: dict[str, Any]) -> list[str]:
    ok = proofs["returncode"] == 0
    out = [
        "## Proofs of pip's rule changes",
        "",
        "`pytest -m installperm_versions tests/test_versions.py` (each change of "
        "`oracle.CHANGES` against the releases on both sides of it, and pip installed "
        "editable from its sdist): "
        f"{' '.join(proofs['tail'])} in {proofs['seconds']:.0f} s: "
        f"**{'green' if ok else 'NOT green'}**.",
        "",
    ]
    out += [f"- `{t}`" for t in sorted(set(proofs["tests"]))]
    return [*out, ""]


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    if "reason" in row and "outcome" not in row:
        return "skip"
    mark = {"passed": "ok", "xfailed": "xfail", "failed": "FAIL"}.get(row.get("verdict", ""), "?")
    return f"{row.get('outcome')} {mark}"


def _rows(family: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    report = family["report"]
    rows = {(r["scenario"], r["installer"]): r for r in report.get("results", [])}
    for row in report.get("skipped", []):
        rows[(row["scenario"], row["installer"])] = {**row, "verdict": "skipped"}
    return rows


def render(families: Sequence[dict[str, Any]], proofs: dict[str, Any] | None) -> tuple[str, bool]:
    """docs/versions.md, and whether every family was green."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Installer releases against the scenario matrix",
        "",
        *USAGE.splitlines(),
        "",
        "## Results",
        "",
        f"Generated by `benchmarks/versions.py` on {now}: Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()}, "
        f"{'root' if os.geteuid() == 0 else 'uid ' + str(os.geteuid())}. "
        "Each column is one release, fetched once by this machine's pip from the index it is "
        "configured for, and judged by that release's rules (pip: `oracle.decide(scenario, "
        "version)`; uv: its preset's expectations). `ok` agrees, `xfail` is a declared "
        "divergence (its reason is listed), `skip` could not run (its reason is listed), "
        "`FAIL` is an undeclared difference.",
        "",
    ]
    green = True
    for family in families:
        rows = _rows(family)
        installers = family["installers"]
        scenarios = sorted({s for s, _ in rows})
        verdicts = [r.get("verdict") for r in rows.values()]
        bad = [k for k, r in sorted(rows.items()) if r.get("verdict") not in GREEN | {"skipped"}]
        ok = family["returncode"] == 0 and not bad and bool(rows)
        green = green and ok
        counts = {v: verdicts.count(v) for v in sorted(set(filter(None, verdicts)))}
        lines += [
            f"## {family['name']}",
            "",
            f"{len(installers)} releases, {len(scenarios)} scenarios, "
            f"{', '.join(f'{n} {v}' for v, n in counts.items()) or 'no results'} "
            f"in {family['seconds']:.0f} s: **{'green' if ok else 'NOT green'}** "
            f"(pytest exit status {family['returncode']}).",
            "",
        ]
        versions = {i: _ran(rows, i) for i in installers}
        lines += [
            "| scenario | " + " | ".join(i.split("==")[1] for i in installers) + " |",
            "|---|" + "---|" * len(installers),
        ]
        lines += [
            f"| `{s}` | " + " | ".join(_cell(rows.get((s, i))) for i in installers) + " |"
            for s in scenarios
        ]
        lines += ["", "Versions that ran (asked inside the sandbox): " + ", ".join(
            f"{i} → {versions[i] or 'not reported'}" for i in installers) + ".", ""]  # fmt: skip
        lines += _changes(family["report"].get("bisect", []))
        lines += _reasons(rows, installers, "Declared divergences and known breaks", "xfailed")
        lines += _reasons(rows, installers, "Skipped cells", "skipped")
        if bad:
            lines += ["### Failures", ""]
            lines += [f"- `{s}` with {i}: {rows[(s, i)]}" for s, i in bad]
            lines += ["", "```", *family["output"].splitlines()[-60:], "```", ""]
    if proofs is not None:
        lines += _proofs(proofs)
        green = green and proofs["returncode"] == 0
    return "\n".join(lines).rstrip() + "\n", green


def _ran(rows: dict[tuple[str, str], dict[str, Any]], installer: str) -> str | None:
    found = {r.get("installer_version") for (_, i), r in rows.items() if i == installer}
    found.discard(None)
    return ", ".join(sorted(found)) or None


def _changes(bisect: Sequence[dict[str, Any]]) -> list[str]:
    """Per scenario, the releases at which its outcome or key message moved:
    the report's bisect view (pytest_installperm.changepoints)."""
    out = ["### Where the outcomes or key messages change", ""]
    for family in bisect:
        for scenario in family["scenarios"]:
            steps = [
                f"{c['version']}: "
                + "; ".join(
                    f"{k} {c[k][0]!r} → {c[k][1]!r}" for k in ("outcome", "message") if k in c
                )
                for c in scenario["changes"]
            ]
            if steps:
                out.append(f"- `{scenario['scenario']}`: " + "; then ".join(steps))
    if len(out) == 2:
        out.append("No outcome or key message changes across these releases.")
    return [*out, ""]


def _reasons(
    rows: dict[tuple[str, str], dict[str, Any]], installers: list[str], title: str, verdict: str
) -> list[str]:
    """Cells grouped by their reason (the release's name in it made generic)."""
    by_reason: dict[str, list[str]] = {}
    order = {name: i for i, name in enumerate(installers)}
    for (scenario, installer), row in sorted(
        rows.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])
    ):
        if row.get("verdict") == verdict:
            reason = row.get("reason") or row.get("declared") or "(no reason recorded)"
            reason = reason.replace(installer, installer.split("==")[0])
            by_reason.setdefault(reason, []).append(f"`{scenario}` [{installer}]")
    if not by_reason:
        return []
    out = [f"### {title}", ""]
    for reason, cells in sorted(by_reason.items()):
        out.append(f"- {reason}: {', '.join(cells)}")
    return [*out, ""]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    families = []
    for name, versions in (("pip", args.pip), ("uv", args.uv)):
        if versions:
            family = run_family(name, versions, args.workers)
            print(f"{name}: {family['seconds']:.0f} s, {' '.join(family['tail'])}", flush=True)
            families.append(family)
    proofs = None if args.no_proofs else run_proofs()
    if proofs is not None:
        print(f"proofs: {proofs['seconds']:.0f} s, {' '.join(proofs['tail'])}", flush=True)
    text, green = render(families, proofs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}: {'green' if green else 'NOT green'}")
    return 0 if green else 1


if __name__ == "__main__":
    sys.exit(main())
