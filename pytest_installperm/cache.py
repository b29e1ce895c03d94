"""A persistent, verified store of the read-only trees sessions share.

Copying an interpreter's stdlib, its ``libpython``, pip and uv so that an
unprivileged child can read them is most of what a session costs. The copies
depend only on the files they came from, so they are kept between sessions
(and shared by the xdist workers of one) in a directory of this user's that no
child can write: ``templates/`` in the plugin's cache directory,
``/var/cache/pytest-installperm`` as root, else
``$XDG_CACHE_HOME/pytest-installperm``.

An entry is ``<kind>-<digest>/`` holding ``tree/`` and ``manifest.json``. The
digest is over a *key* that names the sources' identity (paths, sizes, mtimes,
inodes, versions), so a changed source gives a new entry. The manifest holds
the key, a hash over every path of the tree with its type, mode, size and
mtime (bytecode: name and inode), and the *stamp* of every directory of the
tree: its inode, mtime and ctime. Before a session uses the tree it stats
those directories (a hundred, not four thousand paths): any entry created,
removed or renamed, or a directory's mode changed, moves its stamp, and only
then is the hash computed again; a tree that was altered or is incomplete is
rebuilt. A file changed in place (same inode, its directory untouched) is
not seen: only this cache's owner can write there, and for a hard link the
change is the source's own, which the tree mirrors by design.
Builds happen under an exclusive ``flock`` into a temporary directory, then
take the entry's name with one atomic rename (or exchange, for a rebuild), so
a concurrent session sees a whole entry or none.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_installperm.errors import CacheError
from pytest_installperm.sandbox import remove_tree

#: Bumped whenever what an entry holds changes shape, so old entries are not used.
CACHE_FORMAT = 2
LOCK_FILE = ".lock"
MANIFEST = "manifest.json"
TREE = "tree"
_BUILDING = ".build-"
#: Entries unused for this long are removed when another one is built: each
#: new plugin version or changed interpreter leaves its predecessor behind.
UNUSED_SECONDS = 30 * 24 * 3600
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


#: The directory of this cache inside the plugin's cache directory, which
#: other caches (installer releases, root filesystems) share.
TEMPLATES = "templates"


def default_cache_dir() -> Path | None:
    """The plugin's cache directory by default; None if this user has no cache home."""
    if os.geteuid() == 0:
        return Path("/var/cache/pytest-installperm")
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):
        home = os.environ.get("HOME") or ""
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return Path(base, "pytest-installperm")


def identity(path: Path) -> list[object]:
    """What says a source file or directory is still the one copied: its stat."""
    st = os.stat(path)
    return [str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]


def traversable_by_others(path: Path) -> bool:
    """True if any uid may reach ``path``: every ancestor has the x bit for others."""
    for part in [path, *path.parents]:
        try:
            if not os.stat(part).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _digest(tree: str) -> str:
    """A hash over every path of ``tree``: type and mode, size and mtime (symlinks:
    the target). Bytecode in ``__pycache__`` counts by name and inode only:
    Python checks a ``.pyc`` against its source's size and mtime itself, and
    it is half the files, so the check stays a few milliseconds."""
    lines: list[str] = []
    start = len(tree) + 1
    stack = [tree]
    while stack:
        directory = stack.pop()
        bytecode = directory.endswith("/__pycache__")
        with os.scandir(directory) as it:
            for entry in it:
                rel = entry.path[start:]
                if bytecode and entry.is_file(follow_symlinks=False):
                    lines.append(f"{rel}\0b{entry.inode()}")
                    continue
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    stack.append(entry.path)
                    lines.append(f"{rel}\0d{mode:o}")
                elif stat.S_ISLNK(mode):
                    lines.append(f"{rel}\0l{os.readlink(entry.path)}")
                else:
                    lines.append(f"{rel}\0f{mode:o} {st.st_size} {st.st_mtime_ns}")
    lines.sort()
    return f"{len(lines)}:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _stamps(tree: str, directories: list[str] | None = None) -> list[list[object]] | None:
    """Each directory of ``tree`` (or those named, relative) with its inode, mtime
    and ctime; None if one is gone or is no longer a directory."""
    if directories is None:
        directories = sorted(os.path.relpath(d, tree) for d, _dirs, _files in os.walk(tree))
    found: list[list[object]] = []
    for rel in directories:
        try:
            st = os.lstat(os.path.join(tree, rel))
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
        found.append([rel, st.st_ino, st.st_mtime_ns, st.st_ctime_ns])
    return found


