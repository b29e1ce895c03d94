"""The in-process mode: ``installperm_fakefs``, the subprocess mode's world on pyfakefs.

Some code installs in-process: an application's "install a plugin" button that
calls ``installer.install``, a tool that picks the system or the user scheme
itself, a unit test of pip's decision functions. Starting a relocated
interpreter for each such test is the honest way (see ``installperm``), but a
unit test suite wants milliseconds. This module gives that code the same
world, faked: a fake non-root identity, a root-owned system prefix, a user base
under a fake HOME, the PEP 668 marker, and an interpreter whose ``sys``,
``sysconfig`` and ``site`` answer with the fake paths.

pyfakefs has traps for exactly this use (DESIGN.md part C). Each is handled
here, or refused with a message that names it:

* **root**: as root pyfakefs fakes a root user, who may write anywhere. The
  Patcher runs with ``allow_root_user=False`` and the fake uid is set to
  :data:`FAKE_UID`; ``os.geteuid`` and ``os.getegid`` are faked too, since
  pyfakefs fakes only ``getuid``/``getgid`` and pip asks the effective ids.
* **os.access**: pyfakefs's ``access`` reads only the owner bits, whoever owns
  the file, so a root-owned 0755 site-packages looked writable to the fake
  user while creating a file in it failed. :func:`_access` applies the owner,
  group and other classes as the kernel does; the parity test proves the
  decision against real pip.
* **byte-compiling**: ``py_compile`` reads and writes through importlib's
  private ``_io``/``_os`` bindings, which pyfakefs does not patch, so
  ``compileall`` failed quietly (and as root could even write ``.pyc`` files
  into a real directory of the same name). :func:`_compile` runs the real
  ``py_compile`` with those three entry points pointed at the fake filesystem.
* **lazy_read**: a directory mapped with ``add_real_directory`` keeps the real
  owner and is read lazily; :meth:`FakeInstallPerm.add_real_directory` maps with
  ``lazy_read=False`` and gives it to the fake user, so it is listable.
* **the Patcher singleton**: pyfakefs has one Patcher per process, and a second
  one silently shares the first, dropping its settings. A test that also asks
  for ``fs`` (or runs inside another Patcher) gets :class:`FakefsError` naming
  both, before anything is patched.
* **Windows emulation** leaves ``os.name == "posix"``: the ``windows`` layout
  therefore fakes the Windows *paths* only (see docs/fakefs.md).
* **cached user base**: handled in :mod:`pytest_installperm.fakefs_layouts`.
* **modules first imported under pyfakefs** are bound to that test's fake
  filesystem and dropped from ``sys.modules`` afterwards, while their parent
  package keeps the stale module; everything this module needs while faking
  (placement, wheels, installer, compileall) is therefore imported before
  pyfakefs starts.
"""

from __future__ import annotations

import compileall  # noqa: F401  (imported before pyfakefs starts; see _start)
import functools
import importlib
import importlib._bootstrap_external as bootstrap_external
import io
import logging
import os
import py_compile
import stat
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, NamedTuple

import pytest
from pyfakefs import helpers as fake_helpers
from pyfakefs.fake_file import FakeDirectory, FakeFile
from pyfakefs.fake_filesystem import FakeFilesystem
from pyfakefs.fake_filesystem_unittest import Patcher
from pyfakefs.fake_open import FakeFileOpen
from pyfakefs.fake_os import FakeOsModule

from pytest_installperm.changes import Changes, kind_of
from pytest_installperm.errors import FakefsError
from pytest_installperm.fakefs_layouts import (
    Answers,
    Host,
    Layout,
    SysconfigPaths,
    apply_answers,
    layout,
    wheel_scheme,
)
from pytest_installperm.locks import LockSpec
from pytest_installperm.roles import role_of, sandbox_roles
from pytest_installperm.schemes import SCHEME_KEYS, Schemes, relative_layout
from pytest_installperm.verdicts import PlacementAssertions
from pytest_installperm.wheels import install_wheel

#: The identity code under test sees: a normal user, like uid 1000 in a Docker
#: image whose system site belongs to root.
FAKE_UID = 1000
FAKE_GID = 1000
#: Where fake sandboxes live. The name must not exist on the real machine, so a
#: write that escapes pyfakefs (through a module it does not patch) fails.
FAKE_ROOT = PurePosixPath("/installperm-fakefs")
BACKEND = "fakefs"
#: pyfakefs fixtures that would share (and silently reconfigure) our Patcher.
PYFAKEFS_FIXTURES = ("fs", "fs_class", "fs_module", "fs_session")
_HOST_VARIABLES = (
    "PIP_",
    "UV_",
    "XDG_",
    "PYTHONUSERBASE",
    "PYTHONNOUSERSITE",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
)


