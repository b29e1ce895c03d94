"""Building one real environment: a relocated copy or the real interpreter in
place, the sandbox assembled around it (scaffold, pip, preinstalled wheels)
and the :class:`~pytest_installperm.world.real.RealWorld` that runs its children.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_installperm import safefs
from pytest_installperm.backends import Backend
from pytest_installperm.environment import Environment
from pytest_installperm.errors import (
    FakefsError,
    InterpreterError,
    LockUnavailable,
)
from pytest_installperm.interpreter import BaseInterpreter, create_venv
from pytest_installperm.locks import LockSpec
from pytest_installperm.pip_copy import PipCopy
from pytest_installperm.programs import required
from pytest_installperm.roles import is_under
from pytest_installperm.sandbox import Sandbox
from pytest_installperm.scheme_facts import SchemeFacts
from pytest_installperm.schemes import SCHEME_KEYS
from pytest_installperm.session import Session, library_path
from pytest_installperm.world import Arg, BuildRequest, Mode
from pytest_installperm.world.real import RealWorld, resolve_path

if TYPE_CHECKING:
    from pytest_installperm.inplace import InPlace


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
        """The environment in place, or why it cannot be had (decided before
        any sandbox is made: ``auto`` on pyenv asks for every ``system()``)."""
        from pytest_installperm import inplace
        from pytest_installperm.backends.contain import namespace_mode

        if request.venv:
            return "venv() is always built on a relocated copy"
        namespace = namespace_mode()
        blocked = inplace.why_not(request.spec, base, namespace)
        if blocked is not None:
            return blocked
        session = self._session
        try:
            facts = session.real_schemes(base)
        except InterpreterError as exc:
            return str(exc)
        # The interpreter's own directories (none is below the probe's sandbox).
        found = session.layouts.of(base, facts.system)
        if isinstance(found, str):
            return found
        closed = inplace.closed_on_the_way(base, session.root.path, backend.owner())
        if isinstance(closed, str):
            return closed
        refusal = inplace.auto_refusal(found)
        if refusal is not None and (request.mode or session.mode) == "auto":
            return refusal
        how = "as root" if namespace[0] == "mount" else "in a user namespace"
        mode = Mode("in-place", f"{base.executable} at its real path, bind mounts made {how}")
        sandbox = Sandbox(session.root.new_dir("sandbox-"))
        try:
            mounts = inplace.mounts(found, closed, base, sandbox.prefix, sandbox.root, request.spec)
            mounts.build()
            real = found.real
            system = mounts.scheme(real)
            loader = _loader_path(base)
            placed = _Placed(sandbox, facts, mode, base.executable, base.version, system, loader)
            return _assemble(placed, request, backend, session, pip, mounts, real)
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
            python = template.relocate(
                sandbox.prefix, externally_managed=request.spec.externally_managed
            )
            if request.venv:
                python = create_venv(
                    sandbox.venv,
                    python,
                    template.base.version,
                    system_site_packages=request.system_site_packages,
                )
            system = {k: where(facts, facts.system[k], sandbox) for k in SCHEME_KEYS}
            version, loader = template.base.version, library_path(template)
            placed = _Placed(sandbox, facts, mode, python, version, system, loader)
            return _assemble(placed, request, backend, session, pip)
        except BaseException:
            sandbox.remove()
            backend.release()
            raise

    def close(self) -> None:
        """Nothing to release: the session owns the templates."""


def where(facts: SchemeFacts, value: str, sandbox: Sandbox) -> Path:
    """A probe's path in ``sandbox`` (the probe's own sandbox paths mapped)."""
    return facts.relocate(value, prefix=sandbox.prefix, venv=sandbox.venv, home=sandbox.home)


@dataclass(frozen=True)
class _Placed:
    """What differs between the modes: the sandbox, the interpreter that runs
    in it (``python``, Python ``version``), its system scheme, and the
    variables that let the loader find its libpython (``loader``)."""

    sandbox: Sandbox
    facts: SchemeFacts
    mode: Mode
    python: Path
    version: str
    system: Mapping[str, Path]
    loader: Mapping[str, str]


def _assemble(
    placed: _Placed,
    request: BuildRequest,
    backend: Backend,
    session: Session,
    pip: PipCopy | None,
    in_place: InPlace | None = None,
    seen: Mapping[str, Path] | None = None,
) -> Environment:
    """The rest of the tree around the interpreter, what must be there (pip,
    the wheels to preinstall), the child's defaults; then lock and snapshot.
    In place, ``seen`` is the real system scheme that ``in_place`` binds over."""
    sandbox, facts, python, system = placed.sandbox, placed.facts, placed.python, placed.system
    spec = request.spec
    user = {k: where(facts, facts.user[k], sandbox) for k in SCHEME_KEYS}
    userbase = where(facts, facts.userbase, sandbox)
    _scaffold(spec, system, user, userbase, sandbox)
    if pip is not None:
        _install_pip(pip, system, python, placed.version)
    for wheel in request.preinstalled:
        _preinstall(Path(wheel), system, python, sandbox.root)
    # Every registered preset's isolation, whichever installer the child runs.
    defaults = {**session.isolation(sandbox), **placed.loader}
    if not spec.user_site:
        defaults["PYTHONNOUSERSITE"] = "1"
    world = RealWorld(
        sandbox,
        backend,
        path_dirs=resolve_path(request.path, {"system": system, "user": user}),
        defaults=defaults,
        tools=required(session.tools(request.programs), request.programs),
        mode=placed.mode,
        in_place=in_place,
        python=python,
    )
    env = Environment(
        kind="venv" if request.venv else "system",
        root=sandbox.root,
        python=python,
        prefix=sandbox.venv if request.venv else sandbox.prefix,
        userbase=userbase,
        spec=spec,
        schemes=facts.schemes(system, user, seen=seen),
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
        if is_under(directory, sandbox.root):
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


__all__ = ["RealBuilder"]
