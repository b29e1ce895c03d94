"""In-place mode: the real interpreter at its real path.

Relocation copies an interpreter into the sandbox, so ``sys.prefix`` and every
path an installer prints name the sandbox, while the config variables
(``LIBDIR``, ``BINDIR``, ``prefix``) still name the original, which a dropped
uid may not even reach (pyenv under a 0700 ``/root``; virtualenv, and so pdm
and hatch, then fail). In place, the child runs the base interpreter where it
lives. Inside the child's private mount namespace only, the real system
scheme's directories are replaced by the sandbox's own (bind mounts), and a
directory on the way to the interpreter that the child's uid cannot enter
becomes a 0711 tmpfs holding only the interpreter's tree, bound back. The host
sees none of it.

The sandbox directories mirror the real paths below the sandbox's prefix
(``prefix/usr/local/lib/python3.11/dist-packages``), so that changes,
``env.paths()`` and the verdicts work on them as in relocated mode, while the
installer's messages, shebangs and RECORD files name the real paths
(:meth:`InPlace.seen_as` maps one to the other).

What is bound: the scheme's ``data`` directory when it is not the
interpreter's own prefix (Debian's ``/usr/local`` holds purelib, scripts and
headers too), else purelib, platlib and scripts, and headers when the real
directory holds nothing (pyenv's holds ``Python.h``, which stays visible). A
scripts directory that holds the interpreter itself (pyenv's ``bin``) gets a
copy of it first. ``externally_managed=`` that differs from the real PEP 668
marker is a read-only overlay on the stdlib directory whose top layer holds
the marker (or, as root, a whiteout that hides it).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_installperm.backends import Launch
from pytest_installperm.errors import BackendError
from pytest_installperm.interpreter import MARKER_TEXT, BaseInterpreter
from pytest_installperm.locks import LockSpec
from pytest_installperm.roles import is_under

#: Scheme keys bound over, in the order they are considered (an outer
#: directory first: a key below a bound one is covered by it).
BOUND_KEYS = ("data", "purelib", "platlib", "scripts", "headers")
#: The empty sandbox directory a kept tree is bound through (see Enter).
ASIDE = ".inplace-aside"
#: The sandbox directory laid over the stdlib to add or hide the PEP 668 marker.
MARKER_LAYER = ".inplace-marker"
MARKER = "EXTERNALLY-MANAGED"


def why_not(spec: LockSpec, base: BaseInterpreter, namespace: tuple[str, str]) -> str | None:
    """Why ``base`` cannot run in place for ``spec``, or None if it can.

    ``namespace`` is containment's probe (mode, why not the better ones).
    """
    mode, reason = namespace
    if mode not in ("mount", "userns"):
        return f"no mount namespace can be made here ({reason})"
    if _marker_change(spec, base) is None:
        return None
    marker = base.stdlib / MARKER
    if any(c in str(base.stdlib) for c in ",:\\"):
        return f"externally_managed={spec.externally_managed} needs an overlay on {base.stdlib}"
    if mode != "mount":
        # An overlay made in a user namespace was refused here (EINVAL, with
        # the stdlib below another namespace's binds), and a whiteout is a
        # device node, which only root may make.
        return (
            f"externally_managed={spec.externally_managed} would change {marker}, which "
            "needs an overlay on the stdlib made as root"
        )
    return None


def _marker_change(spec: LockSpec, base: BaseInterpreter) -> bool | None:
    """True (add the marker), False (hide it), or None (keep the real one)."""
    wanted = spec.externally_managed
    if wanted is None or wanted == (base.stdlib / MARKER).exists():
        return None
    return wanted


@dataclass(frozen=True)
class InPlace:
    """The mounts that put a sandbox in the real interpreter's place."""

    #: (sandbox directory, real directory), outermost first.
    binds: tuple[tuple[Path, Path], ...]
    #: (closed directory, the subtree kept in it, the aside directory).
    traverse: tuple[tuple[Path, Path, Path], ...]
    #: (real file, its copy in a bound sandbox directory).
    seeds: tuple[tuple[Path, Path], ...]
    #: (sandbox layer, real directory): read-only overlays, the layer on top.
    overlays: tuple[tuple[Path, Path], ...] = ()
    #: The marker laid over the stdlib: True added, False hidden, None real.
    marker: bool | None = None
    #: Scheme keys whose real directory stays (read-only to the child), with it.
    left_real: tuple[tuple[str, Path], ...] = ()

    def seen_as(self, path: Path) -> Path:
        """A sandbox path as the child sees it: the real path it is bound on."""
        for source, target in self.binds:
            if is_under(path, source):
                return target / path.relative_to(source)
        return path

    def in_sandbox(self, path: Path) -> Path:
        """A path the child named, as the sandbox path the parent reads.

        Lexical only: nothing is resolved, so nothing the child wrote is followed.
        """
        for source, target in sorted(self.binds, key=lambda b: -len(b[1].parts)):
            if is_under(path, target):
                return source / path.relative_to(target)
        return path

    def reached(self, python: Path) -> tuple[Path, ...]:
        """Trees the child reaches as they are although its uid could not on
        the host (the kept trees), and the interpreter itself."""
        return (python, *(kept for _closed, kept, _aside in self.traverse))

    def scheme(self, real: Mapping[str, Path]) -> dict[str, Path]:
        """The real system scheme as the parent sees it (sandbox directories)."""
        return {key: self.in_sandbox(path) for key, path in real.items()}

    def build(self) -> None:
        """Create the sandbox directories and seed them (before the lock)."""
        for source, _target in self.binds:
            source.mkdir(parents=True, exist_ok=True)
        for real, copy in self.seeds:
            if real.is_symlink():
                os.symlink(os.readlink(real), copy)
            else:
                shutil.copy2(real, copy)
        for _closed, _kept, aside in self.traverse:
            aside.mkdir(exist_ok=True)
        for layer, _real in self.overlays:
            layer.mkdir()
            if self.marker:
                (layer / MARKER).write_text(MARKER_TEXT)
                os.chmod(layer / MARKER, 0o644)
            else:  # an overlay whiteout: a character device 0/0
                os.mknod(layer / MARKER, stat.S_IFCHR | 0o600, os.makedev(0, 0))

    def mounted(self, launch: Launch) -> Launch:
        """``launch`` with these mounts made in its containment's namespace."""
        if launch.containment is None:
            raise BackendError(
                f"in-place mode needs the child's own mount namespace; this launch has none: "
                f"{list(launch.argv)}"
            )
        containment = dataclasses.replace(
            launch.containment, traverse=self.traverse, overlays=self.overlays, binds=self.binds
        )
        return dataclasses.replace(launch, containment=containment)


