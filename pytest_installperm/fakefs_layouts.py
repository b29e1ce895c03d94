"""Scheme layouts of the in-process mode, and the interpreter state that answers
"where do I install?" with them.

Why patch interpreter state at all: in a pyfakefs test the code under test still
asks the *real* interpreter where things go. ``sysconfig`` caches its variables
(the prefix, the user base) in ``sysconfig._CONFIG_VARS`` on first use, ``site``
keeps ``USER_BASE``, ``USER_SITE`` and ``ENABLE_USER_SITE`` as module globals
computed at start-up, and both derive the rest from ``sys.prefix`` and HOME.
Changing HOME alone therefore changes nothing. :func:`apply_answers` swaps every one of
those for the fake environment's values, and puts everything back afterwards, so
``sysconfig.get_paths()``, ``site.getusersitepackages()`` and pip's own
``get_scheme()`` all answer with paths in the fake tree.

A :class:`Layout` is the shape of the schemes: which ``sysconfig`` scheme is the
system one and which the user one, and where the user base sits below HOME.
The POSIX layout is this interpreter's own. The macOS framework and Windows
layouts reproduce those platforms' *paths*; ``os.name`` and ``sys.platform``
stay what they are, because pyfakefs cannot change them (docs/fakefs.md lists
what that leaves out).
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pytest

from pytest_installperm.errors import RoleError
from pytest_installperm.schemes import SCHEME_KEYS


@dataclass(frozen=True, eq=False)
class Layout:
    """Where a platform puts its system and user schemes.

    ``userbase`` is relative to HOME, with ``{X}``/``{Y}`` for the version.
    ``python`` and ``venv_python`` are relative to the system prefix and the
    venv. Everything else (site-packages, scripts, the stdlib that holds the
    PEP 668 marker) comes from the named ``sysconfig`` schemes.
    """

    name: str
    prefix_scheme: str
    venv_scheme: str
    user_scheme: str
    userbase: str
    python: str
    venv_python: str
    #: Extra ``sysconfig`` variables the platform defines (e.g. Windows' ``311``).
    config: Mapping[str, str] = field(default_factory=dict)
    #: Environment variables the platform's ``site`` reads (e.g. APPDATA).
    environ: Mapping[str, str] = field(default_factory=dict)

    def fill(self, template: str) -> str:
        x, y = sys.version_info[:2]
        return template.replace("{X}", str(x)).replace("{Y}", str(y))

    def userbase_under(self, home: PurePosixPath) -> PurePosixPath:
        return home / self.fill(self.userbase)

    def environ_under(self, home: PurePosixPath) -> dict[str, str]:
        return {k: str(home / self.fill(v)) for k, v in self.environ.items()}


LAYOUTS: Mapping[str, Layout] = {
    # The running interpreter's own shape on Linux and other POSIX systems.
    "posix": Layout(
        name="posix",
        prefix_scheme="posix_prefix",
        venv_scheme="posix_venv",
        user_scheme="posix_user",
        userbase=".local",
        python="bin/python{X}.{Y}",
        venv_python="bin/python",
    ),
    # python.org's framework build: site.py puts the user base under
    # ~/Library/Python/X.Y and sysconfig uses the osx_framework_user scheme.
    "macos-framework": Layout(
        name="macos-framework",
        prefix_scheme="posix_prefix",
        venv_scheme="posix_venv",
        user_scheme="osx_framework_user",
        userbase="Library/Python/{X}.{Y}",
        python="bin/python{X}.{Y}",
        venv_python="bin/python",
        config={"PYTHONFRAMEWORK": "Python"},
    ),
    # Windows: %APPDATA%\Python, and the nt_user scheme below it
    # (%APPDATA%\Python\PythonXY\site-packages).
    "windows": Layout(
        name="windows",
        prefix_scheme="nt",
        venv_scheme="nt_venv",
        user_scheme="nt_user",
        userbase="AppData/Roaming/Python",
        python="python.exe",
        venv_python="Scripts/python.exe",
        config={"py_version_nodot_plat": "{X}{Y}"},
        environ={"APPDATA": "AppData/Roaming", "LOCALAPPDATA": "AppData/Local"},
    ),
}


def layout(name: str | Layout) -> Layout:
    """The layout called ``name``; RoleError lists the known ones."""
    if isinstance(name, Layout):
        return name
    try:
        return LAYOUTS[name]
    except KeyError:
        raise RoleError(
            f"layout={name!r}: unknown layout; choose one of {', '.join(sorted(LAYOUTS))}"
        ) from None


@dataclass(frozen=True)
class Host:
    """The real interpreter's answers, captured before anything is patched."""

    prefix: str
    base_prefix: str
    config: Mapping[str, object]

    @classmethod
    def capture(cls) -> Host:
        """The real answers, read once per process (they never change) and
        before the first patch; later calls return that first reading."""
        global _HOST
        if _HOST is None:
            _HOST = cls(sys.prefix, sys.base_prefix, dict(sysconfig.get_config_vars()))
        return _HOST


_HOST: Host | None = None


