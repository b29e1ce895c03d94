"""The verdicts: did every file of a wheel land where it belongs, and nowhere else?

Each verdict raises :class:`PlacementError` (an ``AssertionError``) with a
sorted table, one row per file: the path where the file was expected and what
was found there (``ok``, ``missing``, ``elsewhere: <path>``, ``hash mismatch:
expected X got Y``, ``extra``...), then the installer's exit status and the
last lines of its output. Paths are shown relative to the sandbox.

What a verdict reads from a result is the small :class:`Result` protocol below,
not the concrete :class:`~pytest_installperm.run.RunResult`, so that the
in-process (pyfakefs) mode can hand its own result objects to the same
functions. All filesystem access goes through ``os`` and ``open``, which
pyfakefs patches.

The rules, and why:

* **Expected files** come from the wheel, read by ``installer``
  (:func:`~pytest_installperm.wheels.read_wheel`). Content is compared with the
  hash the wheel's RECORD claims, so a corrupt wheel never passes.
  ``.data/scripts`` files must keep their bytes after the first line and have a
  shebang naming the environment's interpreter; entry-point launchers must
  exist, be executable, name the interpreter and import their module.
* **Installer metadata** is expected, not extra: the files in
  :data:`GENERATED_METADATA` inside the installed ``.dist-info``, bytecode
  caches of installed sources (``__pycache__/*.pyc``; pip writes them, uv does
  not), and uv's ``.lock`` at the root of a ``--target`` or venv.
* **The installed RECORD** must list every installed file, each with the hash
  of the bytes on disk, and every path it lists must exist.
* **Headers** go to ``<headers>/<project>``; pip spells the directory as the
  user typed the requirement (``Demo.Pkg``), uv canonically (``demo-pkg``), so
  any spelling with the same canonical name is accepted.
* **Changes, not state**, decide "elsewhere" and "extra": a file counts against
  a wheel only if this run created or modified it, so older versions and other
  distributions in the same site are never blamed on this install.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol, Union

from installer.records import InvalidRecordEntry, RecordEntry, parse_record_file
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pytest_installperm.errors import PlacementError, RoleError
from pytest_installperm.wheels import (
    KIND_ENTRY_POINT,
    KIND_SCRIPT,
    Member,
    WheelLayout,
    file_hash,
    read_wheel,
)

# ---------------------------------------------------------------------------
# what a verdict reads from a result
# ---------------------------------------------------------------------------


class SnapshotLike(Protocol):
    """The before-state of a sandbox (:class:`~pytest_installperm.changes.Snapshot`)."""

    def deep_diff(self, top: Path) -> set[Path]:
        """Paths under ``top`` whose stat differs from the snapshot (in-place rewrites)."""
        ...


class ChangesLike(Protocol):
    """What a run created, modified and deleted (:class:`~pytest_installperm.changes.Changes`)."""

    @property
    def created(self) -> frozenset[Path]: ...

    @property
    def modified(self) -> frozenset[Path]: ...

    @property
    def deleted(self) -> frozenset[Path]: ...

    def under(self, role: str | os.PathLike[str]) -> ChangesLike: ...


class EnvironmentLike(Protocol):
    """The environment a run happened in (:class:`~pytest_installperm.environment.Environment`).

    ``paths(role)`` gives the scheme (purelib, platlib, scripts, data,
    headers) of ``"system"`` or ``"user"``; ``roles`` maps role names to
    directories; ``python`` is the interpreter that generated scripts must
    name; ``root`` the sandbox; ``snapshot()`` the state the changes were
    computed against.
    """

    @property
    def python(self) -> Path: ...

    @property
    def root(self) -> Path: ...

    @property
    def roles(self) -> Mapping[str, Path]: ...

    def paths(self, role: str) -> Mapping[str, Path]: ...

    def snapshot(self) -> SnapshotLike: ...


class Result(Protocol):
    """Everything a verdict reads from a run. :class:`RunResult` satisfies it.

    ``describe()`` returns the command, its exit status and the last lines of
    its output; it is appended to every failure message.
    """

    @property
    def returncode(self) -> int: ...

    @property
    def stdout(self) -> str: ...

    @property
    def stderr(self) -> str: ...

    @property
    def changes(self) -> ChangesLike: ...

    @property
    def outside(self) -> frozenset[Path]: ...

    @property
    def environment(self) -> EnvironmentLike: ...

    def describe(self, lines: int = ...) -> str: ...


SchemeArg = Union[str, "os.PathLike[str]", Mapping[str, Path]]

#: Files an installer adds to a ``.dist-info`` directory, and who writes them
#: (measured with pip 26.3 and uv 0.13.8; see DESIGN.md part C).
GENERATED_METADATA: Mapping[str, str] = {
    "INSTALLER": "PEP 376: the installer's name; pip writes 'pip', uv 'uv'",
    "RECORD": "PEP 376: every installed file with its hash, written last",
    "REQUESTED": "PEP 376: installed because the user asked for it (pip, uv)",
    "direct_url.json": "PEP 610: installed from a file or URL, not an index (pip, uv)",
    "uv_cache.json": "uv only: the cache key of what it installed",
}
#: uv locks the environment it installs into with this file at its root.
UV_LOCK = ".lock"
#: Roles that hold an installer's own working files, never an installation.
SCRATCH_ROLES = ("cache", "stage", "tmp")

_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)?)?")


# ---------------------------------------------------------------------------
# schemes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scheme:
    """Where an install should go: scheme paths and where headers may live."""

    label: str
    paths: Mapping[str, Path]
    #: Directories whose ``<project>`` subdirectory receives the headers.
    header_dirs: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if not self.header_dirs:
            object.__setattr__(self, "header_dirs", (Path(self.paths["headers"]),))


def target_scheme(target: str | os.PathLike[str]) -> Scheme:
    """The layout of ``--target DIR``: packages at the top, scripts in ``bin``.

    Headers go to ``include/python/<project>`` with pip and to
    ``include/<project>`` with uv; both are accepted.
    """
    top = Path(os.path.abspath(target))
    paths = {
        "purelib": top,
        "platlib": top,
        "scripts": top / "bin",
        "data": top,
        "headers": top / "include" / "python",
    }
    return Scheme(f"target {top}", paths, (top / "include" / "python", top / "include"))


def prefix_scheme(env: EnvironmentLike, prefix: str | os.PathLike[str]) -> Scheme:
    """The layout of ``--prefix DIR``: the system scheme moved from the env's prefix."""
    top = Path(os.path.abspath(prefix))
    system = env.paths("system")
    base = Path(system["data"])
    paths = {key: top / Path(value).relative_to(base) for key, value in system.items()}
    return Scheme(f"prefix {top}", paths)


