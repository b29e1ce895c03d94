"""The sandbox's stdlib layout: what the relocated interpreter reports is the base's, moved.

Each sandbox holds ``lib/pythonXY.zip`` as a symlink to the template's stdlib
and only the landmarks in ``lib/pythonX.Y``. These checks compare what the
relocated copy and the base itself report, with the base's prefix replaced by
the sandbox's: schemes, ``sys.path``, site directories and the Makefile that
``sysconfig`` names, plus imports of modules from every part of the stdlib.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_installperm import InstallPerm

DEBIAN = Path("/usr/bin/python3.11")

REPORT = r"""
import importlib.resources, json, os, site, sys, sysconfig
import argparse, ctypes, email.mime.text, ensurepip, sqlite3, ssl, venv, zoneinfo
makefile = sysconfig.get_makefile_filename()
print(json.dumps({
    "prefix": sys.prefix,
    "paths": sysconfig.get_paths(),
    "user": sysconfig.get_paths(scheme=sysconfig.get_preferred_scheme("user")),
    "path": [p for p in sys.path if p][:3],  # zip, stdlib, lib-dynload: site dirs vary
    "site": site.getsitepackages(),
    "makefile": [makefile, os.path.isfile(makefile)],
    "data": importlib.resources.files("email").joinpath("architecture.rst").is_file(),
}, sort_keys=True))
"""


def report(argv: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run(
        [*argv, "-c", REPORT], capture_output=True, text=True, check=False, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    data: dict[str, object] = json.loads(out.stdout)
    return data


@pytest.mark.parametrize(
    "python",
    [
        None,
        pytest.param(
            DEBIAN,
            marks=pytest.mark.skipif(not DEBIAN.exists(), reason=f"{DEBIAN} is not here"),
        ),
    ],
    ids=["running", "debian"],
)
def test_relocated_interpreter_reports_the_base_layout_moved(
    installperm: InstallPerm, python: Path | None
) -> None:
    env = installperm.system(python=python, locked=(), externally_managed=False, mode="relocated")
    base = report([str(python or Path(sys._base_executable).resolve())], {"PATH": os.defpath})
    result = env.run([env.python, "-c", REPORT])
    assert result.returncode == 0, result.stderr
    moved = json.loads(
        json.dumps(base).replace(json.dumps(str(base["prefix"]))[1:-1], str(env.prefix))
    )
    mine = json.loads(result.stdout)
    home = str(env.home)
    # The user scheme follows HOME, which is the sandbox's own.
    assert all(str(v).startswith(home) for v in mine.pop("user").values())
    moved.pop("user")
    assert mine == moved
    stdlib = env.prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if python is None:
        assert len(os.listdir(stdlib)) < 10, "the stdlib is linked entry by entry again"