@dataclass(frozen=True)
class Answers:
    """What the patched interpreter says, for one fake environment."""

    prefix: str
    base_prefix: str
    executable: str
    userbase: str
    enable_user_site: bool
    home: str | None
    layout: Layout


def _config_vars(answers: Answers, host: Host) -> dict[str, object]:
    """A copy of sysconfig's variables with every real prefix swapped for a fake one.

    Besides the keys the path templates use, build variables such as LIBDEST
    or BINDIR embed the real prefix; they are rewritten too, so no answer
    points back at the host interpreter.
    """
    swaps = sorted(
        {(host.base_prefix, answers.base_prefix), (host.prefix, answers.prefix)},
        key=lambda pair: -len(pair[0]),
    )
    fake: dict[str, object] = {}
    for key, value in host.config.items():
        if isinstance(value, str):
            for old, new in swaps:
                if old in value:
                    value = value.replace(old, new)
        fake[key] = value
    scripts = os.path.dirname(answers.executable)
    fake.update(
        {
            "prefix": answers.prefix,
            "exec_prefix": answers.prefix,
            "base": answers.prefix,
            "platbase": answers.prefix,
            "installed_base": answers.base_prefix,
            "installed_platbase": answers.base_prefix,
            "projectbase": scripts,
            "userbase": answers.userbase,
            **{k: answers.layout.fill(v) for k, v in answers.layout.config.items()},
        }
    )
    return fake


@dataclass(frozen=True)
class SysconfigPaths:
    """The patched interpreter's full ``sysconfig`` paths: system, user, and
    the ``--prefix`` scheme computed with the environment's prefix as base."""

    system: Mapping[str, str]
    user: Mapping[str, str]
    prefix: Mapping[str, str]


#: Patched config variables and schemes per fake environment shape. Sandbox
#: paths are deterministic, so most tests hit this and skip rewriting ~1000
#: variables and expanding two schemes (a good part of the 2 ms budget).
_ANSWERS_CACHE: dict[tuple[object, ...], tuple[dict[str, object], SysconfigPaths]] = {}


def apply_answers(
    state: Answers, host: Host, mp: pytest.MonkeyPatch, *, venv: bool
) -> SysconfigPaths:
    """Make ``sys``, ``sysconfig`` and ``site`` answer with ``state``; return its schemes.

    Everything goes through ``mp``, so the caller's ``undo()`` restores it all,
    in reverse order, whatever happened in between.
    """
    lay = state.layout
    key = (id(host), state.prefix, state.base_prefix, state.executable, state.userbase, lay, venv)
    cached = _ANSWERS_CACHE.get(key)
    config = dict(cached[0]) if cached else _config_vars(state, host)
    mp.setattr(sys, "prefix", state.prefix)
    mp.setattr(sys, "exec_prefix", state.prefix)
    mp.setattr(sys, "base_prefix", state.base_prefix)
    mp.setattr(sys, "base_exec_prefix", state.base_prefix)
    mp.setattr(sys, "executable", state.executable)
    if hasattr(sys, "_base_executable"):
        mp.setattr(sys, "_base_executable", state.executable)
    mp.setattr(sysconfig, "_CONFIG_VARS", config)
    preferred = {"prefix": lay.prefix_scheme, "home": "posix_home", "user": lay.user_scheme}
    # get_preferred_scheme() (which pip captured at import) reads these globals.
    mp.setattr(sysconfig, "_get_preferred_schemes", lambda: dict(preferred), raising=False)
    installs = getattr(sysconfig, "_INSTALL_SCHEMES", None)
    if isinstance(installs, dict) and lay.venv_scheme in installs:
        mp.setitem(installs, "venv", installs[lay.venv_scheme])
    mp.setattr(site, "PREFIXES", [state.prefix, state.prefix])
    mp.setattr(site, "ENABLE_USER_SITE", state.enable_user_site)
    mp.setattr(site, "USER_BASE", state.userbase)
    if cached:
        schemes = cached[1]
    else:
        fresh = dict(config)
        bases = ("base", "platbase", "installed_base", "installed_platbase")
        schemes = SysconfigPaths(
            sysconfig.get_paths("venv" if venv else lay.prefix_scheme),
            sysconfig.get_paths(lay.user_scheme),
            sysconfig.get_paths(lay.prefix_scheme, vars=dict.fromkeys(bases, state.prefix)),
        )
        _ANSWERS_CACHE[key] = (fresh, schemes)
    mp.setattr(site, "USER_SITE", schemes.user["purelib"])
    return schemes


def wheel_scheme(paths: Mapping[str, str], *, headers: str | None = None) -> dict[str, str]:
    """A ``sysconfig`` scheme as the five wheel scheme keys (headers = include)."""
    return {k: (headers or paths["include"]) if k == "headers" else paths[k] for k in SCHEME_KEYS}


__all__ = [
    "LAYOUTS",
    "SCHEME_KEYS",
    "Answers",
    "Host",
    "Layout",
    "SysconfigPaths",
    "apply_answers",
    "layout",
    "wheel_scheme",
]
