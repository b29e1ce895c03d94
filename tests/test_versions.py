"""Every change of pip's rules, proved against the real releases on both sides of it.

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

pytestmark = pytest.mark.installperm_versions


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
