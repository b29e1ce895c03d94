"""Building test wheels: :func:`build_wheel` and the ``make_wheel`` fixture's
:class:`MakeWheel`. Equal inputs give byte-identical wheels."""

from __future__ import annotations

import csv
import io
import os
import sysconfig
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TypedDict, Union, Unpack

from installer.records import Hash, RecordEntry
from installer.sources import WheelFile
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
from pytest_installperm.wheels.layout import file_hash

#: File contents accepted by :func:`build_wheel`; text is written as UTF-8.
Content = Union[str, bytes]
Files = Mapping[str, Content]
#: Fixed timestamp for every archive member, so equal inputs give equal wheels.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_GENERATOR = "pytest-installperm"


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


class WheelContents(TypedDict, total=False):
    """The keyword arguments of :func:`build_wheel` after the version, for callers
    that pass them on (``make_wheel``)."""

    purelib: Files | None
    platlib: Files | None
    console_scripts: Mapping[str, str] | None
    gui_scripts: Mapping[str, str] | None
    scripts: Files | None
    data: Files | None
    headers: Files | None
    tag: str | None


class MakeWheel:
    """The ``make_wheel`` fixture's value: :func:`build_wheel` bound to a directory.

    The directory must be readable by the uid a child runs as, which pytest's
    0700 basetemp is not when the session runs as root.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, name: str, version: str = "1.0", **contents: Unpack[WheelContents]) -> Path:
        return build_wheel(self.directory, name, version, **contents)

    def __repr__(self) -> str:
        return f"<make_wheel into {self.directory}>"


__all__ = [
    "Content",
    "Files",
    "MakeWheel",
    "WheelContents",
    "build_wheel",
    "platform_tag",
]