# ---------------------------------------------------------------------------
# the pyfakefs traps
# ---------------------------------------------------------------------------


def check_conflicts(fixturenames: Iterable[str], *, owner: str = "installperm_fakefs") -> None:
    """Refuse to share pyfakefs's process-wide Patcher with anyone else.

    A second Patcher is the first one again, with the second caller's
    arguments discarded, so ``fs`` plus ``installperm_fakefs`` would run one
    of them with the other's settings (e.g. as root). Fail before that.
    """
    clash = sorted(set(fixturenames) & set(PYFAKEFS_FIXTURES))
    if clash:
        raise FakefsError(
            f"{owner} cannot be combined with pyfakefs's {', '.join(map(repr, clash))} "
            "fixture in one test: pyfakefs has a single Patcher per process, so one of them "
            f"would silently run with the other's settings. Use {owner}.fs for the fake "
            "filesystem instead"
        )
    if Patcher.PATCHER is not None:
        raise FakefsError(
            f"{owner}: a pyfakefs Patcher is already active in this process (from the fs "
            "fixture, a Patcher() context or a TestCase with setUpPyfakefs); pyfakefs has "
            "a single Patcher per process and would drop our settings "
            "(allow_root_user=False, the fake uid). Use one or the other"
        )


def _access(
    self: FakeOsModule,
    path: Any,
    mode: int,
    *,
    dir_fd: int | None = None,
    effective_ids: bool = False,
    follow_symlinks: bool = True,
) -> bool:
    """``os.access`` as the kernel decides it: by owner, group or other bits.

    Root (uid 0) may read and write anything and execute what has any x bit.
    """
    path = self._path_with_dir_fd(path, _access, dir_fd)
    try:
        st = self.stat(path, follow_symlinks=follow_symlinks)
    except OSError:
        return False
    if fake_helpers.is_root():
        return not mode & os.X_OK or bool(st.st_mode & 0o111)
    if st.st_uid == fake_helpers.get_uid():
        bits = (st.st_mode >> 6) & 7
    elif st.st_gid == fake_helpers.get_gid():
        bits = (st.st_mode >> 3) & 7
    else:
        bits = st.st_mode & 7
    return (mode & bits) == mode


class _FakeIO:
    """The fake filesystem's own ``os`` and ``open``, bound explicitly."""

    def __init__(self, fs: FakeFilesystem) -> None:
        self.os = FakeOsModule(fs)
        self.open = FakeFileOpen(fs)

    def read_bytes(self, path: str) -> bytes:
        with self.open(path, "rb") as stream:
            data: bytes = stream.read()
        return data

    def write_atomic(self, path: str, data: bytes, mode: int = 0o666) -> None:
        """Like importlib's ``_write_atomic``: a temporary file, then a rename."""
        temp = f"{path}.{id(data)}"
        with self.open(temp, "wb") as stream:
            stream.write(data)
        self.os.chmod(temp, mode & 0o666)
        self.os.replace(temp, path)


_IMPORTLIB_HOOKS = ("_path_stat", "_write_atomic", "FileLoader")


def _compile(real: Callable[..., Any], fio: _FakeIO) -> Callable[..., Any]:
    """``py_compile.compile`` that reads and writes the fake filesystem.

    The real function is used unchanged; only importlib's private file access
    is redirected while it runs (nothing is imported meanwhile). Without the
    hooks (another Python), byte-compiling is refused rather than faked.
    """

    def compile_in_fake_fs(file: Any, *args: Any, **kwargs: Any) -> Any:
        if not all(hasattr(bootstrap_external, name) for name in _IMPORTLIB_HOOKS):
            raise FakefsError(
                f"byte-compiling {file} under installperm_fakefs: this Python's importlib "
                "has no _path_stat/_write_atomic to redirect; install with "
                "bytecode_optimization_levels=() (installer) or --no-compile (pip)"
            )
        loader = bootstrap_external.FileLoader

        def get_data(_loader: object, path: str) -> bytes:
            return fio.read_bytes(path)

        hooks: list[tuple[object, str, object]] = [
            (bootstrap_external, "_path_stat", fio.os.stat),
            (bootstrap_external, "_write_atomic", fio.write_atomic),
            (loader, "get_data", get_data),
        ]
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in hooks]
        for owner, name, value in hooks:
            setattr(owner, name, value)
        try:
            return real(file, *args, **kwargs)
        finally:
            for owner, name, value in saved:
                setattr(owner, name, value)

    return compile_in_fake_fs


