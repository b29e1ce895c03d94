"""Before-and-after state of a sandbox, as created, modified and deleted paths.

Why directory-level: a system site may hold tens of thousands of preinstalled
files, and a run usually touches a few dozen. Creating, deleting or renaming an
entry always updates its parent directory's mtime and ctime, so after a run we
``lstat`` only the directories; only those whose times moved are listed again
and compared entry by entry. The cost of a diff therefore grows with the number
of directories and with what changed, not with the number of files.

The one change this cannot see cheaply is a file rewritten in place (same
inode) inside a directory whose entries did not change. :meth:`Snapshot.deep_diff`
covers that case for a chosen subtree by comparing every file's stat; the
placement verdicts use it where "untouched" must mean every byte.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple


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


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISLNK(mode):
        return "l"
    return "o"


def _entry(st: os.stat_result) -> Entry:
    kind = _kind(st.st_mode)
    # A file with other hard links shares its inode with a template (the
    # interpreter binary, say): linking it into the next sandbox moves its
    # ctime. Its ctime says nothing about this sandbox, so it is not kept.
    shared = kind == "f" and st.st_nlink > 1
    return Entry(
        kind,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        0 if shared else st.st_ctime_ns,
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
    )


def _list(directory: str) -> dict[str, Entry]:
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
                try:
                    found[item.name] = _entry(item.stat(follow_symlinks=False))
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

    @classmethod
    def take(cls, root: Path) -> Snapshot:
        snap = cls(root)
        snap._add_tree(str(root))
        return snap

    def _add_tree(self, top: str) -> None:
        """Record ``top`` and every directory below it (iteratively)."""
        stack = [top]
        while stack:
            directory = stack.pop()
            try:
                self.dirs[directory] = _entry(os.lstat(directory))
            except FileNotFoundError:
                continue
            listing = _list(directory)
            self.listings[directory] = listing
            stack.extend(
                os.path.join(directory, name) for name, e in listing.items() if e.kind == "d"
            )

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
        for directory in sorted(self.dirs):
            if directory not in self.dirs:  # dropped while handling a parent
                continue
            before = self.dirs[directory]
            try:
                now = _entry(os.lstat(directory))
            except FileNotFoundError:
                continue  # its parent is dirty and reports the deletion
            if now == before:
                continue
            self.dirs[directory] = now
            if (now.mode, now.uid, now.gid) != (before.mode, before.uid, before.gid):
                modified.add(directory)
            old = self.listings.get(directory, {})
            new = _list(directory)
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
        before = set(self.dirs)
        self._add_tree(top)
        found: set[str] = set()
        for directory in set(self.dirs) - before:
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
                    now = _entry(os.lstat(path))
                except FileNotFoundError:
                    changed.add(Path(path))
                    continue
                if not _same(entry, now):
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
            before.kind, before.ino, before.mode, before.uid, before.gid)
    return before == now


def _is_under(path: Path, top: Path) -> bool:
    return path == top or top in path.parents


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
                other.created, other.modified, other.deleted)
        if isinstance(other, (set, frozenset)):
            return self.all == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.created, self.modified, self.deleted))

    def under(self, role: str | os.PathLike[str]) -> Changes:
        """The changes below a role's directory (or below any path given)."""
        if isinstance(role, str) and not os.path.isabs(role):
            if role not in self.roles:
                from pytest_installperm.errors import RoleError

                raise RoleError(
                    f"unknown role {role!r}: this environment has roles "
                    f"{', '.join(sorted(self.roles))}"
                )
            top = self.roles[role]
        else:
            top = Path(role)
        return Changes(
            frozenset(p for p in self.created if _is_under(p, top)),
            frozenset(p for p in self.modified if _is_under(p, top)),
            frozenset(p for p in self.deleted if _is_under(p, top)),
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