def _seal(tree: Path) -> None:
    """Take the write bits off every directory we created (files keep theirs:
    they may be hard links to the sources, which are not ours to change)."""
    for directory, _dirs, _files in os.walk(tree, topdown=False):
        mode = stat.S_IMODE(os.lstat(directory).st_mode)
        os.chmod(directory, (mode | 0o555) & ~0o222)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directory names atomically (renameat2); False where unsupported."""
    import ctypes  # only for a rebuild; slow to import

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(result == 0)


class TemplateCache:
    """Entries of read-only trees under ``root``, built once and verified on use."""

    def __init__(self, root: Path) -> None:
        #: The plugin's cache directory holds this one's directory, ``templates/``.
        self.root = root / TEMPLATES

    def _prepare(self) -> None:
        for directory in (self.root.parent, self.root):
            try:
                directory.mkdir(mode=0o755, parents=True, exist_ok=True)
                st = os.lstat(directory)
            except OSError as exc:
                raise CacheError(f"template cache {directory}: cannot be created: {exc}") from exc
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                raise CacheError(
                    f"template cache {directory}: must be a directory owned by uid "
                    f"{os.geteuid()} (it is owned by uid {st.st_uid})"
                )
            if st.st_mode & 0o022:
                raise CacheError(
                    f"template cache {directory}: is writable by others (mode "
                    f"{stat.S_IMODE(st.st_mode):o}); a child could change what sessions run"
                )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._prepare()
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def entry(self, kind: str, key: Mapping[str, object]) -> Path:
        """The directory of the entry for ``key`` (it may not exist)."""
        text = json.dumps({"format": CACHE_FORMAT, **key}, sort_keys=True)
        return self.root / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:20]}"

    def get(self, kind: str, key: Mapping[str, object], build: Callable[[Path], None]) -> Path:
        """The verified tree for ``key``, built by ``build(tree)`` if missing or stale."""
        entry = self.entry(kind, key)
        wanted = {"format": CACHE_FORMAT, **key}
        with self._locked():
            if self.verify(entry, wanted):
                os.utime(entry)  # used: see _sweep
                return entry / TREE
            self._sweep()
            staging = Path(tempfile.mkdtemp(prefix=_BUILDING, dir=self.root))
            try:
                build(staging / TREE)
                _seal(staging / TREE)
                built = str(staging / TREE)
                manifest = {"key": wanted, "tree": _digest(built), "dirs": _stamps(built)}
                (staging / MANIFEST).write_text(json.dumps(manifest, sort_keys=True))
                os.chmod(staging / MANIFEST, 0o444)
                os.chmod(staging, 0o755)
                if not os.path.lexists(entry):
                    os.rename(staging, entry)
                elif _exchange(staging, entry):
                    remove_tree(staging)  # now the stale entry
                else:
                    remove_tree(entry)
                    os.rename(staging, entry)
            except BaseException:
                remove_tree(staging)
                raise
        return entry / TREE

    def _sweep(self) -> None:
        """Remove unfinished builds (a killed session's) and long-unused entries.

        Called under the lock, so no build of another session is under way."""
        unused = time.time() - UNUSED_SECONDS
        for child in self.root.iterdir():
            if child.name == LOCK_FILE:
                continue
            if child.name.startswith(_BUILDING) or child.lstat().st_mtime < unused:
                if child.is_dir() and not child.is_symlink():
                    remove_tree(child)
                else:
                    child.unlink()

    def facts(
        self, kind: str, key: Mapping[str, object], compute: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """JSON data for ``key`` (what a probe of an interpreter said), computed once."""
        self._prepare()  # before trusting anything in it
        path = self.entry(kind, key).with_suffix(".json")
        wanted = {"format": CACHE_FORMAT, **key}
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            stored = json.loads(path.read_text())
            if stored["key"] == wanted and isinstance(stored["value"], dict):
                os.utime(path)  # used: see _sweep
                return dict(stored["value"])
        value = compute()
        with self._locked():
            fd, partial = tempfile.mkstemp(prefix=_BUILDING, suffix=".json", dir=self.root)
            with os.fdopen(fd, "w") as out:
                json.dump({"key": wanted, "value": value}, out, sort_keys=True)
            os.chmod(partial, 0o444)
            os.replace(partial, path)
        return value

    @staticmethod
    def verify(entry: Path, key: Mapping[str, object]) -> bool:
        """True if ``entry`` was built for ``key`` and its tree is as it was built:
        every directory's stamp is unchanged, or else the hash of every path is."""
        tree = str(entry / TREE)
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
            if manifest["key"] != key:
                return False
            stamps = manifest.get("dirs")
            if isinstance(stamps, list) and stamps:
                names = [str(s[0]) for s in stamps]
                if _stamps(tree, names) == stamps:
                    return True
            return bool(manifest["tree"] == _digest(tree))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return False

    def clear(self) -> list[Path]:
        """Remove every entry (and unfinished builds); return what was removed."""
        if not self.root.is_dir():
            return []
        removed = []
        with self._locked():
            for child in sorted(self.root.iterdir()):
                if child.name == LOCK_FILE:
                    continue
                if child.is_dir() and not child.is_symlink():
                    remove_tree(child)
                else:
                    child.unlink()
                removed.append(child)
        return removed


__all__ = ["CACHE_FORMAT", "TEMPLATES", "TREE", "TemplateCache", "default_cache_dir", "identity"]