# ---------------------------------------------------------------------------
# change tracking in the fake tree
# ---------------------------------------------------------------------------


class _Entry(NamedTuple):
    kind: str
    ino: int
    size: int
    mtime: float
    mode: int
    uid: int
    gid: int


def _state(fs: FakeFilesystem, root: str) -> dict[str, _Entry]:
    """Every path under ``root`` with what identifies its content and access.

    Why a full walk: pyfakefs does not update a directory's mtime when an
    entry is added, so the engine's directory-level :class:`Snapshot` would
    miss changes here. A fake tree is small and lives in memory; walking it
    costs microseconds per entry.
    """
    found: dict[str, _Entry] = {}
    try:
        top = fs.resolve(root, follow_symlinks=False, check_read_perm=False)
    except OSError:
        return found
    stack: list[tuple[str, FakeFile]] = [(root, top)]
    while stack:
        path, obj = stack.pop()
        mode = obj.st_mode
        kind = kind_of(mode)
        found[path] = _Entry(
            kind,
            obj.st_ino or 0,
            obj.st_size if kind != "d" else 0,
            obj.st_mtime,
            stat.S_IMODE(mode),
            obj.st_uid,
            obj.st_gid,
        )
        if kind == "d" and isinstance(obj, FakeDirectory):
            stack.extend((f"{path}/{name}", child) for name, child in obj.entries.items())
    return found


