"""Every option and ini value of the plugin, read and checked once, at start-up.

pytest checks the command line as it parses it, but an ini value is a string
that nothing looks at until it is used. Used inside a fixture, a bad one fails
every test with a long traceback, and under the matrix the failed items carry
no result row, so a report shows nothing wrong. :func:`check` therefore runs in
``pytest_cmdline_main``, before any item: each value is read once (the command
line first, else the ini file, see :func:`option`), checked, and kept as a
frozen :class:`Options` in ``config.stash``. A bad value is one line of
:class:`pytest.UsageError` that names the option or ini key, the value and
what is allowed.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: ``installperm_divergences`` lines: ``INSTALLER SCENARIO: reason``.
_DECLARATION = re.compile(r"\s*(\S+)\s+(\S+)\s*:\s*(\S.*)")


@dataclass(frozen=True)
class Options:
    """The plugin's settings, checked; paths are absolute."""

    backend: str = "auto"
    #: ``system()``'s mode unless it says (``world.MODES``).
    mode: str = "auto"
    #: The identity children run as under privdrop; None: ``nobody``.
    uid: int | None = None
    gid: int | None = None
    basetemp: Path | None = None
    #: The plugin's cache directory (templates kept between sessions); None: the default.
    cache_dir: Path | None = None
    #: ``--installperm-clear-cache``: remove the kept templates first.
    clear_cache: bool = False
    #: ``--installperm``: collect and run the scenario matrix.
    matrix: bool = False
    #: ``--installperm-installer`` specs, unparsed (the installers package parses them).
    installers: tuple[str, ...] = ()
    report: Path | None = None
    markdown: Path | None = None
    scenario_dirs: tuple[Path, ...] = ()
    #: ``--installperm-python``: the matrix's base interpreters; empty: the running one.
    pythons: tuple[Path, ...] = ()
    #: (installer, scenario) -> reason, from ``installperm_divergences``.
    divergences: Mapping[tuple[str, str], str] = field(default_factory=dict)


OPTIONS_KEY = pytest.StashKey[Options]()


def _unset(value: object) -> bool:
    return value is None or value is False or (isinstance(value, (str, list)) and not value)


def option(config: pytest.Config, name: str) -> Any:
    """The value of ``name`` (an option's dest, which is also its ini key):
    from the command line if given there, else from the ini file."""
    value = config.getoption(name, None)
    return config.getini(name) if _unset(value) else value


def _where(config: pytest.Config, name: str) -> str:
    """How a user would find the value again: the option, or the ini key and file."""
    if not _unset(config.getoption(name, None)):
        return "--" + name.replace("_", "-")
    overrides = getattr(config.option, "override_ini", None) or []
    if any(o.split("=", 1)[0] == name for o in overrides):
        return f"ini {name} (from -o)"
    return f"ini {name}" + (f" ({config.inipath})" if config.inipath else "")


def _refuse(config: pytest.Config, name: str, value: object, allowed: str) -> pytest.UsageError:
    return pytest.UsageError(f"{_where(config, name)}: {value!r} {allowed}")


def _backend(config: pytest.Config) -> str:
    value = str(option(config, "installperm_backend") or "auto")
    if value == "auto":
        return value  # the default: known without loading the backends (and locks)
    from pytest_installperm.backends import BACKENDS

    if value not in BACKENDS:
        raise _refuse(
            config,
            "installperm_backend",
            value,
            f"is not a backend; allowed: {', '.join(BACKENDS)}",
        )
    return value


def _mode(config: pytest.Config) -> str:
    value = str(option(config, "installperm_mode") or "auto")
    if value == "auto":
        return value  # the default: known without loading the world seam
    from pytest_installperm.world import MODES

    if value not in MODES:
        raise _refuse(
            config, "installperm_mode", value, f"is not a mode; allowed: {', '.join(MODES)}"
        )
    return value


def _identity(config: pytest.Config) -> tuple[int | None, int | None]:
    """A user name (its uid and primary group) or a uid number (gid = uid)."""
    value = str(option(config, "installperm_uid") or "").strip()
    allowed = "a user name or a uid number other than 0 (root, whom no lock stops)"
    if not value:
        return None, None
    if value.isdigit():
        if int(value) == 0:
            raise _refuse(config, "installperm_uid", value, f"is root; allowed: {allowed}")
        return int(value), int(value)
    try:
        entry = pwd.getpwnam(value)
    except KeyError:
        raise _refuse(
            config, "installperm_uid", value, f"is no user on this machine; allowed: {allowed}"
        ) from None
    if entry.pw_uid == 0:
        raise _refuse(config, "installperm_uid", value, f"is root; allowed: {allowed}")
    return entry.pw_uid, entry.pw_gid


