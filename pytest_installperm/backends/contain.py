"""Keep a child inside its sandbox: everything else is read-only to it.

Why permission bits are not enough: the fake interpreter's stdlib is a set of
symlinks into a session template, and under the ``chmod`` backend the
template's entries are symlinks into the *real* interpreter. A wheel whose data
files target ``lib/pythonX.Y/json/`` writes through them, and a developer's
pyenv Python belongs to the developer, so no mode bit stops it. Installers also
write to ``/tmp`` and to ``$HOME/..`` when nobody stops them.

What stops them: a private mount namespace in which every mount is read-only
except the sandbox, which is bound over itself read-write; ``readonly-fs``
locks bind their trees over themselves read-only on top (real EROFS). Nothing
is propagated back to the host.

How, cheaply: the work happens in the forked child right before ``exec``
(``Popen``'s ``preexec_fn``), so there is no launcher program and no second
interpreter start; the cost is a few system calls (about a millisecond, see
docs/safety.md). As root the child gets ``CLONE_NEWNS`` and then drops to its
uid; as a normal user ``CLONE_NEWUSER | CLONE_NEWNS`` with the user's own uid
mapped to itself, so the child keeps its identity and loses the namespace's
capabilities at ``exec``. A child that would stay uid 0 loses every
capability, so it cannot remount anything back. ``no_new_privs`` is set, and
after the run every process left in the namespace is killed, even one that
left the process group.

Where the platform allows neither kind of namespace (a container without
CAP_SYS_ADMIN and with user namespaces blocked), :class:`Watch` detects writes
that landed outside: in every tree a symlink in the sandbox leads to, in the
session root and in the temporary directories. The run then raises
:class:`ContainmentError` naming the paths. It never passes silently.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_installperm.changes import Snapshot
from pytest_installperm.errors import BackendError, ContainmentError

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_RELATIME = 0x200000
MOUNT_ATTR_RDONLY = 0x1
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
#: mount_setattr(2); one number on every architecture since Linux 5.12.
SYS_MOUNT_SETATTR = 442
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
LINUX_CAPABILITY_VERSION_3 = 0x20080522

#: Namespace modes, best first; "detect" means: no namespace, watch instead.
MODES = ("mount", "userns", "detect")
#: Options in /proc/self/mountinfo that a per-mount remount must keep.
_KEEP_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
}


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    """libc, loaded once in the parent (never first in a forked child)."""
    global _LIBC
    if _LIBC is None:
        lib = ctypes.CDLL(None, use_errno=True)  # this process: libc is linked in
        lib.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_void_p,
        ]
        lib.unshare.argtypes = [ctypes.c_int]
        lib.syscall.restype = ctypes.c_long
        lib.prctl.argtypes = [
            ctypes.c_int,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
        ]
        _LIBC = lib
    return _LIBC


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


_CAP_LAST: list[int] = []


def _cap_last() -> int:
    """The highest capability number this kernel knows (read once)."""
    if not _CAP_LAST:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                _CAP_LAST.append(int(f.read()))
        except (OSError, ValueError):
            _CAP_LAST.append(63)
    return _CAP_LAST[0]


@dataclass
class Enter:
    """The ``preexec_fn``: runs in the forked child, between fork and exec.

    Everything it needs is computed in the parent (bytes paths, numbers), so
    the child only makes system calls. On ``report_fd`` (a socket) it sends
    "ok" with a descriptor of its mount namespace, which keeps the namespace
    (and its inode number) alive until the parent has reaped it, or its error.
    """

    mode: str
    root: bytes | None
    readonly: tuple[bytes, ...]
    uid: int | None
    gid: int | None
    own: tuple[int, int]
    drop_caps: bool
    cap_last: int
    report_fd: int = -1
    mountinfo: bool = False  # remount mount by mount (kernels before 5.12)
    _namespace: int = -1

    def __call__(self) -> None:
        try:
            self._enter()
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.write(self.report_fd, f"error {exc}".encode(errors="replace"))
            raise
        else:
            with contextlib.suppress(OSError):
                os.close(self._namespace)
        finally:
            with contextlib.suppress(OSError):
                os.close(self.report_fd)

    def _enter(self) -> None:
        libc = _libc()
        if self.mode == "userns":
            _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(CLONE_NEWUSER|CLONE_NEWNS)")
            uid, gid = self.own
            _write("/proc/self/setgroups", b"deny")
            _write("/proc/self/uid_map", b"%d %d 1" % (uid, uid))
            _write("/proc/self/gid_map", b"%d %d 1" % (gid, gid))
        else:
            _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
        self._set_readonly(b"/", True, recursive=True)
        if not self.drop_caps and _PROC_IS_MOUNT:
            # A non-root child may keep its own /proc files (uid_map for a
            # nested sandbox); a root child may not (sysctls are root's 0644).
            self._set_readonly(b"/proc", False, recursive=False)
        if self.root is not None:
            _check(
                libc.mount(self.root, self.root, None, MS_BIND | MS_REC, None), "bind the sandbox"
            )
            self._set_readonly(self.root, False, recursive=True)
        for path in self.readonly:
            _check(libc.mount(path, path, None, MS_BIND | MS_REC, None), "bind a locked tree")
            self._set_readonly(path, True, recursive=True)
        os.chdir(os.getcwd())  # re-enter the working directory through the new mounts
        self._namespace = os.open("/proc/self/ns/mnt", os.O_RDONLY)
        self._drop()
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        channel = socket.socket(fileno=self.report_fd)
        socket.send_fds(channel, [b"ok"], [self._namespace])
        channel.detach()

    def _set_readonly(self, path: bytes, readonly: bool, *, recursive: bool) -> None:
        libc = _libc()
        if not self.mountinfo:
            attr = _MountAttr(
                MOUNT_ATTR_RDONLY if readonly else 0, 0 if readonly else MOUNT_ATTR_RDONLY, 0, 0
            )
            result = libc.syscall(
                SYS_MOUNT_SETATTR,
                AT_FDCWD,
                path,
                AT_RECURSIVE if recursive else 0,
                ctypes.byref(attr),
                ctypes.sizeof(attr),
            )
            if result == 0:
                return
            if ctypes.get_errno() != errno.ENOSYS:
                _check(int(result), f"mount_setattr {path.decode(errors='replace')}")
            self.mountinfo = True
        for point, flags in _mounts_under(path, recursive):
            flags = flags | MS_RDONLY if readonly else flags & ~MS_RDONLY
            _check(
                libc.mount(None, point, None, MS_REMOUNT | MS_BIND | flags, None),
                f"remount {point.decode(errors='replace')}",
            )

    def _drop(self) -> None:
        if self.uid is not None and self.gid is not None:
            os.setgroups([])
            os.setresgid(self.gid, self.gid, self.gid)
            os.setresuid(self.uid, self.uid, self.uid)
        if self.drop_caps:
            libc = _libc()
            for cap in range(self.cap_last + 1):
                _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
            header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
            data = (_CapData * 2)()
            _check(libc.capset(ctypes.byref(header), data), "capset")


#: Known in the parent, so that the forked child need not ask.
_PROC_IS_MOUNT = os.path.ismount("/proc")


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _mounts_under(path: bytes, recursive: bool) -> list[tuple[bytes, int]]:
    """Mount points at or below ``path`` with the flags a remount must keep."""
    found = []
    with open("/proc/self/mountinfo", "rb") as info:
        for line in info:
            fields = line.split()
            point = fields[4].replace(b"\\040", b" ")
            if point == path or (recursive and point.startswith(path.rstrip(b"/") + b"/")):
                flags = 0
                for option in fields[5].split(b","):
                    flags |= _KEEP_FLAGS.get(option.decode(), 0)
                found.append((point, flags))
    return found


# -- choosing a mode -------------------------------------------------------

_MODE: list[tuple[str, str]] = []


def _true() -> str:
    return shutil.which("true") or "/bin/true"


def _try(mode: str) -> str | None:
    """Start ``true`` in ``mode``; None if it worked, else why not."""
    _libc()
    channel = Channel()
    enter = Enter(
        mode,
        None,
        (),
        None,
        None,
        (os.getuid(), os.getgid()),
        os.geteuid() == 0,
        _cap_last(),
        channel.child_fd,
    )
    try:
        done = subprocess.run(
            [_true()],
            preexec_fn=enter,
            pass_fds=(channel.child_fd,),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=30,
        )
        text, namespace = channel.receive()
        if namespace is not None:
            os.close(namespace)
        if done.returncode == 0 and text == "ok":
            return None
        return text.removeprefix("error ") or f"exit status {done.returncode}"
    except (OSError, subprocess.SubprocessError) as exc:
        return channel.receive()[0].removeprefix("error ") or str(exc)
    finally:
        channel.close()


def namespace_mode() -> tuple[str, str]:
    """("mount"|"userns"|"detect", why not the better ones), probed once."""
    if not _MODE:
        reasons = []
        candidates = ("mount", "userns") if os.geteuid() == 0 else ("userns",)
        chosen = "detect"
        for mode in candidates:
            why = _try(mode)
            if why is None:
                chosen = mode
                break
            reasons.append(f"{mode}: {why}")
        _MODE.append((chosen, "; ".join(reasons)))
    return _MODE[0]


class Channel:
    """How the forked child reports to us: a text and at most one descriptor."""

    def __init__(self) -> None:
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.child_fd = self._theirs.fileno()
        self._received: tuple[str, int | None] | None = None

    def receive(self) -> tuple[str, int | None]:
        """What the child sent; call once it has exec'd or failed."""
        if self._received is None:
            self._theirs.close()
            chunks: list[bytes] = []
            namespace = None
            while True:
                data, fds, _flags, _addr = socket.recv_fds(self._ours, 65536, 1)
                for fd in fds:
                    if namespace is None:
                        namespace = fd
                    else:
                        os.close(fd)
                if not data:
                    break
                chunks.append(data)
            self._received = (b"".join(chunks).decode(errors="replace"), namespace)
        return self._received

    def close(self) -> None:
        self._theirs.close()
        self._ours.close()


