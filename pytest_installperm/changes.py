"""Before-and-after state of a sandbox, as created, modified and deleted paths.

Why event-driven: a system site may hold tens of thousands of preinstalled
files, and a run usually touches a few dozen. A snapshot watches every
directory of the sandbox with inotify (see :mod:`pytest_installperm.watch`);
after a run, only the directories the kernel reported are listed again and
compared entry by entry, so a diff costs what changed, not the size of the
tree. Files rewritten in place are reported too.

Without inotify (or when its queue overflowed) it falls back to comparing
every directory's times: creating, deleting or renaming an entry updates its
parent's mtime and ctime, so one lstat per directory finds the dirty ones.
That pass cannot see a file rewritten in place in a directory whose entries
did not change; :meth:`Snapshot.deep_diff` covers that case for a subtree.
"""

from __future__ import annotations

import heapq
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from pytest_installperm.roles import is_under, members
from pytest_installperm.watch import Watcher


class Entry(NamedTuple):
    """What we remember of one directory entry. Symlinks are never followed."""

    kind: str  # "d" directory, "f" regular file, "l" symlink, "o" other
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    mode: int
    uid: int
    gid: int


def kind_of(mode: int) -> str:
    """ "d" directory, "f" regular file, "l" symlink, "o" anything else."""
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISLNK(mode):
        return "l"
    return "o"


def _entry(st: os.stat_result, shared: Shared) -> Entry:
    kind = kind_of(st.st_mode)
    # A file whose inode the sandbox shares with a template (the interpreter
    # binary, the stdlib's files) has its ctime moved whenever the next
    # sandbox links it: that ctime says nothing about this sandbox, so it is
    # not kept. Which inodes are shared is learnt when the snapshot is taken,
    # before any child ran: a link count the child raised later (by
    # hard-linking a file it can read) switches nothing off.
    if kind == "f" and st.st_nlink > 1 and shared.learning:
        shared.inodes.add(st.st_ino)
    ignore_ctime = kind == "f" and st.st_ino in shared.inodes
    return Entry(
        kind,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        0 if ignore_ctime else st.st_ctime_ns,
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
    )


@dataclass
class Shared:
    """Inodes of the sandbox that are hard links to a template's files."""

    inodes: set[int] = field(default_factory=set)
    #: True while the snapshot is first taken: links seen then are ours.
    learning: bool = False


def _list(directory: str, shared: Shared) -> dict[str, Entry]:
    """Entries of one directory, lstat'ed; an unreadable directory is empty."""
    found: dict[str, Entry] = {}
    try:
        with os.scandir(directory) as it:
            for item in it:
                if item.is_symlink():
                    # A symlink cannot be rewritten in place, only replaced (a new
                    # inode), so d_ino from the listing suffices: no lstat needed.
                    found[item.name] = Entry("l", item.inode(), 0, 0, 0, 0, 0, 0)
                    continue
                if item.is_dir(follow_symlinks=False):
                    # A directory's own stat lives in Snapshot.dirs and is compared
                    # there; in its parent's listing only its identity matters, and
                    # d_type and d_ino come with the listing: no lstat needed.
                    found[item.name] = Entry("d", item.inode(), 0, 0, 0, 0, 0, 0)
                    continue
                try:
                    found[item.name] = _entry(item.stat(follow_symlinks=False), shared)
                except FileNotFoundError:
                    continue
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return {}
    return found


