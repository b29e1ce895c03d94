"""The fake world: ``installperm_fakefs``, the real world's environments on pyfakefs.

Some code installs in-process: an application's "install a plugin" button that
calls ``installer.install``, a tool that picks the system or the user scheme
itself, a unit test of pip's decision functions. Starting a relocated
interpreter for each such test is the honest way (see ``installperm``), but a
unit test suite wants milliseconds. This world gives that code the same
environment, faked: a fake non-root identity, a root-owned system prefix, a
user base under a fake HOME, the PEP 668 marker, and an interpreter whose
``sys``, ``sysconfig`` and ``site`` answer with the fake paths. The traps of
pyfakefs this meets are listed, and handled, in :mod:`.fake_traps`.

Everything used while faking is imported at the top of this module, before
pyfakefs starts: a module first imported under pyfakefs is bound to that
test's fake filesystem and outlives it.
"""

from __future__ import annotations

import compileall  # noqa: F401  (imported before pyfakefs starts)
import os
import py_compile
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pytest
from pyfakefs import helpers as fake_helpers
from pyfakefs.fake_filesystem import FakeFilesystem
from pyfakefs.fake_filesystem_unittest import Patcher
from pyfakefs.fake_os import FakeOsModule

import pytest_installperm.placement  # noqa: F401  (the verdicts run while faking)
from pytest_installperm.environment import Environment
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
from pytest_installperm.roles import CACHE, STAGE, TMP, WORK
from pytest_installperm.run import Exit
from pytest_installperm.schemes import Schemes, relative_layout
from pytest_installperm.wheels import install_wheel
from pytest_installperm.world import Arg, BuildRequest, Mode
from pytest_installperm.world.calls import call_captured, describe_call
from pytest_installperm.world.fake_traps import (
    BACKEND,
    FAKE_GID,
    FAKE_ROOT,
    FAKE_UID,
    HOST_VARIABLES,
    FakeIO,
    access,
    check_conflicts,
    compile_in,
)
from pytest_installperm.world.fake_tree import (
    FakeSnapshot,
    Tree,
    chown_tree,
    give_read_only,
    marker_text,
    real_marker,
)

if TYPE_CHECKING:
    from pytest_installperm.backends.contain.limits import Limits


class FakeWorld:
    """One fake environment's tree, and the interpreter answers that go with it."""

    backend = BACKEND
    mode = Mode("in-process", "installperm_fakefs: pyfakefs in this process, no child")

    def __init__(self, builder: FakeBuilder, root: Path, answers: Answers, *, venv: bool) -> None:
        self.builder = builder
        self.root = root
        self.answers = answers
        self.layout: Layout = answers.layout
        self.venv = venv
        self.stdlib = Path(answers.prefix)
        self._snapshot: FakeSnapshot | None = None
        self._staged: dict[Path, Path] = {}

    @property
    def fs(self) -> FakeFilesystem:
        return self.builder.fs

    def snapshot(self) -> FakeSnapshot:
        if self._snapshot is None:
            self._snapshot = FakeSnapshot.take(self.fs, self.root)
        return self._snapshot

    def visible(self, path: Path) -> Path:
        """The fake path of ``path``: itself if the fake filesystem has it, else a
        read-only copy of the real file in ``<root>/stage`` (made once)."""
        if path in self._staged:
            return self._staged[path]
        if self.fs.exists(path):
            return path
        target = self.root / "stage" / f"{len(self._staged):03d}" / path.name
        with self.builder.as_root():
            try:
                self.fs.add_real_file(path, read_only=True, target_path=target)
            except FileNotFoundError:
                return path  # neither fake nor real: let the code under test say so
        self._staged[path] = target
        return target

    def _arg(self, value: Any) -> Any:
        return self.visible(value) if isinstance(value, Path) else value

    def call(
        self, fn: Callable[..., Any], args: Iterable[Any], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[str, ...], Exit]:
        self.builder.activate(self)
        staged = tuple(self._arg(a) for a in args)
        named = {k: self._arg(v) for k, v in kwargs.items()}
        self._snapshot = FakeSnapshot.take(self.fs, self.root)
        return describe_call(fn, staged, named), call_captured(fn, staged, named)

    def execute(
        self,
        argv: Sequence[Arg],
        env: Mapping[str, str | None] | None,
        timeout: float,
        *,
        network: bool = False,
        limits: Limits | None = None,
    ) -> tuple[tuple[str, ...], Exit]:
        """Refused: a child process cannot see a pyfakefs filesystem."""
        raise FakefsError(
            f"installperm_fakefs environments cannot run({list(argv)!r}): a child process "
            "does not see the fake filesystem. Use env.call(function, ...) in-process, or "
            "the installperm fixture for real processes"
        )

    def owner(self) -> tuple[int, int]:
        return FAKE_UID, FAKE_GID

    def remove(self) -> None:
        """Nothing to do: the fake filesystem goes when pyfakefs stops."""