def resolve_scheme(env: EnvironmentLike, scheme: SchemeArg | Scheme) -> Scheme:
    """``"user"``, ``"system"``, a ``--target`` directory, or any scheme mapping."""
    if isinstance(scheme, Scheme):
        return scheme
    if isinstance(scheme, Mapping):
        return Scheme("custom scheme", {k: Path(v) for k, v in scheme.items()})
    if isinstance(scheme, str) and scheme in ("user", "system"):
        return Scheme(scheme, env.paths(scheme))
    if isinstance(scheme, os.PathLike) or os.path.isabs(scheme):
        return target_scheme(scheme)
    raise RoleError(
        f"scheme={scheme!r}: must be 'user', 'system', a --target directory "
        "(a Path), or a mapping with keys purelib, platlib, scripts, data, headers"
    )


def _other_schemes(env: EnvironmentLike, scheme: Scheme) -> list[Scheme]:
    """The environment's own schemes that are not the one asked about."""
    found = []
    for role in ("system", "user"):
        paths = env.paths(role)
        if Path(paths["purelib"]) != Path(scheme.paths["purelib"]):
            found.append(Scheme(role, paths))
    return found


# ---------------------------------------------------------------------------
# small facts about files
# ---------------------------------------------------------------------------


def _is_bytecode(path: Path) -> bool:
    """A ``__pycache__`` file of a source that exists: Python's, or an installer's."""
    if path.suffix != ".pyc" or path.parent.name != "__pycache__":
        return False
    source = path.parent.parent / (path.name.split(".", 1)[0] + ".py")
    return os.path.lexists(source)


def written(changes: ChangesLike) -> frozenset[Path]:
    """Paths a run created or modified.

    (A hard-linked template file whose link count moved because another
    sandbox was built is not "modified": changes.py ignores the ctime of files
    with other links, so no special case is needed here.)
    """
    return changes.created | changes.modified


def _under(path: Path, top: Path) -> bool:
    return path == top or top in path.parents