# -- detection, where no namespace is possible -----------------------------


class Watch:
    """Before and after state of every place a contained write could land.

    Covered: each tree a symlink inside the sandbox resolves to (the template,
    the real stdlib), the session root's listing, and new entries owned by the
    child's uid in the temporary directories.
    """

    def __init__(self, sandbox_root: Path, child_uid: int) -> None:
        self.root = sandbox_root
        self.uid = child_uid
        trees: set[str] = set()
        files: set[str] = set()
        for target in _symlink_targets(sandbox_root):
            if _inside(target, str(sandbox_root)):
                continue
            (trees if os.path.isdir(target) else files).add(target)
        tops = sorted(trees)
        tops = [t for t in tops if not any(_inside(t, o) and t != o for o in tops)]
        self.trees = [Snapshot.take(Path(t)) for t in tops]
        self.files = {f: _lstat(f) for f in sorted(files)}
        self.flat = sorted(
            {str(sandbox_root.parent), tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"}
        )
        self.listings = {d: _names(d) for d in self.flat}

    def begin(self) -> None:
        """Take the baseline now: what we ourselves changed between runs (new
        sandboxes in the session root, say) is not the next child's doing."""
        for snapshot in self.trees:
            snapshot.update()
        self.files = {f: _lstat(f) for f in self.files}
        self.listings = {d: _names(d) for d in self.flat}

    def check(self) -> list[str]:
        """Paths that changed outside the sandbox since :meth:`begin`."""
        found: set[str] = set()
        for snapshot in self.trees:
            found.update(str(p) for p in snapshot.update().all)
        for path, before in self.files.items():
            now = _lstat(path)
            if now != before:
                found.add(path)
                self.files[path] = now
        for directory in self.flat:
            names = _names(directory)
            for name in sorted(names - self.listings[directory]):
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    if os.lstat(path).st_uid == self.uid:
                        found.add(path)
            self.listings[directory] = names
        return sorted(found)


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _names(directory: str) -> set[str]:
    try:
        return set(os.listdir(directory))
    except OSError:
        return set()


def _lstat(path: str) -> tuple[int, ...] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, stat.S_IMODE(st.st_mode))


