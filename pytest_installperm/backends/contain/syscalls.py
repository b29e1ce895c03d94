"""The system calls containment needs that the os module lacks, through libc.

Everything here is loaded and computed in the parent, at import or on first
use: a forked child must only make system calls, never search for a library.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
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
MNT_DETACH = 0x2
MOUNT_ATTR_RDONLY = 0x1
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
#: mount_setattr(2); one number on every architecture since Linux 5.12.
SYS_MOUNT_SETATTR = 442
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40

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


class Libc:
    """libc's functions with their argument types, loaded once in the parent."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(None, use_errno=True)  # this process: libc is linked in
        lib.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_void_p,
        ]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.unshare.argtypes = [ctypes.c_int]
        lib.syscall.restype = ctypes.c_long
        lib.prctl.argtypes = [
            ctypes.c_int,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
        ]
        self.lib = lib
        # fork(2) itself, not os.fork: a forked child has no Python at-fork
        # hooks to run, and os.fork would warn about threads the child lacks.
        # PyDLL keeps the GIL across the call.
        self.fork = ctypes.PyDLL(None).fork
        self.fork.restype = ctypes.c_int
        self.fork.argtypes = []
        self.mountinfo = False  # remount mount by mount (kernels before 5.12)

    def mount(
        self,
        source: bytes | None,
        target: bytes,
        fstype: bytes | None,
        flags: int,
        what: str,
        data: bytes | None = None,
    ) -> None:
        check(
            self.lib.mount(source, target, fstype, flags, data),
            f"{what} ({target.decode(errors='replace')})",
        )

    def detach(self, target: bytes, what: str) -> None:
        """``umount -l target``."""
        check(self.lib.umount2(target, MNT_DETACH), f"{what} ({target.decode(errors='replace')})")

    def set_readonly(self, path: bytes, readonly: bool, *, recursive: bool) -> None:
        """Make the mounts at (and with ``recursive``, below) ``path`` read-only
        or writable: mount_setattr where the kernel has it, else one remount each."""
        if not self.mountinfo:
            attr = _MountAttr(
                MOUNT_ATTR_RDONLY if readonly else 0, 0 if readonly else MOUNT_ATTR_RDONLY, 0, 0
            )
            result = self.lib.syscall(
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
                check(int(result), f"mount_setattr {path.decode(errors='replace')}")
            self.mountinfo = True
        for point, flags in mounts_under(path, recursive):
            flags = flags | MS_RDONLY if readonly else flags & ~MS_RDONLY
            check(
                self.lib.mount(None, point, None, MS_REMOUNT | MS_BIND | flags, None),
                f"remount {point.decode(errors='replace')}",
            )

    def drop_capabilities(self, cap_last: int) -> None:
        """Lose every capability, the bounding set included (for a uid-0 child)."""
        for cap in range(cap_last + 1):
            check(self.lib.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
        header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        check(self.lib.capset(ctypes.byref(header), data), "capset")

    def prctl(self, option: int, value: int, what: str) -> None:
        check(self.lib.prctl(option, value, 0, 0, 0), what)


_LIBC: list[Libc] = []


def libc() -> Libc:
    """The process's :class:`Libc`, loaded on first use (in the parent)."""
    if not _LIBC:
        _LIBC.append(Libc())
    return _LIBC[0]


def check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def cap_last() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


def write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def mounts_under(path: bytes, recursive: bool) -> list[tuple[bytes, int]]:
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


def loopback_up() -> None:
    """Bring up ``lo`` in a new network namespace (it starts down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING)
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, request)


def unix_socket_paths(outside_of: bytes) -> tuple[bytes, ...]:
    """Paths of the unix sockets bound in this network namespace, except those
    under ``outside_of``. A socket file is reachable through a read-only mount
    and across network namespaces, so the child gets each one covered."""
    found = set()
    try:
        with open("/proc/net/unix", "rb") as table:
            next(table, None)
            for line in table:
                fields = line.split(None, 7)
                if len(fields) == 8 and fields[7].startswith(b"/"):
                    path = fields[7].rstrip(b"\n")
                    if not (path + b"/").startswith(outside_of.rstrip(b"/") + b"/"):
                        found.add(path)
    except OSError:
        pass
    return tuple(sorted(found))


def close_all_but(*keep: int) -> None:
    """Close every descriptor except ``keep`` (a waiter must hold no pipe open)."""
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


#: Known in the parent, so that the forked child need not ask.
PROC_IS_MOUNT = os.path.ismount("/proc")