@dataclass
class FakeSnapshot:
    """The state of a fake sandbox; :meth:`update` diffs and advances it."""

    fs: FakeFilesystem
    root: Path
    entries: dict[str, _Entry] = field(default_factory=dict)

    @classmethod
    def take(cls, fs: FakeFilesystem, root: Path) -> FakeSnapshot:
        return cls(fs, root, _state(fs, str(root)))

    def update(self) -> Changes:
        now = _state(self.fs, str(self.root))
        before = self.entries
        created = now.keys() - before.keys()
        deleted = before.keys() - now.keys()
        modified: set[str] = set()
        for path in now.keys() & before.keys():
            a, b = before[path], now[path]
            if a == b:
                continue
            if a.kind != b.kind or (a.kind != "d" and a.ino != b.ino):
                created.add(path)
                deleted.add(path)
            elif a.kind != "d" or (a.mode, a.uid, a.gid) != (b.mode, b.uid, b.gid):
                modified.add(path)
        self.entries = now
        return Changes.of(created, modified, deleted)

    def deep_diff(self, top: Path) -> set[Path]:
        """Paths under ``top`` that differ from this snapshot (a full walk here)."""
        now = _state(self.fs, str(top))
        prefix = str(top)
        mine = {p: e for p, e in self.entries.items() if p == prefix or p.startswith(prefix + "/")}
        return {Path(p) for p in mine.keys() | now.keys() if mine.get(p) != now.get(p)}


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeResult(PlacementAssertions):
    """What one in-process call did: the RunResult API, plus the return value.

    ``returncode`` is 0 when the call returned, the exit status of a
    ``SystemExit``, and 1 for any other exception, whose text ends ``stderr``.
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    changes: Changes
    outside: frozenset[Path]
    environment: FakeEnvironment = field(repr=False, compare=False)
    value: Any = field(default=None, repr=False, compare=False)
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    duration_s: float = 0.0
    timed_out: bool = False
    error: str | None = None

    @property
    def backend(self) -> str:
        return BACKEND

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self, lines: int = 15) -> str:
        """The call, its exit status and the last lines of its output."""
        head = f"$ {' '.join(self.argv)}\n  exit status {self.returncode} (backend {BACKEND})"
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()[-lines:]
        tail = "\n".join(f"  | {line}" for line in text)
        return head + (f"\n  last lines of output:\n{tail}" if tail else "")

    def _wheel_for_verdict(self, wheel: str | os.PathLike[str]) -> Path:
        """The verdicts read the wheel inside the fake filesystem."""
        return self.environment.stage(Path(wheel))


def _exit_status(exc: SystemExit, err: io.StringIO) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    err.write(f"{exc.code}\n")
    return 1


class _LogTo(logging.Handler):
    """Log records of a call, as a command line tool would print them."""

    def __init__(self, out: io.StringIO, err: io.StringIO) -> None:
        super().__init__(logging.INFO)
        self.out, self.err = out, err

    def emit(self, record: logging.LogRecord) -> None:
        stream = self.err if record.levelno >= logging.WARNING else self.out
        stream.write(record.getMessage() + "\n")


@contextmanager
def _captured(out: io.StringIO, err: io.StringIO) -> Iterator[None]:
    root = logging.getLogger()
    handler, level = _LogTo(out, err), root.level
    root.addHandler(handler)
    root.setLevel(min(level or logging.WARNING, logging.INFO))
    try:
        with redirect_stdout(out), redirect_stderr(err):
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


# ---------------------------------------------------------------------------
# environments
# ---------------------------------------------------------------------------


class FakeEnvironment:
    """One fake system interpreter (or venv) in the fake filesystem.

    It has the subprocess mode's description (``python``, ``home``, ``root``,
    ``prefix``, ``kind``, ``backend``, ``spec``, ``paths()``, ``roles``,
    ``allowed_roles``, ``role_of()``, ``userbase``, ``snapshot()``); instead of
    ``run()`` it has :meth:`call`, which runs a function in this process.
    """

    def __init__(
        self,
        factory: FakeInstallPerm,
        *,
        kind: str,
        root: Path,
        spec: LockSpec,
        layout: Layout,
        state: Answers,
        venv: bool,
    ) -> None:
        self._factory = factory
        self.kind = kind
        self.root = root
        self.spec = spec
        self.layout = layout
        self.answers = state
        self.python = Path(state.executable)
        self.home = root / "home"
        self.prefix = Path(state.prefix)
        self.userbase = Path(state.userbase)
        self.venv = venv
        self.schemes = Schemes({}, {})
        self.roles: Mapping[str, Path] = MappingProxyType({})
        self.allowed_roles = spec.allowed_roles()
        self._snapshot: FakeSnapshot | None = None
        self._staged: dict[Path, Path] = {}
        self.stdlib = self.prefix

    @property
    def backend(self) -> str:
        return BACKEND

    @property
    def fs(self) -> FakeFilesystem:
        return self._factory.fs

    def paths(self, role: str, base: str | os.PathLike[str] | None = None) -> Mapping[str, Path]:
        """Scheme paths (purelib, platlib, scripts, data, headers) of a scheme."""
        return self.schemes.paths(role, base)

    def role_of(self, path: Path) -> str | None:
        """The most specific role whose directory holds ``path``."""
        return role_of(self.roles, path)

    def __repr__(self) -> str:
        return (
            f"<FakeEnvironment {self.kind} layout={self.layout.name} python={self.python} "
            f"backend={BACKEND} {self.spec.describe()}>"
        )

    # -- the fake tree ----------------------------------------------------
    def _scheme(self, schemes: SysconfigPaths) -> None:
        """Both schemes, as the patched sysconfig reports them.

        In a venv, pip (and so the subprocess mode) puts headers under
        ``include/site/pythonX.Y`` of the venv or user base; sysconfig does not.
        """
        self.stdlib = Path(schemes.system["stdlib"])
        site_headers = None
        user_headers = None
        if self.venv:
            xy = "python{}.{}".format(*sys.version_info[:2])
            site_headers = str(self.prefix / "include" / "site" / xy)
            user_headers = str(self.userbase / "include" / "site" / xy)
        system = {k: Path(v) for k, v in wheel_scheme(schemes.system, headers=site_headers).items()}
        user = {k: Path(v) for k, v in wheel_scheme(schemes.user, headers=user_headers).items()}
        prefix = wheel_scheme(schemes.prefix)
        self.schemes = Schemes(system, user, relative_layout(prefix, str(self.prefix)))
        roles = sandbox_roles(
            self.root,
            prefix=self.prefix,
            scripts=system["scripts"],
            userbase=self.userbase,
            venv=self.venv,
        )
        self.roles = MappingProxyType(roles)

    def snapshot(self) -> FakeSnapshot:
        if self._snapshot is None:
            self._snapshot = FakeSnapshot.take(self.fs, self.root)
        return self._snapshot

    def stage(self, path: Path) -> Path:
        """The fake path of ``path``: itself if the fake filesystem has it, else a
        read-only copy of the real file in ``<root>/stage`` (made once)."""
        if path in self._staged:
            return self._staged[path]
        if self.fs.exists(path):
            return path
        target = self.root / "stage" / f"{len(self._staged):03d}" / path.name
        with self._factory.as_root():
            try:
                self.fs.add_real_file(path, read_only=True, target_path=target)
            except FileNotFoundError:
                return path  # neither fake nor real: let the code under test say so
        self._staged[path] = target
        return target

    def _arg(self, value: Any) -> Any:
        return self.stage(value) if isinstance(value, Path) else value

    # -- running ----------------------------------------------------------
    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> FakeResult:
        """Run ``fn(*args, **kwargs)`` in this environment; report what it changed.

        ``pathlib.Path`` arguments naming real files are staged into the fake
        tree first, as ``env.run()`` stages them for a child. Output printed
        or logged (INFO and up) by ``fn`` becomes ``stdout``/``stderr``.
        """
        self._factory.activate(self)
        args = tuple(self._arg(a) for a in args)
        kwargs = {k: self._arg(v) for k, v in kwargs.items()}
        argv = (
            f"call {getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}",
            *map(repr, args),
            *(f"{k}={v!r}" for k, v in kwargs.items()),
        )
        snapshot = FakeSnapshot.take(self.fs, self.root)
        self._snapshot = snapshot
        out, err = io.StringIO(), io.StringIO()
        value: Any = None
        exception: BaseException | None = None
        start = time.perf_counter()
        with _captured(out, err):
            try:
                value = fn(*args, **kwargs)
                status = 0
            except SystemExit as exc:
                exception, status = exc, _exit_status(exc, err)
            except Exception as exc:
                exception, status = exc, 1
                err.write("".join(traceback.format_exception_only(type(exc), exc)))
        seconds = time.perf_counter() - start
        changes = snapshot.update().with_roles(self.roles)
        outside = frozenset(p for p in changes.all if self.role_of(p) not in self.allowed_roles)
        return FakeResult(
            argv,
            status,
            out.getvalue(),
            err.getvalue(),
            changes,
            outside,
            self,
            value=value,
            exception=exception,
            duration_s=seconds,
        )

    def run(self, argv: object, **_kwargs: object) -> FakeResult:
        """Refused: a child process cannot see a pyfakefs filesystem."""
        raise FakefsError(
            f"installperm_fakefs environments cannot run({argv!r}): a child process does "
            "not see the fake filesystem. Use env.call(function, ...) in-process, or the "
            "installperm fixture for real processes"
        )

    def pip(self, *args: object, **_kwargs: object) -> FakeResult:
        """Refused, like :meth:`run`."""
        return self.run(["pip", *args])


# ---------------------------------------------------------------------------
# the factory behind the fixture
# ---------------------------------------------------------------------------


class FakeInstallPerm:
    """Builds :class:`FakeEnvironment` objects; the ``installperm_fakefs`` fixture.

    pyfakefs starts with the first environment, so a test may prepare real
    files (wheels) before; :meth:`close` stops it and restores every patched
    module, in reverse order.
    """

    def __init__(self, fixturenames: Iterable[str] = ()) -> None:
        check_conflicts(fixturenames)
        self._mp = pytest.MonkeyPatch()
        self._patcher: Patcher | None = None
        self._fs: FakeFilesystem | None = None
        self._envs: list[FakeEnvironment] = []
        self._active: FakeEnvironment | None = None
        self._host: Host | None = None
        self._marker: str | None = None

    @property
    def fs(self) -> FakeFilesystem:
        """The fake filesystem (started on first use)."""
        if self._fs is None:
            self._start()
        assert self._fs is not None
        return self._fs

    def _start(self) -> None:
        check_conflicts(())
        if os.path.lexists(FAKE_ROOT):
            raise FakefsError(
                f"installperm_fakefs: {FAKE_ROOT} exists on the real filesystem; it must not, "
                "so that a write escaping pyfakefs fails instead of landing there. Remove it"
            )
        mp = self._mp
        _import_before_faking()
        # Read the real interpreter's answers while they are still real.
        self._host = Host.capture()
        self._marker = _real_marker()
        # Before the Patcher: afterwards ``os`` in this module is the fake one.
        mp.setattr(os, "geteuid", fake_helpers.get_uid)
        mp.setattr(os, "getegid", fake_helpers.get_gid)
        mp.setattr(FakeOsModule, "access", _access)
        self._patcher = Patcher(allow_root_user=False)
        self._patcher.setUp()
        fs = self._patcher.fs
        assert fs is not None
        self._fs = fs
        mp.setattr(py_compile, "compile", _compile(py_compile.compile, _FakeIO(fs)))
        fake_helpers.set_uid(FAKE_UID)
        fake_helpers.set_gid(FAKE_GID)

    @contextmanager
    def as_root(self) -> Iterator[None]:
        """Act as root in the fake filesystem, as a package manager would."""
        uid, gid = fake_helpers.get_uid(), fake_helpers.get_gid()
        fake_helpers.set_uid(0)
        fake_helpers.set_gid(0)
        try:
            yield
        finally:
            fake_helpers.set_uid(uid)
            fake_helpers.set_gid(gid)

    def system(
        self,
        *,
        python: object = None,
        locked: Iterable[str] | str = ("system",),
        user_site: bool = True,
        externally_managed: bool | None = None,
        home: str = "present",
        preinstalled: Iterable[str | os.PathLike[str]] = (),
        lock_mode: str = "deny",
        backend: str | None = None,
        layout: str | Layout = "posix",
    ) -> FakeEnvironment:
        """A fake system interpreter: ``installperm.system()``'s arguments, in-process.

        ``layout`` picks the scheme shapes: ``posix`` (default),
        ``macos-framework`` or ``windows``.
        """
        __tracebackhide__ = True
        _refuse_subprocess_only(python=python, lock_mode=lock_mode, backend=backend)
        spec = LockSpec.make(
            locked, home=home, user_site=user_site, externally_managed=externally_managed
        )
        return self._build(
            spec, layout, venv=False, system_site_packages=False, preinstalled=preinstalled
        )

    def venv(
        self,
        *,
        system_site_packages: bool = False,
        python: object = None,
        locked: Iterable[str] | str = ("system",),
        user_site: bool = True,
        home: str = "present",
        preinstalled: Iterable[str | os.PathLike[str]] = (),
        lock_mode: str = "deny",
        backend: str | None = None,
        layout: str | Layout = "posix",
    ) -> FakeEnvironment:
        """A fake venv on a fake system interpreter, like ``installperm.venv()``."""
        __tracebackhide__ = True
        _refuse_subprocess_only(python=python, lock_mode=lock_mode, backend=backend)
        spec = LockSpec.make(locked, home=home, user_site=user_site)
        return self._build(
            spec,
            layout,
            venv=True,
            system_site_packages=system_site_packages,
            preinstalled=preinstalled,
        )

    def _build(
        self,
        spec: LockSpec,
        layout_name: str | Layout,
        *,
        venv: bool,
        system_site_packages: bool,
        preinstalled: Iterable[str | os.PathLike[str]],
    ) -> FakeEnvironment:
        lay = layout(layout_name)
        fs = self.fs
        externally_managed = _marker_text(spec.externally_managed, self._marker)
        root = Path(FAKE_ROOT) / f"sandbox-{len(self._envs) + 1}"
        base = root / "prefix"
        prefix = root / "venv" if venv else base
        home = PurePosixPath(root / "home")
        state = Answers(
            prefix=str(prefix),
            base_prefix=str(base),
            executable=str(prefix / lay.fill(lay.venv_python if venv else lay.python)),
            userbase=str(lay.userbase_under(home)),
            enable_user_site=spec.user_site and (not venv or system_site_packages),
            home=str(home),
            layout=lay,
        )
        env = FakeEnvironment(
            self,
            kind="venv" if venv else "system",
            root=root,
            spec=spec,
            layout=lay,
            state=state,
            venv=venv,
        )
        self.activate(env)
        with self.as_root():
            _build_tree(fs, env, externally_managed, system_site_packages)
            for wheel in preinstalled:
                install_wheel(env.stage(Path(wheel)), env.paths("system"), env.python)
        self._envs.append(env)
        return env

    def activate(self, env: FakeEnvironment) -> None:
        """Make the interpreter answer for ``env`` (the last built one by default)."""
        if self._active is env:
            return
        mp = self._mp
        assert self._host is not None
        schemes = apply_answers(env.answers, self._host, mp, venv=env.venv)
        home = Path(env.answers.home or env.home)
        for key in [k for k in os.environ if k.startswith(_HOST_VARIABLES)]:
            mp.delenv(key, raising=False)
        mp.setenv("HOME", str(home))
        mp.setenv("USER", "installperm")
        mp.setenv("LOGNAME", "installperm")
        mp.setenv("TMPDIR", str(env.root / "tmp"))
        mp.setenv("PIP_CONFIG_FILE", os.devnull)
        for key, value in env.layout.environ_under(PurePosixPath(home)).items():
            mp.setenv(key, value)
        mp.setattr(tempfile, "tempdir", str(env.root / "tmp"))
        env._scheme(schemes)
        self._active = env

    def add_real_directory(
        self, source: str | os.PathLike[str], target: str | os.PathLike[str] | None = None
    ) -> Path:
        """Map a real directory, readable and listable by the fake user.

        pyfakefs's default ``lazy_read=True`` leaves a mapped tree with the real
        owner (root) until first read, and a non-root fake user cannot list it;
        this maps it eagerly and read-only.
        """
        fs = self.fs
        where = Path(target if target is not None else source)
        with self.as_root():
            fs.add_real_directory(source, read_only=True, lazy_read=False, target_path=target)
            _give_read_only(fs, where)
        return where

    def close(self) -> None:
        """Restore every patched module, then stop pyfakefs."""
        self._mp.undo()
        if self._patcher is not None:
            self._patcher.tearDown()
            self._patcher = None
        fake_helpers.reset_ids()
        self._fs = None
        self._active = None
        self._envs.clear()


def _refuse_subprocess_only(*, python: object, lock_mode: str, backend: str | None) -> None:
    """Arguments of ``installperm`` that have no in-process meaning: refused, not ignored."""
    if python is not None:
        raise FakefsError(
            f"installperm_fakefs: python={python!r}: the in-process mode runs in this "
            "interpreter and cannot switch to another one; use the installperm fixture"
        )
    if lock_mode != "deny":
        raise FakefsError(
            f"installperm_fakefs: lock_mode={lock_mode!r}: pyfakefs denies writes with "
            "EACCES only; a read-only filesystem (EROFS) needs the installperm fixture's "
            "'mountns' backend"
        )
    if backend not in (None, BACKEND):
        raise FakefsError(
            f"installperm_fakefs: backend={backend!r}: the in-process mode's only backend "
            f"is {BACKEND!r}"
        )


#: Modules this mode uses while faking. A module first imported under pyfakefs
#: is bound to that test's fake filesystem and outlives it (see above).
_USED_WHILE_FAKING = ("pytest_installperm.placement",)


def _import_before_faking() -> None:
    for name in _USED_WHILE_FAKING:
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError:  # pragma: no cover - a partial checkout
                continue


@functools.lru_cache(maxsize=1)
def _real_marker() -> str | None:
    """The running interpreter's own PEP 668 marker, read from the real disk."""
    import sysconfig

    real = Path(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
    try:
        return real.read_text(encoding="utf-8")
    except OSError:
        return None


def _marker_text(externally_managed: bool | None, base: str | None) -> str | None:
    """The PEP 668 marker to write: the base interpreter's own when None."""
    if externally_managed is None:
        return base
    if externally_managed:
        return (
            "[externally-managed]\nError=This environment is externally managed "
            "(written by pytest-installperm).\n"
        )
    return None


class _Tree:
    """Creates fake directories and files through pyfakefs's objects.

    Why not ``fs.create_dir``: it normalises and resolves the whole path for
    every call (about 1 ms each here); a sandbox needs a dozen directories, and
    the budget for all of this is 2 ms per test. Entries are owned by the
    current fake uid, like anything pyfakefs creates.
    """

    def __init__(self, fs: FakeFilesystem) -> None:
        self.fs = fs
        self.dirs: dict[str, FakeDirectory] = {}

    def dir(self, path: Path | str) -> FakeDirectory:
        key = str(path)
        found = self.dirs.get(key)
        if found is not None:
            return found
        parent_path, name = os.path.split(key)
        if not name:
            obj = self.fs.resolve(key, check_read_perm=False)
            assert isinstance(obj, FakeDirectory)
            self.dirs[key] = obj
            return obj
        parent = self.dir(parent_path)
        child = parent.entries.get(name)
        if child is None:
            child = FakeDirectory(name, perm_bits=0o755, filesystem=self.fs)
            parent.add_entry(child)
        if not isinstance(child, FakeDirectory):
            raise FakefsError(f"installperm_fakefs: {key} exists and is not a directory")
        self.dirs[key] = child
        return child

    def file(self, path: Path, contents: str = "", mode: int = 0o644) -> None:
        parent = self.dir(path.parent)
        parent.add_entry(FakeFile(path.name, stat.S_IFREG | mode, contents, filesystem=self.fs))


def _build_tree(
    fs: FakeFilesystem, env: FakeEnvironment, marker: str | None, system_site_packages: bool
) -> None:
    """Create the fake sandbox as root, then hand the granted roles to the user.

    Ownership mirrors the privdrop backend: everything is root's (0755), and
    the roles a call may write are chowned to :data:`FAKE_UID`.
    """
    spec = env.spec
    roles = env.roles
    tree = _Tree(fs)
    for name in ("cache", "tmp", "work", "stage"):
        tree.dir(roles[name])
    base = Path(env.answers.base_prefix)
    tree.dir(env.stdlib)
    if marker is not None:
        tree.file(env.stdlib / "EXTERNALLY-MANAGED", marker)
    tree.file(env.python, mode=0o755)
    if env.venv:
        tree.file(
            env.prefix / "pyvenv.cfg",
            (
                f"home = {base / Path(env.layout.fill(env.layout.python)).parent}\n"
                f"include-system-site-packages = {'true' if system_site_packages else 'false'}\n"
                f"version = {'.'.join(map(str, sys.version_info[:3]))}\n"
            ),
        )
    system = env.paths("system")
    for key in ("purelib", "platlib", "scripts", "headers"):
        tree.dir(system[key])
    if spec.home != "missing":
        tree.dir(env.home)
        if "user" in spec.locked:
            tree.dir(env.userbase)
    plan = spec.plan(roles, env.root, exists=lambda p: str(p) in tree.dirs)
    # As privdrop does: everything stays root's but the granted trees.
    denied = {str(p) for p in plan.denied_trees()}
    for top in plan.grant:
        _chown_tree(tree.dirs[str(top)], str(top), denied)


def _give_read_only(fs: FakeFilesystem, top: Path) -> None:
    """A mapped tree: the fake user's, readable and listable, never writable.

    Walks the directory objects themselves: resolving each path again would
    normalise it from the root every time.
    """
    stack = [fs.resolve(str(top), follow_symlinks=False, check_read_perm=False)]
    while stack:
        obj = stack.pop()
        obj.st_uid, obj.st_gid = FAKE_UID, FAKE_GID
        extra = 0o555 if isinstance(obj, FakeDirectory) else 0o444
        obj.st_mode = (obj.st_mode & ~0o222) | extra
        if isinstance(obj, FakeDirectory):
            stack.extend(obj.entries.values())


def _chown_tree(top: FakeDirectory, path: str, skip: set[str]) -> None:
    """Give ``top`` and everything below it (minus ``skip`` trees) to the user."""
    stack: list[tuple[str, FakeFile]] = [(path, top)]
    while stack:
        where, obj = stack.pop()
        if where in skip:
            continue
        obj.st_uid, obj.st_gid = FAKE_UID, FAKE_GID
        if isinstance(obj, FakeDirectory):
            stack.extend((f"{where}/{name}", child) for name, child in obj.entries.items())


# ---------------------------------------------------------------------------
# overhead, for the benchmark
# ---------------------------------------------------------------------------


def measure_overhead(repeat: int = 31) -> dict[str, float]:
    """Median milliseconds of a plain pyfakefs setup and of ours, side by side.

    ``plain_ms``: ``Patcher()`` set up and torn down, what the ``fs`` fixture
    does. ``fakefs_ms``: ``installperm_fakefs`` building one locked system
    environment, then closing. ``overhead_ms`` is their difference, the cost
    per test beyond pyfakefs's own (goal: <= 2 ms). ``call_ms`` is one
    ``env.call()`` of a no-op (two walks of the fake tree). Each also has a
    ``*_cpu_ms`` twin measured in process CPU time, which a busy machine does
    not inflate. Call it outside a test that already uses pyfakefs.
    """
    if repeat < 1:
        raise ValueError(f"repeat={repeat}: must be at least 1")

    def plain() -> None:
        patcher = Patcher()
        patcher.setUp()
        patcher.tearDown()

    def ours() -> None:
        factory = FakeInstallPerm()
        try:
            factory.system(locked=("system",))
        finally:
            factory.close()

    def one_call() -> None:
        env.call(_no_op)

    def medians(fn: Callable[[], None]) -> tuple[float, float]:
        fn()  # warm pyfakefs's module cache and ours
        wall, cpu = [], []
        for _ in range(repeat):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu.append(time.process_time() - start_cpu)
            wall.append(time.perf_counter() - start)
        return statistics.median(wall) * 1000, statistics.median(cpu) * 1000

    plain_ms, plain_cpu = medians(plain)
    fakefs_ms, fakefs_cpu = medians(ours)
    factory = FakeInstallPerm()
    try:
        env = factory.system(locked=("system",))
        call_ms, call_cpu = medians(one_call)
    finally:
        factory.close()
    return {
        "repeat": float(repeat),
        "plain_ms": plain_ms,
        "fakefs_ms": fakefs_ms,
        "overhead_ms": fakefs_ms - plain_ms,
        "call_ms": call_ms,
        "plain_cpu_ms": plain_cpu,
        "fakefs_cpu_ms": fakefs_cpu,
        "overhead_cpu_ms": fakefs_cpu - plain_cpu,
        "call_cpu_ms": call_cpu,
    }


def _no_op() -> None:
    """What :func:`measure_overhead` calls: nothing, to time ``call()`` itself."""


__all__ = [
    "BACKEND",
    "FAKE_GID",
    "FAKE_ROOT",
    "FAKE_UID",
    "SCHEME_KEYS",
    "FakeEnvironment",
    "FakeInstallPerm",
    "FakeResult",
    "FakeSnapshot",
    "check_conflicts",
    "measure_overhead",
]