def _scratch(env: EnvironmentLike, path: Path) -> bool:
    return any(role in env.roles and _under(path, Path(env.roles[role])) for role in SCRATCH_ROLES)


def _shebang_python(data: bytes) -> str | None:
    """The interpreter a script runs: ``#!PY`` or the ``/bin/sh`` exec trick."""
    lines = data.split(b"\n", 2)
    first = lines[0].decode("utf-8", "replace")
    if not first.startswith("#!"):
        return None
    command = first[2:].strip()
    if command in ("/bin/sh", "/usr/bin/env sh") and len(lines) > 1:
        second = lines[1].decode("utf-8", "replace")
        if second.startswith("'''exec' "):
            try:
                return shlex.split(second[len("'''exec' ") :])[0]
            except (ValueError, IndexError):
                return second
    return command.split()[0] if command else command


def _names_python(command: str | None, python: Path) -> bool:
    """True for the env's interpreter or an alias next to it (python3, python3.11)."""
    if not command:
        return False
    path = Path(command)
    return path == python or (
        path.parent == python.parent and _PYTHON_NAME.fullmatch(path.name) is not None
    )


def _first_line(data: bytes) -> str:
    return data.split(b"\n", 1)[0].decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# installed RECORD files
# ---------------------------------------------------------------------------


@dataclass
class DistInfo:
    """An installed ``.dist-info`` and what its RECORD says."""

    path: Path
    project: str
    version: str
    #: absolute path -> hash from RECORD ("" when it gives none)
    record: dict[Path, str] = field(default_factory=dict)
    problem: str | None = None

    @property
    def site(self) -> Path:
        return self.path.parent

    def same_release(self, layout: WheelLayout) -> bool:
        return self.project == layout.project and _same_version(self.version, layout.version)


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def read_dist_info(path: Path) -> DistInfo:
    """Parse an installed dist-info's RECORD (paths are relative to the site)."""
    stem = path.name[: -len(".dist-info")]
    name, _, version = stem.rpartition("-")
    info = DistInfo(path, canonicalize_name(name or stem), version)
    record = path / "RECORD"
    if not os.path.isfile(record):
        info.problem = "has no RECORD"
        return info
    try:
        with open(record, encoding="utf-8") as stream:
            rows = list(parse_record_file(stream.read().splitlines()))
        for row in rows:
            entry = RecordEntry.from_elements(*row)
            where = Path(os.path.normpath(path.parent / entry.path))
            info.record[where] = str(entry.hash_) if entry.hash_ else ""
    except (InvalidRecordEntry, UnicodeDecodeError) as exc:
        info.problem = f"has an unreadable RECORD: {exc}"
    return info


def dist_infos(sites: Iterable[Path]) -> list[DistInfo]:
    """Every ``*.dist-info`` directly in the given site directories, sorted."""
    found: list[DistInfo] = []
    for site in sorted(set(sites)):
        try:
            names = sorted(os.listdir(site))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        found.extend(
            read_dist_info(site / n)
            for n in names
            if n.endswith(".dist-info") and os.path.isdir(site / n)
        )
    return found


def _sites(scheme: Scheme) -> list[Path]:
    return sorted({Path(scheme.paths["purelib"]), Path(scheme.paths["platlib"])})


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Row:
    """One line of a verdict's table: a path and what was found there."""

    path: Path
    found: str

    @property
    def ok(self) -> bool:
        return self.found == "ok" or self.found.startswith("ok ")


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _fold_bytecode(rows: Iterable[Row]) -> list[Row]:
    """More than three ``.pyc`` of one ``__pycache__`` with one finding: one row."""
    groups: dict[tuple[Path, str], list[Row]] = {}
    kept: list[Row] = []
    for row in rows:
        if row.path.suffix == ".pyc" and row.path.parent.name == "__pycache__":
            groups.setdefault((row.path.parent, row.found), []).append(row)
        else:
            kept.append(row)
    for (directory, found), group in groups.items():
        if len(group) > 3:
            kept.append(Row(directory / "*.pyc", f"{found} ({len(group)} bytecode files)"))
        else:
            kept.extend(group)
    return kept


def table(rows: Iterable[Row], root: Path, heading: str = "expected path") -> list[str]:
    """Rows sorted by path, aligned, paths relative to ``root``."""
    ordered = sorted(set(_fold_bytecode(set(rows))))
    shown = [(_rel(r.path, root), r.found) for r in ordered]
    width = max([len(heading), *(len(p) for p, _ in shown)])
    lines = [f"  {heading:<{width}}  found"]
    lines += [f"  {p:<{width}}  {found}" for p, found in shown]
    return lines