def _symlink_targets(top: Path) -> set[str]:
    targets = set()
    for directory, dirs, names in os.walk(top):
        for name in (*dirs, *names):
            path = os.path.join(directory, name)
            if os.path.islink(path):
                targets.add(os.path.realpath(path))
    return targets


# -- one run ----------------------------------------------------------------


@dataclass
class Containment:
    """How one environment's children are kept inside its sandbox."""

    root: Path
    mode: str
    readonly: tuple[Path, ...] = ()
    #: The uid and gid to drop to, or None to keep ours.
    identity: tuple[int, int] | None = None
    watch: Watch | None = field(default=None, repr=False)

    def child_uid(self) -> int:
        return self.identity[0] if self.identity else os.geteuid()

    def popen_kwargs(self, base: Mapping[str, object], report_fd: int) -> dict[str, object]:
        """``base`` (a backend's Popen arguments) with the namespace entry added.

        The uid change of ``base`` moves into the entry function, because the
        mounts must be made while we still hold the privilege to make them.
        """
        kwargs = dict(base)
        if self.mode == "detect":
            if self.watch is None:
                self.watch = Watch(self.root, self.child_uid())
            else:
                self.watch.begin()
            return kwargs
        for key in ("user", "group", "extra_groups"):
            kwargs.pop(key, None)
        _libc()  # load it here: never search for a library in the forked child
        uid, gid = self.identity if self.identity else (None, None)
        stays_root = (uid if uid is not None else os.geteuid()) == 0
        kwargs["preexec_fn"] = Enter(
            self.mode,
            os.fsencode(self.root),
            tuple(map(os.fsencode, self.readonly)),
            uid,
            gid,
            (os.getuid(), os.getgid()),
            stays_root,
            _cap_last(),
            report_fd,
        )
        kwargs["pass_fds"] = (*tuple(kwargs.get("pass_fds", ())), report_fd)  # type: ignore[arg-type]
        return kwargs

    def started(self, report: tuple[str, int | None]) -> int | None:
        """The namespace descriptor the child sent; BackendError if it failed."""
        if self.mode == "detect":
            return None
        text, namespace = report
        if text != "ok" or namespace is None:
            if namespace is not None:
                os.close(namespace)
            raise BackendError(
                f"containment ({self.mode} namespace) failed to start the child: "
                f"{text.removeprefix('error ') or 'no report from the child'}"
            )
        return namespace

    def reap(self, namespace: int | None, since: int) -> None:
        """Kill what is left in the child's namespace, then let it go."""
        if namespace is not None:
            try:
                reap(namespace, since)
            finally:
                os.close(namespace)

    def finish(self) -> None:
        """In detect mode, raise ContainmentError for writes that escaped."""
        if self.watch is not None:
            escaped = self.watch.check()
            if escaped:
                raise ContainmentError(
                    "containment (detect mode: no mount namespace on this platform) "
                    f"caught writes outside the sandbox {self.root}:\n"
                    + "\n".join(f"  {p}" for p in escaped)
                )