class FakeBuilder:
    """Builds fake environments; starts pyfakefs with the first one.

    A test may prepare real files (wheels) before that; :meth:`close` stops
    pyfakefs and restores every patched module, in reverse order.
    """

    def __init__(self, fixturenames: Iterable[str] = ()) -> None:
        check_conflicts(fixturenames)
        self._mp = pytest.MonkeyPatch()
        self._patcher: Patcher | None = None
        self._fs: FakeFilesystem | None = None
        self._count = 0
        self._active: FakeWorld | None = None
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
        # Read the real interpreter's answers while they are still real.
        self._host = Host.capture()
        self._marker = real_marker()
        # Before the Patcher: afterwards ``os`` in this module is the fake one.
        mp.setattr(os, "geteuid", fake_helpers.get_uid)
        mp.setattr(os, "getegid", fake_helpers.get_gid)
        mp.setattr(FakeOsModule, "access", access)
        self._patcher = Patcher(allow_root_user=False)
        self._patcher.setUp()
        fs = self._patcher.fs
        assert fs is not None
        self._fs = fs
        mp.setattr(py_compile, "compile", compile_in(py_compile.compile, FakeIO(fs)))
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

    def build(self, request: BuildRequest) -> Environment:
        __tracebackhide__ = True
        _refuse_subprocess_only(request)
        spec, venv = request.spec, request.venv
        lay = layout("posix" if request.layout is None else request.layout)
        fs = self.fs
        self._count += 1
        root = Path(FAKE_ROOT) / f"sandbox-{self._count}"
        base = root / "prefix"
        prefix = root / "venv" if venv else base
        home = PurePosixPath(root / "home")
        answers = Answers(
            prefix=str(prefix),
            base_prefix=str(base),
            executable=str(prefix / lay.fill(lay.venv_python if venv else lay.python)),
            userbase=str(lay.userbase_under(home)),
            enable_user_site=spec.user_site and (not venv or request.system_site_packages),
            home=str(home),
            layout=lay,
        )
        world = FakeWorld(self, root, answers, venv=venv)
        env = Environment(
            kind="venv" if venv else "system",
            root=root,
            python=Path(answers.executable),
            prefix=prefix,
            userbase=Path(answers.userbase),
            spec=spec,
            schemes=_schemes(world, self._apply(world)),
            world=world,
        )
        marker = marker_text(spec.externally_managed, self._marker)
        with self.as_root():
            _build_tree(fs, env, world, marker, request.system_site_packages)
            for wheel in request.preinstalled:
                install_wheel(world.visible(Path(wheel)), env.paths("system"), env.python)
        return env

    def activate(self, world: FakeWorld) -> None:
        """Make the interpreter answer for ``world`` (the last built one by default)."""
        if self._active is not world:
            self._apply(world)

    def _apply(self, world: FakeWorld) -> SysconfigPaths:
        assert self._host is not None
        mp = self._mp
        found = apply_answers(world.answers, self._host, mp, venv=world.venv)
        home = Path(world.answers.home or world.root / "home")
        for key in [k for k in os.environ if k.startswith(HOST_VARIABLES)]:
            mp.delenv(key, raising=False)
        mp.setenv("HOME", str(home))
        mp.setenv("USER", "installperm")
        mp.setenv("LOGNAME", "installperm")
        mp.setenv("TMPDIR", str(world.root / "tmp"))
        mp.setenv("PIP_CONFIG_FILE", os.devnull)
        for key, value in world.layout.environ_under(PurePosixPath(home)).items():
            mp.setenv(key, value)
        mp.setattr(tempfile, "tempdir", str(world.root / "tmp"))
        self._active = world
        world.stdlib = Path(found.system["stdlib"])
        return found

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
            give_read_only(fs, where)
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


