"""pytest hooks of pytest-installperm: options, ini mirrors, markers, cleanup.

pytest imports this module in every session of every project that has the
plugin installed, so it imports only what the hooks need; the fixtures, the
matrix and the verdicts load when a test or ``--installperm`` asks for them.
"""

from __future__ import annotations

import sys
from typing import Literal

import pytest

from pytest_installperm.fixtures import SESSION_KEY, installperm, installperm_fakefs, make_wheel

__all__ = ["installperm", "installperm_fakefs", "make_wheel"]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_installperm import hookspec

    pluginmanager.add_hookspecs(hookspec)


#: Each kind of option: its argparse action and default, its ini mirror's type
#: (None: a string) and that mirror's default.
_KINDS: dict[str, tuple[str, object, Literal["linelist", "bool"] | None, object]] = {
    "value": ("store", None, None, ""),
    "list": ("append", [], "linelist", []),
    "flag": ("store_true", False, "bool", False),
}


def _option(
    group: pytest.OptionGroup,
    parser: pytest.Parser,
    name: str,
    help: str,
    *,
    kind: str = "value",
    metavar: str | None = None,
    ini_default: str | None = None,
) -> None:
    """``--NAME`` and its ini mirror ``NAME`` (dashes as underscores)."""
    dest = name.replace("-", "_")
    action, default, ini_type, empty = _KINDS[kind]
    extra = {} if metavar is None else {"metavar": metavar}
    group.addoption(f"--{name}", dest=dest, action=action, default=default, help=help, **extra)
    default_ini = empty if ini_default is None else ini_default
    parser.addini(dest, f"default for --{name}", type=ini_type, default=default_ini)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("installperm", "installer permission testing")
    _option(
        group,
        parser,
        "installperm-backend",
        "how locks are enforced: auto (default), chmod (normal user), privdrop "
        "(root runs children as an unprivileged uid), mountns (read-only mounts)",
        metavar="NAME",
        ini_default="auto",
    )
    _option(
        group,
        parser,
        "installperm-mode",
        "where system() puts the interpreter unless it says: auto (default: the real "
        "one in place where a mount namespace allows it, else a relocated copy), in-place "
        "(skip where it cannot be had), relocated",
        metavar="MODE",
        ini_default="auto",
    )
    _option(
        group,
        parser,
        "installperm-uid",
        "user name or uid that children run as under the privdrop backend "
        "(default: a uid of its own per sandbox, from a pool)",
        metavar="USER|UID",
    )
    _option(
        group,
        parser,
        "installperm-basetemp",
        "directory for session roots (default: /dev/shm if it is an exec tmpfs, else TMPDIR)",
        metavar="DIR",
    )
    _option(
        group,
        parser,
        "installperm-cache-dir",
        "the plugin's cache directory; interpreter templates are kept between sessions "
        "in its templates/ (default: /var/cache/pytest-installperm as root, else "
        "$XDG_CACHE_HOME/pytest-installperm)",
        metavar="PATH",
    )
    group.addoption(
        "--installperm-clear-cache",
        dest="installperm_clear_cache",
        action="store_true",
        default=False,
        help="remove the interpreter templates kept between sessions before this one "
        "(they are rebuilt when needed)",
    )
    _add_matrix_options(group, parser)


def _add_matrix_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """Options of the scenario matrix (matrix/); each has an ini mirror."""
    _option(
        group,
        parser,
        "installperm",
        "collect and run the built-in scenario matrix (alone unless test paths are given too)",
        kind="flag",
    )
    _option(
        group,
        parser,
        "installperm-installer",
        "installer under test, repeatable: a preset (pip, uv, installer), a preset "
        "at a release (pip==24.0, fetched once from this machine's configured index) or "
        "from a path (a wheel, tree, checkout, environment or program), or "
        "NAME=TEMPLATE with {python} {wheel} {flags} {prefix} {target} {root} "
        "{home} (default: pip)",
        kind="list",
        metavar="NAME[==VERSION|@PATH]|NAME=TEMPLATE",
    )
    _option(
        group,
        parser,
        "installperm-installer-optional",
        "repeatable: an installer that may be missing here; its column skips with the "
        "reason instead of failing the session (an installer named with "
        "--installperm-installer that cannot run is an error otherwise)",
        kind="list",
        metavar="NAME",
    )
    _option(
        group,
        parser,
        "installperm-report",
        "write the matrix as JSON to PATH",
        metavar="PATH",
    )
    _option(
        group,
        parser,
        "installperm-markdown",
        "write the matrix as a Markdown table to PATH",
        metavar="PATH",
    )
    _option(
        group,
        parser,
        "installperm-python",
        "base interpreter of the matrix, repeatable (default: the one running pytest, "
        "or the base of its venv); e.g. Debian's /usr/bin/python3.11",
        kind="list",
        metavar="PATH",
    )
    parser.addini(
        "installperm_scenarios", "extra scenario directories (TOML files)", type="paths", default=[]
    )
    parser.addini(
        "installperm_divergences",
        "declared divergences, one per line: 'INSTALLER SCENARIO: reason'",
        type="linelist",
        default=[],
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Refuse bad options, ini values, installers and scenario files before anything runs."""
    if config.getoption("help", False):
        return
    from pytest_installperm import options

    if options.check(config).matrix:
        from pytest_installperm import matrix

        matrix.load_settings(config)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "installperm: a test that runs installers against locked directories"
    )
    clear = config.getoption("installperm_clear_cache", False) and not config.getoption("help")
    if clear and not hasattr(config, "workerinput"):
        from pytest_installperm.fixtures import clear_cache

        clear_cache(config)  # once, by the controller: xdist workers start after it
    if _matrix_wanted(config):
        from pytest_installperm import matrix

        if not config.pluginmanager.has_plugin(matrix.PLUGIN_NAME):
            config.pluginmanager.register(matrix.MatrixPlugin(config), matrix.PLUGIN_NAME)


def _matrix_wanted(config: pytest.Config) -> bool:
    """``--installperm`` or its ini mirror, read without importing the matrix."""
    from pytest_installperm import options

    return bool(options.option(config, "installperm"))


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.close()


def pytest_assertrepr_compare(
    config: pytest.Config, op: str, left: object, right: object
) -> list[str] | None:
    """Readable failures for ``==`` on a run's changes or result."""
    if "pytest_installperm.changes" not in sys.modules:
        return None  # no Changes exists yet: nothing of ours is being compared
    from pytest_installperm.placement import explain_comparison

    return explain_comparison(op, left, right)
