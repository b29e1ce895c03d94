"""The real world: an interpreter (relocated into an on-disk sandbox, or in
place, see :mod:`pytest_installperm.inplace`), a backend that makes the lock
plan hold at the kernel level, and child processes.

Composed from the session (interpreter templates, scheme probes, the pip
copy, installer programs), the sandbox and the backends; it adds only the
assembly of one environment and the run of one child.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_installperm import safefs
from pytest_installperm.backends import Backend, Launch
from pytest_installperm.changes import Snapshot
from pytest_installperm.environment import PATH_ROLES, Environment
from pytest_installperm.errors import (
    FakefsError,
    InterpreterError,
    LockUnavailable,
    UnreadableArgumentError,
)
from pytest_installperm.interpreter import BaseInterpreter, Template, create_venv
from pytest_installperm.locks import LockSpec, Plan
from pytest_installperm.programs import required
from pytest_installperm.run import Exit, execute
from pytest_installperm.sandbox import SYSTEM_PATH, Sandbox
from pytest_installperm.schemes import SCHEME_KEYS
from pytest_installperm.session import PipCopy, SchemeFacts, Session, library_path
from pytest_installperm.world import Arg, BuildRequest, Mode

if TYPE_CHECKING:
    from pytest_installperm.backends.contain.limits import Limits
    from pytest_installperm.inplace import InPlace

#: A real system's PATH: its own scripts directory and the usual system
#: directories, not the user's scripts directory (``~/.local/bin`` is usually
#: not on PATH, and pip warns about it; tests may assert on that warning).
DEFAULT_PATH: tuple[str, ...] = ("system-scripts", *SYSTEM_PATH)


def resolve_path(
    entries: Sequence[str | os.PathLike[str]] | None, schemes: Mapping[str, Mapping[str, Path]]
) -> list[Path]:
    """``path=`` entries (default: :data:`DEFAULT_PATH`) as directories: a role
    name is that scheme's scripts directory."""
    return [
        schemes[PATH_ROLES[entry]]["scripts"]
        if isinstance(entry, str) and entry in PATH_ROLES
        else Path(entry)
        for entry in (DEFAULT_PATH if entries is None else entries)
    ]