def _require_started(verdict: str, result: Result) -> None:
    """Refuse to judge a run whose command never started.

    "Nothing was installed" is trivially true of a command that was not found;
    passing on it would be a pass the installer never earned.
    """
    __tracebackhide__ = True
    error = getattr(result, "error", None)
    if error:
        _fail(
            f"{verdict}: the installer never started ({error}); there is nothing to judge",
            result,
            [],
        )


def _fail(title: str, result: Result, body: list[str], notes: Iterable[str] = ()) -> None:
    __tracebackhide__ = True
    root = result.environment.root
    text = [title, f"paths relative to {root}", *body]
    text += [f"note: {n}" for n in notes]
    if result.outside:
        shown = sorted(result.outside)
        text.append(
            f"note: this run also wrote outside the roles it may write: "
            f"{', '.join(_rel(p, root) for p in shown[:5])}"
            + (f" (+{len(shown) - 5} more)" if len(shown) > 5 else "")
        )
    text.append(result.describe())
    raise PlacementError("\n".join(text))


# ---------------------------------------------------------------------------
# assert_installed
# ---------------------------------------------------------------------------


@dataclass
class _Check:
    """State of one assert_installed run: the rows and the paths accounted for."""

    result: Result
    layout: WheelLayout
    scheme: Scheme
    findings: dict[Path, list[str]] = field(default_factory=dict)
    accounted: set[Path] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    #: path -> RECORD-form hash of its bytes, so that no file is read twice.
    hashes: dict[Path, str] = field(default_factory=dict)
    #: site -> its dist-infos, so that no RECORD is parsed twice.
    sites: dict[Path, list[DistInfo]] = field(default_factory=dict)

    @property
    def env(self) -> EnvironmentLike:
        return self.result.environment

    @cached_property
    def changed(self) -> frozenset[Path]:
        """Computed once: :func:`written` stats every modified path."""
        return written(self.result.changes)

    def add(self, path: Path, found: str) -> None:
        self.findings.setdefault(path, []).append(found)

    def read(self, path: Path) -> bytes:
        """The bytes of ``path``, remembering their hash for the RECORD check."""
        with open(path, "rb") as stream:
            data = stream.read()
        self.hashes[path] = file_hash(data)
        return data

    def hash_of(self, path: Path) -> str:
        if path not in self.hashes:
            self.read(path)
        return self.hashes[path]

    def dist_infos(self, sites: Iterable[Path]) -> list[DistInfo]:
        """:func:`dist_infos`, each site read once per check."""
        found: list[DistInfo] = []
        for site in sorted(set(sites)):
            if site not in self.sites:
                self.sites[site] = dist_infos([site])
            found.extend(self.sites[site])
        return found

    @property
    def rows(self) -> list[Row]:
        """One row per path: its problems joined, or its "ok" if it has none."""
        rows = []
        for path, found in self.findings.items():
            bad = [f for f in found if not Row(path, f).ok]
            rows.append(Row(path, "; ".join(dict.fromkeys(bad)) if bad else found[0]))
        return rows


def destinations(layout: WheelLayout, scheme: Scheme) -> dict[Path, Member]:
    """Where each member of ``layout`` is (or would be) in ``scheme``.

    A header goes to the first header directory that has a subdirectory with
    the project's canonical name holding it, else to the canonical spelling.
    """
    layout.destinations(scheme.paths)  # refuses a mapping that lacks a key, naming it
    return {_dest_in(layout, scheme, member): member for member in layout.members}


def _header_path(layout: WheelLayout, scheme: Scheme, member: Member) -> Path:
    for top in scheme.header_dirs:
        try:
            names = sorted(os.listdir(top))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for name in names:
            candidate = top / name / member.path
            if canonicalize_name(name) == layout.project and os.path.lexists(candidate):
                return candidate
    return scheme.header_dirs[0] / layout.project / member.path