def reap(namespace: int, since: int = 0) -> list[int]:
    """SIGKILL every process in the mount namespace open as descriptor
    ``namespace``; return their pids. Holding the descriptor is what makes
    this safe: a namespace's inode number is reused once it is freed.

    Only pids from ``since`` (the child's pid) up are looked at: everything
    the child started got a later pid, unless the pid counter wrapped around
    during the run. That keeps the scan to a handful of ``stat`` calls.
    """
    held = os.fstat(namespace)
    key = (held.st_dev, held.st_ino)
    killed = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) < since or int(name) == me:
            continue
        try:
            st = os.stat(f"/proc/{name}/ns/mnt")
            if (st.st_dev, st.st_ino) != key:
                continue
            os.kill(int(name), signal.SIGKILL)
            killed.append(int(name))
        except OSError:
            continue
    _wait_dead(killed)
    return killed


def _wait_dead(pids: list[int], limit: float = 5.0) -> None:
    """Wait until each of ``pids`` is gone or a zombie: killed means finished."""
    deadline = time.monotonic() + limit
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                break
            if state in (b"Z", b"X"):
                break
            time.sleep(0.001)


__all__ = [
    "MODES",
    "Containment",
    "Enter",
    "Watch",
    "namespace_mode",
    "reap",
]
