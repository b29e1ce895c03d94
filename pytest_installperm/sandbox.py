"""The directory tree of one test, its roles, and a hermetic child environment.

A sandbox is a directory with one subdirectory per role::

    <root>/prefix   the fake system interpreter's prefix (a venv's base)
    <root>/venv     the venv, for ``installperm.venv()``
    <root>/home     HOME; the user base is computed from it as Python does
    <root>/cache    XDG_CACHE_HOME (and installers' caches), always writable
    <root>/tmp      TMPDIR
    <root>/work     the child's working directory
    <root>/stage    read-only copies of files passed to a run as Path arguments

It lives in a per-session directory that is root-owned, mode 0711 and has an
unguessable name, because pytest's own basetemp is 0700 on purpose and an
unprivileged child could not enter it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pytest_installperm import safefs
from pytest_installperm.errors import UnsafePathError

SANDBOX_DIRS = ("cache", "stage", "tmp", "work")

#: The usual system directories of a POSIX PATH.
SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")


def _open_up(top: str) -> None:
    """Give the owner rwx on every directory below ``top`` (non-root cleanup).

    A child may leave 0555 or 0000 directories behind; root removes them
    anyway, a normal user must first make them writable again.
    """
    stack = [top]
    while stack:
        directory = stack.pop()
        with contextlib.suppress(OSError):
            os.chmod(directory, stat.S_IRWXU)
        try:
            with os.scandir(directory) as it:
                stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
        except OSError:
            continue


#: How a directory being removed is opened: never through a symlink.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: Path) -> None:
    """Remove ``path`` whatever its modes; 0555 dirs and foreign files included.

    Like ``shutil.rmtree`` on Linux (names relative to open directories, so a
    symlink a child left is removed, never followed), with two ``stat`` calls
    fewer per directory: ``O_NOFOLLOW | O_DIRECTORY`` refuses what is not a
    directory itself. A ``path`` that is a symlink is refused (ENOTDIR).
    """
    if not os.path.lexists(path):
        return
    if os.geteuid() != 0:
        _open_up(str(path))
    _remove_contents(os.open(path, _DIR_FLAGS))
    os.rmdir(path)


def _remove_contents(top: int) -> None:
    """Empty the directory open as ``top``, and close it."""
    # (descriptor, its name in its parent: the one before it on the stack, entries left)
    stack: list[tuple[int, str, list[tuple[str, bool]]]] = [(top, "", [])]
    try:
        stack[0][2].extend(_entries(top))  # listed once on the stack: closed if it fails
        while stack:
            fd, done, entries = stack[-1]
            if not entries:
                stack.pop()
                os.close(fd)
                if stack:
                    with contextlib.suppress(FileNotFoundError):
                        os.rmdir(done, dir_fd=stack[-1][0])
                continue
            name, is_dir = entries.pop()
            if is_dir:
                try:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:  # no longer a directory: removed as a name
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                else:
                    stack.append((sub, name, []))
                    stack[-1][2].extend(_entries(sub))
                    continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=fd)
    finally:
        for fd, _done, _left in stack:
            os.close(fd)


def _entries(fd: int) -> list[tuple[str, bool]]:
    """Names in the directory open as ``fd``, and whether each is a directory
    (not a link to one)."""
    with os.scandir(fd) as it:
        return [(e.name, e.is_dir(follow_symlinks=False)) for e in it]


#: Where session roots go when a tmpfs is at hand: building a sandbox is a few
#: hundred metadata operations, which cost ~5 us each on tmpfs and ~1 ms each
#: on this machine's disk.
TMPFS_CANDIDATES = ("/dev/shm",)


def _is_exec_tmpfs(path: str) -> bool:
    """True if ``path`` is a writable tmpfs mount that allows exec."""
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) >= 4 and fields[1] == path and fields[2] == "tmpfs":
                    options = fields[3].split(",")
                    return "noexec" not in options and "ro" not in options
    except OSError:
        return False
    return False


def default_parent() -> str:
    """A fast place for session roots: a tmpfs if one allows it, else TMPDIR."""
    for candidate in TMPFS_CANDIDATES:
        if _is_exec_tmpfs(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return tempfile.gettempdir()


#: A file in each session root, locked (``flock``) by its session while it lives.
OWNER_FILE = ".owner"
#: The owner file's first line. Roots whose owner file says anything else
#: (another version's format) are never swept: their liveness is unknown.
OWNER_FORMAT = b"installperm-flock-1"


def _owner_alive(path: str) -> bool | None:
    """Whether the session owning this root still holds its lock; None if the
    root has no owner file yet (a session still creating it) or a strange one.

    A lock, not a pid: pids (even with start times) are not unique across PID
    namespaces, and a session in another one would look dead. The kernel
    drops the lock when its holder exits, however it exits.
    """
    try:
        fd = os.open(os.path.join(path, OWNER_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        if os.read(fd, len(OWNER_FORMAT) + 1) != OWNER_FORMAT + b"\n":
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False
    finally:
        os.close(fd)


def sweep_stale(parent: str) -> list[Path]:
    """Remove session roots of ours whose session is gone.

    A pytest killed with SIGKILL cannot clean up; the next session does. Only
    directories owned by this uid whose owner file is no longer locked are
    touched.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith("installperm-") or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue
        except OSError:
            continue
        if _owner_alive(entry.path) is False:
            remove_tree(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


class SessionRoot:
    """The per-session directory that holds templates and sandboxes."""

    def __init__(self, parent: str | None = None) -> None:
        where = parent or default_parent()
        sweep_stale(where)
        self.path = Path(tempfile.mkdtemp(prefix="installperm-", dir=where))
        # 0711: others may traverse to a sandbox whose name they know, not list.
        os.chmod(self.path, 0o711)
        # Locked before it gets its name, so that no sweeper sees it unlocked;
        # the descriptor is not inherited by children (O_CLOEXEC).
        partial = self.path / f"{OWNER_FILE}.tmp"
        self._lock = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        os.write(self._lock, OWNER_FORMAT + f"\n{os.getpid()}\n".encode())
        os.replace(partial, self.path / OWNER_FILE)
        self._count = 0

    def new_dir(self, prefix: str) -> Path:
        """A fresh, unguessable, 0755 directory in the session root."""
        self._count += 1
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}{self._count}-", dir=self.path))
        os.chmod(path, 0o755)
        return path

    def remove(self) -> None:
        remove_tree(self.path)
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1