def _content_problem(check: _Check, path: Path, member: Member) -> str | None:
    """What is wrong with the file at a member's destination ``path``, or None."""
    data, python = check.read(path), check.env.python
    if member.kind in (KIND_ENTRY_POINT, KIND_SCRIPT):
        problems = []
        if not _names_python(_shebang_python(data), python):
            problems.append(f"shebang: expected #!{python} got {_first_line(data)!r}")
        if member.kind == KIND_ENTRY_POINT:
            module = member.target.split(":", 1)[0]
            if module.encode() not in data:
                problems.append(f"launcher does not import {module}")
        else:
            body = data.split(b"\n", 1)[1] if b"\n" in data else b""
            if data.startswith(b"#!/bin/sh\n'''exec'"):
                body = body.split(b"\n", 2)[2] if body.count(b"\n") >= 2 else b""
            if body != member.body:
                problems.append(
                    f"content after the shebang differs: expected "
                    f"{file_hash(member.body or b'')} got {file_hash(body)}"
                )
        mode = os.stat(path).st_mode
        if not mode & 0o111:
            problems.append(f"not executable (mode {mode & 0o777:o})")
        return "; ".join(problems) or None
    expected = member.record_hash or member.content_hash
    actual = check.hashes[path]
    if actual != expected:
        return f"hash mismatch: expected {expected} got {actual}"
    return None


def _elsewhere(check: _Check, member: Member, others: list[Scheme]) -> Path | None:
    """Where this run put a member that is missing from the expected place."""
    for other in others:
        path = _dest_in(check.layout, other, member)
        if path in check.changed and os.path.lexists(path) and path not in check.accounted:
            return path
    suffix = ("bin/" + member.path) if member.scheme == "scripts" else member.path
    for path in sorted(check.changed):
        if (
            str(path).endswith("/" + suffix)
            and path not in check.accounted
            and not _scratch(check.env, path)
            and os.path.isfile(path)
        ):
            return path
    return None


def _dest_in(layout: WheelLayout, scheme: Scheme, member: Member) -> Path:
    if member.scheme == "headers":
        return _header_path(layout, scheme, member)
    return Path(os.path.normpath(Path(scheme.paths[member.scheme]) / member.path))


def _check_members(check: _Check, others: list[Scheme]) -> dict[Path, Member]:
    dests = destinations(check.layout, check.scheme)
    check.accounted.update(dests)
    for path, member in sorted(dests.items()):
        if os.path.isfile(path):
            problem = _content_problem(check, path, member)
            check.add(path, problem or "ok")
            continue
        other = _elsewhere(check, member, others)
        if other is None:
            check.add(path, "missing")
        else:
            check.accounted.add(other)
            check.add(path, f"elsewhere: {_rel(other, check.env.root)}")
    for member in check.layout.corrupt:
        check.notes.append(
            f"the wheel itself is corrupt: its RECORD says {member.record_hash} "
            f"for {member.path} but the file in the archive hashes to "
            f"{member.content_hash}"
        )
    return dests


def _check_dist_info(check: _Check, dests: Mapping[Path, Member]) -> None:
    """RECORD lists every installed file with its hash; INSTALLER is present."""
    layout = check.layout
    site = Path(check.scheme.paths[layout.root_scheme])
    expected = site / layout.dist_info
    found = check.dist_infos([site])
    info = next((d for d in found if d.path == expected), None) or next(
        (d for d in found if d.same_release(layout)), None
    )
    if info is None:
        check.add(expected / "INSTALLER", "missing")
        check.add(expected / "RECORD", "missing")
        return
    for name in sorted(os.listdir(info.path)):
        path = info.path / name
        if path in dests or os.path.isdir(path):
            continue
        check.accounted.add(path)
        if name not in GENERATED_METADATA:
            check.add(path, "extra: not in the wheel and not installer metadata")
        elif name != "INSTALLER":
            check.add(path, "ok (installer metadata)")
    installer = info.path / "INSTALLER"
    check.add(installer, "ok (installer metadata)" if os.path.isfile(installer) else "missing")
    if info.problem:
        check.add(
            info.path / "RECORD",
            info.problem.replace("has ", "", 1).replace("no RECORD", "missing"),
        )
        return
    _check_record(check, info, dests)