@dataclass(frozen=True)
class Layout:
    """Which of a base interpreter's real scheme directories a sandbox is bound
    over: the same for every sandbox of that base (:class:`Layouts` keeps it)."""

    #: The real directories bound over, outermost first.
    targets: tuple[Path, ...]
    #: (real file, the bound real directory its copy goes in): the interpreter
    #: and the links to it, in a scripts directory that holds it.
    seeds: tuple[tuple[Path, Path], ...]
    #: Scheme keys whose real directory stays (read-only to the child), with it.
    left_real: tuple[tuple[str, Path], ...]
    #: The real system scheme this layout is of.
    real: Mapping[str, Path]


#: A layout, or why there is none.
Found = Layout | str


def layout(base: BaseInterpreter, real: Mapping[str, Path]) -> Layout | str:
    """Which directories of ``base``'s real system scheme ``real`` are bound
    over, or why they cannot be."""
    runtime = [base.executable, base.stdlib, base.prefix]
    if base.libpython is not None:
        runtime.append(base.libpython)
    targets: list[Path] = []
    seeds: list[tuple[Path, Path]] = []
    left: list[tuple[str, Path]] = []
    for key in BOUND_KEYS:
        target = real[key]
        if any(is_under(target, t) for t in targets):
            continue
        holds = [r for r in runtime if is_under(r, target) and r.parent != target]
        if key in ("data", "headers") and (
            holds or not _plain_dir(target) or (key == "headers" and any(target.iterdir()))
        ):
            left.append((key, target))  # stays the real one (read-only): see the module docstring
            continue
        if holds:
            return f"the real {key} directory {target} holds {holds[0]}, which must stay visible"
        if not _plain_dir(target):
            return f"the real {key} directory {target} is not a directory to bind over"
        targets.append(target)
        if is_under(base.executable, target):
            seeds += [(found, target) for found in _interpreter_files(base.executable)]
    # data is considered first: it is left real only if nothing below it is bound.
    left = [(k, p) for k, p in left if not any(is_under(p, t) for t in targets)]
    return Layout(tuple(targets), tuple(seeds), tuple(left), dict(real))


class Layouts:
    """Each base interpreter's :func:`layout`, found once per session: every
    ``system()`` asks, and the answer is a dozen ``stat`` calls and a listing
    of the interpreter's directory. It is found again when one of the
    directories it was read from changed (their ``lstat``: inode, mode, times;
    an entry made or removed there moves them)."""

    def __init__(self) -> None:
        #: key -> (the directories read, their stamps then, the answer)
        self._known: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[object, ...], Found]] = {}

    def of(self, base: BaseInterpreter, system: Mapping[str, str]) -> Found:
        """:func:`layout` of ``base`` for its real system scheme ``system``
        (the paths its scheme probe reported)."""
        key = (os.fspath(base.executable), *(system[k] for k in BOUND_KEYS))
        known = self._known.get(key)
        if known is not None and known[1] == tuple(map(_stamp, known[0])):
            return known[2]
        read = tuple(dict.fromkeys((os.path.dirname(key[0]), *key[1:])))
        stamps = tuple(map(_stamp, read))  # before reading: a change meanwhile shows next time
        found = layout(base, {k: Path(v) for k, v in system.items()})
        self._known[key] = (read, stamps, found)
        return found