class RealWorld:
    """One environment's sandbox on disk, its backend, and its children."""

    def __init__(
        self,
        sandbox: Sandbox,
        backend: Backend,
        *,
        path_dirs: Sequence[Path],
        defaults: Mapping[str, str],
        tools: Path,
        mode: Mode,
        in_place: InPlace | None = None,
        python: Path | None = None,
    ) -> None:
        #: Which mode ran and why (``env.mode``).
        self.mode = mode
        self._in_place = in_place
        #: In place: the real interpreter's tree, which the child reaches as it
        #: is (through the traversable tmpfs): never staged.
        self._reached = () if python is None or in_place is None else in_place.reached(python)
        self.sandbox = sandbox
        self._backend = backend
        self.backend = backend.name
        self._path_dirs = list(path_dirs)
        self._defaults = dict(defaults)
        self._tools = tools
        self._snapshot: Snapshot | None = None
        #: The lock plan in force, set by :meth:`lock`.
        self.plan = Plan()

    def lock(self, spec: LockSpec, roles: Mapping[str, Path]) -> None:
        """Make ``spec`` hold: once, after the tree is built, before any run."""
        self.plan = spec.plan(roles, self.sandbox.root)
        self._backend.apply(self.plan)

    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            self._snapshot = Snapshot.take(self.sandbox.root)
        return self._snapshot

    def child_env(self, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
        dirs = list(dict.fromkeys([self._tools, *map(self.seen_as, self._path_dirs)]))
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
        if any(_inside(absolute, top) for top in self._reached):
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

    def execute(
        self,
        argv: Sequence[Arg],
        env: Mapping[str, str | None] | None,
        timeout: float,
        *,
        network: bool = False,
        limits: Limits | None = None,
    ) -> tuple[tuple[str, ...], Exit]:
        snapshot = self.snapshot()
        args = (str(argv[0]), *(self._stage(a) for a in argv[1:]))
        snapshot.update()  # staging is ours, not the child's
        launch = replace(self.launch(args), network=network, limits=limits)
        done = execute(launch, env=self.child_env(env), cwd=self.sandbox.work, timeout=timeout)
        return args, done

    def launch(self, argv: Sequence[str]) -> Launch:
        """How the backend starts ``argv`` under this environment's plan."""
        launch = self._backend.launch(argv, self.sandbox.root, self.plan)
        return launch if self._in_place is None else self._in_place.mounted(launch)

    def seen_as(self, path: Path) -> Path:
        """A sandbox path as the child sees it (in place: the real path it is bound on)."""
        return path if self._in_place is None else self._in_place.seen_as(path)

    def in_sandbox(self, path: Path) -> Path:
        """A path the child named, as the sandbox path the parent reads (lexically)."""
        return path if self._in_place is None else self._in_place.in_sandbox(path)

    def call(
        self, fn: Callable[..., Any], args: Iterable[Any], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[str, ...], Exit]:
        raise FakefsError(
            f"env.call({getattr(fn, '__qualname__', fn)!r}) runs code in this process, "
            "which cannot see a real sandbox's locks: use env.run() for a child process, "
            "or the installperm_fakefs fixture for in-process code"
        )

    def visible(self, path: Path) -> Path:
        return path

    def owner(self) -> tuple[int, int]:
        return self._backend.owner()

    def tool(self, name: str) -> Path:
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


class RealBuilder:
    """Builds real environments from the session's templates, or in place."""

    def __init__(self, session: Session, backend: str | None = None) -> None:
        self._session = session
        self._backend = backend

    def build(self, request: BuildRequest) -> Environment:
        __tracebackhide__ = True
        if request.layout is not None:
            raise FakefsError(
                f"layout={request.layout!r}: scheme layouts are faked by installperm_fakefs "
                "only; a real interpreter has its own"
            )
        session, spec = self._session, request.spec
        asked = request.mode or session.mode
        backend: Backend | None = None
        try:
            backend = session.backend(spec, request.backend or self._backend)
            base = session.base(request.python)
        except LockUnavailable as exc:
            if backend is not None:
                backend.release()
            pytest.skip(str(exc))
        except InterpreterError as exc:
            if backend is not None:
                backend.release()
            raise InterpreterError(f"{exc} (mode {asked}: neither mode can use it)") from exc
        pip = None if _brings_pip(request.preinstalled) else session.pip()
        if pip is not None and not pip.runs_on(base.version):
            backend.release()
            pytest.skip(
                f"pip {pip.version} (the pip running pytest) requires Python "
                f"{pip.requires_python}; base interpreter {base.executable} is Python "
                f"{base.version}: pass a pip wheel that runs on it in preinstalled="
            )
        if asked == "relocated":
            why = "asked for" if request.mode else f"the session's mode ({asked})"
        else:
            env_or_why = self._in_place(request, backend, base, pip)
            if isinstance(env_or_why, Environment):
                return env_or_why
            if asked == "in-place" and not request.venv:  # venv(): always relocated
                backend.release()
                pytest.skip(
                    f"mode in-place for {base.executable} is not possible here: {env_or_why}"
                )
            why = f"in place is not possible: {env_or_why}"
        return self._relocated(request, backend, base, pip, Mode("relocated", why))

    def _in_place(
        self, request: BuildRequest, backend: Backend, base: BaseInterpreter, pip: PipCopy | None
    ) -> Environment | str:
        """The environment in place, or why it cannot be had."""
        from pytest_installperm.backends.contain import namespace_mode
        from pytest_installperm.inplace import plan, why_not

        if request.venv:
            return "venv() is always built on a relocated copy"
        namespace = namespace_mode()
        blocked = why_not(request.spec, base, namespace)
        if blocked is not None:
            return blocked
        try:
            facts = self._session.real_schemes(base)
        except InterpreterError as exc:
            return str(exc)
        sandbox = Sandbox(self._session.root.new_dir("sandbox-"))
        try:
            real = {k: where(facts, facts.system[k], sandbox) for k in SCHEME_KEYS}
            mounts = plan(base, real, sandbox.prefix, sandbox.root, backend.owner(), request.spec)
            if isinstance(mounts, str):
                sandbox.remove()
                return mounts
            if mounts.left_real and (request.mode or self._session.mode) == "auto":
                sandbox.remove()
                key, path = mounts.left_real[0]
                return (
                    f"its scheme's {key} directory {path} holds the interpreter's own files, so "
                    "it cannot be replaced and would stay read-only to the child (a wheel's "
                    f"{key} files would fail with EROFS); mode='in-place' accepts that"
                )
            how = "as root" if namespace[0] == "mount" else "in a user namespace"
            mode = Mode("in-place", f"{base.executable} at its real path, bind mounts made {how}")
            return _assemble_in_place(
                sandbox, mounts, real, facts, base, request, backend, self._session, pip, mode
            )
        except BaseException:
            sandbox.remove()
            backend.release()
            raise

    def _relocated(
        self,
        request: BuildRequest,
        backend: Backend,
        base: BaseInterpreter,
        pip: PipCopy | None,
        mode: Mode,
    ) -> Environment:
        session = self._session
        try:
            template = session.template(base, readable=backend.needs_readable_copies)
            facts = session.schemes(
                template,
                backend,
                venv=request.venv,
                system_site_packages=request.system_site_packages,
            )
        except LockUnavailable as exc:
            backend.release()
            pytest.skip(f"{exc} (mode relocated: {mode.reason})")
        sandbox = Sandbox(session.root.new_dir("sandbox-"))
        try:
            return _assemble(sandbox, template, facts, request, backend, session, pip, mode)
        except BaseException:
            sandbox.remove()
            backend.release()
            raise

    def close(self) -> None:
        """Nothing to release: the session owns the templates."""


def where(facts: SchemeFacts, value: str, sandbox: Sandbox) -> Path:
    """A probe's path in ``sandbox`` (the probe's own sandbox paths mapped)."""
    return facts.relocate(value, prefix=sandbox.prefix, venv=sandbox.venv, home=sandbox.home)


def _assemble(
    sandbox: Sandbox,
    template: Template,
    facts: SchemeFacts,
    request: BuildRequest,
    backend: Backend,
    session: Session,
    pip: PipCopy | None,
    mode: Mode,
) -> Environment:
    """Build the tree, install what must be there, lock, and snapshot."""
    spec = request.spec
    python = template.relocate(sandbox.prefix, externally_managed=spec.externally_managed)
    if request.venv:
        python = create_venv(
            sandbox.venv,
            python,
            template.base.version,
            system_site_packages=request.system_site_packages,
        )
    system = {k: where(facts, facts.system[k], sandbox) for k in SCHEME_KEYS}
    user = {k: where(facts, facts.user[k], sandbox) for k in SCHEME_KEYS}
    userbase = where(facts, facts.userbase, sandbox)
    _scaffold(spec, system, user, userbase, sandbox)
    if pip is not None:
        _install_pip(pip, system, python, template.base.version)
    for wheel in request.preinstalled:
        _preinstall(Path(wheel), system, python, sandbox.root)
    # Every registered preset's isolation, whichever installer the child runs.
    defaults = {**session.isolation(sandbox), **library_path(template)}
    if not spec.user_site:
        defaults["PYTHONNOUSERSITE"] = "1"
    world = RealWorld(
        sandbox,
        backend,
        path_dirs=resolve_path(request.path, {"system": system, "user": user}),
        defaults=defaults,
        tools=required(session.tools(request.programs), request.programs),
        mode=mode,
    )
    env = Environment(
        kind="venv" if request.venv else "system",
        root=sandbox.root,
        python=python,
        prefix=sandbox.venv if request.venv else sandbox.prefix,
        userbase=userbase,
        spec=spec,
        schemes=facts.schemes(system, user),
        world=world,
    )
    world.lock(spec, env.roles)
    world.snapshot()
    return env


def _assemble_in_place(
    sandbox: Sandbox,
    mounts: InPlace,
    real: Mapping[str, Path],
    facts: SchemeFacts,
    base: BaseInterpreter,
    request: BuildRequest,
    backend: Backend,
    session: Session,
    pip: PipCopy | None,
    mode: Mode,
) -> Environment:
    """The real interpreter, with the sandbox bound over its system scheme."""
    spec = request.spec
    mounts.build()
    system = mounts.scheme(real)
    user = {k: where(facts, facts.user[k], sandbox) for k in SCHEME_KEYS}
    userbase = where(facts, facts.userbase, sandbox)
    _scaffold(spec, system, user, userbase, sandbox)
    if pip is not None:
        _install_pip(pip, system, base.executable, base.version)
    for wheel in request.preinstalled:
        _preinstall(Path(wheel), system, base.executable, sandbox.root)
    defaults = {**session.isolation(sandbox), **_loader_path(base)}
    if not spec.user_site:
        defaults["PYTHONNOUSERSITE"] = "1"
    world = RealWorld(
        sandbox,
        backend,
        path_dirs=resolve_path(request.path, {"system": system, "user": user}),
        defaults=defaults,
        tools=required(session.tools(request.programs), request.programs),
        mode=mode,
        in_place=mounts,
        python=base.executable,
    )
    env = Environment(
        kind="system",
        root=sandbox.root,
        python=base.executable,
        prefix=sandbox.prefix,
        userbase=userbase,
        spec=spec,
        schemes=facts.schemes(system, user, seen=real),
        world=world,
    )
    world.lock(spec, env.roles)
    world.snapshot()
    return env


def _loader_path(base: BaseInterpreter) -> dict[str, str]:
    """LD_LIBRARY_PATH, if ``base`` found its libpython only through ours (an
    interpreter that was itself relocated). Without it the loader may pick up
    another build's library (the distribution's), frozen stdlib modules and all."""
    ours = os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    if base.libpython is not None and str(base.libpython.parent) in ours:
        return {"LD_LIBRARY_PATH": str(base.libpython.parent)}
    return {}


def _scaffold(
    spec: LockSpec,
    system: Mapping[str, Path],
    user: Mapping[str, Path],
    userbase: Path,
    sandbox: Sandbox,
) -> None:
    """The directories a sandbox is built with; in place, a scheme directory
    left real (pyenv's headers) is not ours to create."""
    for directory in spec.scaffold(
        system, home=sandbox.home, userbase=userbase, user_scripts=user["scripts"]
    ):
        if _inside(directory, sandbox.root):
            directory.mkdir(parents=True, exist_ok=True)


def _install_pip(pip: PipCopy, scheme: Mapping[str, Path], python: Path, version: str) -> None:
    """Put pip in the system site as a distro image would: package and scripts."""
    # Symlinks into the read-only session copy: two operations instead of a
    # few hundred. pip runs and is listed as installed; upgrading or removing
    # pip itself is refused, as for a distro's root-owned pip.
    os.symlink(pip.package, scheme["purelib"] / "pip")
    os.symlink(pip.dist_info, scheme["purelib"] / pip.dist_info.name)
    text = f"#!{python}\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n"
    scripts = os.fspath(scheme["scripts"])
    for name in ("pip", "pip3", f"pip{version}"):
        try:
            fd = os.open(
                os.path.join(scripts, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            )
        except FileExistsError:
            continue  # the base's own (a venv's bin), or a link: never written through
        try:
            os.write(fd, text.encode())
            os.fchmod(fd, 0o755)
        finally:
            os.close(fd)


def _brings_pip(preinstalled: Iterable[Arg]) -> bool:
    """True if one of the wheels to preinstall is pip itself (it replaces ours)."""
    return any(os.path.basename(str(w)).lower().startswith("pip-") for w in preinstalled)


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


__all__ = ["RealBuilder", "RealWorld"]