@dataclass
class Snapshot:
    """Directory listings of a tree, keyed by absolute directory path."""

    root: Path
    dirs: dict[str, Entry] = field(default_factory=dict)
    listings: dict[str, dict[str, Entry]] = field(default_factory=dict)
    #: Kernel reports of which directories changed; None: compare them all.
    watch: Watcher | None = field(default=None, repr=False, compare=False)
    shared: Shared = field(default_factory=Shared, repr=False, compare=False)

    @classmethod
    def take(cls, root: Path, *, watch: bool = True) -> Snapshot:
        """Record ``root`` now; call it before any child has run in the tree."""
        snap = cls(root, watch=Watcher() if watch else None)
        snap.shared.learning = True
        try:
            snap._add_tree(str(root))
        finally:
            snap.shared.learning = False
        return snap

    def close(self) -> None:
        """Stop watching (releases its inotify watches); update() then compares all."""
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def _add_tree(self, top: str) -> list[str]:
        """Record ``top`` and every directory below it; return those recorded."""
        added: list[str] = []
        stack = [top]
        while stack:
            directory = stack.pop()
            # Watched before it is listed, so nothing slips between; the
            # watcher's lstat, taken after its watch, serves the record too.
            st = self.watch.add(directory) if self.watch is not None else None
            try:
                self.dirs[directory] = _entry(st or os.lstat(directory), self.shared)
            except FileNotFoundError:
                continue
            added.append(directory)
            listing = _list(directory, self.shared)
            self.listings[directory] = listing
            stack.extend(
                os.path.join(directory, name) for name, e in listing.items() if e.kind == "d"
            )
        return added

    def _forget_tree(self, top: str) -> Iterator[str]:
        """Drop ``top`` and everything below it, yielding the paths dropped."""
        stack = [top]
        while stack:
            directory = stack.pop()
            self.dirs.pop(directory, None)
            for name, e in self.listings.pop(directory, {}).items():
                path = os.path.join(directory, name)
                yield path
                if e.kind == "d":
                    stack.append(path)

    def update(self) -> Changes:
        """Compare the tree with this snapshot, then advance the snapshot to now.

        Advancing in place means the next run in the same environment is
        compared with the state this run left, at no extra cost.
        """
        created: set[str] = set()
        modified: set[str] = set()
        deleted: set[str] = set()
        dirty = self.watch.dirty() if self.watch is not None else None
        # With kernel reports, re-list just the directories they name, even if
        # their times did not move (a file rewritten in place); without, check
        # every directory's times. A heap: parents come out before children.
        forced = dirty is not None
        pending = list(self.dirs) if dirty is None else list(dirty & self.dirs.keys())
        heapq.heapify(pending)
        done: set[str] = set()
        while pending:
            directory = heapq.heappop(pending)
            if directory in done:
                continue
            done.add(directory)
            before = self.dirs.get(directory)
            if before is None:  # dropped while handling a parent
                continue
            try:
                st = os.lstat(directory)
            except FileNotFoundError:
                continue  # its parent is dirty and reports the deletion
            # The hot loop of a sweep: one lstat per directory, nothing built
            # unless it moved (entries, mode and owner all move ctime).
            if (
                not forced
                and st.st_mtime_ns == before.mtime_ns
                and st.st_ctime_ns == before.ctime_ns
                and st.st_ino == before.ino
            ):
                continue
            if self.watch is not None:
                self.watch.ensure(directory, st.st_ino)  # it may be a new directory
            now = _entry(st, self.shared)
            self.dirs[directory] = now
            if (now.mode, now.uid, now.gid) != (before.mode, before.uid, before.gid):
                modified.add(directory)
            old = self.listings.get(directory, {})
            new = _list(directory, self.shared)
            self.listings[directory] = new
            for name in old.keys() - new.keys():
                path = os.path.join(directory, name)
                deleted.add(path)
                if old[name].kind == "d":
                    deleted.update(self._forget_tree(path))
            for name in new.keys() - old.keys():
                path = os.path.join(directory, name)
                created.add(path)
                if new[name].kind == "d":
                    created.update(self._new_tree(path))
            for name in new.keys() & old.keys():
                a, b = old[name], new[name]
                if a == b:
                    continue
                path = os.path.join(directory, name)
                if a.kind == b.kind == "d":
                    # Another directory under the same name (moved in, or made
                    # again): compare its entries too, whatever was reported.
                    heapq.heappush(pending, path)
                    continue
                if a.kind != b.kind or (a.kind != "d" and a.ino != b.ino):
                    deleted.add(path)
                    created.add(path)
                    if a.kind == "d":
                        deleted.update(self._forget_tree(path))
                    if b.kind == "d":
                        created.update(self._new_tree(path))
                elif a.kind != "d":
                    modified.add(path)
        return Changes.of(created, modified, deleted)

    def _new_tree(self, top: str) -> set[str]:
        """Record a directory that appeared; return every path below it."""
        found: set[str] = set()
        for directory in self._add_tree(top):
            found.update(os.path.join(directory, n) for n in self.listings[directory])
        return found

    def deep_diff(self, top: Path) -> set[Path]:
        """Every path under ``top`` whose lstat differs from this snapshot.

        Costs one lstat per file under ``top``: pay for it only where a verdict
        must cover files rewritten in place.
        """
        changed: set[Path] = set()
        prefix = str(top)
        for directory, listing in self.listings.items():
            if directory != prefix and not directory.startswith(prefix + os.sep):
                continue
            for name, entry in listing.items():
                path = os.path.join(directory, name)
                try:
                    now = _entry(os.lstat(path), self.shared)
                except FileNotFoundError:
                    changed.add(Path(path))
                    continue
                if not _same(self.dirs.get(path, entry) if entry.kind == "d" else entry, now):
                    changed.add(Path(path))
        return changed


