"""The child's PATH is a real system's: pip's "not on PATH" warning appears."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_installperm import InstallPerm

NOT_ON_PATH = "The script demo-cli is installed in '{}' which is not on PATH"


def child_path(env_path: str) -> list[str]:
    return env_path.split(os.pathsep)


def test_default_path_is_a_real_systems(installperm: InstallPerm) -> None:
    env = installperm.system(externally_managed=False)
    dirs = child_path(env.child_env()["PATH"])
    # In place, the child finds the sandbox's scripts directory at its real path.
    assert str(env.seen_as(env.paths("system")["scripts"])) in dirs
    assert str(env.paths("user")["scripts"]) not in dirs
    assert dirs[-3:] == ["/usr/local/bin", "/usr/bin", "/bin"]


def test_pip_warns_that_user_scripts_are_not_on_path(
    installperm: InstallPerm, demo_wheel: Path
) -> None:
    env = installperm.system(externally_managed=False)
    result = env.pip("install", demo_wheel)
    assert result.returncode == 0, result.stderr
    result.assert_installed(demo_wheel, scheme="user")
    assert NOT_ON_PATH.format(env.paths("user")["scripts"]) in result.stderr


def test_path_with_user_scripts_silences_the_warning(
    installperm: InstallPerm, demo_wheel: Path
) -> None:
    env = installperm.system(
        externally_managed=False, path=("user-scripts", "system-scripts", "/usr/bin", "/bin")
    )
    assert child_path(env.child_env()["PATH"])[1:] == [
        str(env.paths("user")["scripts"]),
        str(env.seen_as(env.paths("system")["scripts"])),
        "/usr/bin",
        "/bin",
    ]
    result = env.pip("install", demo_wheel)
    assert result.returncode == 0, result.stderr
    result.assert_installed(demo_wheel, scheme="user")
    assert "which is not on PATH" not in result.stderr


def test_venv_path_has_the_venv_scripts(installperm: InstallPerm) -> None:
    env = installperm.venv(locked=())
    dirs = child_path(env.child_env()["PATH"])
    assert str(env.paths("system")["scripts"]) in dirs
    assert str(env.paths("system")["scripts"]).startswith(str(env.prefix))


@pytest.mark.parametrize("entry", ["bin", "user", ""])
def test_bad_path_entry_is_a_value_error(installperm: InstallPerm, entry: str) -> None:
    with pytest.raises(ValueError, match=f"path entry {entry!r}: neither an absolute"):
        installperm.system(path=("/usr/bin", entry))