class Sandbox:
    """One test's directory tree and the roles within it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        top = os.fspath(root)
        for name in SANDBOX_DIRS:
            os.mkdir(os.path.join(top, name))
        self.prefix = root / "prefix"
        self.venv = root / "venv"
        self.home = root / "home"
        self.cache = root / "cache"
        self.tmp = root / "tmp"
        self.work = root / "work"
        self.stage = root / "stage"

    def child_env(
        self,
        *,
        path_dirs: list[Path],
        extra: Mapping[str, str | None] | None = None,
        defaults: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The constructed environment of a child: nothing from the host.

        ``path_dirs`` is the whole PATH, in order.
        ``defaults`` are the environment's own settings (e.g. PYTHONNOUSERSITE)
        and the installers' isolation variables (PIP_CONFIG_FILE, UV_CACHE_DIR);
        ``extra`` is what the caller passes; a value of None removes a key.
        """
        home = str(self.home)
        env = {
            "PATH": os.pathsep.join(map(str, path_dirs)),
            "HOME": home,
            "USER": "installperm",
            "LOGNAME": "installperm",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TMPDIR": str(self.tmp),
            "TMP": str(self.tmp),
            "TEMP": str(self.tmp),
            "XDG_CACHE_HOME": str(self.cache),
            "XDG_CONFIG_HOME": os.path.join(home, ".config"),
            "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
            "XDG_STATE_HOME": os.path.join(home, ".local", "state"),
            "APPDATA": os.path.join(home, "AppData", "Roaming"),
        }
        env.update(defaults or {})
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def stage_file(self, source: Path, *, session_root: Path | None = None) -> Path:
        """A read-only copy of ``source`` that any child uid can read.

        A source inside ``session_root`` (another sandbox's file, say) is
        opened without following any symlink below it: a child may have
        planted one there. Anything but a regular file is refused.
        """
        if session_root is not None and session_root in Path(os.path.abspath(source)).parents:
            fd = safefs.open_file(session_root, Path(os.path.abspath(source)))
        else:
            fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                found = safefs.kind(os.fstat(fd))
                os.close(fd)
                raise UnsafePathError(errno.EINVAL, f"{source} is {found}, not a file to stage")
        try:
            target_dir = self.stage / f"{len(os.listdir(self.stage)):03d}"
            target_dir.mkdir(mode=0o755)
            os.chmod(target_dir, 0o755)
            target = target_dir / source.name
            safefs.copy_file(fd, target, 0o444)
        finally:
            os.close(fd)
        return target

    def remove(self) -> None:
        remove_tree(self.root)