def _check_record(check: _Check, info: DistInfo, dests: Mapping[Path, Member]) -> None:
    record_file = info.path / "RECORD"
    listed = info.record
    installed = [p for p in dests if os.path.isfile(p)]
    installed += [info.path / n for n in GENERATED_METADATA if os.path.isfile(info.path / n)]
    for path in sorted(set(installed)):
        if path == record_file:
            continue
        if path not in listed:
            check.add(path, "not in RECORD")
        elif listed[path] and listed[path] != check.hash_of(path):
            check.add(
                path,
                f"RECORD hash wrong: installed RECORD says {listed[path]}, "
                f"the file is {check.hash_of(path)}",
            )
    for path, claim in sorted(listed.items()):
        if path == record_file or path in dests or path.parent == info.path:
            continue
        if not os.path.lexists(path):
            check.add(path, "listed in RECORD but missing")
        elif claim and claim != check.hash_of(path):
            check.add(
                path,
                f"RECORD hash wrong: installed RECORD says {claim}, the file is "
                f"{check.hash_of(path)}",
            )
        elif not _is_bytecode(path):
            check.accounted.add(path)
            check.add(path, "extra: not in the wheel (listed in RECORD)")
        check.accounted.add(path)


def _check_extras(check: _Check, others: list[Scheme]) -> None:
    """Files this run wrote into the scheme, or copies of the wheel elsewhere."""
    env = check.env
    everyone = check.dist_infos(_sites(check.scheme) + [s for o in others for s in _sites(o)])
    owned = {p for d in everyone if not d.same_release(check.layout) for p in d.record}
    tops = {Path(p) for p in check.scheme.paths.values()}
    data = Path(check.scheme.paths["data"])
    for path in sorted(check.changed):
        if (
            path in check.accounted
            or path in owned
            or os.path.isdir(path)
            or not os.path.lexists(path)
            or _is_bytecode(path)
            or _scratch(env, path)
        ):
            continue
        if path == data / UV_LOCK:
            continue
        if any(_under(path, top) for top in tops):
            check.add(path, "extra: written by this run, not part of the wheel")
    for other in others:
        for path in sorted(destinations(check.layout, other)):
            if (
                path in check.changed
                and path not in check.accounted
                and path not in owned
                and os.path.lexists(path)
            ):
                check.add(path, f"extra: also installed in the {other.label} scheme")


def assert_installed(
    result: Result, wheel: str | os.PathLike[str], scheme: SchemeArg | Scheme = "user"
) -> None:
    """Every file of ``wheel`` is in ``scheme`` with the right content, and nowhere else.

    Also: the installed dist-info has INSTALLER and a RECORD listing every
    installed file with its hash; generated scripts name ``env.python``.
    """
    __tracebackhide__ = True
    layout = read_wheel(wheel)
    target = resolve_scheme(result.environment, scheme)
    check = _Check(result, layout, target)
    others = _other_schemes(result.environment, target)
    dests = _check_members(check, others)
    _check_dist_info(check, dests)
    _check_extras(check, others)
    rows = check.rows
    bad = [r for r in rows if not r.ok]
    if bad or layout.corrupt:
        _fail(
            f"{layout.label} is not installed as expected in the {target.label} scheme: "
            f"{len(bad)} of {len(rows)} files wrong",
            result,
            table(rows, result.environment.root),
            check.notes,
        )


# ---------------------------------------------------------------------------
# assert_not_installed
# ---------------------------------------------------------------------------


def assert_not_installed(result: Result, wheel: str | os.PathLike[str]) -> None:
    """No file of ``wheel`` exists anywhere in the sandbox, and no dist-info of it.

    "Of the wheel" means: a dist-info of this project and version in any site
    of the environment (or anywhere this run created one), or a file this run
    created or modified whose path ends with a member's path in its scheme,
    unless the RECORD of another release lists it (an upgrade's new files are
    not the old wheel's). Installer caches, temporary files and staged inputs
    do not count.
    """
    __tracebackhide__ = True
    _require_started("assert_not_installed", result)
    layout = read_wheel(wheel)
    env = result.environment
    changed = written(result.changes)
    sites = [s for role in ("system", "user") for s in _sites(Scheme(role, env.paths(role)))]
    sites += [p.parent for p in changed if p.name.endswith(".dist-info") and not _scratch(env, p)]
    infos = dist_infos(sites)
    rows = [
        Row(d.path, "installed: a dist-info of this release")
        for d in infos
        if d.same_release(layout)
    ]
    others = {p for d in infos if not d.same_release(layout) for p in d.record}
    suffixes = {("bin/" + m.path) if m.scheme == "scripts" else m.path: m for m in layout.members}
    for path in sorted(changed):
        if _scratch(env, path) or not os.path.isfile(path) or path in others:
            continue
        for suffix in suffixes:
            if str(path).endswith("/" + suffix):
                rows.append(Row(path, f"written by this run: {suffix}"))
                break
    if rows:
        _fail(
            f"{layout.label} is installed, at least in part: {len(set(rows))} paths",
            result,
            table(rows, env.root, "path"),
        )


