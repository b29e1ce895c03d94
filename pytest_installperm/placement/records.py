"""Installed ``.dist-info`` directories and their RECORDs, and the small facts
about files that decide what counts against an install (bytecode, scratch
roles, what a run wrote)."""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from installer.records import InvalidRecordEntry, RecordEntry, parse_record_file
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pytest_installperm import safefs
from pytest_installperm.placement.protocol import ChangesLike, EnvironmentLike
from pytest_installperm.roles import is_scratch
from pytest_installperm.wheels import WheelLayout

#: Files an installer adds to a ``.dist-info`` directory, and who writes them
#: (measured with pip 26.3 and uv 0.13.8).
GENERATED_METADATA: Mapping[str, str] = {
    "INSTALLER": "PEP 376: the installer's name; pip writes 'pip', uv 'uv'",
    "RECORD": "PEP 376: every installed file with its hash, written last",
    "REQUESTED": "PEP 376: installed because the user asked for it (pip, uv)",
    "direct_url.json": "PEP 610: installed from a file or URL, not an index (pip, uv)",
    "uv_cache.json": "uv only: the cache key of what it installed",
}
#: Metadata files that PEP 376 and the installation spec make optional: a
#: verdict asks for them only when the caller does (``require=``).
OPTIONAL_METADATA = ("INSTALLER", "REQUESTED")
#: uv locks the environment it installs into with this file at its root.
UV_LOCK = ".lock"


def is_bytecode(path: Path) -> bool:
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


def in_scratch(env: EnvironmentLike, path: Path) -> bool:
    return is_scratch(env.roles, path)


@dataclass
class DistInfo:
    """An installed ``.dist-info`` and what its RECORD says."""

    path: Path
    project: str
    version: str
    #: absolute path -> hash from RECORD ("" when it gives none)
    record: dict[Path, str] = field(default_factory=dict)
    problem: str | None = None
    #: Below this directory (the sandbox) nothing is followed when reading.
    top: Path | None = None

    def where(self) -> Path:
        """The directory below which this dist-info's files are read."""
        return self.site if self.top is None else self.top

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


def read_dist_info(path: Path, top: Path | None = None) -> DistInfo:
    """Parse an installed dist-info's RECORD (paths are relative to the site).

    Read below ``top`` (the sandbox; default the site) without following a
    symlink: a RECORD the child replaced with a link is a problem, not a read.
    """
    top = path.parent if top is None else top
    stem = path.name[: -len(".dist-info")]
    name, _, version = stem.rpartition("-")
    info = DistInfo(path, canonicalize_name(name or stem), version, top=top)
    record = path / "RECORD"
    instead = safefs.found_instead(top, record)
    if instead is not None:
        info.problem = f"has a RECORD that is {instead}"
        return info
    if not safefs.is_file(top, record):
        info.problem = "has no RECORD"
        return info
    try:
        text = safefs.read_bytes(top, record).decode("utf-8")
        rows = list(parse_record_file(text.splitlines()))
        for row in rows:
            entry = RecordEntry.from_elements(*row)
            where = Path(os.path.normpath(path.parent / entry.path))
            info.record[where] = str(entry.hash_) if entry.hash_ else ""
    except (InvalidRecordEntry, UnicodeDecodeError) as exc:
        info.problem = f"has an unreadable RECORD: {exc}"
    return info


def required_metadata(names: Iterable[str]) -> frozenset[str]:
    """The optional metadata files a caller requires; ValueError for any other name."""
    wanted = frozenset([names] if isinstance(names, str) else names)
    unknown = sorted(wanted - set(OPTIONAL_METADATA))
    if unknown:
        raise ValueError(
            f"require={unknown[0]!r}: not an optional metadata file; "
            f"choose from {', '.join(OPTIONAL_METADATA)}"
        )
    return wanted


def unrecorded_scripts(info: DistInfo) -> list[str]:
    """Console and GUI scripts ``entry_points.txt`` declares that RECORD does not list.

    An installer generates these wrappers and records them: a dist-info whose
    RECORD lacks one was left behind before the install finished (pip's
    RECORD, copied from the wheel, is on disk before the scripts are written).
    """
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        path = info.path / "entry_points.txt"
        if safefs.is_file(info.where(), path):
            parser.read_string(safefs.read_bytes(info.where(), path).decode("utf-8"))
    except (configparser.Error, UnicodeDecodeError, OSError):
        return []
    names = {p.name for p in info.record}
    declared = [
        name
        for section in ("console_scripts", "gui_scripts")
        if parser.has_section(section)
        for name in parser.options(section)
    ]
    return sorted(n for n in declared if n not in names and f"{n}.exe" not in names)


def dist_infos(sites: Iterable[Path], top: Path | None = None) -> list[DistInfo]:
    """Every ``*.dist-info`` directly in the given site directories, sorted;
    below ``top`` (the sandbox) nothing is followed: a site or a dist-info
    that is a symlink is not listed."""
    found: list[DistInfo] = []
    for site in sorted(set(sites)):
        base = site if top is None else top
        names = sorted(safefs.listdir(base, site))
        found.extend(
            read_dist_info(site / n, base)
            for n in names
            if n.endswith(".dist-info") and safefs.is_dir(base, site / n)
        )
    return found


__all__ = [
    "GENERATED_METADATA",
    "OPTIONAL_METADATA",
    "UV_LOCK",
    "DistInfo",
    "dist_infos",
    "in_scratch",
    "is_bytecode",
    "read_dist_info",
    "required_metadata",
    "unrecorded_scripts",
    "written",
]
