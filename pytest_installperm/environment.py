"""An environment under test: a fake system interpreter (or a venv on one),
its user directories, its locks, and a way to run installers in it.

:class:`InstallPerm` is the factory behind the ``installperm`` and
``installperm_fakefs`` fixtures. It validates the request once and hands it
to a world's builder (:mod:`pytest_installperm.world`), which makes the tree;
the :class:`Environment` it gets back is the same class in both worlds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pytest_installperm.errors import FakefsError
from pytest_installperm.locks import LockSpec
from pytest_installperm.roles import HOME, role_of, sandbox_roles
from pytest_installperm.run import Exit, RunResult
from pytest_installperm.schemes import Schemes
from pytest_installperm.world import MODES, Arg, Builder, BuildRequest, Mode, SandboxState, World

if TYPE_CHECKING:
    from pytest_installperm.backends.contain.limits import Limits
    from pytest_installperm.fakefs_layouts import Layout
    from pytest_installperm.sandbox import Sandbox
    from pytest_installperm.session import Session
    from pytest_installperm.world.real import RealWorld

DEFAULT_TIMEOUT = 120.0


#: Role names a ``path=`` entry may use instead of a directory.
PATH_ROLES = {"system-scripts": "system", "user-scripts": "user"}


def check_programs(names: Iterable[str]) -> tuple[str, ...]:
    """``programs=`` of ``system()``/``venv()``: program names, never paths."""
    if isinstance(names, str):
        raise TypeError(f"programs={names!r}: a sequence of program names, e.g. ({names!r},)")
    found = tuple(names)
    for name in found:
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"programs=: {name!r} is not a program name (poetry, pdm, ...)")
    return found


def check_path(
    entries: Iterable[str | os.PathLike[str]] | None,
) -> tuple[str | os.PathLike[str], ...] | None:
    """``path=`` as given, refused (naming the entry) unless absolute or a role name."""
    if entries is None:
        return None
    checked = tuple(entries)
    for entry in checked:
        if not (entry in PATH_ROLES or os.path.isabs(entry)):
            raise ValueError(
                f"path entry {os.fspath(entry)!r}: neither an absolute directory nor one of "
                f"{', '.join(sorted(PATH_ROLES))}"
            )
    return checked


class Environment:
    """A system interpreter or a venv, with some of its directories locked.

    ``world`` is where it lives (:mod:`pytest_installperm.world`); everything
    else is world-independent: its roles, schemes, lock and results.
    """

    def __init__(
        self,
        *,
        kind: str,
        root: Path,
        python: Path,
        prefix: Path,
        userbase: Path,
        spec: LockSpec,
        schemes: Schemes,
        world: World,
    ) -> None:
        self.kind = kind
        self.root = root
        self.python = python
        self.prefix = prefix
        self.userbase = userbase
        self.spec = spec
        self.schemes = schemes
        self.world = world
        self.roles: Mapping[str, Path] = MappingProxyType(
            sandbox_roles(
                root,
                prefix=prefix,
                scripts=schemes.system["scripts"],
                userbase=userbase,
                venv=kind == "venv",
                user_scripts=schemes.user["scripts"],
            )
        )
        self.allowed_roles = spec.allowed_roles()

    # -- description -----------------------------------------------------
    @property
    def home(self) -> Path:
        return self.roles[HOME]

    @property
    def backend(self) -> str:
        return self.world.backend

    @property
    def mode(self) -> Mode:
        """Where the interpreter runs (``in-place``, ``relocated``, ``in-process``) and why."""
        return self.world.mode

    def paths(self, role: str, base: str | os.PathLike[str] | None = None) -> Mapping[str, Path]:
        """Scheme paths (purelib, platlib, scripts, data, headers) of a scheme:
        ``system``, ``user``, or ``prefix``/``target``/``root`` with ``base=DIR``
        (see :mod:`pytest_installperm.schemes`)."""
        return self.schemes.paths(role, base)

    def role_of(self, path: Path) -> str | None:
        """The most specific role whose directory holds ``path``."""
        return role_of(self.roles, path)

    def seen_as(self, path: str | os.PathLike[str]) -> Path:
        """A sandbox path as the installer sees it: in place, the real path
        that the sandbox directory is bound on (``/usr/local/lib/...``)."""
        return self._real(f"env.seen_as({os.fspath(path)!r})").seen_as(Path(path))

    def in_sandbox(self, path: str | os.PathLike[str]) -> Path:
        """A path the installer named (in a message, a RECORD, a shebang) as
        the sandbox path it is (lexically: nothing is resolved or followed)."""
        return self._real(f"env.in_sandbox({os.fspath(path)!r})").in_sandbox(Path(path))

    def describe(self) -> str:
        """What this environment is: kind, interpreter, mode and why, backend, lock."""
        return (
            f"{self.kind} environment on {self.python}\n"
            f"  mode: {self.mode}\n"
            f"  backend: {self.backend}; {self.spec.describe()}"
        )

    def __repr__(self) -> str:
        return (
            f"<Environment {self.kind} python={self.python} mode={self.mode.name} "
            f"backend={self.backend} {self.spec.describe()}>"
        )

    # -- the real world's own parts ----------------------------------------
    def _real(self, what: str) -> RealWorld:
        from pytest_installperm.world.real import RealWorld

        if not isinstance(self.world, RealWorld):
            raise FakefsError(
                f"{what}: installperm_fakefs environments have no real sandbox or child "
                "processes; use env.call(function, ...) in-process, or the installperm fixture"
            )
        return self.world

    @property
    def sandbox(self) -> Sandbox:
        """The on-disk sandbox (subprocess mode)."""
        return self._real("env.sandbox").sandbox

    def child_env(self, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
        """The hermetic environment variables a child gets (subprocess mode)."""
        return self._real("env.child_env()").child_env(extra)

    def tool(self, name: str) -> Path:
        """The readable copy of an installer program (e.g. ``uv``) for children."""
        return self._real(f"env.tool({name!r})").tool(name)

    # -- running ---------------------------------------------------------
    def snapshot(self) -> SandboxState:
        return self.world.snapshot()

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
        return self._result(*self.world.execute(argv, env, timeout, network=network, limits=limits))

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

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> RunResult:
        """Run ``fn(*args, **kwargs)`` in this environment; report what it changed.

        In-process mode only. ``pathlib.Path`` arguments naming real files are
        staged into the fake tree first, as ``run()`` stages them for a child.
        Output printed or logged (INFO and up) by ``fn`` becomes ``stdout``/``stderr``.
        """
        return self._result(*self.world.call(fn, args, kwargs))

    def _result(self, argv: tuple[str, ...], done: Exit) -> RunResult:
        changes = self.world.snapshot().update().with_roles(self.roles)
        outside = frozenset(p for p in changes.all if self.role_of(p) not in self.allowed_roles)
        return done.result(argv, changes, outside, self)

    def remove(self) -> None:
        self.world.remove()


class InstallPerm:
    """Factory of environments; the type behind the ``installperm`` fixture.

    ``InstallPerm(session)`` builds real environments; ``world=`` takes another
    builder (the in-process mode passes its pyfakefs world). Environments it
    builds are removed by :meth:`close` (the fixture calls it at teardown),
    whatever the code under test left behind.
    """

    def __init__(
        self,
        session: Session | None = None,
        *,
        backend: str | None = None,
        world: Builder | None = None,
    ) -> None:
        if world is None:
            if session is None:
                raise TypeError("InstallPerm() needs a session (real world) or world=")
            from pytest_installperm.world.build import RealBuilder

            world = RealBuilder(session, backend)
        self.world = world
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
        layout: str | Layout | None = None,
        path: Iterable[str | os.PathLike[str]] | None = None,
        mode: str | None = None,
        programs: Iterable[str] = (),
    ) -> Environment:
        """``python`` (default: the running one) as a system interpreter, not a venv.

        ``mode`` (default: the session's, ``--installperm-mode``):
        ``"in-place"`` runs the real interpreter at its real path, the
        sandbox's directories bound over its real system scheme in the child's
        mount namespace (a skip, with the reason, where that cannot be had);
        ``"relocated"`` a copy in the sandbox; ``"auto"`` in place where
        possible, else relocated. ``env.mode`` says which ran and why.

        ``layout`` (in-process mode only) picks the scheme shapes: ``posix``
        (default), ``macos-framework`` or ``windows``. ``path`` is the child's
        PATH (directories, or the role names ``system-scripts`` and
        ``user-scripts``); the default is a real system's, without the user's
        scripts directory.

        ``programs`` names installer programs the child runs by name (``poetry``,
        ``pdm``, ``pipx``, ``hatch``, ``uv``): each is made runnable by the
        child from wherever it is installed here (a venv under a 0700 ``/root``
        too), put first on its PATH, and ``env.tool(name)`` is its path. One
        that is not installed here is a :class:`ProgramError` naming it.
        """
        __tracebackhide__ = True
        spec = LockSpec.make(
            locked,
            mode=lock_mode,
            home=home,
            user_site=user_site,
            externally_managed=externally_managed,
        )
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode={mode!r}: must be one of {', '.join(MODES)}")
        request = BuildRequest(
            spec,
            False,
            False,
            tuple(preinstalled),
            python,
            backend,
            layout,
            check_path(path),
            mode,
            check_programs(programs),
        )
        return self._build(request)

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
        layout: str | Layout | None = None,
        path: Iterable[str | os.PathLike[str]] | None = None,
        programs: Iterable[str] = (),
    ) -> Environment:
        """A real venv on a relocated system interpreter, in one sandbox
        (``programs`` as for :meth:`system`)."""
        __tracebackhide__ = True
        spec = LockSpec.make(locked, mode=lock_mode, home=home, user_site=user_site)
        request = BuildRequest(
            spec,
            True,
            bool(system_site_packages),
            tuple(preinstalled),
            python,
            backend,
            layout,
            check_path(path),
            programs=check_programs(programs),
        )
        return self._build(request)

    def _build(self, request: BuildRequest) -> Environment:
        __tracebackhide__ = True
        env = self.world.build(request)
        self._envs.append(env)
        return env

    def close(self) -> None:
        """Remove every environment this factory built, then close its world."""
        errors = []
        while self._envs:
            env = self._envs.pop()
            try:
                env.remove()
            except OSError as exc:  # pragma: no cover - reported, not hidden
                errors.append(f"{env.root}: {exc}")
        self.world.close()
        if errors:
            raise RuntimeError("could not remove sandboxes: " + "; ".join(errors))


__all__ = ["DEFAULT_TIMEOUT", "Environment", "InstallPerm"]
