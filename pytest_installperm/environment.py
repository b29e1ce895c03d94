"""An environment under test: a fake system interpreter (or a venv on one),
its user directories, its locks, and a way to run installers in it.

:class:`InstallPerm` is the factory behind the ``installperm`` fixture; it
builds :class:`Environment` objects and removes their sandboxes afterwards.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import pytest

from pytest_installperm import safefs
from pytest_installperm.backends import Backend
from pytest_installperm.changes import Snapshot
from pytest_installperm.errors import LockUnavailable, UnreadableArgumentError
from pytest_installperm.interpreter import Template, create_venv
from pytest_installperm.locks import LockSpec, Plan
from pytest_installperm.roles import role_of, sandbox_roles
from pytest_installperm.run import Arg, RunResult, execute
from pytest_installperm.sandbox import Sandbox
from pytest_installperm.schemes import SCHEME_KEYS, Schemes
from pytest_installperm.session import PipCopy, SchemeFacts, Session, library_path

if TYPE_CHECKING:
    from pytest_installperm.backends.contain.limits import Limits

DEFAULT_TIMEOUT = 120.0


class Environment:
    """A real interpreter in a sandbox, with some of its directories locked."""

    def __init__(
        self,
        *,
        kind: str,
        sandbox: Sandbox,
        python: Path,
        spec: LockSpec,
        backend: Backend,
        schemes: Schemes,
        userbase: Path,
        defaults: Mapping[str, str],
        tools: Path,
    ) -> None:
        self.kind = kind
        self.sandbox = sandbox
        self.python = python
        self.spec = spec
        self._backend = backend
        self.schemes = schemes
        self.userbase = userbase
        self._defaults = dict(defaults)
        self._tools = tools
        self._snapshot: Snapshot | None = None
        self.roles: Mapping[str, Path] = MappingProxyType(self._roles())
        self.allowed_roles = spec.allowed_roles()
        #: The lock plan, made when the tree is built (see :meth:`lock`).
        self.plan = Plan()

    # -- description -----------------------------------------------------
    @property
    def root(self) -> Path:
        return self.sandbox.root

    @property
    def home(self) -> Path:
        return self.sandbox.home

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def prefix(self) -> Path:
        """The environment's own prefix: the system prefix, or the venv."""
        return self.sandbox.venv if self.kind == "venv" else self.sandbox.prefix

    def paths(self, role: str, base: str | os.PathLike[str] | None = None) -> Mapping[str, Path]:
        """Scheme paths (purelib, platlib, scripts, data, headers) of a scheme:
        ``system``, ``user``, or ``prefix``/``target``/``root`` with ``base=DIR``
        (see :mod:`pytest_installperm.schemes`)."""
        return self.schemes.paths(role, base)

    def _roles(self) -> dict[str, Path]:
        return sandbox_roles(
            self.sandbox.root,
            prefix=self.prefix,
            scripts=self.schemes.system["scripts"],
            userbase=self.userbase,
            venv=self.kind == "venv",
        )

    def role_of(self, path: Path) -> str | None:
        """The most specific role whose directory holds ``path``."""
        return role_of(self.roles, path)

    def __repr__(self) -> str:
        return (
            f"<Environment {self.kind} python={self.python} backend={self.backend} "
            f"{self.spec.describe()}>"
        )

    # -- running ---------------------------------------------------------
    def lock(self) -> None:
        """Make the lock profile hold: once, after the tree is built."""
        self.plan = self.spec.plan(self.roles, self.sandbox.root)
        self._backend.apply(self.plan)

    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            self._snapshot = Snapshot.take(self.sandbox.root)
        return self._snapshot

    def child_env(self, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
        dirs = [self.schemes.system["scripts"], self.schemes.user["scripts"], self._tools]
        return self.sandbox.child_env(path_dirs=dirs, extra=extra, defaults=self._defaults)

    def _stage(self, arg: Arg) -> str:
        """An argument as the child gets it: a path it could not read is staged.

        ``Path`` arguments naming a file outside the sandbox are always staged
        (a read-only copy in ``stage/``); ``str`` arguments that are absolute
        paths of an existing file, and the value of ``--option=PATH``, only
        when the child's uid cannot read them. A directory the child cannot
        read cannot be staged: :class:`UnreadableArgumentError` names it and
        the uid before anything runs. Paths inside the sandbox are the
        child's own and are passed as they are, never followed by us.
        """
        if isinstance(arg, os.PathLike):
            return self._stage_path(Path(arg), always=True)
        text = str(arg)
        if text.startswith("-") and "=" in text:
            option, value = text.split("=", 1)
            if os.path.isabs(value) and os.path.exists(value):
                return f"{option}={self._stage_path(Path(value), always=False)}"
            return text
        if os.path.isabs(text) and os.path.exists(text):
            return self._stage_path(Path(text), always=False)
        return text

    def _stage_path(self, path: Path, *, always: bool) -> str:
        root = self.sandbox.root
        absolute = Path(os.path.abspath(path))
        if _inside(absolute, root) or _inside(Path(os.path.realpath(path)), root):
            return str(path)
        try:
            st = os.stat(path)
        except OSError:
            return str(path)  # gone: the child's own error will say so
        uid, gid = self._backend.owner()
        if stat.S_ISDIR(st.st_mode):
            if not readable_by(path, uid, gid, directory=True):
                raise UnreadableArgumentError(
                    errno.EACCES,
                    f"{path} is a directory that uid {uid} (the child's) cannot read, and "
                    "directories are not staged: copy it into the sandbox (env.sandbox.work) "
                    "or make it readable",
                )
            return str(path)
        if not stat.S_ISREG(st.st_mode) or (not always and readable_by(path, uid, gid)):
            return str(path)
        with _writable(self.sandbox.stage):
            return str(self.sandbox.stage_file(path, session_root=root.parent))

    def run(
        self,
        argv: Sequence[Arg],
        *,
        env: Mapping[str, str | None] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        network: bool = False,
        limits: Limits | None = None,
    ) -> RunResult:
        """Run ``argv`` as the locked-out child and return what it did.

        ``env`` adds to (or, with None values, removes from) the constructed
        environment; nothing from this process's environment gets in otherwise.
        The child has only loopback, in a network namespace of its own, unless
        ``network=True`` (for an index server the test runs, say). ``limits``
        raises or lowers its resource limits (see :class:`Limits`).
        """
        snapshot = self.snapshot()
        args = [str(argv[0]), *(self._stage(a) for a in argv[1:])]
        snapshot.update()  # staging is ours, not the child's
        launch = self._backend.launch(args, self.sandbox.root, self.plan)
        done = execute(
            replace(launch, network=network, limits=limits),
            env=self.child_env(env),
            cwd=self.sandbox.work,
            timeout=timeout,
        )
        changes = snapshot.update().with_roles(self.roles)
        outside = frozenset(p for p in changes.all if self.role_of(p) not in self.allowed_roles)
        return RunResult(
            tuple(args),
            done.returncode,
            done.stdout,
            done.stderr,
            changes,
            outside,
            self,
            timed_out=done.timed_out,
            error=done.error,
            duration_s=done.seconds,
            stdout_dropped=done.stdout_dropped,
            stderr_dropped=done.stderr_dropped,
        )

    def pip(
        self,
        *args: Arg,
        env: Mapping[str, str | None] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        network: bool = False,
        limits: Limits | None = None,
    ) -> RunResult:
        """``python -m pip ARGS`` in this environment."""
        return self.run(
            [self.python, "-m", "pip", *args],
            env=env,
            timeout=timeout,
            network=network,
            limits=limits,
        )

    def tool(self, name: str) -> Path:
        """The readable copy of an installer program (e.g. ``uv``) for children."""
        path = self._tools / name
        if not path.exists():
            raise FileNotFoundError(
                f"installer program {name!r} was not found when the "
                f"session started (looked in this interpreter's scripts "
                f"directory and PATH)"
            )
        return path

    def remove(self) -> None:
        if self._snapshot is not None:
            self._snapshot.close()  # its inotify watches
        try:
            self.sandbox.remove()
        finally:
            self._backend.release()  # after the removal: that uid owns nothing now


def _inside(path: Path, top: Path) -> bool:
    return path == top or top in path.parents


def readable_by(path: Path, uid: int, gid: int, *, directory: bool = False) -> bool:
    """Whether ``uid`` (with group ``gid`` only, as a dropped child has) may read
    ``path`` (and list it, for a directory), judged by mode bits on it and on
    every directory above it."""
    if uid == os.geteuid():
        return os.access(path, os.R_OK | (os.X_OK if directory else 0))
    if uid == 0:
        return True
    real = Path(os.path.realpath(path))
    try:
        for parent in reversed(real.parents):
            if not _allowed(os.stat(parent), uid, gid, 0o1):
                return False
        return _allowed(os.stat(real), uid, gid, 0o5 if directory else 0o4)
    except OSError:
        return False


def _allowed(st: os.stat_result, uid: int, gid: int, need: int) -> bool:
    shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
    return (st.st_mode >> shift) & need == need


class _writable:
    """Briefly give ourselves write access to a directory we locked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mode = 0

    def __enter__(self) -> None:
        self.mode = os.stat(self.path).st_mode & 0o7777
        os.chmod(self.path, 0o755)

    def __exit__(self, *exc: object) -> None:
        os.chmod(self.path, self.mode)


class InstallPerm:
    """Factory of environments; the type behind the ``installperm`` fixture.

    Environments it builds are removed by :meth:`close` (the fixture calls it
    at teardown), whatever the child left behind.
    """

    def __init__(self, session: Session, *, backend: str | None = None) -> None:
        self._session = session
        self._backend = backend
        self._envs: list[Environment] = []

    def system(
        self,
        *,
        python: str | os.PathLike[str] | None = None,
        locked: Iterable[str] | str = ("system",),
        user_site: bool = True,
        externally_managed: bool | None = None,
        home: str = "present",
        preinstalled: Iterable[Arg] = (),
        lock_mode: str = "deny",
        backend: str | None = None,
    ) -> Environment:
        """A relocated copy of ``python`` (default: the running one), not a venv."""
        __tracebackhide__ = True
        spec = LockSpec.make(
            locked,
            mode=lock_mode,
            home=home,
            user_site=user_site,
            externally_managed=externally_managed,
        )
        return self._build(
            spec, python, backend, venv=False, system_site_packages=False, preinstalled=preinstalled
        )

    def venv(
        self,
        *,
        system_site_packages: bool = False,
        python: str | os.PathLike[str] | None = None,
        locked: Iterable[str] | str = ("system",),
        user_site: bool = True,
        home: str = "present",
        preinstalled: Iterable[Arg] = (),
        lock_mode: str = "deny",
        backend: str | None = None,
    ) -> Environment:
        """A real venv on a relocated system interpreter, in one sandbox."""
        __tracebackhide__ = True
        spec = LockSpec.make(locked, mode=lock_mode, home=home, user_site=user_site)
        return self._build(
            spec,
            python,
            backend,
            venv=True,
            system_site_packages=system_site_packages,
            preinstalled=preinstalled,
        )

    def _build(
        self,
        spec: LockSpec,
        python: str | os.PathLike[str] | None,
        backend_name: str | None,
        *,
        venv: bool,
        system_site_packages: bool,
        preinstalled: Iterable[Arg],
    ) -> Environment:
        __tracebackhide__ = True
        session = self._session
        backend: Backend | None = None
        try:
            backend = session.backend(spec, backend_name or self._backend)
            base = session.base(python)
            template = session.template(base, readable=backend.needs_readable_copies)
            facts = session.schemes(
                template, backend, venv=venv, system_site_packages=system_site_packages
            )
        except LockUnavailable as exc:
            if backend is not None:
                backend.release()
            pytest.skip(str(exc))
        sandbox = Sandbox(session.root.new_dir("sandbox-"))
        try:
            env = _assemble(
                sandbox,
                template,
                facts,
                spec,
                backend,
                session.pip(),
                session.tools(),
                venv=venv,
                ssp=system_site_packages,
                preinstalled=list(preinstalled),
            )
        except BaseException:
            sandbox.remove()
            backend.release()
            raise
        self._envs.append(env)
        return env

    def close(self) -> None:
        """Remove every sandbox this factory built."""
        errors = []
        while self._envs:
            env = self._envs.pop()
            try:
                env.remove()
            except OSError as exc:  # pragma: no cover - reported, not hidden
                errors.append(f"{env.root}: {exc}")
        if errors:
            raise RuntimeError("could not remove sandboxes: " + "; ".join(errors))


def _assemble(
    sandbox: Sandbox,
    template: Template,
    facts: SchemeFacts,
    spec: LockSpec,
    backend: Backend,
    pip: PipCopy | None,
    tools: Path,
    *,
    venv: bool,
    ssp: bool,
    preinstalled: list[Arg],
) -> Environment:
    """Build the tree, install what must be there, lock, and snapshot."""
    python = template.relocate(sandbox.prefix, externally_managed=spec.externally_managed)
    if venv:
        python = create_venv(sandbox.venv, python, template.base.version, system_site_packages=ssp)

    def where(value: str) -> Path:
        return facts.relocate(value, prefix=sandbox.prefix, venv=sandbox.venv, home=sandbox.home)

    system = {k: where(facts.system[k]) for k in SCHEME_KEYS}
    user = {k: where(facts.user[k]) for k in SCHEME_KEYS}
    for key in ("purelib", "platlib", "scripts", "headers"):
        system[key].mkdir(parents=True, exist_ok=True)
    if pip is not None:
        _install_pip(pip, system, python, template.base.version)
    for wheel in preinstalled:
        _preinstall(Path(wheel), system, python, sandbox.root)
    if spec.home != "missing":
        sandbox.home.mkdir()
        if "user" in spec.locked:
            where(facts.userbase).mkdir(parents=True)
    defaults = library_path(template)
    if not spec.user_site:
        defaults["PYTHONNOUSERSITE"] = "1"
    env = Environment(
        kind="venv" if venv else "system",
        sandbox=sandbox,
        python=python,
        spec=spec,
        backend=backend,
        schemes=Schemes(system, user, {k: Path(v) for k, v in facts.prefix_layout.items()}),
        userbase=where(facts.userbase),
        defaults=defaults,
        tools=tools,
    )
    env.lock()
    env.snapshot()
    return env


def _install_pip(pip: PipCopy, scheme: Mapping[str, Path], python: Path, version: str) -> None:
    """Put pip in the system site as a distro image would: package and scripts."""
    # Symlinks into the read-only session copy: two operations instead of a
    # few hundred. pip runs and is listed as installed; upgrading or removing
    # pip itself is refused, as for a distro's root-owned pip.
    os.symlink(pip.package, scheme["purelib"] / "pip")
    os.symlink(pip.dist_info, scheme["purelib"] / pip.dist_info.name)
    for name in ("pip", "pip3", f"pip{version}"):
        script = scheme["scripts"] / name
        if script.exists():
            continue
        script.write_text(
            f"#!{python}\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n"
        )
        script.chmod(0o755)


def _preinstall(wheel: Path, scheme: Mapping[str, Path], python: Path, root: Path) -> None:
    """Install ``wheel`` into the system scheme before the lock, as root would.

    Each destination must be a real directory of this sandbox: the stdlib
    directory holds symlinks into the session template (and, under ``chmod``,
    into the base interpreter), and a data file aimed at ``lib/pythonX.Y/json/``
    would make root write through them. Nothing is written if one is.
    """
    from pytest_installperm.wheels import install_wheel, read_wheel

    for path in sorted(read_wheel(wheel).destinations(scheme)):
        safefs.check_no_links(root, path)
    install_wheel(wheel, scheme, python)
