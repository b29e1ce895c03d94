"""Test wheels: build them (``make_wheel``) and read them back into the files
that each scheme key should receive.

Why build wheels here instead of shipping fixtures: a permission test needs a
wheel whose every file is known (package, platlib extension stand-in, console
and GUI entry points, ``.data/scripts``, data and headers), built in
milliseconds with nothing downloaded, so that a verdict can account for each
file. Names, versions and tags go through ``packaging``; reading goes through
``installer``, the reference implementation of wheel installation, so that
"where should this file go" is answered by the same code an installer uses and
not by a second, hand-written opinion.

Reading is strict about structure (a missing or unparsable WHEEL or RECORD, a
file the RECORD does not list) and raises :class:`WheelError`. It is lenient
about a wrong hash in RECORD: the claim and the real hash are both kept, so a
verdict can say "file X: RECORD says A, the bytes say B" and a test can check
that an installer refuses such a wheel.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import sysconfig
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

from installer import install
from installer.destinations import SchemeDictionaryDestination, WheelDestination
from installer.exceptions import InstallerError
from installer.records import Hash, InvalidRecordEntry, RecordEntry, parse_record_file
from installer.sources import WheelFile
from installer.utils import Scheme, parse_metadata_file
from packaging.tags import Tag, parse_tag, sys_tags
from packaging.utils import (
    InvalidName,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from pytest_installperm.errors import WheelError

#: File contents accepted by :func:`build_wheel`; text is written as UTF-8.
Content = Union[str, bytes]
Files = Mapping[str, Content]

SCHEME_KEYS = ("purelib", "platlib", "scripts", "data", "headers")
HASH_ALGORITHM = "sha256"
#: Fixed timestamp for every archive member, so equal inputs give equal wheels.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_GENERATOR = "pytest-installperm"

#: What a wheel member is, for the verdicts: copied as is, a ``.data/scripts``
#: file whose ``#!python`` shebang the installer rewrites, or a launcher the
#: installer generates from an entry point.
KIND_FILE = "file"
KIND_SCRIPT = "script"
KIND_ENTRY_POINT = "entry-point"


def file_hash(data: bytes) -> str:
    """``sha256=<urlsafe base64, no padding>``, the RECORD form (PEP 376/427)."""
    digest = hashlib.new(HASH_ALGORITHM, data).digest()
    return f"{HASH_ALGORITHM}={base64.urlsafe_b64encode(digest).decode('ascii').rstrip('=')}"


# ---------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------


def _valid_name(name: str) -> NormalizedName:
    try:
        return canonicalize_name(name, validate=True)
    except InvalidName:
        raise WheelError(
            f"wheel name {name!r}: not a valid project name (PEP 508: ASCII letters, digits, "
            "'.', '-' and '_', starting and ending with a letter or digit)"
        ) from None


def _valid_version(version: str) -> Version:
    try:
        return Version(version)
    except InvalidVersion:
        raise WheelError(f"wheel version {version!r}: not a valid PEP 440 version") from None


def _valid_tag(tag: str) -> frozenset[Tag]:
    try:
        tags = parse_tag(tag)
    except ValueError as exc:
        raise WheelError(
            f"wheel tag {tag!r}: not a valid tag set (python-abi-platform): {exc}"
        ) from None
    return tags


def platform_tag() -> str:
    """The running interpreter's own tag with its plain platform (e.g. linux_x86_64).

    A platlib wheel must carry a platform tag to be honest about
    ``Root-Is-Purelib: false``; the plain platform (not manylinux) is accepted
    by every installer on this machine without depending on the glibc version.
    """
    plain = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    tags = list(sys_tags())
    for tag in tags:
        if tag.platform == plain and tag.abi != "none":
            return str(tag)
    return str(tags[0])


def _member_path(where: str, path: str) -> str:
    """A relative POSIX archive path, or WheelError naming the offender."""
    parts = path.replace(os.sep, "/").split("/")
    if not path or any(part in ("", ".", "..") for part in parts):
        raise WheelError(
            f"{where} path {path!r}: must be a relative path inside the scheme "
            "(no leading '/', no empty, '.' or '..' segments)"
        )
    return "/".join(parts)


def _as_bytes(content: Content) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else content


def _script(content: Content) -> bytes:
    """A ``.data/scripts`` file: a ``#!python`` shebang unless one is given."""
    data = _as_bytes(content)
    return data if data.startswith(b"#!") else b"#!python\n" + data


