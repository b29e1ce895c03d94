"""Roles for where tools write: ``user-scripts`` beside ``user``, and the XDG
base directories apart from the user scheme.

Locking ``user`` means the user scheme as pip defines it (its site, scripts,
headers below the user base); ``~/.local/share`` and ``~/.local/state`` lie
below the user base too, but they are XDG directories, where pipx keeps its
venvs and pdm its logs: they stay writable unless locked themselves.
"""

from __future__ import annotations

import pytest

from pytest_installperm import PlacementError, RoleError

TOOL_STATE = (
    "mkdir -p {home}/.local/share/tool {home}/.local/state/tool"
    " && echo x > {home}/.local/share/tool/data && echo y > {home}/.local/state/tool/log"
)


@pytest.fixture
def wheel(make_wheel):  # type: ignore[no-untyped-def]
    return make_wheel("demo", console_scripts={"demo-cli": "demo:main"})


def test_the_roles_name_the_user_scripts_and_xdg_directories(installperm):
    env = installperm.system(locked=("system",), externally_managed=False)
    assert env.roles["user-scripts"] == env.paths("user")["scripts"]
    assert env.roles["xdg-data"] == env.home / ".local" / "share"
    assert env.roles["xdg-state"] == env.home / ".local" / "state"
    assert env.roles["xdg-config"] == env.home / ".config"
    assert env.role_of(env.home / ".local" / "share" / "pipx") == "xdg-data"
    assert env.role_of(env.paths("user")["scripts"] / "demo-cli") == "user-scripts"
    with pytest.raises(RoleError, match=r"valid roles are .*user-scripts.*xdg-data"):
        installperm.system(locked=("nowhere",))


def test_locking_user_locks_the_user_scheme_not_the_xdg_directories(installperm, wheel):
    env = installperm.system(locked=("system", "user"), externally_managed=False)
    pip = env.pip("install", "--user", wheel)
    assert pip.returncode != 0
    assert "Permission denied" in pip.output
    pip.assert_untouched("user")
    tool = env.run(["sh", "-c", TOOL_STATE.format(home=env.home)])
    assert tool.returncode == 0, tool.describe()
    assert (env.home / ".local" / "share" / "tool" / "data").exists()
    assert tool.outside == frozenset()  # XDG directories are the tool's to write
    tool.assert_untouched("user")  # nor are they part of the user scheme
    with pytest.raises(PlacementError, match=r"role 'home'"):
        tool.assert_untouched("home")


def test_locking_user_scripts_leaves_the_user_site_writable(installperm, wheel):
    env = installperm.system(locked=("system", "user-scripts"), externally_managed=False)
    result = env.pip("install", "--user", wheel)
    assert result.returncode != 0
    assert "demo-cli" in result.output and "Permission denied" in result.output
    result.assert_untouched("user-scripts")
    site = env.paths("user")["purelib"]
    assert result.changes.under("user").under(site)  # pip wrote the site before failing


def test_an_xdg_lock_denies_only_that_directory(installperm, wheel):
    env = installperm.system(locked=("system", "xdg-data"), externally_managed=False)
    tool = env.run(["sh", "-c", TOOL_STATE.format(home=env.home)])
    assert tool.returncode != 0
    assert "Permission denied" in tool.stderr
    tool.assert_untouched("xdg-data")
    pip = env.pip("install", "--user", wheel)
    assert pip.returncode == 0, pip.describe()
    pip.assert_installed(wheel, scheme="user")