# ---------------------------------------------------------------------------
# assert_untouched
# ---------------------------------------------------------------------------


def assert_untouched(result: Result, role: str) -> None:
    """Nothing under ``role`` was created, modified or deleted, in place or not."""
    __tracebackhide__ = True
    _require_started("assert_untouched", result)
    env = result.environment
    if role not in env.roles:
        raise RoleError(
            f"unknown role {role!r}: this environment has roles {', '.join(sorted(env.roles))}"
        )
    changes = result.changes.under(role)
    rows = [Row(p, "created") for p in changes.created]
    rows += [Row(p, "modified") for p in changes.modified]
    rows += [Row(p, "deleted") for p in changes.deleted]
    seen = {r.path for r in rows}
    snapshot = env.snapshot()
    rows += [
        Row(p, "rewritten in place") for p in snapshot.deep_diff(env.roles[role]) if p not in seen
    ]
    if rows:
        _fail(
            f"role {role!r} ({_rel(env.roles[role], env.root)}) was touched: "
            f"{len(set(rows))} paths",
            result,
            table(rows, env.root, "path"),
        )


# ---------------------------------------------------------------------------
# assert_no_residue
# ---------------------------------------------------------------------------


def _broken(info: DistInfo) -> str | None:
    """Why a dist-info this run touched is not a finished install, or None."""
    if info.problem:
        return info.problem
    missing = sorted(p for p in info.record if not os.path.lexists(p) and p.suffix != ".pyc")
    reasons = []
    if missing:
        names = ", ".join(os.path.relpath(p, info.site) for p in missing)
        reasons.append(f"RECORD lists {len(missing)} missing file(s): {names}")
    if not os.path.isfile(info.path / "INSTALLER"):
        reasons.append("no INSTALLER")
    return "; ".join(reasons) or None


def assert_no_residue(result: Result) -> None:
    """No trace of a half-finished install is left in the environment.

    Residue is: a file this run wrote (outside caches and temp) that no
    finished dist-info's RECORD lists; a dist-info this run touched that has no
    RECORD, a RECORD naming files that do not exist, or no INSTALLER; a
    ``~``-prefixed stash directory in a site; two dist-infos of one project in
    one site. Bytecode caches of existing sources are never residue.
    """
    __tracebackhide__ = True
    _require_started("assert_no_residue", result)
    env = result.environment
    changes = result.changes
    changed = written(changes)
    sites = {s for role in ("system", "user") for s in _sites(Scheme(role, env.paths(role)))}
    for path in changed | changes.deleted:
        if _scratch(env, path):
            continue
        if path.name.endswith(".dist-info"):
            sites.add(path.parent)
        elif path.parent.name.endswith(".dist-info"):
            sites.add(path.parent.parent)
    lock_dirs = sites | {Path(env.paths(role)["data"]) for role in ("system", "user")}
    infos = dist_infos(sites)
    touched = {
        d.path
        for d in infos
        if any(_under(p, d.path) for p in changed | changes.deleted)
        or any(p in changes.deleted for p in d.record)
    }
    rows: list[Row] = []
    broken: dict[Path, str] = {}
    for info in infos:
        why = _broken(info) if info.path in touched else None
        if why:
            broken[info.path] = why
            rows.append(Row(info.path, f"unfinished dist-info: {why}"))
    listed = {p for d in infos if d.path not in broken for p in d.record}
    listed_broken = {p: d for d in infos if d.path in broken for p in d.record}
    for path in sorted(changed):
        if (
            os.path.isdir(path)
            or not os.path.lexists(path)
            or _scratch(env, path)
            or _is_bytecode(path)
            or path in listed
            or (path.name == UV_LOCK and path.parent in lock_dirs)
        ):
            continue
        if any(_under(path, b) for b in broken):
            continue
        owner = listed_broken.get(path)
        rows.append(
            Row(
                path,
                f"listed only by unfinished {owner.path.name}"
                if owner
                else "orphan: listed in no RECORD",
            )
        )
    for site in sorted(sites):
        rows += _site_residue(site, infos)
    if rows:
        _fail(
            f"residue of an unfinished install: {len(set(rows))} paths",
            result,
            table(rows, env.root, "path"),
        )


