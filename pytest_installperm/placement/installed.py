"""``assert_installed``: every file of a wheel in its scheme, right content,
recorded in the installed RECORD, and nowhere else."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pytest_installperm import safefs
from pytest_installperm.placement.destinations import (
    Scheme,
    SchemeArg,
    destination_of,
    destinations,
    other_schemes,
    resolve_scheme,
    sites_of,
)
from pytest_installperm.placement.protocol import EnvironmentLike, Result
from pytest_installperm.placement.records import (
    GENERATED_METADATA,
    UV_LOCK,
    DistInfo,
    dist_infos,
    in_scratch,
    is_bytecode,
    required_metadata,
    written,
)
from pytest_installperm.placement.table import Row, raise_failure, shown_path, table
from pytest_installperm.roles import is_under
from pytest_installperm.wheels import (
    KIND_ENTRY_POINT,
    KIND_SCRIPT,
    Member,
    WheelLayout,
    file_hash,
    read_wheel,
)

_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)?)?")


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
    #: Optional metadata files (INSTALLER, REQUESTED) the caller requires.
    require: frozenset[str] = frozenset()

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
        try:
            data = safefs.read_bytes(self.env.root, path)
        except OSError as exc:  # not a regular file: hashes as what it is instead
            self.hashes[path] = f"(unreadable: {exc.strerror or exc})"
            return b""
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
                self.sites[site] = dist_infos([site], self.env.root)
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
        mode = safefs.lstat(check.env.root, path).st_mode
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
        path = destination_of(check.layout, other, member)
        if (
            path in check.changed
            and safefs.lexists(check.env.root, path)
            and path not in check.accounted
        ):
            return path
    suffix = ("bin/" + member.path) if member.scheme == "scripts" else member.path
    for path in sorted(check.changed):
        if (
            str(path).endswith("/" + suffix)
            and path not in check.accounted
            and not in_scratch(check.env, path)
            and safefs.is_file(check.env.root, path)
        ):
            return path
    return None


def _check_members(check: _Check, others: list[Scheme]) -> dict[Path, Member]:
    dests = destinations(check.layout, check.scheme)
    check.accounted.update(dests)
    for path, member in sorted(dests.items()):
        if safefs.is_file(check.env.root, path):
            problem = _content_problem(check, path, member)
            check.add(path, problem or "ok")
            continue
        instead = safefs.found_instead(check.env.root, path)
        if instead is not None:
            check.add(path, f"{instead} where the wheel has a file")
            continue
        other = _elsewhere(check, member, others)
        if other is None:
            check.add(path, "missing")
        else:
            check.accounted.add(other)
            check.add(path, f"elsewhere: {shown_path(other, check.env.root)}")
    for member in check.layout.corrupt:
        check.notes.append(
            f"the wheel itself is corrupt: its RECORD says {member.record_hash} "
            f"for {member.path} but the file in the archive hashes to "
            f"{member.content_hash}"
        )
    return dests


def _check_dist_info(check: _Check, dests: Mapping[Path, Member]) -> None:
    """RECORD lists every installed file with its hash; required metadata is present."""
    layout = check.layout
    site = Path(check.scheme.paths[layout.root_scheme])
    expected = site / layout.dist_info
    found = check.dist_infos([site])
    info = next((d for d in found if d.path == expected), None) or next(
        (d for d in found if d.same_release(layout)), None
    )
    if info is None:
        for name in sorted(check.require):
            check.add(expected / name, "missing")
        check.add(expected / "RECORD", "missing")
        return
    root = check.env.root
    for name in sorted(safefs.listdir(root, info.path)):
        path = info.path / name
        if path in dests or safefs.is_dir(root, path):
            continue
        check.accounted.add(path)
        if name not in GENERATED_METADATA:
            check.add(path, "extra: not in the wheel and not installer metadata")
        elif name not in check.require:
            check.add(path, "ok (installer metadata)")
    for name in sorted(check.require):
        path = info.path / name
        check.add(path, "ok (installer metadata)" if safefs.is_file(root, path) else "missing")
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
    root = check.env.root
    installed = [p for p in dests if safefs.is_file(root, p)]
    installed += [info.path / n for n in GENERATED_METADATA if safefs.is_file(root, info.path / n)]
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
        if not safefs.lexists(root, path):
            check.add(path, "listed in RECORD but missing")
        elif claim and claim != check.hash_of(path):
            check.add(
                path,
                f"RECORD hash wrong: installed RECORD says {claim}, the file is "
                f"{check.hash_of(path)}",
            )
        elif not is_bytecode(path):
            check.accounted.add(path)
            check.add(path, "extra: not in the wheel (listed in RECORD)")
        check.accounted.add(path)


def _check_extras(check: _Check, others: list[Scheme]) -> None:
    """Files this run wrote into the scheme, or copies of the wheel elsewhere."""
    env = check.env
    everyone = check.dist_infos(sites_of(check.scheme) + [s for o in others for s in sites_of(o)])
    owned = {p for d in everyone if not d.same_release(check.layout) for p in d.record}
    tops = {Path(p) for p in check.scheme.paths.values()}
    data = Path(check.scheme.paths["data"])
    for path in sorted(check.changed):
        if (
            path in check.accounted
            or path in owned
            or safefs.is_dir(env.root, path)
            or not safefs.lexists(env.root, path)
            or is_bytecode(path)
            or in_scratch(env, path)
        ):
            continue
        if path == data / UV_LOCK:
            continue
        if any(is_under(path, top) for top in tops):
            check.add(path, "extra: written by this run, not part of the wheel")
    for other in others:
        for path in sorted(destinations(check.layout, other)):
            if (
                path in check.changed
                and path not in check.accounted
                and path not in owned
                and safefs.lexists(env.root, path)
            ):
                check.add(path, f"extra: also installed in the {other.label} scheme")


def assert_installed(
    result: Result,
    wheel: str | os.PathLike[str],
    scheme: SchemeArg | Scheme = "user",
    *,
    require: Iterable[str] = (),
) -> None:
    """Every file of ``wheel`` is in ``scheme`` with the right content, and nowhere else.

    Also: the installed dist-info has a RECORD listing every installed file
    with its hash; generated scripts name ``env.python``. ``INSTALLER`` and
    ``REQUESTED`` are optional in the specification, so they are checked only
    when named in ``require``.
    """
    __tracebackhide__ = True
    layout = read_wheel(wheel)
    target = resolve_scheme(result.environment, scheme)
    check = _Check(result, layout, target, require=required_metadata(require))
    others = other_schemes(result.environment, target)
    dests = _check_members(check, others)
    _check_dist_info(check, dests)
    _check_extras(check, others)
    rows = check.rows
    bad = [r for r in rows if not r.ok]
    if bad or layout.corrupt:
        raise_failure(
            f"{layout.label} is not installed as expected in the {target.label} scheme: "
            f"{len(bad)} of {len(rows)} files wrong",
            result,
            table(rows, result.environment.root),
            check.notes,
        )


__all__ = [
    "assert_installed",
]
