"""Turn a base interpreter into a fake *system* Python inside a sandbox.

Why not a venv: a venv changes exactly what we want to test. pip falls back to
the user site only for a system interpreter, PEP 668 applies only outside venvs,
and distributions (Debian's ``posix_local`` scheme) behave differently in one.
So we relocate the real binary instead:

* a *template* (kept between sessions, see :mod:`.cache`) holds a readable
  copy of the binary, its shared ``libpython`` if any, and the stdlib (hard
  links when the copy must be readable by an unprivileged uid, symlinks
  otherwise);
* each sandbox's prefix gets a hard link to the binary, ``lib/pythonXY.zip``
  as a symlink to the template's stdlib, and in ``lib/pythonX.Y`` only the few
  entries that Python and ``sysconfig`` look for there, so building one costs
  well under a millisecond.

Python finds its prefix from its executable's real location (the landmark
``lib/pythonX.Y/os.py``), so ``sys.prefix``, ``sysconfig`` and ``site`` all
point into the sandbox. ``lib/pythonXY.zip`` is on ``sys.path`` ahead of
``lib/pythonX.Y`` whether it exists or not; a directory there imports like any
other, so the stdlib is found through one symlink instead of one per entry.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_installperm.cache import identity
from pytest_installperm.errors import InterpreterError

_INSPECT = r"""
import json, os, platform, sys, sysconfig
print(json.dumps({
    "executable": os.path.realpath(sys.executable),
    "release": platform.python_version(),
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "exec_prefix": sys.exec_prefix,
    "version": "%d.%d" % sys.version_info[:2],
    "implementation": sys.implementation.name,
    "stdlib": sysconfig.get_path("stdlib"),
    "platstdlib": sysconfig.get_path("platstdlib"),
    "libdir": sysconfig.get_config_var("LIBDIR"),
    "ldlibrary": sysconfig.get_config_var("INSTSONAME") or "",
    "shared": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
    "loaded": sorted({line.split()[-1] for line in open("/proc/self/maps")
                      if "/libpython" in line}) if os.path.exists("/proc/self/maps") else [],
}))
"""

# Run by the *relocated* interpreter, once per base and kind per session.
_SCHEMES = r"""
import json, os, site, sys, sysconfig
venv = sys.prefix != sys.base_prefix
try:
    user_scheme = sysconfig.get_preferred_scheme("user")
except AttributeError:  # Python < 3.10
    user_scheme = os.name + "_user"
system = sysconfig.get_paths()
user = sysconfig.get_paths(scheme=user_scheme)
xy = "python%d.%d" % sys.version_info[:2]
if venv:
    system_headers = os.path.join(sys.prefix, "include", "site", xy)
    user_headers = os.path.join(site.getuserbase(), "include", "site", xy)
else:
    system_headers = system["include"]
    user_headers = user.get("include", os.path.join(site.getuserbase(), "include", xy))
# --prefix DIR: posix_prefix with DIR as every base (pip maps Debian's
# posix_local to it), read here so that nothing runs this interpreter later.
prefix = sysconfig.get_paths("posix_prefix", vars=dict.fromkeys(
    ("base", "platbase", "installed_base", "installed_platbase"), sys.prefix))
def pick(paths, headers):
    return {"purelib": paths["purelib"], "platlib": paths["platlib"],
            "scripts": paths["scripts"], "data": paths["data"], "headers": headers}
# Debian's interpreters prefer posix_local outside a venv; pip before 26.3 took
# the preferred scheme for --prefix DIR too (DIR/local/lib/pythonX.Y/dist-packages).
try:
    preferred = sysconfig.get_preferred_scheme("prefix")
except AttributeError:  # Python < 3.10: pip asks distutils, below
    preferred = None
local = None
if preferred == "posix_local":
    local = sysconfig.get_paths("posix_local", vars=dict.fromkeys(
        ("base", "platbase", "installed_base", "installed_platbase"), sys.prefix))
    local = pick(local, local["include"])
# pip takes its schemes from distutils before Python 3.10, as distributions
# patch it (Debian 11: <prefix>/local/lib/python3.9/dist-packages).
if not getattr(sysconfig, "_PIP_USE_SYSCONFIG", sys.version_info >= (3, 10)):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from distutils.command.install import install
        from distutils.dist import Distribution
    def distutils_paths(user):
        command = install(Distribution())
        command.user = user
        command.create_home_path = lambda: None  # a query, not a mkdir of ~/.local
        command.finalize_options()
        return {"purelib": command.install_purelib, "platlib": command.install_platlib,
                "scripts": command.install_scripts, "data": command.install_data,
                "include": command.install_headers.rstrip("/")}
    if not venv:
        system = distutils_paths(False)
        system_headers = system["include"]
    user = distutils_paths(True)
