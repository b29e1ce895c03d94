"""``programs=`` on system()/venv(): a fixture user's own test runs poetry by name.

As root the child is a dropped uid, and the poetry installed with the test
extra lives in a venv under the 0700 ``/root``: without ``programs=`` the
child cannot run it at all.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from pytest_installperm.errors import FakefsError
from pytest_installperm.installers.base import requirement_of
from pytest_installperm.installers.poetry import PROJECT
from pytest_installperm.programs import ProgramError


def _poetry_installed() -> None:
    if shutil.which("poetry", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("poetry is not installed next to this interpreter (the test extra)")


def _untraversable_by_others(path: Path) -> bool:
    """True if a directory above ``path`` denies others its search bit (a 0700 /root)."""
    return any(not os.stat(parent).st_mode & 0o001 for parent in path.parents)


def test_poetry_installs_into_an_activated_venv_as_the_child(installperm, make_wheel):
    _poetry_installed()
    wheel = make_wheel("demo", console_scripts={"demo": "demo:main"})
    env = installperm.venv(locked=(), programs=("poetry",))
    project = env.sandbox.work  # the child's working directory
    shutil.copy(wheel, project / wheel.name)
    os.chmod(project / wheel.name, 0o644)
    requirement = requirement_of(project / wheel.name)
    (project / "pyproject.toml").write_text(PROJECT.format(requirement=requirement))
    result = env.run(["poetry", "install", "--no-root"], env={"VIRTUAL_ENV": str(env.prefix)})
    assert result.returncode == 0, result.describe()
    result.assert_installed(wheel, scheme="system")  # the venv's own scheme
    assert env.tool("poetry").exists()  # the child's copy, first on its PATH
    original = shutil.which("poetry", path=os.path.dirname(sys.executable))
    assert original is not None
    if env.backend == "privdrop" and _untraversable_by_others(Path(original)):
        denied = env.run([original, "--version"])
        assert denied.returncode != 0  # the child cannot reach the one under /root
        assert "Permission denied" in denied.stderr


def test_a_program_that_is_not_installed_is_refused_naming_it(installperm):
    with pytest.raises(ProgramError, match=r"programs=\('no-such-tool',\): no program") as caught:
        installperm.system(programs=("no-such-tool",))
    assert isinstance(caught.value, OSError)


@pytest.mark.parametrize("bad", ["poetry", ("bin/poetry",), ("",)])
def test_programs_are_names(installperm, bad):
    with pytest.raises((TypeError, ValueError), match=r"programs="):
        installperm.system(programs=bad)


def test_the_in_process_mode_refuses_programs(installperm_fakefs):
    with pytest.raises(FakefsError, match=r"programs=\('poetry',\)"):
        installperm_fakefs.system(programs=("poetry",))
