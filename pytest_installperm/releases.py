"""Installer code chosen by version or by path: ``NAME==VERSION`` and ``NAME@PATH``.

``NAME==VERSION`` is a release, downloaded by this machine's own pip (``python
-m pip download``, so its configuration files and ``PIP_*`` variables choose
the index, as they do for every other install here) once into a cache shared
by every session. Its sha256 is recorded at download and checked on every use:
a wheel that no longer matches is fetched again, and refused if the index now
serves different bytes or cannot be reached.

The cache is ``/var/cache/pytest-installperm`` when running as root (root-owned,
0755: a dropped uid can read it, never write it), else
``$XDG_CACHE_HOME/pytest-installperm`` (default ``~/.cache/pytest-installperm``).
Sessions running at the same time share it safely: downloads happen under an
exclusive lock and land by an atomic rename of a complete directory.

``NAME@PATH`` is code on disk: a wheel, an unpacked tree (a directory holding
the package), a source checkout (``src/NAME``), an environment where the
package is installed, also editable (its ``direct_url.json`` says where the
code really lives), or a program (uv's binary).

Either way the sandbox runs a readable copy made per session (:func:`provide`),
so a dropped uid can read it even when the original sits under ``/root``, and
no child can change it.
"""

from __future__ import annotations

import compileall
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pytest_installperm.errors import InstallPermError

#: A cache entry's record of what was downloaded.
RECORD_NAME = "release.json"
#: How long the host's pip may take to download one release.
DOWNLOAD_TIMEOUT = 900


class ReleaseError(InstallPermError, ValueError):
    """A requested release or path cannot be used: names it and the reason."""


@dataclass(frozen=True)
class Origin:
    """Where an installer's code comes from: a release (``==``) or a path (``@``)."""

    name: str
    version: Version | None = None
    path: Path | None = None

    def describe(self) -> str:
        return f"{self.name}=={self.version}" if self.version else f"{self.name}@{self.path}"


def parse_origin(spec: str) -> Origin | None:
    """``NAME==VERSION`` or ``NAME@PATH``; None for anything else.

    ReleaseError when the form is right but the value is not: ``pip==NOPE``.
    """
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*(==|@)\s*(.*?)\s*", spec)
    if match is None:
        return None
    name, form, value = match.groups()
    if not value:
        raise ReleaseError(f"{spec!r}: nothing after {form!r}")
    if form == "@":
        return Origin(name, path=Path(value).expanduser().absolute())
    try:
        version = Version(value)
    except InvalidVersion:
        raise ReleaseError(
            f"{spec!r}: {value!r} is not a version (PEP 440, for example {name}==24.0)"
        ) from None
    return Origin(name, version=version)


@dataclass(frozen=True)
class Release:
    """A downloaded wheel in the cache, with the sha256 recorded at download."""

    name: str
    version: str
    wheel: Path
    sha256: str


def cache_dir() -> Path:
    """The shared release cache (see the module docstring)."""
    if os.geteuid() == 0:
        return Path("/var/cache/pytest-installperm")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-installperm"