def _stamp(path: str) -> tuple[int, ...] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mode, st.st_mtime_ns, st.st_ctime_ns)


def mounts(
    found: Layout,
    closed: tuple[tuple[Path, Path], ...],
    base: BaseInterpreter,
    prefix: Path,
    root: Path,
    spec: LockSpec,
) -> InPlace:
    """The mounts that put the sandbox ``root`` (its mirrors below ``prefix``)
    in place of ``base``'s real system scheme for ``spec``: the directories of
    ``found`` bound over, those in ``closed`` (:func:`closed_on_the_way`) made
    traversable."""
    binds = tuple((prefix / target.relative_to("/"), target) for target in found.targets)
    mirror = {target: source for source, target in binds}
    seeds = tuple((real, mirror[target] / real.name) for real, target in found.seeds)
    traverse = tuple((closed_dir, kept, root / ASIDE) for closed_dir, kept in closed)
    marker = _marker_change(spec, base)
    overlays = () if marker is None else ((root / MARKER_LAYER, base.stdlib),)
    return InPlace(binds, traverse, seeds, overlays, marker, found.left_real)


def auto_refusal(found: Layout) -> str | None:
    """Why mode ``auto`` relocates although ``found`` can be had, or None.

    ``auto`` goes in place only where every scheme directory is replaced: a
    real one left (pyenv's data directory is its prefix; Debian's headers
    directory holds ``Python.h``) would be read-only to the child, and a
    wheel's files there would fail with EROFS, which relocated mode does not do.
    """
    if not found.left_real:
        return None
    key, path = found.left_real[0]
    what = (
        "holds the interpreter's own files"
        if _plain_dir(path)
        else "is not a directory (a bind needs one, and making it would change the host)"
    )
    return (
        f"its scheme's {key} directory {path} {what}, so it cannot be replaced and "
        f"would stay read-only to the child (a wheel's {key} files would fail with "
        "EROFS); mode='in-place' accepts that"
    )


def _plain_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _interpreter_files(executable: Path) -> list[Path]:
    """The interpreter and the links to it in its directory."""
    found = [executable]
    with os.scandir(executable.parent) as entries:
        for entry in entries:
            if entry.is_symlink() and Path(os.path.realpath(entry.path)) == executable:
                found.append(Path(entry.path))
    return sorted(found)


def closed_on_the_way(
    base: BaseInterpreter, where: Path, owner: tuple[int, int]
) -> tuple[tuple[Path, Path], ...] | str:
    """The directory on the way to the interpreter that the child's uid
    cannot enter (at most one: a 0700 /root), with the subtree to keep, for
    sandboxes at or below ``where``; or why none can be had."""
    found: set[tuple[Path, Path]] = set()
    needed = [base.prefix, base.executable.parent]
    if base.libpython is not None:
        needed.append(base.libpython.parent)
    for path in map(os.fspath, needed):
        # Each directory on the way below /, then the path itself. Strings:
        # every system() asks, and a Path's parents are slow to build.
        ends = [i for i in range(1, len(path)) if path[i] == os.sep] + [len(path)]
        for at, end in enumerate(ends):
            ancestor = path[:end]
            if _enterable(os.stat(ancestor), owner):
                continue
            if end == len(path):
                return f"{ancestor} cannot be entered by uid {owner[0]} and holds the interpreter"
            found.add((Path(ancestor), Path(path[: ends[at + 1]])))
            break
    if not found:
        return ()
    if len(found) > 1:
        return f"more than one directory on the way to {base.executable} is closed: {sorted(found)}"
    ((closed, kept),) = found
    if is_under(where, closed):
        return (
            f"the sandbox's directory {where} is below {closed}, which the child's uid cannot enter"
        )
    return ((closed, kept),)


def _enterable(info: os.stat_result, owner: tuple[int, int]) -> bool:
    uid, gid = owner
    if uid == 0:
        return True
    bit = (
        stat.S_IXUSR if info.st_uid == uid else stat.S_IXGRP if info.st_gid == gid else stat.S_IXOTH
    )
    return bool(info.st_mode & bit)


__all__ = [
    "ASIDE",
    "BOUND_KEYS",
    "MARKER_LAYER",
    "InPlace",
    "Layout",
    "Layouts",
    "auto_refusal",
    "closed_on_the_way",
    "layout",
    "mounts",
    "why_not",
]