def _same(before: Entry, now: Entry) -> bool:
    """Whether an entry is unchanged, at the detail its snapshot recorded.

    Symlinks are recorded by inode only; a directory's times move whenever its
    entries do, which :meth:`Snapshot.update` reports on its own.
    """
    if before.kind == "l":
        return now.kind == "l" and now.ino == before.ino
    if before.kind == "d":
        return (now.kind, now.ino, now.mode, now.uid, now.gid) == (
            before.kind,
            before.ino,
            before.mode,
            before.uid,
            before.gid,
        )
    return before == now


@dataclass(frozen=True, eq=False)
class Changes:
    """Paths a run created, modified and deleted; absolute, sorted on output.

    ``roles`` maps each role name to its directory, so :meth:`under` can answer
    "what changed in the user site?" without the caller knowing paths.
    """

    created: frozenset[Path] = frozenset()
    modified: frozenset[Path] = frozenset()
    deleted: frozenset[Path] = frozenset()
    roles: Mapping[str, Path] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, created: Iterable[str], modified: Iterable[str], deleted: Iterable[str]) -> Changes:
        return cls(
            frozenset(map(Path, created)),
            frozenset(map(Path, modified)),
            frozenset(map(Path, deleted)),
        )

    def with_roles(self, roles: Mapping[str, Path]) -> Changes:
        return Changes(self.created, self.modified, self.deleted, dict(roles))

    @property
    def all(self) -> frozenset[Path]:
        """Every path that changed in any way."""
        return self.created | self.modified | self.deleted

    def __bool__(self) -> bool:
        return bool(self.created or self.modified or self.deleted)

    def __eq__(self, other: object) -> bool:
        """Equal to another Changes with the same paths, or to a set of paths
        (``changes.under("system") == set()`` reads as "nothing changed")."""
        if isinstance(other, Changes):
            return (self.created, self.modified, self.deleted) == (
                other.created,
                other.modified,
                other.deleted,
            )
        if isinstance(other, (set, frozenset)):
            return self.all == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.created, self.modified, self.deleted))

    def under(self, role: str | os.PathLike[str]) -> Changes:
        """The changes below a role's directory (or below any path given); for
        ``user``, not those in the XDG directories below the user base."""
        if isinstance(role, str) and not os.path.isabs(role):
            if role not in self.roles:
                from pytest_installperm.errors import RoleError

                raise RoleError(
                    f"unknown role {role!r}: this environment has roles "
                    f"{', '.join(sorted(self.roles))}"
                )
            roles, name = self.roles, role

            def inside(path: Path) -> bool:
                return members(roles, name, path)
        else:
            top = Path(role)

            def inside(path: Path) -> bool:
                return is_under(path, top)

        return Changes(
            frozenset(p for p in self.created if inside(p)),
            frozenset(p for p in self.modified if inside(p)),
            frozenset(p for p in self.deleted if inside(p)),
            self.roles,
        )

    def lines(self) -> list[str]:
        """One sorted line per change: ``+`` created, ``~`` modified, ``-`` deleted."""
        rows = [("+", p) for p in self.created]
        rows += [("~", p) for p in self.modified]
        rows += [("-", p) for p in self.deleted]
        return [f"{mark} {path}" for mark, path in sorted(rows, key=lambda r: (str(r[1]), r[0]))]

    def __str__(self) -> str:
        return "\n".join(self.lines()) or "(no changes)"
