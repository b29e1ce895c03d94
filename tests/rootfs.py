"""Run a command inside a Debian root filesystem, the container way.

Plain ``chroot`` refuses user namespaces (EPERM) and makes ``/`` no mount
point, so the plugin cannot run in one. This enters the rootfs as container
runtimes do: a private mount namespace, the rootfs (or an overlay on it) bound
onto itself, ``/proc``, ``/dev`` (rbind), tmpfs on ``/dev/shm``, ``/tmp`` and
``/run``, then ``pivot_root . .oldroot`` and a lazy unmount of the old root.
The host's ``resolv.conf``, ``hosts`` and CA bundle are bound in, so pip in the
rootfs reaches the host's configured index (``PIP_CERT`` points at the bundle).

By default every write lands in an overlay's upper directory, which the caller
owns and reads afterwards: the cached rootfs stays pristine, and the upper
directory is exactly what the command changed. ``persist=True`` writes to the
rootfs itself (for building it).

The rootfs cache is made by ``.ci/rootfs``; :func:`find` returns None when a
release is absent (a developer without the cache), so tests skip with the
reason.

Usable as a script: ``python tests/rootfs.py [options] ROOTFS -- COMMAND...``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("INSTALLPERM_ROOTFS", "/var/cache/pytest-installperm/rootfs"))
SUITES = ("bullseye", "bookworm", "trixie", "sid")
#: Written last by ``.ci/rootfs`` for each layer it made.
BASE_MARKER = ".installperm-base"
INSTALLERS_MARKER = ".installperm-installers"
SUITE_MARKER = ".installperm-suite"
#: Inside the rootfs: the unprivileged user ``.ci/rootfs`` created.
TESTER_UID = 1000
TESTER_HOME = "/home/tester"
#: Inside the rootfs: the venv with the plugin's dependencies (trixie, sid).
SUITE_VENV = "/opt/installperm/venv"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
HOST_FILES = ("/etc/resolv.conf", "/etc/hosts")
#: Inside the rootfs, on a tmpfs: the host's CA bundle.
CA_INSIDE = "/run/installperm/ca-certificates.crt"

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


@dataclass(frozen=True)
class Bind:
    """A host path made visible at ``inside`` (read-only unless ``writable``)."""

    host: str
    inside: str
    writable: bool = False


@dataclass(frozen=True)
class Rootfs:
    """A cached Debian release."""

    suite: str
    path: Path

    @property
    def python(self) -> str:
        """The release's ``python3`` version, e.g. ``3.13``."""
        for entry in sorted((self.path / "usr/bin").glob("python3.*")):
            if entry.name[len("python") :].replace(".", "").isdigit():
                return entry.name[len("python") :]
        raise FileNotFoundError(f"{self.path}: no usr/bin/python3.X")

    @property
    def has_suite_venv(self) -> bool:
        return (self.path / SUITE_VENV.lstrip("/") / SUITE_MARKER).is_file()

    def run(
        self,
        argv: Sequence[str],
        *,
        upper: Path | None = None,
        uid: int = 0,
        env: Mapping[str, str] | None = None,
        cwd: str = "/",
        binds: Sequence[Bind] = (),
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside; writes go to ``upper`` (an overlay) or, if None, persist."""
        spec = Entry(
            root=str(self.path),
            upper=str(upper) if upper is not None else None,
            uid=uid,
            env=dict(env or default_env(uid)),
            cwd=cwd,
            binds=list(binds),
            argv=list(argv),
        )
        return subprocess.run(
            [sys.executable, __file__, "--json", json.dumps(spec.to_json())],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"},
            check=False,
        )


def find(suite: str) -> Rootfs | None:
    """The cached rootfs of ``suite`` with its installers, or None if not made."""
    path = CACHE / suite
    if (path / BASE_MARKER).is_file() and (path / INSTALLERS_MARKER).is_file():
        return Rootfs(suite, path)
    return None


def missing_reason(suite: str) -> str:
    return (
        f"no Debian {suite} rootfs in {CACHE} (made by .ci/rootfs; "
        "set INSTALLPERM_ROOTFS to use another cache)"
    )


def default_env(uid: int) -> dict[str, str]:
    """A login-like environment for ``uid`` inside the rootfs."""
    home = "/root" if uid == 0 else TESTER_HOME
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin" + (":/usr/local/sbin:/usr/sbin:/sbin" * (uid == 0)),
        "HOME": home,
        "USER": "root" if uid == 0 else "tester",
        "LOGNAME": "root" if uid == 0 else "tester",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PIP_CERT": CA_INSIDE,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }


@dataclass
class Entry:
    """Everything the entering process needs, passed as JSON on its command line."""

    root: str
    upper: str | None
    uid: int
    env: dict[str, str]
    cwd: str
    binds: list[Bind] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        data = dict(self.__dict__)
        data["binds"] = [b.__dict__ for b in self.binds]
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Entry:
        binds = [Bind(**b) for b in data.pop("binds")]  # type: ignore[attr-defined]
        return cls(binds=binds, **data)  # type: ignore[arg-type]


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def _bind(host: str, target: str, *, writable: bool) -> None:
    if os.path.isdir(host):
        os.makedirs(target, exist_ok=True)
    elif not os.path.lexists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(host, target, None, MS_BIND | MS_REC)
    if not writable:
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def enter(entry: Entry) -> None:
    """In this (fresh) process: build the namespace, pivot into it, exec."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    if entry.upper is None:
        new = entry.root
        _mount(new, new, None, MS_BIND | MS_REC)
    else:
        upper = Path(entry.upper)
        for name in ("upper", "work", "merged"):
            (upper / name).mkdir(exist_ok=True)
        new = str(upper / "merged")
        _mount(
            "overlay",
            new,
            "overlay",
            0,
            f"lowerdir={entry.root},upperdir={upper / 'upper'},workdir={upper / 'work'}",
        )
    _mount("proc", f"{new}/proc", "proc", MS_NOSUID | MS_NODEV)
    _mount("/dev", f"{new}/dev", None, MS_BIND | MS_REC)
    for tmp in ("/dev/shm", "/tmp", "/run"):
        _mount("tmpfs", f"{new}{tmp}", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    os.makedirs(f"{new}/run/installperm")
    if os.path.exists(CA_BUNDLE):
        with open(CA_BUNDLE, "rb") as src, open(f"{new}{CA_INSIDE}", "wb") as dst:
            dst.write(src.read())
    for host_file in HOST_FILES:
        if os.path.exists(host_file):
            target = f"{new}{host_file}"
            if os.path.islink(target) or not os.path.exists(target):
                continue  # a dangling or foreign link: leave the rootfs's own
            _bind(host_file, target, writable=False)
    for bind in entry.binds:
        _bind(bind.host, f"{new}{bind.inside}", writable=bind.writable)
    os.chdir(new)
    os.makedirs(".oldroot", exist_ok=True)
    number = SYS_PIVOT_ROOT[os.uname().machine]
    _check(_libc.syscall(number, b".", b".oldroot"), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.oldroot", MNT_DETACH), "umount /.oldroot")
    os.rmdir("/.oldroot")
    if entry.uid != 0:
        os.setgroups([])
        os.setresgid(entry.uid, entry.uid, entry.uid)
        os.setresuid(entry.uid, entry.uid, entry.uid)
    os.chdir(entry.cwd)
    os.execvpe(entry.argv[0], entry.argv, entry.env)


@dataclass(frozen=True)
class Change:
    """One entry of an overlay's upper directory: what the command wrote."""

    path: str  # absolute, as seen inside the rootfs
    kind: str  # "file", "symlink", "dir" or "deleted"


def changes(upper: Path) -> list[Change]:
    """What a run changed, read from its overlay's upper directory (no links followed)."""
    top = upper / "upper"
    found: list[Change] = []
    for directory, dirs, files in os.walk(top):
        for name in sorted([*dirs, *files]):
            full = os.path.join(directory, name)
            info = os.lstat(full)
            inside = "/" + os.path.relpath(full, top)
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                kind = "deleted"
            elif stat.S_ISLNK(info.st_mode):
                kind = "symlink"
            elif stat.S_ISDIR(info.st_mode):
                kind = "dir"
            else:
                kind = "file"
            found.append(Change(inside, kind))
    return sorted(found, key=lambda c: c.path)


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--upper", help="overlay directory (default: write to the rootfs)")
    parser.add_argument("--uid", type=int, default=0)
    parser.add_argument("--bind", action="append", default=[], metavar="HOST:INSIDE[:rw]")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--cwd", default="/")
    parser.add_argument("root", nargs="?")
    parser.add_argument("argv", nargs="*")
    ns = parser.parse_args(args)
    if ns.json:
        entry = Entry.from_json(json.loads(ns.json))
    else:
        if not ns.root or not ns.argv:
            parser.error("ROOTFS and COMMAND are required")
        binds = []
        for spec in ns.bind:
            host, inside, *rest = spec.split(":")
            binds.append(Bind(host, inside, writable=rest == ["rw"]))
        env = default_env(ns.uid)
        env.update(item.split("=", 1) for item in ns.env)
        entry = Entry(ns.root, ns.upper, ns.uid, env, ns.cwd, binds, ns.argv)
    try:
        enter(entry)
    except OSError as exc:
        print(f"rootfs: cannot enter {entry.root}: {exc}", file=sys.stderr)
        return 125
    return 0  # pragma: no cover - enter() execs


if __name__ == "__main__":
    sys.exit(main())