def _entry_points(console: Mapping[str, str] | None, gui: Mapping[str, str] | None) -> bytes:
    text = ""
    for section, scripts in (("console_scripts", console), ("gui_scripts", gui)):
        if scripts:
            text += f"[{section}]\n"
            text += "".join(f"{name} = {target}\n" for name, target in sorted(scripts.items()))
            text += "\n"
    return text.encode("utf-8")


def _default_package(module: str, name: str, version: str) -> dict[str, Content]:
    """A tiny importable package whose ``main`` an entry point can call."""
    return {
        f"{module}/__init__.py": (
            f'"""{name} {version}, a test wheel built by pytest-installperm."""\n\n'
            f'__version__ = "{version}"\n\n\n'
            f"def main() -> None:\n    print({f'{name} {version}'!r})\n"
        ),
    }


def build_wheel(
    directory: str | os.PathLike[str],
    name: str,
    version: str = "1.0",
    *,
    purelib: Files | None = None,
    platlib: Files | None = None,
    console_scripts: Mapping[str, str] | None = None,
    gui_scripts: Mapping[str, str] | None = None,
    scripts: Files | None = None,
    data: Files | None = None,
    headers: Files | None = None,
    tag: str | None = None,
) -> Path:
    """Write a valid wheel into ``directory`` and return its path.

    Each mapping is ``relative path -> content``. With neither ``purelib`` nor
    ``platlib``, the wheel holds a package ``<name>/__init__.py`` with a
    ``main()``, so ``console_scripts={"demo": "demo:main"}`` just works.
    ``platlib`` makes the wheel platform-specific (``Root-Is-Purelib: false``
    and this interpreter's platform tag); its purelib files then go under
    ``.data/purelib``. ``scripts`` get a ``#!python`` shebang unless their
    content starts with ``#!``. ``tag`` overrides the computed tag.
    """
    project = _valid_name(name)
    parsed = _valid_version(version)
    ver = str(parsed)
    stem = project.replace("-", "_")
    if purelib is None and platlib is None:
        purelib = _default_package(stem, name, ver)
    root_is_purelib = platlib is None
    tag = tag or ("py3-none-any" if root_is_purelib else platform_tag())
    tags = _valid_tag(tag)
    dist_info = f"{stem}-{ver}.dist-info"
    data_dir = f"{stem}-{ver}.data"

    members: dict[str, tuple[bytes, bool]] = {}

    def add(archive_path: str, content: bytes, executable: bool = False) -> None:
        if archive_path in members:
            raise WheelError(f"wheel member {archive_path!r}: given twice")
        members[archive_path] = (content, executable)

    root_files, other_lib = (
        (purelib, ("platlib", platlib)) if root_is_purelib else (platlib, ("purelib", purelib))
    )
    for path, content in sorted((root_files or {}).items()):
        add(_member_path("root", path), _as_bytes(content))
    key, files = other_lib
    for path, content in sorted((files or {}).items()):
        add(f"{data_dir}/{key}/{_member_path(key, path)}", _as_bytes(content))
    for path, content in sorted((scripts or {}).items()):
        add(f"{data_dir}/scripts/{_member_path('scripts', path)}", _script(content), True)
    for path, content in sorted((data or {}).items()):
        add(f"{data_dir}/data/{_member_path('data', path)}", _as_bytes(content))
    for path, content in sorted((headers or {}).items()):
        add(f"{data_dir}/headers/{_member_path('headers', path)}", _as_bytes(content))
    for path in members:
        if path.split("/", 1)[0] == dist_info:
            raise WheelError(f"wheel member {path!r}: the .dist-info directory is generated")

    add(
        f"{dist_info}/METADATA",
        (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\n"
            f"Summary: test wheel built by {_GENERATOR}\n"
        ).encode(),
    )
    wheel_text = (
        f"Wheel-Version: 1.0\nGenerator: {_GENERATOR}\n"
        f"Root-Is-Purelib: {'true' if root_is_purelib else 'false'}\n"
    )
    wheel_text += "".join(f"Tag: {t}\n" for t in sorted(map(str, tags)))
    add(f"{dist_info}/WHEEL", wheel_text.encode())
    entry_points = _entry_points(console_scripts, gui_scripts)
    if entry_points:
        add(f"{dist_info}/entry_points.txt", entry_points)

    filename = f"{stem}-{ver}-{tag}.whl"
    try:
        parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:  # pragma: no cover - inputs were validated
        raise WheelError(f"wheel file name {filename!r}: {exc}") from None
    target = Path(directory) / filename
    _write_archive(target, members, f"{dist_info}/RECORD")
    _check_readable(target)
    return target


