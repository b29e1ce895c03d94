"""Every change of pip's rules, proved against the real releases on both sides of it;
and uv 0.1.x's usage errors, which are skips.

Each test runs the matrix (an inner pytest) with the release just before a
change and the first release that has it, on the scenario that shows it. Both
columns must agree with the oracle at their own version; since the oracle
expects different things of the two (tested here too), a rule placed at the
wrong release fails one of them. Releases come from the shared cache (fetched
from this machine's configured index the first time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from pytest_installperm import oracle
from pytest_installperm.installers import Context
from pytest_installperm.installers.uv import UV_CHANGES, Uv
from pytest_installperm.scenarios import load_all

BUILTIN = {s.name: s for s in load_all()}

#: change -> (scenario that shows it, last release without it, first release with it)
PROOFS = {
    "fallback": ("fallback-to-user", "19.3.1", "20.0.2"),
    "venv-user": ("venv-user", "19.3.1", "20.0.2"),
    "user-with-target": ("user-with-target", "20.0.2", "20.1"),
    "oserror-wording": ("no-user-flag-locked", "20.3.4", "21.0.1"),
    "venv-no-user-hint": ("venv-locked", "21.0.1", "21.1"),
    "externally-managed": ("pep668-marker", "22.3.1", "23.0"),
    "break-system-packages": ("pep668-break-system-packages", "23.0", "23.0.1"),
    "user-site-disabled": ("user-flag-user-site-disabled", "25.2", "25.3"),
}
#: Changes that need another base interpreter than the one running the matrix.
ELSEWHERE = {"posix-local-prefix"}

#: The proof the default suite runs; the others cost about 25 s each and run with
#: ``-m installperm_versions`` (benchmarks/versions.py does, and records the result).
DEFAULT_PROOF = "externally-managed"


def _matrix(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--installperm",
            "--installperm-report=report.json",
            "-rfEsx",
            *args,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report = json.loads((cwd / "report.json").read_text()) if (cwd / "report.json").exists() else {}
    return done, report


def test_every_change_has_a_proof_and_its_releases_straddle_it():
    assert set(PROOFS) | ELSEWHERE == set(oracle.CHANGES)
    for change, (scenario, before, after) in PROOFS.items():
        since = oracle.CHANGES[change].since
        assert Version(before) < since <= Version(after), change
        assert scenario in BUILTIN, change


DEBIAN_PYTHON = Path("/usr/bin/python3.11")


def _scheme_names(python: Path) -> tuple[str, ...]:
    code = "import sysconfig; print(' '.join(sysconfig.get_scheme_names()))"
    done = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=True)
    return tuple(done.stdout.split())


@pytest.mark.skipif(not DEBIAN_PYTHON.exists(), reason=f"no Debian interpreter {DEBIAN_PYTHON}")
@pytest.mark.parametrize("version", ["25.3", "26.3"])
def test_prefix_on_debian_follows_posix_local_until_263(installperm, make_wheel, request, version):
    names = _scheme_names(DEBIAN_PYTHON)
    if "posix_local" not in names:
        pytest.skip(f"{DEBIAN_PYTHON} has no posix_local scheme: not Debian's build")
    from pytest_installperm import releases
    from pytest_installperm.fixtures import get_session

    origin = releases.Origin("pip", version=Version(version))
    code = releases.provide(origin, get_session(request.config).root.new_dir("code-"))
    assert code.lib is not None
    wheel = make_wheel("demo", purelib={"demo/__init__.py": ""})
    env = installperm.system(python=DEBIAN_PYTHON, locked=(), externally_managed=False)
    prefix = env.sandbox.work / "prefix"
    result = env.run(
        [env.python, "-m", "pip", "install", "--prefix", prefix, wheel],
        env={"PYTHONPATH": str(code.lib)},
    )
    assert result.returncode == 0, result.output
    scheme = oracle.prefix_scheme(version, names)
    where = {
        "posix_local": "local/lib/python3.11/dist-packages",
        "posix_prefix": "lib/python3.11/site-packages",
    }[scheme]
    installed = sorted(str(p.relative_to(prefix)) for p in prefix.rglob("__init__.py"))
    assert installed == [f"{where}/demo/__init__.py"], result.output


def test_the_scheme_probe_knows_debians_posix_local_prefix_and_only_there(installperm):
    """What the matrix expects of ``--prefix`` for pip before 26.3 on Debian."""
    envs = {"running": installperm.system(locked=())}
    if DEBIAN_PYTHON.exists() and "posix_local" in _scheme_names(DEBIAN_PYTHON):
        envs["debian"] = installperm.system(python=DEBIAN_PYTHON, locked=())
    for name, env in envs.items():
        names = ("posix_local", "posix_prefix") if name == "debian" else ("posix_prefix",)
        if name == "running" and "posix_local" in _scheme_names(Path(sys.executable)):
            names = ("posix_local", "posix_prefix")  # the suite itself runs on Debian's
        assert env.schemes.prefix_schemes() == names, name
        top = env.sandbox.work / "prefix"
        xy = env.python.name  # python3.X
        assert env.schemes.prefix(top).paths["purelib"] == top / "lib" / xy / "site-packages"
        if "posix_local" in names:
            local = env.schemes.prefix(top, "posix_local").paths
            assert local["purelib"] == top / "local" / "lib" / xy / "dist-packages", local
            assert local["scripts"] == top / "local" / "bin", local
    assert "debian" in envs or not DEBIAN_PYTHON.exists()


@pytest.mark.skipif(not DEBIAN_PYTHON.exists(), reason=f"no Debian interpreter {DEBIAN_PYTHON}")
def test_the_matrix_expects_the_prefix_layout_of_the_release_that_ran(tmp_path):
    """On Debian's python, pip 25.3 installs ``--prefix`` by posix_local and 26.3 by
    posix_prefix: each cell is judged by its own release's layout (pip 25.3's was
    an undeclared difference while the matrix knew only posix_prefix)."""
    if "posix_local" not in _scheme_names(DEBIAN_PYTHON):
        pytest.skip(f"{DEBIAN_PYTHON} has no posix_local scheme: not Debian's build")
    done, report = _matrix(
        tmp_path,
        f"--installperm-python={DEBIAN_PYTHON}",
        "--installperm-installer=pip==25.3",
        "--installperm-installer=pip==26.3",
        "-k",
        "prefix-system-locked or pep668-prefix",
    )
    output = done.stdout[-6000:] + done.stderr[-2000:]
    rows = {(r["scenario"], r["installer"]): r for r in report.get("results", [])}
    assert sorted(rows) == [
        (s, f"pip=={v}")
        for s in ("pep668-prefix", "prefix-system-locked")
        for v in ("25.3", "26.3")
    ], output
    for row in rows.values():
        assert (row["outcome"], row["verdict"]) == ("prefix", "passed"), output
    assert done.returncode == 0, output


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(c, marks=() if c == DEFAULT_PROOF else pytest.mark.installperm_versions)
        for c in sorted(PROOFS)
    ],
)
def test_the_rule_changes_where_the_oracle_says(change, tmp_path):
    scenario, before, after = PROOFS[change]
    old, new = oracle.decide(BUILTIN[scenario], before), oracle.decide(BUILTIN[scenario], after)
    words = {"user-with-target": "Can not combine '--user' and '--target'", "oserror": "OSError"}
    words_differ = oracle.messages(words, before) != oracle.messages(words, after)
    assert old != new or words_differ, f"the oracle does not tell {before} from {after}"
    done, report = _matrix(
        tmp_path,
        f"--installperm-installer=pip=={before}",
        f"--installperm-installer=pip=={after}",
        "-k",
        scenario,
    )
    rows = {r["installer"]: r for r in report.get("results", [])}
    skipped = {r["installer"]: r.get("reason", "") for r in report.get("skipped", [])}
    output = done.stdout[-6000:] + done.stderr[-2000:]
    for version in (before, after):
        name = f"pip=={version}"
        if f"{name} cannot run on " in skipped.get(name, ""):
            # Python 3.12 removed what older releases import (distutils up to 22.x,
            # pkgutil.ImpImporter up to 23.0.1 at least): the change cannot be shown here.
            assert sys.version_info >= (3, 12) and Version(version) < Version("23.3"), output
            pytest.skip(skipped[name])
        if name in skipped:
            # Only an option the release does not have yet may skip, in pip's words.
            assert change == "break-system-packages" and version == before, output
            assert "--break-system-packages" in skipped[name], skipped[name]
            continue
        assert rows[name]["verdict"] == "passed", output
        assert rows[name]["outcome"] == oracle.decide(BUILTIN[scenario], version).outcome
    assert done.returncode == 0, output


#: uv change -> (scenario that shows it, last release without it, first release with it)
UV_PROOFS = {
    "python-with-system": ("system-writable", "0.2.3", "0.2.4"),
    "prefix": ("prefix-system-locked", "0.2.9", "0.2.10"),
}


def test_every_uv_change_has_a_proof_and_its_releases_straddle_it():
    assert set(UV_PROOFS) == set(UV_CHANGES)
    for change, (scenario, before, after) in UV_PROOFS.items():
        assert Version(before) < UV_CHANGES[change].since <= Version(after), change
        assert scenario in BUILTIN, change


@pytest.mark.parametrize("change", sorted(UV_PROOFS))
def test_uvs_command_line_changes_where_its_table_says(change, tmp_path):
    """The release before a change of ``UV_CHANGES`` rejects the command line
    (a skip in uv's words, with the table's reference), the release that has it
    runs and agrees; a change placed at the wrong release fails one of them (the
    matrix fails a usage error the table does not expect, and a missing one it
    does)."""
    scenario, before, after = UV_PROOFS[change]
    here = Path("/")
    ctx = Context(here, here / "demo.whl", here, here, here, here, "system")
    request = BUILTIN[scenario].request
    reference = UV_CHANGES[change].reference.split(";")[0]
    assert reference in (Uv().rejects(request, ctx, before) or ""), change
    assert Uv().rejects(request, ctx, after) is None, change
    done, report = _matrix(
        tmp_path,
        f"--installperm-installer=uv=={before}",
        f"--installperm-installer=uv=={after}",
        "-k",
        scenario,
    )
    output = done.stdout[-6000:] + done.stderr[-2000:]
    skipped = {r["installer"]: r["reason"] for r in report.get("skipped", [])}
    rows = {r["installer"]: r for r in report.get("results", [])}
    assert sorted(skipped) == [f"uv=={before}"] and sorted(rows) == [f"uv=={after}"], output
    assert "usage error" in skipped[f"uv=={before}"] and reference in skipped[f"uv=={before}"]
    assert (rows[f"uv=={after}"]["verdict"], rows[f"uv=={after}"]["installer_version"]) == (
        "passed",
        after,
    ), output
    assert done.returncode == 0, output


def test_uv_01_usage_errors_are_skips_with_uvs_words_not_passes(tmp_path):
    """uv 0.1.x refuses ``--python`` with ``--system`` (exit status 2): once
    counted as the outcome ``error``, which passed where pip errs."""
    scenarios = ("no-user-flag-locked", "home-missing", "venv-plain")
    done, report = _matrix(
        tmp_path, "--installperm-installer=uv==0.1.44", "-k", " or ".join(scenarios)
    )
    output = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, output
    skipped = {r["scenario"]: r["reason"] for r in report["skipped"]}
    results = {r["scenario"]: r for r in report["results"]}
    for scenario in ("no-user-flag-locked", "home-missing"):  # system interpreters
        assert oracle.decide(BUILTIN[scenario]).outcome == "error"  # would have "agreed"
        assert scenario not in results, results.get(scenario)
        assert "cannot be used with '--system'" in skipped[scenario], skipped[scenario]
        assert "usage error" in skipped[scenario]
    venv = results["venv-plain"]  # a venv needs no --system: uv 0.1.44 really ran
    assert (venv["verdict"], venv["installer_version"]) == ("passed", "0.1.44")


@pytest.mark.installperm_versions  # about 80 s: a download, an editable install, a matrix
def test_an_editable_pip_from_its_sdist_is_the_pip_the_matrix_runs(tmp_path):
    """pip's own development setup: an unpacked sdist installed with ``pip install
    -e`` (flit leaves a .pth file and a dist-info, no package in site-packages)."""
    import tarfile
    import venv

    version = oracle.PIP_VERSION
    host = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*host, "download", "--no-deps", "--no-binary=:all:", "-d", tmp_path, f"pip=={version}"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (sdist,) = tmp_path.glob("pip-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    tree = tmp_path / f"pip-{version}"
    init = tree / "src" / "pip" / "__init__.py"
    marked = f"{version}+installperm.editable"  # proves which pip ran
    init.write_text(init.read_text().replace(f'"{version}"', f'"{marked}"'))
    venv.create(tmp_path / "venv", with_pip=False)
    python = tmp_path / "venv" / "bin" / "python"
    done = subprocess.run(
        [*host, "--python", python, "install", "--no-deps", "-e", tree],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (site,) = (tmp_path / "venv" / "lib").glob("python3*/site-packages")
    assert not (site / "pip").exists()  # editable: the package stays in the tree
    # The rest (pytest, this plugin) from the environment running us, after pip.pth.
    host_site = sysconfig_purelib()  # addsitedir: its own .pth files (this plugin's) too
    (site / "zz-host.pth").write_text(f"import site; site.addsitedir({host_site!r})\n")
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", "--installperm",
         "--installperm-installer=pip", "--installperm-report=report.json",
         "-k", "fallback-to-user or venv-locked or pep668-marker"],
        cwd=work,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:]
    rows = json.loads((work / "report.json").read_text())["results"]
    assert {r["scenario"] for r in rows} == {"fallback-to-user", "venv-locked", "pep668-marker"}
    for row in rows:
        assert (row["verdict"], row["installer_version"]) == ("passed", marked), row


def sysconfig_purelib() -> str:
    import sysconfig

    return sysconfig.get_path("purelib")


PYTHON39 = Path("/root/.pyenv/versions/3.9.18/bin/python3.9")


@pytest.mark.skipif(not PYTHON39.exists(), reason=f"no Python 3.9 at {PYTHON39}")
def test_a_release_that_does_not_run_on_the_interpreter_says_so(installperm, request):
    """pip 26.1 dropped Python 3.9: its metadata says so before anything runs, and
    asked inside the sandbox (as the matrix asks, fit.check) it cannot even report
    its version there; 25.3 can. The environment gets pip 25.3 preinstalled, since
    the pip running pytest (26.3) does not run on 3.9 either."""
    from pytest_installperm import fit, releases
    from pytest_installperm.fixtures import get_session
    from pytest_installperm.installers import parse_all

    session = get_session(request.config)
    new = session.release(releases.Origin("pip", version=Version("26.1")))
    old = session.release(releases.Origin("pip", version=Version("25.3")))
    wheel = releases.fetch("pip", Version("25.3")).wheel
    env = installperm.system(python=PYTHON39, locked=(), preinstalled=[wheel])
    reason = new.runs_on(session.base(PYTHON39).version)
    assert reason is not None
    assert "pip==26.1" in reason and "Python 3.9" in reason
    assert old.runs_on(session.base(PYTHON39).version) is None
    here = env.sandbox.work
    for code, works in ((old, True), (new, False)):
        result = env.run([env.python, "-m", "pip", "--version"], env={"PYTHONPATH": str(code.lib)})
        assert (result.returncode == 0) is works, result.output
        (installer,) = parse_all([code.origin.describe()])
        ctx = Context(env.python, here, here, here, here, env.home, env.kind, code.lib)
        found = fit.check(installer, env, ctx, "Python 3.9")
        assert (found.reason is None) is works, found
        if works:
            assert found.version == "25.3"
        else:
            assert str(found.reason).startswith("pip==26.1 cannot run on Python 3.9: "), found