def _absolute(config: pytest.Config, value: str | os.PathLike[str]) -> Path:
    return Path(os.path.normpath(config.invocation_params.dir / Path(value)))


def _basetemp(config: pytest.Config) -> Path | None:
    value = option(config, "installperm_basetemp")
    if not value:
        return None
    path = _absolute(config, value)
    if not path.is_dir():
        raise _refuse(config, "installperm_basetemp", str(value), "is not an existing directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise _refuse(config, "installperm_basetemp", str(value), "is a directory we cannot write")
    return path


def _cache_dir(config: pytest.Config) -> Path | None:
    value = option(config, "installperm_cache_dir")
    return _absolute(config, value) if value else None


def _output_file(config: pytest.Config, name: str) -> Path | None:
    """A report path: not a directory, and its nearest existing ancestor writable.

    The write itself may still fail at the end of the session (a disk fills,
    a directory goes away); the matrix reports that after printing the table.
    """
    value = option(config, name)
    if not value:
        return None
    path = _absolute(config, value)
    if path.is_dir():
        raise _refuse(config, name, str(value), "is a directory; give a file path")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise _refuse(config, name, str(value), f"cannot be created: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise _refuse(config, name, str(value), f"cannot be created: {ancestor} is not writable")
    return path


def _matrix(config: pytest.Config) -> bool:
    if config.getoption("installperm", False):
        return True
    try:
        return bool(config.getini("installperm"))
    except (ValueError, pytest.UsageError) as exc:  # neither names the key
        where = _where(config, "installperm")
        raise pytest.UsageError(f"{where}: {exc}; allowed: true or false") from None


def _scenario_dirs(config: pytest.Config) -> tuple[Path, ...]:
    found = []
    for value in config.getini("installperm_scenarios"):
        path = _absolute(config, value)
        if not path.is_dir():
            raise _refuse(
                config, "installperm_scenarios", str(value), "is not a directory of scenario files"
            )
        found.append(path)
    return tuple(found)


def _divergences(config: pytest.Config) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for line in config.getini("installperm_divergences"):
        if not line.strip():
            continue
        match = _DECLARATION.fullmatch(line)
        if match is None:
            raise _refuse(
                config, "installperm_divergences", line, "must read 'INSTALLER SCENARIO: reason'"
            )
        found[(match[1], match[2])] = match[3].strip()
    return found


def _pythons(config: pytest.Config) -> tuple[Path, ...]:
    """Base interpreters: executable files, each named once (symlinks are kept,
    so that ``/usr/bin/python3`` stays what the user asked for)."""
    found: list[Path] = []
    for value in option(config, "installperm_python") or ():
        path = _absolute(config, value)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise _refuse(config, "installperm_python", str(value), "is not an executable file")
        if path in found:
            raise _refuse(config, "installperm_python", str(value), "is given twice")
        found.append(path)
    return tuple(found)


def read(config: pytest.Config) -> Options:
    """Read and check every value; UsageError for the first bad one."""
    uid, gid = _identity(config)
    return Options(
        backend=_backend(config),
        mode=_mode(config),
        uid=uid,
        gid=gid,
        basetemp=_basetemp(config),
        cache_dir=_cache_dir(config),
        clear_cache=bool(config.getoption("installperm_clear_cache", False)),
        matrix=_matrix(config),
        installers=tuple(option(config, "installperm_installer") or ()),
        report=_output_file(config, "installperm_report"),
        markdown=_output_file(config, "installperm_markdown"),
        scenario_dirs=_scenario_dirs(config),
        pythons=_pythons(config),
        divergences=_divergences(config),
    )


def check(config: pytest.Config) -> Options:
    """:func:`read`, once per session; the result is kept in ``config.stash``."""
    found = config.stash.get(OPTIONS_KEY, None)
    if found is None:
        found = read(config)
        config.stash[OPTIONS_KEY] = found
    return found


__all__ = ["OPTIONS_KEY", "Options", "check", "option", "read"]