def _write_archive(
    target: Path, members: Mapping[str, tuple[bytes, bool]], record_path: str
) -> None:
    """Write members, then a RECORD listing each with its hash and size."""
    rows = [
        RecordEntry(path, Hash.parse(file_hash(content)), len(content)).to_row()
        for path, (content, _x) in members.items()
    ]
    rows.append(RecordEntry(record_path, None, None).to_row())
    record = io.StringIO()
    csv.writer(record, lineterminator="\n").writerows(rows)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, (content, executable) in members.items():
            archive.writestr(_zip_info(path, executable), content)
        archive.writestr(_zip_info(record_path, False), record.getvalue().encode())
    os.chmod(target, 0o644)


def _zip_info(path: str, executable: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, date_time=_ZIP_DATE)
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _check_readable(target: Path) -> None:
    """What we built must pass installer's own validation, hashes included."""
    with WheelFile.open(target) as source:
        try:
            source.validate_record()
        except ValueError as exc:  # pragma: no cover - a bug in build_wheel
            raise WheelError(f"{target}: built wheel fails installer's validation: {exc}") from exc


class MakeWheel:
    """The ``make_wheel`` fixture's value: :func:`build_wheel` bound to a directory.

    The directory must be readable by the uid a child runs as, which pytest's
    0700 basetemp is not when the session runs as root.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(
        self,
        name: str,
        version: str = "1.0",
        *,
        purelib: Files | None = None,
        platlib: Files | None = None,
        console_scripts: Mapping[str, str] | None = None,
        gui_scripts: Mapping[str, str] | None = None,
        scripts: Files | None = None,
        data: Files | None = None,
        headers: Files | None = None,
        tag: str | None = None,
    ) -> Path:
        return build_wheel(
            self.directory,
            name,
            version,
            purelib=purelib,
            platlib=platlib,
            console_scripts=console_scripts,
            gui_scripts=gui_scripts,
            scripts=scripts,
            data=data,
            headers=headers,
            tag=tag,
        )

    def __repr__(self) -> str:
        return f"<make_wheel into {self.directory}>"


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One file an installer must write for a wheel, relative to a scheme key.

    ``record_hash`` is what the wheel's RECORD claims; ``content_hash`` what
    the bytes in the archive hash to. They differ only in a corrupt wheel.
    For a ``.data/scripts`` file (``kind == "script"``) with a ``#!python``
    shebang, ``body`` is everything after the first line: the installer
    rewrites the shebang and must keep the rest. Entry-point launchers have no
    content to compare; ``target`` is their ``module:attr``.
    """

    scheme: str
    path: str
    kind: str = KIND_FILE
    record_hash: str | None = None
    content_hash: str | None = None
    body: bytes | None = None
    target: str = ""

    @property
    def corrupt(self) -> bool:
        return self.record_hash is not None and self.record_hash != self.content_hash