print(json.dumps({
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "stdlib": sysconfig.get_path("stdlib"),
    "userbase": site.getuserbase(),
    "enable_user_site": bool(site.ENABLE_USER_SITE),
    "system": pick(system, system_headers),
    "user": pick(user, user_headers),
    "prefix": pick(prefix, prefix["include"]),
    "prefix_local": local,
    "prefix_base": sys.prefix,
}))
"""

#: The PEP 668 marker written for ``externally_managed=True``.
MARKER_TEXT = (
    "[externally-managed]\nError=This environment is externally managed "
    "(written by pytest-installperm).\n"
)

#: Stdlib entries never mirrored: the site directory is per sandbox, and the
#: test suite is large and never needed by an installer. ``__pycache__`` *is*
#: mirrored: without it every child recompiles the top-level stdlib modules.
_SKIP_STDLIB = frozenset({"site-packages", "dist-packages", "test"})


def is_landmark(name: str) -> bool:
    """Stdlib entries a sandbox's ``lib/pythonX.Y`` must hold itself.

    ``os.py`` and ``lib-dynload`` are the prefix and exec-prefix landmarks;
    ``config-X.Y-*`` holds the Makefile that ``sysconfig`` names, and
    ``_sysconfigdata_*`` is what it reads.
    """
    return name in ("os.py", "lib-dynload") or name.startswith(("config-", "_sysconfigdata"))


@dataclass(frozen=True)
class BaseInterpreter:
    """Facts about the interpreter a sandbox copies, read from the interpreter."""

    executable: Path
    prefix: Path
    stdlib: Path
    version: str
    libpython: Path | None
    #: Its full version (3.11.2, 3.14.0rc3), for reports; "" if unknown.
    release: str = ""

    @property
    def binary_name(self) -> str:
        return f"python{self.version}"


def running_base() -> Path:
    """The interpreter running pytest, or the base of its venv."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return Path(os.path.realpath(base))


def inspect(python: str | os.PathLike[str] | None) -> BaseInterpreter:
    """Ask ``python`` where its prefix, stdlib and libpython live.

    Refuses, naming the path and the reason, anything we cannot relocate: a
    missing file, a non-CPython, a venv's interpreter, or a stdlib outside
    ``<prefix>/lib/pythonX.Y``.
    """
    path = executable_of(python)
    return from_layout(path, query_layout(path))


def executable_of(python: str | os.PathLike[str] | None) -> Path:
    """``python`` (default: the running base) if it is an executable file."""
    path = Path(python) if python is not None else running_base()
    if not path.exists():
        raise InterpreterError(f"base interpreter {path}: does not exist")
    if not os.access(path, os.X_OK) or path.is_dir():
        raise InterpreterError(f"base interpreter {path}: is not an executable file")
    return path


def layout_key(path: Path) -> dict[str, object]:
    """What the answer of :func:`query_layout` depends on."""
    return {"binary": identity(path), "loader": _inspect_env().get("LD_LIBRARY_PATH")}


def query_layout(path: Path) -> dict[str, Any]:
    """Run ``path`` once and return what it says about its layout, as JSON data."""
    try:
        out = subprocess.run(
            [str(path), "-I", "-c", _INSPECT],
            capture_output=True,
            text=True,
            timeout=60,
            env=_inspect_env(),
            check=False,
        )
    except OSError as exc:
        raise InterpreterError(f"base interpreter {path}: cannot be run: {exc}") from exc
    if out.returncode != 0:
        raise InterpreterError(
            f"base interpreter {path}: exited {out.returncode} when asked for its layout: "
            f"{out.stderr.strip()[-500:]}"
        )
    try:
        facts = json.loads(out.stdout)
    except ValueError as exc:
        raise InterpreterError(
            f"base interpreter {path}: is not a Python interpreter (printed {out.stdout[:200]!r})"
        ) from exc
    if not isinstance(facts, dict):
        raise InterpreterError(f"base interpreter {path}: printed {out.stdout[:200]!r}")
    return facts


