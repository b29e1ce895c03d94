"""The real world: one environment's interpreter (relocated into an on-disk
sandbox, or in place, see :mod:`pytest_installperm.inplace`), the backend that
makes its lock plan hold at the kernel level, and its child processes.

:mod:`pytest_installperm.world.build` assembles it from the session
(interpreter templates, scheme probes, the pip copy, installer programs), the
sandbox and the backends; this module runs one child and maps its paths.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_installperm.backends import Backend, Launch
from pytest_installperm.changes import Snapshot
from pytest_installperm.environment import PATH_ROLES
from pytest_installperm.errors import (
    FakefsError,
    UnreadableArgumentError,
)
from pytest_installperm.locks import LockSpec, Plan
from pytest_installperm.roles import is_under
from pytest_installperm.run import Exit, execute
from pytest_installperm.sandbox import SYSTEM_PATH, Sandbox
from pytest_installperm.world import Arg, Mode

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
        if is_under(absolute, root) or is_under(Path(os.path.realpath(path)), root):
            return str(path)
        if any(is_under(absolute, top) for top in self._reached):
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


__all__ = ["DEFAULT_PATH", "RealWorld", "readable_by", "resolve_path"]