def _schemes(world: FakeWorld, found: SysconfigPaths) -> Schemes:
    """The patched interpreter's schemes as wheel schemes.

    In a venv, pip (and so the real world) puts headers under
    ``include/site/pythonX.Y`` of the venv or user base; sysconfig does not.
    """
    system_headers = user_headers = None
    if world.venv:
        xy = "python{}.{}".format(*sys.version_info[:2])
        system_headers = f"{world.answers.prefix}/include/site/{xy}"
        user_headers = f"{world.answers.userbase}/include/site/{xy}"
    system = _wheel_paths(found.system, system_headers)
    user = _wheel_paths(found.user, user_headers)
    prefix = relative_layout(wheel_scheme(found.prefix), world.answers.prefix)
    return Schemes(system, user, prefix)


def _wheel_paths(paths: Mapping[str, str], headers: str | None) -> dict[str, Path]:
    return {k: Path(v) for k, v in wheel_scheme(paths, headers=headers).items()}


def _refuse_subprocess_only(request: BuildRequest) -> None:
    """Arguments of ``installperm`` that have no in-process meaning: refused, not ignored."""
    if request.python is not None:
        raise FakefsError(
            f"installperm_fakefs: python={request.python!r}: the in-process mode runs in this "
            "interpreter and cannot switch to another one; use the installperm fixture"
        )
    if request.spec.mode != "deny":
        raise FakefsError(
            f"installperm_fakefs: lock_mode={request.spec.mode!r}: pyfakefs denies writes "
            "with EACCES only; a read-only filesystem (EROFS) needs the installperm "
            "fixture's 'mountns' backend"
        )
    if request.mode not in (None, "auto"):
        raise FakefsError(
            f"installperm_fakefs: mode={request.mode!r}: the in-process mode has no child "
            "process, so no interpreter to run in place or relocate; use the installperm fixture"
        )
    if request.programs:
        raise FakefsError(
            f"installperm_fakefs: programs={request.programs!r}: the in-process mode runs no "
            "programs; use the installperm fixture"
        )
    if request.backend not in (None, BACKEND):
        raise FakefsError(
            f"installperm_fakefs: backend={request.backend!r}: the in-process mode's only "
            f"backend is {BACKEND!r}"
        )


def _build_tree(
    fs: FakeFilesystem,
    env: Environment,
    world: FakeWorld,
    marker: str | None,
    system_site_packages: bool,
) -> None:
    """Create the fake sandbox as root, then apply the lock plan.

    Ownership mirrors the privdrop backend: everything is root's (0755), and
    the plan's granted trees, minus its denied ones, go to :data:`FAKE_UID`.
    """
    spec, roles = env.spec, env.roles
    tree = Tree(fs)
    for name in (CACHE, TMP, WORK, STAGE):
        tree.dir(roles[name])
    tree.dir(world.stdlib)
    if marker is not None:
        tree.file(world.stdlib / "EXTERNALLY-MANAGED", marker)
    tree.file(env.python, mode=0o755)
    if world.venv:
        _write_pyvenv_cfg(tree, world, system_site_packages)
    scaffold = spec.scaffold(
        env.paths("system"),
        home=env.home,
        userbase=env.userbase,
        user_scripts=env.paths("user")["scripts"],
    )
    for directory in scaffold:
        tree.dir(directory)
    _lock(tree, spec, roles, env.root)


def _lock(tree: Tree, spec: LockSpec, roles: Mapping[str, Path], root: Path) -> None:
    plan = spec.plan(
        roles,
        root,
        exists=lambda p: str(p) in tree.dirs,
        subdirs=lambda top: sorted(Path(d) for d in tree.dirs if Path(d).parent == top),
    )
    denied = {str(p) for p in plan.denied_trees()}
    kept = {str(p) for p, recursive in plan.deny if not recursive}
    for top in plan.grant:
        chown_tree(tree.dirs[str(top)], str(top), denied, kept)


def _write_pyvenv_cfg(tree: Tree, world: FakeWorld, system_site_packages: bool) -> None:
    base = Path(world.answers.base_prefix)
    tree.file(
        Path(world.answers.prefix) / "pyvenv.cfg",
        (
            f"home = {base / Path(world.layout.fill(world.layout.python)).parent}\n"
            f"include-system-site-packages = {'true' if system_site_packages else 'false'}\n"
            f"version = {'.'.join(map(str, sys.version_info[:3]))}\n"
        ),
    )


__all__ = ["FakeBuilder", "FakeWorld"]