def _site_residue(site: Path, infos: list[DistInfo]) -> list[Row]:
    """Stash directories and duplicate dist-infos in one site directory."""
    rows: list[Row] = []
    try:
        names = sorted(os.listdir(site))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return rows
    rows += [
        Row(site / n, "stash left by an interrupted uninstall or upgrade")
        for n in names
        if n.startswith("~")
    ]
    by_project: dict[str, list[DistInfo]] = {}
    for info in infos:
        if info.site == site:
            by_project.setdefault(info.project, []).append(info)
    for project, group in sorted(by_project.items()):
        if len(group) > 1:
            versions = ", ".join(d.path.name for d in group)
            rows += [
                Row(d.path, f"one of {len(group)} dist-infos of {project}: {versions}")
                for d in group
            ]
    return rows


# ---------------------------------------------------------------------------
# pytest_assertrepr_compare
# ---------------------------------------------------------------------------


def _role_path(path: Path, roles: Mapping[str, Path]) -> str:
    """``role: relative/path`` for the most specific role holding ``path``."""
    best: tuple[int, str, Path] | None = None
    for name, top in roles.items():
        top = Path(top)
        if _under(path, top) and (best is None or len(top.parts) > best[0]):
            best = (len(top.parts), name, top)
    if best is None:
        return str(path)
    rel = path.relative_to(best[2])
    return f"{best[1]}: {rel}" if str(rel) != "." else f"{best[1]}: (the role's directory)"


def _change_lines(changes: object) -> list[str]:
    """Sorted ``+``/``~``/``-`` lines, leaves only: a created directory whose
    contents are listed says nothing more (pytest shows 8 lines without -vv)."""
    roles: Mapping[str, Path] = getattr(changes, "roles", {}) or {}
    rows = [("+", p) for p in getattr(changes, "created", ())]
    rows += [("~", p) for p in getattr(changes, "modified", ())]
    rows += [("-", p) for p in getattr(changes, "deleted", ())]
    parents = {parent for _, p in rows for parent in p.parents}
    leaves = [(m, p) for m, p in rows if p not in parents]
    return [
        f"  {mark} {_role_path(p, roles)}"
        for mark, p in sorted(leaves, key=lambda r: (str(r[1]), r[0]))
    ] or ["  (no changes)"]


def _summary(value: object) -> str:
    if not _is_changes(value):
        return repr(value)
    counts = [len(getattr(value, a)) for a in ("created", "modified", "deleted")]
    if not any(counts):
        return "<Changes: none>"
    return "<Changes: {} created, {} modified, {} deleted>".format(*counts)


def _is_changes(value: object) -> bool:
    return all(hasattr(value, a) for a in ("created", "modified", "deleted", "under"))


def _is_result(value: object) -> bool:
    return all(hasattr(value, a) for a in ("describe", "changes", "returncode"))


def explain_comparison(op: str, left: object, right: object) -> list[str] | None:
    """Readable ``==`` failures for changes and results (``pytest_assertrepr_compare``)."""
    if op != "==":
        return None
    if _is_changes(left) or _is_changes(right):
        lines = [f"{_summary(left)} == {_summary(right)}"]
        for side, value in (("left", left), ("right", right)):
            if _is_changes(value):
                lines.append(f"{side} (+ created, ~ modified, - deleted; by role):")
                lines += _change_lines(value)
        if not (_is_changes(left) and _is_changes(right)):
            lines.append(
                "hint: a Changes never equals a set; compare `.all`, `.created`, "
                "`.modified` or `.deleted`, or use result.assert_untouched(role)"
            )
        return lines
    if _is_result(left) or _is_result(right):
        value = left if _is_result(left) else right
        return ["comparison with an installer run failed", *str(value.describe()).splitlines()]  # type: ignore[attr-defined]
    return None


__all__ = [
    "GENERATED_METADATA",
    "ChangesLike",
    "DistInfo",
    "EnvironmentLike",
    "Result",
    "Row",
    "Scheme",
    "SnapshotLike",
    "assert_installed",
    "assert_no_residue",
    "assert_not_installed",
    "assert_untouched",
    "destinations",
    "dist_infos",
    "explain_comparison",
    "prefix_scheme",
    "read_dist_info",
    "resolve_scheme",
    "table",
    "target_scheme",
]