@dataclass(frozen=True)
class WheelLayout:
    """A wheel read into what each scheme key must receive.

    ``name`` is the distribution name as the file name spells it, ``project``
    its canonical form, ``metadata_name`` the ``Name:`` of METADATA.
    """

    path: Path
    name: str
    project: NormalizedName
    metadata_name: str
    version: str
    dist_info: str
    root_scheme: str
    members: tuple[Member, ...]

    @property
    def label(self) -> str:
        return f"{self.metadata_name} {self.version} ({self.path.name})"

    @property
    def corrupt(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.corrupt)

    def destinations(self, scheme: Mapping[str, Path]) -> dict[Path, Member]:
        """Absolute path of every member for a scheme mapping.

        Headers land in ``<headers>/<canonical project name>``, where uv puts
        them (pip spells the directory as the requirement was typed; the
        verdicts accept any spelling). The scheme's ``headers`` is the bare
        include directory, as ``env.paths()`` returns it.
        """
        missing = sorted({m.scheme for m in self.members} - set(scheme))
        if missing:
            raise WheelError(
                f"scheme mapping for {self.path.name} lacks key(s) "
                f"{', '.join(missing)}: need {', '.join(SCHEME_KEYS)}"
            )
        found: dict[Path, Member] = {}
        for member in self.members:
            top = Path(scheme[member.scheme])
            if member.scheme == "headers":
                top = top / self.project
            found[Path(os.path.normpath(top / member.path))] = member
        return found


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


# ---------------------------------------------------------------------------
# installing (preinstalled wheels, as a system package manager would)
# ---------------------------------------------------------------------------


def install_wheel(
    wheel: str | os.PathLike[str],
    scheme: Mapping[str, Path],
    python: Path,
    *,
    installer: str = "installperm",
) -> WheelLayout:
    """Install ``wheel`` into ``scheme`` with ``installer``, owned by this process.

    Used for ``preinstalled=`` before a lock: files 0644, directories and
    scripts 0755, whatever the umask, like a distribution package. A corrupt
    wheel is refused: a preinstalled package must be exactly what it claims.
    """
    layout = read_wheel(wheel)
    if layout.corrupt:
        bad = ", ".join(
            f"{m.path} (RECORD {m.record_hash}, content {m.content_hash})" for m in layout.corrupt
        )
        raise WheelError(
            f"{layout.path}: cannot preinstall a wheel whose RECORD hashes are wrong: {bad}"
        )
    targets = {k: str(v) for k, v in scheme.items()}
    targets["headers"] = str(Path(scheme["headers"]) / layout.project)
    destination = SchemeDictionaryDestination(targets, interpreter=str(python), script_kind="posix")
    with WheelFile.open(layout.path) as source:
        try:
            install(
                source, destination, additional_metadata={"INSTALLER": f"{installer}\n".encode()}
            )
        except FileExistsError as exc:
            raise WheelError(
                f"{layout.path}: cannot preinstall: {exc} (another preinstalled "
                "wheel already wrote it)"
            ) from None
    for path, member in layout.destinations(scheme).items():
        _fix_modes(path, Path(scheme[member.scheme]), executable=member.scheme == "scripts")
    site = Path(scheme[layout.root_scheme]) / layout.dist_info
    for name in os.listdir(site):
        _fix_modes(site / name, Path(scheme[layout.root_scheme]), executable=False)
    return layout


def _fix_modes(path: Path, top: Path, *, executable: bool) -> None:
    """0644/0755 on ``path`` and 0755 on its directories up to ``top``."""
    os.chmod(path, 0o755 if executable else 0o644)
    parent = path.parent
    while parent != top and top in parent.parents:
        os.chmod(parent, 0o755)
        parent = parent.parent


__all__ = [
    "KIND_ENTRY_POINT",
    "KIND_FILE",
    "KIND_SCRIPT",
    "SCHEME_KEYS",
    "MakeWheel",
    "Member",
    "WheelLayout",
    "build_wheel",
    "file_hash",
    "install_wheel",
    "platform_tag",
    "read_wheel",
]
