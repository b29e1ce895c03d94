"""The fake sandbox's tree in pyfakefs: building it fast, handing trees to the
fake user, and diffing its state before and after a call."""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from pyfakefs.fake_file import FakeDirectory, FakeFile
from pyfakefs.fake_filesystem import FakeFilesystem

from pytest_installperm.changes import Changes, kind_of
from pytest_installperm.errors import FakefsError
from pytest_installperm.world.fake_traps import FAKE_GID, FAKE_UID


class _Entry(NamedTuple):
    kind: str
    ino: int
    size: int
    mtime: float
    mode: int
    uid: int
    gid: int


def _state(fs: FakeFilesystem, root: str) -> dict[str, _Entry]:
    """Every path under ``root`` with what identifies its content and access.

    Why a full walk: pyfakefs does not update a directory's mtime when an
    entry is added, so the engine's directory-level :class:`Snapshot` would
    miss changes here. A fake tree is small and lives in memory; walking it
    costs microseconds per entry.
    """
    found: dict[str, _Entry] = {}
    try:
        top = fs.resolve(root, follow_symlinks=False, check_read_perm=False)
    except OSError:
        return found
    stack: list[tuple[str, FakeFile]] = [(root, top)]
    while stack:
        path, obj = stack.pop()
        mode = obj.st_mode
        kind = kind_of(mode)
        found[path] = _Entry(
            kind,
            obj.st_ino or 0,
            obj.st_size if kind != "d" else 0,
            obj.st_mtime,
            stat.S_IMODE(mode),
            obj.st_uid,
            obj.st_gid,
        )
        if kind == "d" and isinstance(obj, FakeDirectory):
            stack.extend((f"{path}/{name}", child) for name, child in obj.entries.items())
    return found


@dataclass
class FakeSnapshot:
    """The state of a fake sandbox; :meth:`update` diffs and advances it."""

    fs: FakeFilesystem
    root: Path
    entries: dict[str, _Entry] = field(default_factory=dict)

    @classmethod
    def take(cls, fs: FakeFilesystem, root: Path) -> FakeSnapshot:
        return cls(fs, root, _state(fs, str(root)))

    def update(self) -> Changes:
        now = _state(self.fs, str(self.root))
        before = self.entries
        created = now.keys() - before.keys()
        deleted = before.keys() - now.keys()
        modified: set[str] = set()
        for path in now.keys() & before.keys():
            a, b = before[path], now[path]
            if a == b:
                continue
            if a.kind != b.kind or (a.kind != "d" and a.ino != b.ino):
                created.add(path)
                deleted.add(path)
            elif a.kind != "d" or (a.mode, a.uid, a.gid) != (b.mode, b.uid, b.gid):
                modified.add(path)
        self.entries = now
        return Changes.of(created, modified, deleted)

    def deep_diff(self, top: Path) -> set[Path]:
        """Paths under ``top`` that differ from this snapshot (a full walk here)."""
        now = _state(self.fs, str(top))
        prefix = str(top)
        mine = {p: e for p, e in self.entries.items() if p == prefix or p.startswith(prefix + "/")}
        return {Path(p) for p in mine.keys() | now.keys() if mine.get(p) != now.get(p)}


class Tree:
    """Creates fake directories and files through pyfakefs's objects.

    Why not ``fs.create_dir``: it normalises and resolves the whole path for
    every call (about 1 ms each here); a sandbox needs a dozen directories, and
    the budget for all of this is 2 ms per test. Entries are owned by the
    current fake uid, like anything pyfakefs creates.
    """

    def __init__(self, fs: FakeFilesystem) -> None:
        self.fs = fs
        self.dirs: dict[str, FakeDirectory] = {}

    def dir(self, path: Path | str) -> FakeDirectory:
        key = str(path)
        found = self.dirs.get(key)
        if found is not None:
            return found
        parent_path, name = os.path.split(key)
        if not name:
            obj = self.fs.resolve(key, check_read_perm=False)
            assert isinstance(obj, FakeDirectory)
            self.dirs[key] = obj
            return obj
        parent = self.dir(parent_path)
        child = parent.entries.get(name)
        if child is None:
            child = FakeDirectory(name, perm_bits=0o755, filesystem=self.fs)
            parent.add_entry(child)
        if not isinstance(child, FakeDirectory):
            raise FakefsError(f"installperm_fakefs: {key} exists and is not a directory")
        self.dirs[key] = child
        return child

    def file(self, path: Path, contents: str = "", mode: int = 0o644) -> None:
        parent = self.dir(path.parent)
        parent.add_entry(FakeFile(path.name, stat.S_IFREG | mode, contents, filesystem=self.fs))


def give_read_only(fs: FakeFilesystem, top: Path) -> None:
    """A mapped tree: the fake user's, readable and listable, never writable.

    Walks the directory objects themselves: resolving each path again would
    normalise it from the root every time.
    """
    stack = [fs.resolve(str(top), follow_symlinks=False, check_read_perm=False)]
    while stack:
        obj = stack.pop()
        obj.st_uid, obj.st_gid = FAKE_UID, FAKE_GID
        extra = 0o555 if isinstance(obj, FakeDirectory) else 0o444
        obj.st_mode = (obj.st_mode & ~0o222) | extra
        if isinstance(obj, FakeDirectory):
            stack.extend(obj.entries.values())


def chown_tree(
    top: FakeDirectory, path: str, skip: set[str], keep: frozenset[str] | set[str] = frozenset()
) -> None:
    """Give ``top`` and everything below it (minus ``skip`` trees, and the
    ``keep`` directories themselves) to the user."""
    stack: list[tuple[str, FakeFile]] = [(path, top)]
    while stack:
        where, obj = stack.pop()
        if where in skip:
            continue
        if where not in keep:
            obj.st_uid, obj.st_gid = FAKE_UID, FAKE_GID
        if isinstance(obj, FakeDirectory):
            stack.extend((f"{where}/{name}", child) for name, child in obj.entries.items())


@functools.lru_cache(maxsize=1)
def real_marker() -> str | None:
    """The running interpreter's own PEP 668 marker, read from the real disk."""
    import sysconfig

    real = Path(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
    try:
        return real.read_text(encoding="utf-8")
    except OSError:
        return None


def marker_text(externally_managed: bool | None, base: str | None) -> str | None:
    """The PEP 668 marker to write: the base interpreter's own when None."""
    if externally_managed is None:
        return base
    if externally_managed:
        return (
            "[externally-managed]\nError=This environment is externally managed "
            "(written by pytest-installperm).\n"
        )
    return None


__all__ = ["FakeSnapshot", "Tree", "chown_tree", "give_read_only", "marker_text", "real_marker"]
