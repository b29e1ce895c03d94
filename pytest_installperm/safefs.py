"""Reading sandbox content as the parent, without following what a child planted.

Why: the parent often runs as root, and a sandbox is the child's to write. A
symlink the child left where a wheel's file was expected would otherwise make
root read (and print, hash or copy) whatever it points to: a 0600 file, the
parent's own ``/proc/self/environ``. A fifo would block the read forever.

How: every path is opened one component at a time, relative to a directory
descriptor, from a trusted top (the sandbox root, made by us) down, each with
``O_NOFOLLOW``; what is found where a file should be is checked with
``fstat`` on the open descriptor, so nothing can be swapped in between the
check and the read. Anything that is not what was expected is an
:class:`UnsafePathError` that says what was found, never dereferenced.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from pytest_installperm.errors import UnsafePathError


def _faked() -> bool:
    """Whether pyfakefs has replaced ``os`` here (the in-process mode).

    There the "child" is this process's own code, so there is nothing to
    guard against, and pyfakefs moves a file's ctime whenever a descriptor of
    it is closed: the walk by descriptors would look like a change. Plain
    ``lstat`` checks are used instead.
    """
    return not isinstance(os, ModuleType)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def kind(st: os.stat_result) -> str:
    """What an lstat result is, in words for a message."""
    mode = st.st_mode
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a fifo"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return f"a file of type {stat.S_IFMT(mode):#o}"


def _parts(top: Path, path: Path) -> list[str]:
    """The components of ``path`` below ``top``, lexically (no resolving)."""
    absolute = Path(os.path.normpath(os.path.abspath(path)))
    try:
        relative = absolute.relative_to(os.path.normpath(os.path.abspath(top)))
    except ValueError:
        raise UnsafePathError(
            errno.EXDEV, f"{path} is outside {top}; sandbox content is read only inside it"
        ) from None
    return [p for p in relative.parts if p not in ("", ".")]


def _describe_found(dir_fd: int, name: str, path: Path) -> str:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    found = kind(st)
    if stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(OSError):
            found += f" (to {os.readlink(name, dir_fd=dir_fd)!r}, not followed)"
    return f"{path} is {found}"


@contextlib.contextmanager
def open_dir(top: Path, path: Path | None = None) -> Iterator[int]:
    """A descriptor of directory ``path`` (default ``top``), reached from ``top``
    without following any symlink below it."""
    fd = os.open(top, _DIR_FLAGS)
    try:
        walked = Path(top)
        for part in _parts(top, path) if path is not None else []:
            walked = walked / part
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePathError(
                        exc.errno, _describe_found(fd, part, walked) + ", not a directory"
                    ) from None
                raise
            os.close(fd)
            fd = next_fd
        yield fd
    finally:
        os.close(fd)


def lstat(top: Path, path: Path) -> os.stat_result:
    """``lstat`` of ``path`` under ``top``; its directories are not followed either."""
    parts = _parts(top, path)
    if not parts:
        return os.lstat(top)
    if _faked():
        return os.lstat(path)
    with open_dir(top, Path(top, *parts[:-1])) as fd:
        return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)


def open_file(top: Path, path: Path) -> int:
    """A descriptor of regular file ``path`` under ``top``; UnsafePathError for
    anything else (a symlink, a fifo, a device), found on the descriptor itself."""
    parts = _parts(top, path)
    if not parts:
        raise UnsafePathError(errno.EISDIR, f"{path} is the top directory, not a file")
    with open_dir(top, Path(top, *parts[:-1])) as dir_fd:
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePathError(exc.errno, _describe_found(dir_fd, parts[-1], path)) from None
            raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafePathError(errno.EINVAL, f"{path} is {kind(st)}, not a regular file")
    return fd  # O_NONBLOCK does nothing to a regular file


def read_bytes(top: Path, path: Path, limit: int | None = None) -> bytes:
    """The content of regular file ``path`` under ``top`` (at most ``limit`` bytes)."""
    if _faked():
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(errno.EINVAL, f"{path} is {kind(st)}, not a regular file")
        with open(path, "rb") as stream:
            return stream.read() if limit is None else stream.read(limit)
    fd = open_file(top, path)
    try:
        chunks = []
        left = limit
        while left is None or left > 0:
            chunk = os.read(fd, 1 << 20 if left is None else min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            if left is not None:
                left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def copy_file(source_fd: int, target: Path, mode: int) -> None:
    """Write what ``source_fd`` holds to a new file ``target`` (never an existing
    one, never through a symlink) with ``mode``."""
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        while chunk := os.read(source_fd, 1 << 20):
            os.write(out, chunk)
        os.fchmod(out, mode)
    finally:
        os.close(out)


def what(top: Path, path: Path) -> os.stat_result | None:
    """The lstat of ``path`` (under ``top``, reached without following links;
    elsewhere a plain lstat), or None if nothing is there or the way to it
    passes through something that is not a directory."""
    try:
        if _inside(path, top):
            return lstat(top, path)
        return os.lstat(path)
    except (OSError, ValueError):
        return None


def is_file(top: Path, path: Path) -> bool:
    """Whether ``path`` is a regular file itself (a symlink to one is not)."""
    st = what(top, path)
    return st is not None and stat.S_ISREG(st.st_mode)


def is_dir(top: Path, path: Path) -> bool:
    """Whether ``path`` is a directory itself (a symlink to one is not)."""
    st = what(top, path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def lexists(top: Path, path: Path) -> bool:
    return what(top, path) is not None


def listdir(top: Path, path: Path) -> list[str]:
    """The names in directory ``path``; [] if it is not a directory itself."""
    if _faked() or not _inside(path, top):
        return os.listdir(path) if is_dir(top, path) else []
    try:
        with open_dir(top, path) as fd:
            return os.listdir(fd)
    except OSError:
        return []


def found_instead(top: Path, path: Path) -> str | None:
    """For a verdict: what is at ``path`` where a regular file was expected
    ("a symlink (to '/etc/shadow'), not followed", "a fifo"), or None when it
    is a regular file or nothing at all."""
    st = what(top, path)
    if st is None or stat.S_ISREG(st.st_mode):
        return None
    found = kind(st)
    if stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(OSError):
            found += f" (to {os.readlink(path)!r}), not followed"
    return found


def _inside(path: Path, top: Path) -> bool:
    absolute, base = os.path.normpath(os.path.abspath(path)), os.path.normpath(os.path.abspath(top))
    return absolute == base or absolute.startswith(base.rstrip("/") + "/")


def check_no_links(top: Path, path: Path) -> None:
    """UnsafePathError unless every existing component of ``path`` below ``top``
    is a real directory (the last may be anything but a symlink): a write there
    lands inside ``top``, not through a link into somewhere else."""
    walked = Path(top)
    parts = _parts(top, path)
    for index, part in enumerate(parts):
        walked = walked / part
        try:
            st = os.lstat(walked)
        except FileNotFoundError:
            return
        last = index == len(parts) - 1
        if stat.S_ISLNK(st.st_mode) or (not last and not stat.S_ISDIR(st.st_mode)):
            target = ""
            with contextlib.suppress(OSError):
                target = f" to {os.readlink(walked)!r}" if stat.S_ISLNK(st.st_mode) else ""
            raise UnsafePathError(
                errno.ELOOP,
                f"{path}: {walked} is {kind(st)}{target}; a write there would leave {top}",
            )


__all__ = [
    "check_no_links",
    "copy_file",
    "found_instead",
    "is_dir",
    "is_file",
    "kind",
    "lexists",
    "listdir",
    "lstat",
    "open_dir",
    "open_file",
    "read_bytes",
    "what",
]