def _inspect_env() -> dict[str, str]:
    """A clean environment, except the loader path: an interpreter that was
    itself relocated finds its libpython only through LD_LIBRARY_PATH, and
    without it the loader may pick up a different build's library."""
    env = {"PATH": os.defpath, "LC_ALL": "C.UTF-8"}
    if os.environ.get("LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return env


def from_layout(path: Path, facts: Mapping[str, object]) -> BaseInterpreter:
    """The base interpreter that :func:`query_layout` described, if relocatable."""
    if facts["implementation"] != "cpython":
        raise InterpreterError(
            f"base interpreter {path}: is {facts['implementation']}, only CPython can be relocated"
        )
    if facts["prefix"] != facts["base_prefix"]:
        raise InterpreterError(
            f"base interpreter {path}: belongs to the virtual environment {facts['prefix']}; "
            f"give its base interpreter instead (under {facts['base_prefix']})"
        )
    prefix = Path(str(facts["prefix"]))
    stdlib = Path(str(facts["stdlib"]))
    version = str(facts["version"])
    if stdlib != prefix / "lib" / f"python{version}":
        raise InterpreterError(
            f"base interpreter {path}: cannot be relocated: its stdlib {stdlib} is not "
            f"<prefix>/lib/python{version} under prefix {prefix}"
        )
    libpython = None
    loaded = facts.get("loaded") or []
    if facts["shared"] and isinstance(loaded, list) and loaded:
        # The library the process really mapped: build-time LIBDIR may be
        # unreadable or stale for an interpreter that was itself relocated.
        libpython = Path(str(loaded[0]))
    elif facts["shared"] and facts["ldlibrary"]:
        candidate = Path(str(facts["libdir"])) / str(facts["ldlibrary"])
        try:
            libpython = candidate if candidate.exists() else None
        except OSError:
            libpython = None
    return BaseInterpreter(
        executable=Path(str(facts["executable"])),
        prefix=prefix,
        stdlib=stdlib,
        version=version,
        libpython=libpython,
        release=str(facts.get("release") or ""),
    )


def readable_link(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Make ``dst`` a copy of ``src`` that every uid can read.

    A hard link when ``src`` is already readable by others (and on the same
    filesystem); otherwise a copy, whose mode is ours to widen. The source's
    own inode is never changed.
    """
    mode = stat.S_IMODE(os.stat(src).st_mode)
    if mode & stat.S_IROTH:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)
    if not mode & stat.S_IROTH:
        os.chmod(dst, mode | 0o444 | (0o111 if mode & stat.S_IXUSR else 0))


def _mirror_tree(src: Path, dst: Path) -> None:
    """Hard-link (or copy) ``src`` into ``dst`` readably; keep symlinks."""
    # Static libraries (config-X.Y/libpythonX.Y.a, ~44 MB) serve only C builds.
    shutil.copytree(
        src, dst, symlinks=True, copy_function=readable_link, ignore=shutil.ignore_patterns("*.a")
    )


def _zip_directory(base: BaseInterpreter) -> Path:
    """``lib/pythonXY.zip`` of ``base``: a directory when ``base`` is a sandbox's."""
    return base.prefix / "lib" / f"python{base.version.replace('.', '')}.zip"


def _stdlib_sources(base: BaseInterpreter) -> dict[str, Path]:
    """Each stdlib entry's path, also when ``base`` was itself relocated by us
    (its ``lib/pythonX.Y`` then holds only the landmarks)."""
    found: dict[str, Path] = {}
    for where in (_zip_directory(base), base.stdlib):
        if where.is_dir():
            found.update({n: where / n for n in os.listdir(where) if n not in _SKIP_STDLIB})
    return found


@dataclass(frozen=True)
class Template:
    """A per-session, read-only copy of a base interpreter's runtime pieces."""

    base: BaseInterpreter
    root: Path
    binary: Path
    libdir: Path | None
    stdlib: Path
    #: The stdlib entries linked into each sandbox's ``lib/pythonX.Y`` (see is_landmark).
    landmarks: tuple[str, ...]
    externally_managed: Path | None

    @classmethod
    def build(cls, base: BaseInterpreter, root: Path, *, readable: bool) -> Template:
        """Copy what a sandbox needs. ``readable``: others than us must read it.

        When another uid must run the copy (privdrop), the stdlib is hard-linked
        into this root-owned 0755 tree, because the original may sit under a
        0700 home. Otherwise symlinks to the original are enough.
        """
        root.mkdir(parents=True)
        (root / "bin").mkdir()
        # A copy: sandboxes hard-link it, and their locks must not reach the base's inode.
        shutil.copy2(base.executable, root / "bin" / base.binary_name)
        if base.libpython is not None:
            (root / "lib").mkdir()
            readable_link(base.libpython, root / "lib" / base.libpython.name)
        stdlib = root / "stdlib"
        stdlib.mkdir()
        for item, src in sorted(_stdlib_sources(base).items()):
            if item == "EXTERNALLY-MANAGED":
                shutil.copy2(src, stdlib / item)
            elif item == "__pycache__" and src.is_dir():
                # Always a copy, never a symlink: children read this bytecode,
                # and must not write into the base's own cache (chmod backend).
                _mirror_tree(src, stdlib / item)
            elif not readable:
                os.symlink(src, stdlib / item)
            elif src.is_dir() and not src.is_symlink():
                _mirror_tree(src, stdlib / item)
            elif src.is_symlink():
                os.symlink(os.readlink(src), stdlib / item)
            else:
                readable_link(src, stdlib / item)
        return cls.open(base, root)

    @classmethod
    def open(cls, base: BaseInterpreter, root: Path) -> Template:
        """The template that :meth:`build` wrote into ``root``."""
        stdlib = root / "stdlib"
        names = sorted(os.listdir(stdlib))
        marker = stdlib / "EXTERNALLY-MANAGED"
        return cls(
            base,
            root,
            root / "bin" / base.binary_name,
            root / "lib" if base.libpython is not None else None,
            stdlib,
            tuple(n for n in names if is_landmark(n)),
            marker if marker.name in names else None,
        )

    def relocate(self, prefix: Path, *, externally_managed: bool | None) -> Path:
        """Make ``prefix`` a system prefix for this interpreter; return its python.

        ``externally_managed``: None keeps the base's PEP 668 marker as it is,
        True writes one, False leaves it out.
        """
        version = self.base.version
        bindir = prefix / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        python = bindir / self.base.binary_name
        try:
            os.link(self.binary, python)
        except OSError:
            shutil.copy2(self.binary, python)
        os.symlink(self.base.binary_name, bindir / "python3")
        os.symlink(self.base.binary_name, bindir / "python")
        lib = prefix / "lib"
        stdlib = lib / f"python{version}"
        stdlib.mkdir(parents=True)
        os.symlink(self.stdlib, lib / f"python{version.replace('.', '')}.zip")
        source, target = str(self.stdlib), str(stdlib)
        for item in self.landmarks:
            os.symlink(f"{source}/{item}", f"{target}/{item}")
        if externally_managed is None and self.externally_managed is not None:
            os.symlink(self.externally_managed, stdlib / "EXTERNALLY-MANAGED")
        elif externally_managed:
            (stdlib / "EXTERNALLY-MANAGED").write_text(MARKER_TEXT)
        return python


def template_key(base: BaseInterpreter, *, readable: bool) -> dict[str, object]:
    """What a template of ``base`` depends on: the identity of every source."""
    return {
        "base": [str(base.executable), base.version, str(base.prefix)],
        "binary": identity(base.executable),
        "stdlib": identity(base.stdlib),
        "stdlib_cache": identity(base.stdlib / "__pycache__")
        if (base.stdlib / "__pycache__").is_dir()
        else None,
        "libpython": identity(base.libpython) if base.libpython is not None else None,
        "zip": identity(_zip_directory(base)) if _zip_directory(base).is_dir() else None,
        "readable": readable,
        "skip": sorted(_SKIP_STDLIB),
    }


def create_venv(venv: Path, python: Path, version: str, *, system_site_packages: bool) -> Path:
    """Write a PEP 405 virtual environment by hand; return its interpreter.

    This is what ``python -m venv --without-pip`` writes minus the activation
    scripts, in well under a millisecond instead of about a hundred.
    """
    bindir = venv / "bin"
    bindir.mkdir(parents=True)
    (venv / "include").mkdir()
    (venv / "lib" / f"python{version}" / "site-packages").mkdir(parents=True)
    os.symlink("lib", venv / "lib64")
    for name in ("python", "python3", f"python{version}"):
        os.symlink(python, bindir / name)
    flag = "true" if system_site_packages else "false"
    (venv / "pyvenv.cfg").write_text(
        f"home = {python.parent}\n"
        f"include-system-site-packages = {flag}\n"
        f"version = {version}\n"
        f"executable = {python}\n"
        f"command = {python} -m venv {venv}\n"
    )
    return bindir / "python"


def query_schemes(
    python: Path, env: Mapping[str, str], run_as: Mapping[str, Any]
) -> dict[str, object]:
    """Run the relocated ``python`` once and return its schemes as JSON data."""
    kwargs: dict[str, Any] = dict(run_as)
    out = subprocess.run(
        [str(python), "-c", _SCHEMES],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(env),
        check=False,
        **kwargs,
    )
    if out.returncode != 0:
        raise InterpreterError(
            f"relocated interpreter {python}: exited {out.returncode} when asked for its "
            f"schemes: {out.stderr.strip()[-800:]}"
        )
    data: dict[str, object] = json.loads(out.stdout)
    return data