def _open_cache(cache: Path) -> Path:
    """Create ``cache`` (0755) or check that nobody but us can write to it."""
    cache.mkdir(mode=0o755, parents=True, exist_ok=True)
    info = os.lstat(cache)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise ReleaseError(f"release cache {cache}: not a directory owned by uid {os.geteuid()}")
    if info.st_mode & 0o022:
        raise ReleaseError(
            f"release cache {cache}: writable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); a child could change the code it runs"
        )
    return cache


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    with open(cache / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry(cache: Path, name: str, version: Version) -> Path:
    return cache / f"{canonicalize_name(name)}-{version}"


def _read_entry(entry: Path) -> Release | None:
    try:
        record = json.loads((entry / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    return Release(record["name"], record["version"], entry / record["wheel"], record["sha256"])


def fetch(
    name: str,
    version: Version,
    *,
    cache: Path | None = None,
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> Release:
    """The verified wheel of ``name==version``, downloaded once into the cache.

    ``env`` is the environment of the host's pip (default: this process's).
    """
    cache = _open_cache(cache or cache_dir())
    entry = _entry(cache, name, version)
    known = _read_entry(entry)
    if known is not None and sha256_of(known.wheel) == known.sha256:
        return known
    with _locked(cache):
        known = _read_entry(entry)  # another session may have fetched it meanwhile
        if known is not None:
            actual = sha256_of(known.wheel) if known.wheel.exists() else "(missing)"
            if actual == known.sha256:
                return known
        fresh = _download(
            name,
            version,
            cache,
            entry,
            dict(os.environ if env is None else env),
            python,
            corrupt=known,
        )
    return fresh


def _download(
    name: str,
    version: Version,
    cache: Path,
    entry: Path,
    env: dict[str, str],
    python: str,
    *,
    corrupt: Release | None,
) -> Release:
    spec = f"{name}=={version}"
    scratch = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
    try:
        argv = [
            python,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(scratch),
            spec,
        ]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, env=env, timeout=DOWNLOAD_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            raise ReleaseError(
                f"{spec}: the download did not finish in {DOWNLOAD_TIMEOUT} s"
            ) from None
        wheels = sorted(scratch.glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            words = _last_lines(done.stderr or done.stdout)
            why = f"cached wheel {corrupt.wheel} is corrupt and " if corrupt else ""
            raise ReleaseError(
                f"{spec}: {why}this machine's pip ({python} -m pip download) could not get "
                f"it from its configured index (exit status {done.returncode}): {words}"
            )
        wheel = wheels[0]
        digest = sha256_of(wheel)
        if corrupt is not None and digest != corrupt.sha256:
            raise ReleaseError(
                f"{spec}: cached wheel {corrupt.wheel} does not match the sha256 recorded "
                f"at download ({corrupt.sha256}), and the index now serves a different "
                f"file ({digest}): refusing both; remove {entry} to accept the new one"
            )
        record = {"name": name, "version": str(version), "wheel": wheel.name, "sha256": digest}
        (scratch / RECORD_NAME).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        for path in (wheel, scratch / RECORD_NAME):
            os.chmod(path, 0o444)
        os.chmod(scratch, 0o755)
        if entry.exists():
            _remove(entry)
        os.rename(scratch, entry)  # atomic: readers see no entry or a whole one
    finally:
        if scratch.exists():
            _remove(scratch)
    release = _read_entry(entry)
    assert release is not None
    return release


def _remove(path: Path) -> None:
    for directory, _dirs, _files in os.walk(path):
        os.chmod(directory, 0o755)
    shutil.rmtree(path)


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "(no output)"


# ---------------------------------------------------------------------------
# a readable copy for the sandbox
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """A readable, per-session copy of an installer's code.

    ``lib`` goes on the child's ``PYTHONPATH`` (it holds the package),
    ``bin`` holds its programs. ``version`` is what the files say; what
    actually runs is asked from the installer itself.
    """

    origin: Origin
    lib: Path | None
    bin: Path | None
    version: str | None
    requires_python: SpecifierSet | None

    def runs_on(self, python_version: str) -> str | None:
        """Why this code cannot run on that Python, from its metadata, or None."""
        if self.requires_python is None or self.requires_python.contains(
            python_version, prereleases=True
        ):
            return None
        return (
            f"{self.origin.describe()} (version {self.version}) requires Python "
            f"{self.requires_python}; the interpreter under test is Python {python_version}"
        )


def locate(origin: Origin, *, cache: Path | None = None) -> tuple[str, Path]:
    """What ``origin`` is and where: ``("wheel", path)``, ``("tree", directory
    holding the package)`` or ``("program", path)``; a release is fetched (or
    its cached wheel verified). ReleaseError if it is none of these."""
    if origin.version is not None:
        return "wheel", fetch(origin.name, origin.version, cache=cache).wheel
    assert origin.path is not None
    path = origin.path
    if path.is_file() and path.suffix == ".whl":
        return "wheel", path
    if _is_program(path):
        return "program", path
    if path.is_dir():
        lib = _find_package(origin.name, path)
        if lib is not None:
            return "tree", lib
        for program in (path / origin.name, path / "bin" / origin.name):
            if _is_program(program):
                return "program", program
    raise ReleaseError(
        f"{origin.describe()}: {path} is not an installer: "
        + ("it does not exist" if not path.exists() else _not_found(origin.name, path))
    )


def provide(origin: Origin, dest: Path, *, cache: Path | None = None) -> Code:
    """Fetch or find ``origin``'s code and copy it into ``dest`` (a new directory)."""
    kind, path = locate(origin, cache=cache)
    if kind == "wheel":
        return _from_wheel(origin, path, dest)
    if kind == "program":
        return _from_program(origin, path, dest)
    return _from_tree(origin, path, dest)


def _not_found(name: str, path: Path) -> str:
    return (
        f"no wheel, no package {name}/ in it or in its src/, no environment with "
        f"{name} installed (also editable) and no program {name!r} in it or its bin/"
    )


def _is_program(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _find_package(name: str, path: Path) -> Path | None:
    """The directory that holds package ``name``: tree, checkout, or environment."""
    module = name.replace("-", "_")
    if path.name == module and (path / "__init__.py").is_file():
        return path.parent
    for candidate in (path, path / "src"):
        if (candidate / module / "__init__.py").is_file():
            return candidate
    for site in sorted(path.glob("lib/python3*/site-packages")) + sorted(
        path.glob("lib/python3*/dist-packages")
    ):
        found = installed_location(name, site)
        if found is not None:
            return found
    return None


def installed_location(name: str, site: Path) -> Path | None:
    """Where ``name`` installed in ``site`` really lives, editable installs too.

    An editable install (flit, setuptools) leaves only a ``.pth`` file and a
    dist-info whose ``direct_url.json`` (PEP 610) names the source directory.
    """
    module = name.replace("-", "_")
    if (site / module / "__init__.py").is_file():
        return site
    canonical = canonicalize_name(name)
    for dist_info in sorted(site.glob("*.dist-info")):
        if canonicalize_name(dist_info.name.split("-")[0]) != canonical:
            continue
        try:
            direct = json.loads((dist_info / "direct_url.json").read_text())
        except (OSError, ValueError):
            continue
        url = urlsplit(str(direct.get("url", "")))
        if url.scheme == "file":
            found = _find_package(name, Path(unquote(url.path)))
            if found is not None:
                return found
    return None


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=False, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _from_tree(origin: Origin, lib: Path, dest: Path) -> Code:
    module = origin.name.replace("-", "_")
    target = dest / "lib"
    target.mkdir(parents=True)
    _copy_tree(lib / module, target / module)
    metadata = _metadata(lib, origin.name)
    for dist_info in metadata[2]:
        shutil.copytree(dist_info, target / dist_info.name)
    version = metadata[0] or _version_attribute(target / module / "__init__.py")
    _finish(dest)
    return Code(origin, target, None, version, metadata[1])


def _from_wheel(origin: Origin, wheel: Path, dest: Path) -> Code:
    from pytest_installperm.wheels import install_wheel

    if not zipfile.is_zipfile(wheel):
        raise ReleaseError(f"{origin.describe()}: {wheel} is not a wheel (not a zip file)")
    lib, programs = dest / "lib", dest / "bin"
    scheme = {
        "purelib": lib,
        "platlib": lib,
        "scripts": programs,
        "data": dest / "data",
        "headers": dest / "include",
    }
    for directory in scheme.values():
        directory.mkdir(parents=True, exist_ok=True)
    try:
        install_wheel(wheel, scheme, Path(sys.executable))
    except InstallPermError as exc:
        raise ReleaseError(f"{origin.describe()}: {exc}") from None
    version, requires, _ = _metadata(lib, origin.name)
    _finish(dest)
    has_package = (lib / origin.name.replace("-", "_")).is_dir()
    has_program = (programs / origin.name).is_file()
    if not has_package and not has_program:
        raise ReleaseError(
            f"{origin.describe()}: {wheel} is not an installer: it has no package "
            f"{origin.name}/ and no program {origin.name!r}"
        )
    return Code(origin, lib if has_package else None, programs, version, requires)


def _from_program(origin: Origin, program: Path, dest: Path) -> Code:
    programs = dest / "bin"
    programs.mkdir(parents=True)
    shutil.copy(program, programs / origin.name)
    os.chmod(programs / origin.name, 0o755)
    _finish(dest)
    return Code(origin, None, programs, None, None)


def _metadata(lib: Path, name: str) -> tuple[str | None, SpecifierSet | None, list[Path]]:
    """(Version, Requires-Python, the dist-info directories) of ``name`` in ``lib``."""
    canonical = canonicalize_name(name)
    found = [
        d
        for d in sorted(lib.glob("*.dist-info"))
        if canonicalize_name(d.name.split("-")[0]) == canonical and (d / "METADATA").is_file()
    ]
    if not found:
        return None, None, []
    headers = HeaderParser().parsestr((found[-1] / "METADATA").read_text(errors="replace"))
    requires: SpecifierSet | None = None
    with contextlib.suppress(InvalidSpecifier):
        if headers.get("Requires-Python"):
            requires = SpecifierSet(headers["Requires-Python"])
    return headers.get("Version"), requires, found


def _version_attribute(init: Path) -> str | None:
    match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", init.read_text(), re.M)
    return match[1] if match else None


def _finish(dest: Path) -> None:
    """Bytecode for this Python (a child cannot write caches here), then modes."""
    lib = dest / "lib"
    if lib.is_dir():
        compileall.compile_dir(lib, quiet=2, workers=1)
    for directory, _dirs, files in os.walk(dest):
        os.chmod(directory, 0o755)
        for file in files:
            path = os.path.join(directory, file)
            mode = os.lstat(path).st_mode
            os.chmod(path, 0o755 if mode & 0o111 else 0o644)


__all__ = [
    "Code",
    "Origin",
    "Release",
    "ReleaseError",
    "cache_dir",
    "fetch",
    "installed_location",
    "locate",
    "parse_origin",
    "provide",
    "sha256_of",
]
