"""Which directories of a sandbox changed, as the kernel reports it (inotify).

Why: comparing directory times is cheap per directory, but a preinstalled
system site of 50 000 files has thousands of directories, and one lstat each
after every run is 10-70 ms here. inotify queues an event for every entry
created, deleted, renamed, written or chmod'ed in a watched directory, as the
child does it, so after the run we read a short queue and re-list only those
directories: the cost follows what changed, not the size of the tree. It also
sees files rewritten in place, which directory times cannot.

One inotify instance serves the whole process (:class:`_Hub`), and each
snapshot has a :class:`Watcher` view on it. Closing an inotify instance waits
for a kernel grace period (7-15 ms here, per instance), so the instance is
never closed; a view's watches go away with its directories, or by
``inotify_rm_watch``, which does not wait.

Any doubt (no inotify, a watch or instance limit reached, the kernel queue
overflowed) makes :meth:`Watcher.dirty` return None, and the caller compares
every directory instead. Linux only, through libc; nothing to install.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000

#: Everything that changes a directory's entries or an entry's content or mode.
MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
)
_HEADER = struct.Struct("iIII")


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1  # noqa: B018 - probe that the symbols exist
        libc.inotify_add_watch  # noqa: B018
        libc.inotify_rm_watch  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


class _Hub:
    """The process's inotify instance, shared by every :class:`Watcher`."""

    def __init__(self) -> None:
        self.fd = -1 if _LIBC is None else _LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        #: wd -> the views watching that directory (one wd per inode).
        self.views: dict[int, set[Watcher]] = {}
        self.owner = os.getpid()

    @property
    def usable(self) -> bool:
        return self.fd >= 0 and self.owner == os.getpid()

    def add(self, view: Watcher, directory: str) -> int | None:
        """The watch descriptor of ``directory``; None if it vanished; -1 on failure."""
        assert _LIBC is not None
        wd: int = _LIBC.inotify_add_watch(self.fd, os.fsencode(directory), MASK)
        if wd < 0:
            return None if ctypes.get_errno() in (errno.ENOENT, errno.ENOTDIR) else -1
        self.views.setdefault(wd, set()).add(view)
        return wd

    def release(self, view: Watcher, wd: int) -> None:
        """``view`` no longer cares about ``wd``; drop the watch if nobody does."""
        views = self.views.get(wd)
        if views is None:
            return
        views.discard(view)
        if not views:
            del self.views[wd]
            if _LIBC is not None and self.usable:
                _LIBC.inotify_rm_watch(self.fd, wd)  # no grace-period wait, unlike close

    def pump(self) -> None:
        """Read every queued event and hand it to the views that watch its wd."""
        if not self.usable:
            return
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                offset += _HEADER.size + length
                if mask & IN_Q_OVERFLOW:
                    for views in self.views.values():
                        for view in views:
                            view.broken = True
                    continue
                for view in tuple(self.views.get(wd, ())):
                    view.event(wd, mask)
                if mask & IN_IGNORED:
                    self.views.pop(wd, None)


_HUB: _Hub | None = None


def _hub() -> _Hub | None:
    """The process's hub, made on first use (again after a fork)."""
    global _HUB
    if _HUB is None or _HUB.owner != os.getpid():
        _HUB = _Hub()
    return _HUB if _HUB.usable else None


class Watcher:
    """One snapshot's view: which of its directories had events."""

    def __init__(self) -> None:
        self._dirs: dict[int, str] = {}
        #: Reverse map, and the inode each watch is on: a directory removed and
        #: made again may get its old inode number back, but never its watch.
        self._paths: dict[str, int] = {}
        self._inodes: dict[int, int] = {}
        self._dirty: set[str] = set()
        self._hub = _hub()
        self.broken = self._hub is None

    def add(self, directory: str) -> os.stat_result | None:
        """Watch ``directory``; on failure (watch limit) give up watching.

        Returns the ``lstat`` of the directory taken once the watch was in
        place (what a caller recording it needs next), or None."""
        if self.broken or self._hub is None:
            return None
        wd = self._hub.add(self, directory)
        if wd is None:
            return None
        if wd < 0:
            self.broken = True
            return None
        try:
            st = os.lstat(directory)
        except FileNotFoundError:
            return None
        inode = st.st_ino
        # The same inode watched under another path (it was moved): one watch.
        self._forget(self._dirs.get(wd), wd)
        self._dirs[wd] = directory
        self._paths[directory] = wd
        self._inodes[wd] = inode
        return st

    def ensure(self, directory: str, inode: int) -> None:
        """Watch ``directory`` unless its current inode is already watched."""
        wd = self._paths.get(directory)
        if wd is None or self._inodes.get(wd) != inode:
            self.add(directory)

    def _forget(self, directory: str | None, wd: int) -> None:
        if directory is not None and self._paths.get(directory) == wd:
            del self._paths[directory]

    def event(self, wd: int, mask: int) -> None:
        """One kernel event on a directory this view watches."""
        directory = self._dirs.get(wd)
        if mask & IN_IGNORED:
            self._forget(self._dirs.pop(wd, None), wd)
            self._inodes.pop(wd, None)
        elif directory is not None:
            self._dirty.add(directory)
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                self._dirty.add(os.path.dirname(directory))

    def dirty(self) -> set[str] | None:
        """Directories with events since the last call; None if unsure."""
        if self._hub is not None:
            self._hub.pump()
        if self.broken:
            return None
        found, self._dirty = self._dirty, set()
        return found

    def close(self) -> None:
        """Stop watching; cheap (the shared instance stays open)."""
        if self._hub is not None:
            for wd in list(self._dirs):
                self._hub.release(self, wd)
        self._dirs.clear()
        self._paths.clear()
        self._inodes.clear()
        self.broken = True
