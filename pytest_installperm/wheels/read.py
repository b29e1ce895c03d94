"""Reading a wheel with ``installer`` into a :class:`WheelLayout`: strict
about structure, lenient (but explicit) about wrong hashes."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from installer import install
from installer.destinations import WheelDestination
from installer.exceptions import InstallerError
from installer.records import InvalidRecordEntry, RecordEntry, parse_record_file
from installer.sources import WheelFile
from installer.utils import Scheme, parse_metadata_file
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from pytest_installperm.errors import WheelError
from pytest_installperm.wheels.layout import (
    KIND_ENTRY_POINT,
    KIND_FILE,
    KIND_SCRIPT,
    Member,
    WheelLayout,
    file_hash,
)


class _Recorder(WheelDestination):
    """An installer destination that writes nothing and remembers everything."""

    def __init__(self, claims: Mapping[str, str | None], data_dir: str, root: str) -> None:
        self.claims = claims
        self.data_dir = data_dir
        self.root = root
        self.members: list[Member] = []

    def write_script(self, name: str, module: str, attr: str, section: str) -> RecordEntry:
        self.members.append(Member("scripts", name, KIND_ENTRY_POINT, target=f"{module}:{attr}"))
        return RecordEntry(name, None, None)

    def write_file(
        self, scheme: Scheme, path: str | os.PathLike[str], stream: BinaryIO, is_executable: bool
    ) -> RecordEntry:
        rel = os.fspath(path)
        content = stream.read()
        archive_path = rel if scheme == self.root else f"{self.data_dir}/{scheme}/{rel}"
        claim = self.claims.get(archive_path)
        if scheme == "scripts" and content.startswith(b"#!python"):
            body = content.split(b"\n", 1)[1] if b"\n" in content else b""
            member = Member(scheme, rel, KIND_SCRIPT, claim, file_hash(content), body)
        else:
            member = Member(scheme, rel, KIND_FILE, claim, file_hash(content))
        self.members.append(member)
        return RecordEntry(rel, None, None)

    def finalize_installation(
        self, scheme: Scheme, record_file_path: str, records: Iterable[tuple[Scheme, RecordEntry]]
    ) -> None:
        """Nothing to write: the installed RECORD is the installer's to make."""


def read_wheel(path: str | os.PathLike[str]) -> WheelLayout:
    """Read ``path`` into a :class:`WheelLayout`, or raise WheelError naming it."""
    wheel = Path(path)
    if not wheel.is_file():
        raise WheelError(f"{wheel}: not a wheel: no such file")
    try:
        parsed_name = parse_wheel_filename(wheel.name)
    except InvalidWheelFilename as exc:
        raise WheelError(f"{wheel}: not a wheel: bad file name ({exc})") from None
    if not zipfile.is_zipfile(wheel):
        raise WheelError(f"{wheel}: not a wheel: not a zip archive")
    try:
        with WheelFile.open(wheel) as source:
            return _read(wheel, source, parsed_name[0])
    except WheelError:
        raise
    except (InstallerError, ValueError, KeyError, zipfile.BadZipFile, OSError) as exc:
        raise WheelError(f"{wheel}: not a valid wheel: {exc}") from exc


def _read_dist_info(wheel: Path, source: WheelFile, filename: str) -> str:
    try:
        return source.read_dist_info(filename)
    except KeyError:
        raise WheelError(f"{wheel}: {source.dist_info_dir}/{filename} is missing") from None
    except UnicodeDecodeError as exc:
        raise WheelError(
            f"{wheel}: {source.dist_info_dir}/{filename} is not UTF-8: {exc}"
        ) from None


def _root_scheme(wheel: Path, source: WheelFile) -> str:
    """Check WHEEL (PEP 427) and return where the archive root goes."""
    metadata = parse_metadata_file(_read_dist_info(wheel, source, "WHEEL"))
    problem = f"{wheel}: {source.dist_info_dir}/WHEEL"
    version = metadata["Wheel-Version"]
    if not version:
        raise WheelError(f"{problem} has no Wheel-Version")
    if not str(version).startswith("1."):
        raise WheelError(f"{problem}: Wheel-Version {version} is not 1.x")
    root = metadata["Root-Is-Purelib"]
    if root not in ("true", "false"):
        raise WheelError(f"{problem}: Root-Is-Purelib must be 'true' or 'false', got {root!r}")
    return "purelib" if root == "true" else "platlib"


def _record_claims(wheel: Path, source: WheelFile) -> dict[str, str | None]:
    """RECORD's hash per archive path; WheelError for any structural problem."""
    text = _read_dist_info(wheel, source, "RECORD")
    try:
        rows = list(parse_record_file(text.splitlines()))
        entries = [RecordEntry.from_elements(*row) for row in rows]
    except InvalidRecordEntry as exc:
        raise WheelError(
            f"{wheel}: {source.dist_info_dir}/RECORD is broken: "
            f"{', '.join(exc.issues)} (row {list(exc.elements)!r})"
        ) from None
    try:
        source.validate_record(validate_contents=False)
    except ValueError as exc:
        issues = getattr(exc, "issues", [str(exc)])
        raise WheelError(
            f"{wheel}: {source.dist_info_dir}/RECORD is broken: "
            + "; ".join(i.replace(f"In {wheel}, ", "") for i in issues)
        ) from None
    claims = {e.path: (str(e.hash_) if e.hash_ else None) for e in entries}
    listed = set(claims) - {f"{source.dist_info_dir}/RECORD"}
    present = set(source._zipfile.namelist())
    ghosts = sorted(listed - present)
    if ghosts:
        raise WheelError(
            f"{wheel}: {source.dist_info_dir}/RECORD is broken: lists "
            f"{', '.join(ghosts)}, which the archive does not contain"
        )
    return claims


def _read(wheel: Path, source: WheelFile, filename_name: str) -> WheelLayout:
    dist_info = source.dist_info_dir
    root = _root_scheme(wheel, source)
    claims = _record_claims(wheel, source)
    metadata = parse_metadata_file(_read_dist_info(wheel, source, "METADATA"))
    metadata_name = metadata["Name"]
    if not metadata_name:
        raise WheelError(f"{wheel}: {dist_info}/METADATA has no Name")
    if canonicalize_name(str(metadata_name)) != canonicalize_name(filename_name):
        raise WheelError(
            f"{wheel}: {dist_info}/METADATA Name {metadata_name!r} does not match "
            f"the file name's {filename_name!r}"
        )
    recorder = _Recorder(claims, source.data_dir, root)
    try:
        install(source, recorder, additional_metadata={})
    except AssertionError as exc:  # installer asserts on malformed entry points
        raise WheelError(f"{wheel}: {dist_info}/entry_points.txt is malformed: {exc}") from None
    return WheelLayout(
        path=wheel,
        name=source.distribution,
        project=canonicalize_name(source.distribution),
        metadata_name=str(metadata_name),
        version=source.version,
        dist_info=dist_info,
        root_scheme=root,
        members=tuple(sorted(recorder.members, key=lambda m: (m.scheme, m.path))),
    )


__all__ = [
    "read_wheel",
]
