"""The plugin installer under a read-only system site, in-process and fast.

Each test gets a fake system Python (root-owned site-packages, a non-root
user, a user base under a fake HOME) from ``installperm_fakefs``, calls the
app's code with ``env.call()`` and judges where the plugin's files went with
the same verdicts as the subprocess mode.
"""

from __future__ import annotations

import pytest
from plugin_app import PluginInstallError, install_plugin, installed_plugins


@pytest.fixture
def plugin(make_wheel):
    return make_wheel("plugin-app-hello", "1.0", console_scripts={"hello": "plugin_app_hello:main"})


def test_read_only_system_site_installs_into_the_user_site(installperm_fakefs, plugin):
    env = installperm_fakefs.system(locked=("system",))

    result = env.call(install_plugin, plugin)

    assert result.returncode == 0, result.describe()
    assert result.value == env.paths("user")["purelib"]
    result.assert_installed(plugin, scheme="user")
    result.assert_untouched("system")
    assert env.call(installed_plugins).value == ["plugin-app-hello"]


def test_writable_system_site_is_used_first(installperm_fakefs, plugin):
    env = installperm_fakefs.system(locked=())

    result = env.call(install_plugin, plugin)

    result.assert_installed(plugin, scheme="system")
    result.assert_untouched("user")


def test_user_site_disabled_is_a_clear_error_and_leaves_nothing(installperm_fakefs, plugin):
    env = installperm_fakefs.system(locked=("system",), user_site=False)

    result = env.call(install_plugin, plugin)

    assert result.returncode == 1
    assert isinstance(result.exception, PluginInstallError)
    assert "user site-packages are disabled" in result.stderr
    result.assert_not_installed(plugin)
    result.assert_no_residue()


def test_unwritable_home_fails_without_residue(installperm_fakefs, plugin):
    env = installperm_fakefs.system(locked=("system",), home="unwritable")

    result = env.call(install_plugin, plugin)

    assert isinstance(result.exception, PermissionError), result.describe()
    result.assert_not_installed(plugin)
    result.assert_no_residue()


@pytest.mark.parametrize(
    ("layout", "suffix"),
    [
        ("windows", "AppData/Roaming/Python/Python{X}{Y}/site-packages"),
        ("macos-framework", "Library/Python/{X}.{Y}/lib/python/site-packages"),
    ],
)
def test_user_site_of_other_platforms(installperm_fakefs, plugin, layout, suffix):
    import sys

    env = installperm_fakefs.system(locked=("system",), layout=layout)

    result = env.call(install_plugin, plugin)

    x, y = sys.version_info[:2]
    assert str(result.value).endswith(suffix.format(X=x, Y=y))
    result.assert_installed(plugin, scheme="user")
