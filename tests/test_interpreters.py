"""Any CPython 3.9-3.14 as the interpreter under test: pyenv's builds here
(shared libpython under the 0700 /root), relocated for a dropped uid."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import rootfs

from pytest_installperm import InstallPerm

PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
FALLBACK = "Defaulting to user installation because normal site-packages is not writeable"


def pyenv_python(version: str) -> Path:
    """pyenv's ``pythonX.Y`` for ``version``, or a skip naming where we looked."""
    for build in sorted(PYENV.glob(f"{version}.*"), reverse=True):
        python = build / "bin" / f"python{version}"
        if python.is_file():
            return python
    pytest.skip(f"no pyenv Python {version} in {PYENV}")


@pytest.mark.parametrize("version", ["3.10", "3.12", "3.13"])
def test_pyenv_interpreter_is_the_system_python(
    installperm: InstallPerm, demo_wheel: Path, version: str
) -> None:
    env = installperm.system(python=pyenv_python(version))
    probe = env.run([env.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    assert probe.stdout.strip() == version, probe.describe()
    result = env.pip("install", demo_wheel)
    assert FALLBACK in result.stdout, result.describe()
    result.assert_installed(demo_wheel, scheme="user")
    assert f"lib/python{version}/site-packages/demo/__init__.py" in {
        str(p.relative_to(env.userbase)) for p in result.changes.created
    }


def test_python_the_pinned_pip_cannot_run_is_a_skip_naming_both(installperm: InstallPerm) -> None:
    python = pyenv_python("3.9")
    with pytest.raises(pytest.skip.Exception) as caught:
        installperm.system(python=python)
    message = str(caught.value)
    assert re.search(r"pip \S+ \(the pip running pytest\) requires Python >=3\.1\d", message)
    assert f"base interpreter {os.path.realpath(python)} is Python 3.9" in message


def test_python_39_with_a_pip_that_runs_on_it(installperm: InstallPerm, demo_wheel: Path) -> None:
    """pip 26.0.1 (the last for 3.9, from .ci/rootfs's cache) in preinstalled=."""
    wheels = sorted((rootfs.CACHE / "wheels" / "py39").glob("pip-*.whl"))
    if not wheels:
        pytest.skip(f"no pip wheel for Python 3.9 in {rootfs.CACHE / 'wheels' / 'py39'}")
    env = installperm.system(python=pyenv_python("3.9"), preinstalled=wheels)
    result = env.pip("install", demo_wheel)
    assert FALLBACK in result.stdout, result.describe()
    result.assert_installed(demo_wheel, scheme="user")
    version = env.run([env.python, "-m", "pip", "--version"])
    assert version.stdout.startswith(f"pip {wheels[0].name.split('-')[1]} "), version.describe()


@pytest.mark.parametrize("version", ["3.9", "3.12", "debian"])
def test_the_layout_probe_reports_the_full_release(version: str) -> None:
    """What the matrix heading and rows print beside the interpreter's path."""
    import subprocess

    from pytest_installperm.interpreter import inspect

    python = Path("/usr/bin/python3.11") if version == "debian" else pyenv_python(version)
    if not python.is_file():
        pytest.skip(f"no {python} on this machine")
    own = subprocess.run(
        [python, "-I", "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert re.fullmatch(r"3\.\d+\.\d+\S*", own), own
    assert inspect(python).release == own
